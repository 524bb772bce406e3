/*
 * bench_payments.c VENDD [ORDERS] - payment notification to COMPLETED (SPEC §10: "webhook in
 * -> command out -> result in -> COMPLETED committed"), and the notification rate vendd
 * sustains while staying correct.
 *
 * Starts its own mosquitto and the given vendd (with a server key, so every notification is
 * verified as in production), writes PENDING customer orders straight into the SQLite file
 * (not timed: their Midtrans transactions are not what is measured), and answers every
 * command at once with a success, from a libmosquitto client.
 *
 *   latency: one order at a time, t0 = the signed settlement notification is sent, t1 = the
 *            webhook answered, t2 = the order reads COMPLETED in the database;
 *   rate:    ORDERS orders over 50 machines, their notifications sent by 4 threads as fast
 *            as vendd answers, each twice (Midtrans retries; the second must change
 *            nothing). Then every order must be COMPLETED with exactly one command, one
 *            stored event and one stock decrement.
 * Output lines: "payments <what>: ..." with p50/p99, and the rate with what limited it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "harness.h"

#define KEY            "SB-Mid-server-bench"
#define ORDERS_DEFAULT 1000
#define ORDERS_MAX     5000
#define LATENCY_ORDERS 300
#define MACHINES       50
#define THREADS        4
#define PRICE          5000
#define WAIT_US        10000000

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The machines: answer every command at once with a success. */
struct responder {
    pthread_mutex_t mu;
    unsigned commands;
};

static void on_command(struct harness_mqtt *c, const char *topic, const char *payload, size_t len,
                       void *arg)
{
    struct responder *r = arg;
    char res[256], order[80] = "", machine[40] = "", rtopic[80];
    const char *p = strstr(payload, "\"orderId\":\"");
    int n;

    (void)len;
    if (p == NULL || sscanf(p + 11, "%63[^\"]", order) != 1 ||
        sscanf(topic, "vm/%32[^/]/command", machine) != 1)
        return;
    pthread_mutex_lock(&r->mu);
    r->commands++;
    pthread_mutex_unlock(&r->mu);
    n = snprintf(res, sizeof(res),
                 "{\"orderId\":\"%s\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                 "\"durationMs\":1,\"error\":null}",
                 order);
    snprintf(rtopic, sizeof(rtopic), "vm/%s/dispense_result", machine);
    if (n > 0 && (size_t)n < sizeof(res))
        harness_mqtt_publish_nowait(c, rtopic, res, (size_t)n);
}

/* A notification as Midtrans sends it, signed with KEY. */
static int notification(char *buf, size_t size, const char *order_id)
{
    static const char hex[] = "0123456789abcdef";
    char text[256], sig[129];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n;

    n = snprintf(text, sizeof(text), "%s200%d.00%s", order_id, PRICE, KEY);
    if (EVP_Digest(text, (size_t)n, md, &mdlen, EVP_sha512(), NULL) != 1 || mdlen != 64)
        return -1;
    for (unsigned i = 0; i < mdlen; i++) {
        sig[2 * i] = hex[md[i] >> 4];
        sig[2 * i + 1] = hex[md[i] & 15];
    }
    sig[128] = '\0';
    return snprintf(buf, size,
                    "{\"transaction_time\":\"2026-11-29 10:00:00\",\"transaction_status\":"
                    "\"settlement\",\"transaction_id\":\"tx-%s\",\"status_message\":\"midtrans "
                    "payment notification\",\"status_code\":\"200\",\"signature_key\":\"%s\","
                    "\"payment_type\":\"qris\",\"order_id\":\"%s\",\"merchant_id\":\"G1\","
                    "\"gross_amount\":\"%d.00\",\"fraud_status\":\"accept\",\"currency\":\"IDR\"}",
                    order_id, sig, order_id, PRICE);
}

/* PENDING customer orders, as POST /api/orders would have left them, written in one go. */
static int seed(sqlite3 *db, const char *prefix, long n, int machines)
{
    char sql[1024], id[64], m[16];
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

    for (int k = 0; rc == SQLITE_OK && k < machines; k++) {
        snprintf(sql, sizeof(sql),
                 "INSERT OR IGNORE INTO machines (id, name, status, created_at, updated_at) "
                 "VALUES ('BM%02d', 'BM%02d', 'ONLINE', 'x', 'x');"
                 "INSERT OR IGNORE INTO slots (machine_id, slot_number, product_id, capacity, "
                 "current_stock, motor_duration_ms, created_at, updated_at) VALUES ('BM%02d', 1, "
                 "1, 1000, 1000, 1500, 'x', 'x')",
                 k, k, k);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    for (long i = 0; rc == SQLITE_OK && i < n; i++) {
        snprintf(id, sizeof(id), "%s-%05ld", prefix, i);
        snprintf(m, sizeof(m), "BM%02d", (int)(i % machines));
        snprintf(sql, sizeof(sql),
                 "INSERT INTO orders (id, machine_id, quantity, total_amount, status, origin, "
                 "payment_method, expires_at, next_check_at, created_at, updated_at) VALUES "
                 "('%s', '%s', 1, %d, 'PENDING', 'customer', 'qris', '2999-01-01T00:00:00.000Z', "
                 "'2999-01-01T00:00:00.000Z', 'x', 'x');"
                 "INSERT INTO order_items (order_id, position, slot_id, product_id, product_name, "
                 "quantity, unit_price, total, first_unit) SELECT '%s', 1, id, 1, 'Bench', 1, %d, "
                 "%d, 1 FROM slots WHERE machine_id = '%s';"
                 "INSERT INTO payments (order_id, gateway_name, amount, status, payment_type, "
                 "created_at, updated_at) VALUES ('%s', 'midtrans', %d, 'PENDING', 'qris', 'x', "
                 "'x');"
                 "UPDATE slots SET reserved = reserved + 1 WHERE machine_id = '%s'",
                 id, m, PRICE, id, PRICE, PRICE, m, id, PRICE, m);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "bench_payments: seeding: %s\n", sqlite3_errmsg(db));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

static long long scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* vendd's CPU time so far (user + system), in milliseconds, from /proc. */
static double cpu_ms(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
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
    printf("payments %s: n=%zu p50=%.3f ms p90=%.3f ms p99=%.3f ms max=%.3f ms\n", what, n,
           pct(v, n, 0.50), pct(v, n, 0.90), pct(v, n, 0.99), (double)v[n - 1] / 1000.0);
}

struct sender {
    struct harness *h;
    long first, step, n;
    unsigned bad; /* answers other than 200 */
};

static void *send_all(void *arg)
{
    struct sender *s = arg;
    char id[64], body[1024];
    int len;

    for (int round = 0; round < 2; round++) {
        for (long i = s->first; i < s->n; i += s->step) {
            snprintf(id, sizeof(id), "rate-%05ld", i);
            len = notification(body, sizeof(body), id);
            if (len < 0 || harness_http(s->h, "POST", "/api/payments/webhook", NULL, body,
                                        (size_t)len, NULL) != 200)
                s->bad++;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const char *const env[] = {
        "MIDTRANS_SERVER_KEY=" KEY, "MIDTRANS_API_BASE=http://127.0.0.1:9",
        "MIDTRANS_SNAP_BASE=http://127.0.0.1:9/snap/v1", "DISPENSE_RESULT_GRACE_MS=5000", NULL};
    struct harness h;
    struct responder r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct harness_mqtt resp = {0};
    struct sender senders[THREADS];
    pthread_t threads[THREADS];
    sqlite3 *db = NULL;
    uint64_t *full = NULL, *hook = NULL, t0, t1, t_sent, t_done;
    double cpu0, cpu1;
    char id[64], body[1024], sql[160];
    long norders = ORDERS_DEFAULT;
    unsigned bad = 0;
    char *end;
    int status = 1, len;
    size_t done = 0;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_payments VENDD [ORDERS]\n");
        return 64;
    }
    if (argc == 3) {
        errno = 0;
        norders = strtol(argv[2], &end, 10);
        if (errno != 0 || end == argv[2] || *end != '\0' || norders < MACHINES ||
            norders > ORDERS_MAX) {
            fprintf(stderr, "bench_payments: ORDERS must be %d..%d\n", MACHINES, ORDERS_MAX);
            return 64;
        }
    }
    setenv("VENDD", argv[1], 1);
    full = calloc(LATENCY_ORDERS, sizeof(*full));
    hook = calloc(LATENCY_ORDERS, sizeof(*hook));
    if (full == NULL || hook == NULL || harness_start(&h, env) < 0) {
        free(full);
        free(hook);
        return 1;
    }
    if (harness_put_slot(&h, 1, 10, 1500) < 0 ||
        sqlite3_open_v2(h.db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        goto out;
    sqlite3_busy_timeout(db, 5000);
    if (seed(db, "lat", LATENCY_ORDERS, 1) < 0 || seed(db, "rate", norders, MACHINES) < 0)
        goto out;
    if (harness_mqtt_open(&resp, h.broker.port, "bench-machines", "vm/+/command", on_command, &r) <
        0)
        goto out;

    /* Latency: one order at a time on one machine. */
    for (long i = 0; i < LATENCY_ORDERS; i++) {
        snprintf(id, sizeof(id), "lat-%05ld", i);
        len = notification(body, sizeof(body), id);
        t0 = now_us();
        if (len < 0 ||
            harness_http(&h, "POST", "/api/payments/webhook", NULL, body, (size_t)len, NULL) != 200)
            goto out;
        t1 = now_us();
        snprintf(sql, sizeof(sql), "SELECT status = 'COMPLETED' FROM orders WHERE id = '%s'", id);
        while (scalar(db, sql) != 1) {
            if (now_us() - t0 > WAIT_US) {
                fprintf(stderr, "bench_payments: '%s' not COMPLETED in time\n", id);
                goto out;
            }
            usleep(50);
        }
        full[done] = now_us() - t0;
        hook[done] = t1 - t0;
        done++;
    }
    report("notification->COMPLETED", full, done);
    report("notification answered", hook, done);

    /* Rate: many machines, notifications as fast as vendd answers them, each twice. */
    cpu0 = cpu_ms(h.pid);
    t_sent = now_us();
    for (int k = 0; k < THREADS; k++) {
        senders[k] = (struct sender){.h = &h, .first = k, .step = THREADS, .n = norders};
        pthread_create(&threads[k], NULL, send_all, &senders[k]);
    }
    for (int k = 0; k < THREADS; k++) {
        pthread_join(threads[k], NULL);
        bad += senders[k].bad;
    }
    t1 = now_us();
    while (scalar(db, "SELECT count(*) FROM orders WHERE id LIKE 'rate-%' AND status <> "
                      "'COMPLETED'") != 0) {
        if (now_us() - t1 > WAIT_US * 3) {
            fprintf(stderr, "bench_payments: orders not COMPLETED in time\n");
            goto out;
        }
        usleep(1000);
    }
    t_done = now_us();
    cpu1 = cpu_ms(h.pid);
    printf("payments notification rate: %ld orders x 2 notifications over %d machines from %d "
           "threads: %.0f notifications/s answered (%.2f s), all COMPLETED after %.2f s; "
           "%u non-200 answers\n",
           norders, MACHINES, THREADS, 2.0 * (double)norders / ((double)(t1 - t_sent) / 1e6),
           (double)(t1 - t_sent) / 1e6, (double)(t_done - t_sent) / 1e6, bad);
    printf("payments vendd CPU during the rate run: %.0f ms over %.2f s (%.0f%% of one core), "
           "%.3f ms per notification\n",
           cpu1 - cpu0, (double)(t_done - t_sent) / 1e6,
           100.0 * (cpu1 - cpu0) / ((double)(t_done - t_sent) / 1e3),
           (cpu1 - cpu0) / (2.0 * (double)norders));
    printf("payments correctness: commands=%u (want %ld), events=%lld (want %ld), "
           "stock taken=%lld (want %ld), reserved left=%lld (want 0)\n",
           r.commands, norders + LATENCY_ORDERS,
           scalar(db, "SELECT count(*) FROM payment_events WHERE order_id LIKE 'rate-%'"), norders,
           scalar(db, "SELECT count(*) FROM stock_logs WHERE order_id LIKE 'rate-%' AND "
                      "change_type = 'DISPENSE'"),
           norders, scalar(db, "SELECT sum(reserved) FROM slots"));
    status = r.commands == (unsigned)(norders + LATENCY_ORDERS) && bad == 0 &&
                     harness_vendd_term(&h) == 0
                 ? 0
                 : 1;
out:
    sqlite3_close(db);
    if (resp.m != NULL)
        harness_mqtt_close(&resp);
    harness_stop(&h);
    free(full);
    free(hook);
    return status;
}
