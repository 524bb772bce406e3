/*
 * bench_dispense.c VENDD [ORDERS] - the dispense round trip (SPEC §10) over sequential
 * orders with an instant responder.
 *
 * Starts its own mosquitto (tests/support: loopback, set_tcp_nodelay true) and the given
 * vendd on a fresh SQLite file, creates slot 1 with enough stock and ORDERS (default 1000)
 * manual PAID orders up front (not timed). Then, one order at a time:
 *
 *   t0  POST /api/dispense/trigger sent
 *   t1  the command arrives at the responder (a libmosquitto client that answers at once
 *       with a success result, from its network thread)
 *   t2  the order reads COMPLETED in the SQLite file (polled read-only; WAL lets us)
 *
 * Prints p50/p90/p99/max of t2-t0 (full round trip) and t1-t0 (trigger -> command), and
 * the environment: cores, the database's journal mode and filesystem.
 * Output lines: "dispense round trip <what>: n=N p50=X ms p90=X ms p99=X ms max=X ms".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"

#define ORDERS_DEFAULT 1000
#define ORDERS_MAX     1000 /* slots.capacity is at most 1000 */
#define WAIT_US        5000000
#define TMPFS_MAGIC_   0x01021994

/* Shared with the responder thread: which order is in flight and when its command came. */
struct responder {
    pthread_mutex_t mu;
    char order_id[64];
    uint64_t t_cmd_us;
    unsigned unexpected;
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void on_command(struct harness_mqtt *c, const char *topic, const char *payload, size_t len,
                       void *arg)
{
    struct responder *r = arg;
    uint64_t t = now_us();
    char res[256], want[96];
    bool ours;
    int n;

    (void)topic;
    (void)len;
    pthread_mutex_lock(&r->mu);
    snprintf(want, sizeof(want), "\"orderId\":\"%s\"", r->order_id);
    ours = r->order_id[0] != '\0' && strstr(payload, want) != NULL;
    if (ours)
        r->t_cmd_us = t;
    else
        r->unexpected++;
    n = snprintf(res, sizeof(res),
                 "{\"orderId\":\"%s\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                 "\"durationMs\":1,\"error\":null}",
                 r->order_id);
    pthread_mutex_unlock(&r->mu);
    if (ours && n > 0 && (size_t)n < sizeof(res))
        harness_mqtt_publish_nowait(c, "vm/VM01/dispense_result", res, (size_t)n);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);

    return (double)sorted[i < n ? i : n - 1] / 1000.0;
}

static void report(const char *what, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(v[0]), cmp_u64);
    printf("dispense round trip %s: n=%zu p50=%.3f ms p90=%.3f ms p99=%.3f ms max=%.3f ms\n", what,
           n, pct(v, n, 0.50), pct(v, n, 0.90), pct(v, n, 0.99), (double)v[n - 1] / 1000.0);
}

/* Poll the order's status read-only until COMPLETED; 0, or -1 on timeout/error. */
static int wait_completed(sqlite3_stmt *st, const char *order_id)
{
    uint64_t deadline = now_us() + WAIT_US;
    int rc = -1;

    while (now_us() < deadline) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(st, 0), "COMPLETED") == 0) {
            rc = 0;
            break;
        }
        sqlite3_reset(st);
        usleep(50);
    }
    sqlite3_reset(st);
    return rc;
}

static void environment(const struct harness *h, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    struct statfs fs;
    const char *mode = "?";

    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        mode = (const char *)sqlite3_column_text(st, 0);
    printf("environment: %ld cores online; sqlite %s journal_mode=%s, synchronous=FULL "
           "(vendd's setting); database on %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), sqlite3_libversion(), mode,
           statfs(h->dir, &fs) == 0 && fs.f_type == TMPFS_MAGIC_ ? "tmpfs" : "a disk filesystem");
    sqlite3_finalize(st);
}

int main(int argc, char **argv)
{
    struct harness h;
    struct responder r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct harness_mqtt resp = {0};
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t *full = NULL, *cmd = NULL, t0;
    char id[64];
    long norders = ORDERS_DEFAULT;
    char *end;
    int status = 1;
    size_t done = 0;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_dispense VENDD [ORDERS]\n");
        return 64;
    }
    if (argc == 3) {
        errno = 0;
        norders = strtol(argv[2], &end, 10);
        if (errno != 0 || end == argv[2] || *end != '\0' || norders < 1 || norders > ORDERS_MAX) {
            fprintf(stderr, "bench_dispense: ORDERS must be 1..%d (got '%s')\n", ORDERS_MAX,
                    argv[2]);
            return 64;
        }
    }
    setenv("VENDD", argv[1], 1);
    full = calloc((size_t)norders, sizeof(*full));
    cmd = calloc((size_t)norders, sizeof(*cmd));
    if (full == NULL || cmd == NULL || harness_start(&h, NULL) < 0) {
        free(full);
        free(cmd);
        return 1;
    }
    if (harness_put_slot(&h, 1, (int)norders, 2150) < 0)
        goto out;
    for (long i = 0; i < norders; i++) {
        snprintf(id, sizeof(id), "bench-%04ld", i);
        if (harness_order(&h, id, 1, 1) < 0)
            goto out;
    }
    if (harness_mqtt_open(&resp, h.broker.port, "bench-responder", "vm/VM01/command", on_command,
                          &r) < 0)
        goto out;
    if (sqlite3_open_v2(h.db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT status FROM orders WHERE id = ?1", -1, &st, NULL) !=
            SQLITE_OK) {
        fprintf(stderr, "bench_dispense: '%s': %s\n", h.db_path, sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_busy_timeout(db, 1000);
    environment(&h, db);

    for (long i = 0; i < norders; i++) {
        snprintf(id, sizeof(id), "bench-%04ld", i);
        pthread_mutex_lock(&r.mu);
        memcpy(r.order_id, id, strlen(id) + 1);
        r.t_cmd_us = 0;
        pthread_mutex_unlock(&r.mu);
        t0 = now_us();
        if (harness_trigger(&h, id, NULL) != 200) {
            fprintf(stderr, "bench_dispense: trigger of '%s' failed\n", id);
            goto out;
        }
        if (wait_completed(st, id) < 0) {
            fprintf(stderr, "bench_dispense: '%s' not COMPLETED within %d ms\n", id,
                    WAIT_US / 1000);
            goto out;
        }
        full[i] = now_us() - t0;
        pthread_mutex_lock(&r.mu);
        cmd[i] = r.t_cmd_us >= t0 ? r.t_cmd_us - t0 : 0;
        pthread_mutex_unlock(&r.mu);
        done++;
    }
    if (r.unexpected != 0)
        fprintf(stderr, "bench_dispense: %u command(s) for other orders\n", r.unexpected);
    report("trigger->COMPLETED", full, done);
    report("trigger->command", cmd, done);
    status = harness_vendd_term(&h) == 0 && r.unexpected == 0 ? 0 : 1;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (resp.m != NULL)
        harness_mqtt_close(&resp);
    harness_stop(&h);
    free(full);
    free(cmd);
    return status;
}
