/*
 * minpipe.c - the ceilings vendd's ingest is measured against (docs/BENCH.md): the least a
 * program must do to move telemetry from the broker into SQLite durably, and, without
 * --db, the least it must do to receive it at all.
 *
 *   minpipe --port P [--host 127.0.0.1] [--filter vm/+/telemetry] [--db PATH]
 *           [--batch 1000] [--max-ms 10] [--status-ms 100]
 *
 * One MQTT v5 connection (clean start, TCP_NODELAY, as vendd's), subscribed at QoS 1,
 * libmosquitto without its thread, driven by poll(); a readable socket is read up to 256
 * packets at a time, as vendd reads a burst. With --db every message becomes a row
 *   telemetry(id INTEGER PRIMARY KEY, machine_id TEXT, ts INTEGER, payload TEXT)
 *   + INDEX (machine_id, ts)
 * through one prepared INSERT, committed every --batch rows or --max-ms after the first row
 * of the batch, journal_mode=WAL, synchronous=FULL (vendd's durability). The PUBACK goes out
 * when the message is read, before its commit, as vendd's does.
 *
 * Every --status-ms it prints "minpipe: msgs=N rows=N cpu_us=N" (rows: committed; without
 * --db rows = msgs), so a driver reads its progress from the last line; once more at SIGTERM
 * after a last commit. "minpipe: ready" once subscribed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sqlite3.h>

#include "bench_util.h"

#define TOOL      "minpipe"
#define BURST_MAX 256

static volatile sig_atomic_t s_stop;

struct minpipe {
    struct mosquitto *m;
    const char *filter;
    sqlite3 *db;
    sqlite3_stmt *ins;
    bool subscribed, failed, in_txn;
    uint64_t msgs, rows, batch, batch_max, max_us, batch_t0;
};

static void on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int exec(struct minpipe *p, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(p->db, sql, NULL, NULL, &err) == SQLITE_OK)
        return 0;
    fprintf(stderr, "%s: '%s': %s\n", TOOL, sql, err != NULL ? err : sqlite3_errmsg(p->db));
    sqlite3_free(err);
    p->failed = true;
    return -1;
}

static void commit(struct minpipe *p)
{
    if (!p->in_txn)
        return;
    if (exec(p, "COMMIT") == 0)
        p->rows += p->batch;
    p->in_txn = false;
    p->batch = 0;
}

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct minpipe *p = arg;

    if (rc != 0) {
        fprintf(stderr, "%s: broker refused us: %s\n", TOOL, mosquitto_connack_string(rc));
        p->failed = true;
        return;
    }
    if (mosquitto_subscribe(m, NULL, p->filter, 1) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "%s: cannot subscribe to '%s'\n", TOOL, p->filter);
        p->failed = true;
    }
}

static void on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
    struct minpipe *p = arg;

    (void)m;
    (void)mid;
    if (n < 1 || granted[0] > 1) {
        fprintf(stderr, "%s: broker refused the subscription to '%s'\n", TOOL, p->filter);
        p->failed = true;
        return;
    }
    p->subscribed = true;
    printf("minpipe: ready\n");
    fflush(stdout);
}

static void on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    struct minpipe *p = arg;
    const char *id, *end;

    (void)m;
    p->msgs++;
    if (p->db == NULL)
        return;
    /* vm/{id}/telemetry: the machine is the second level. */
    id = strchr(msg->topic, '/');
    end = id != NULL ? strchr(id + 1, '/') : NULL;
    if (end == NULL)
        return;
    id++;
    if (!p->in_txn) {
        if (exec(p, "BEGIN") < 0)
            return;
        p->in_txn = true;
        p->batch_t0 = bu_now_us();
    }
    sqlite3_bind_text(p->ins, 1, id, (int)(end - id), SQLITE_STATIC);
    sqlite3_bind_int64(p->ins, 2, (sqlite3_int64)bu_now_us());
    sqlite3_bind_text(p->ins, 3, msg->payload, msg->payloadlen, SQLITE_STATIC);
    if (sqlite3_step(p->ins) != SQLITE_DONE) {
        fprintf(stderr, "%s: insert: %s\n", TOOL, sqlite3_errmsg(p->db));
        p->failed = true;
    }
    sqlite3_reset(p->ins);
    if (++p->batch >= p->batch_max)
        commit(p);
}

static int db_open(struct minpipe *p, const char *path)
{
    if (sqlite3_open(path, &p->db) != SQLITE_OK) {
        fprintf(stderr, "%s: cannot open '%s': %s\n", TOOL, path, sqlite3_errmsg(p->db));
        return -1;
    }
    if (exec(p, "PRAGMA journal_mode=WAL") < 0 || exec(p, "PRAGMA synchronous=FULL") < 0 ||
        exec(p, "CREATE TABLE IF NOT EXISTS telemetry (id INTEGER PRIMARY KEY, "
                "machine_id TEXT NOT NULL, ts INTEGER NOT NULL, payload TEXT NOT NULL)") < 0 ||
        exec(p, "CREATE INDEX IF NOT EXISTS telemetry_machine ON telemetry (machine_id, ts)") < 0)
        return -1;
    if (sqlite3_prepare_v2(p->db,
                           "INSERT INTO telemetry (machine_id, ts, payload) VALUES (?1, ?2, ?3)",
                           -1, &p->ins, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: cannot prepare the insert: %s\n", TOOL, sqlite3_errmsg(p->db));
        return -1;
    }
    return 0;
}

static void status(const struct minpipe *p)
{
    printf("minpipe: msgs=%llu rows=%llu cpu_us=%lld\n", (unsigned long long)p->msgs,
           (unsigned long long)(p->db != NULL ? p->rows : p->msgs), (long long)bu_proc_cpu_us(0));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct minpipe p = {.filter = "vm/+/telemetry", .batch_max = 1000, .max_us = 10000};
    const char *host = "127.0.0.1", *db = NULL;
    uint64_t port = 0, max_ms = 10, status_ms = 100, next_status;
    struct sigaction sa;
    struct pollfd pfd;
    int rc = 1, avail, mrc;

    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;

        if (v == NULL) {
            fprintf(stderr, "%s: option '%s' needs a value\n", TOOL, a);
            return 64;
        }
        if (strcmp(a, "--port") == 0)
            r = bu_parse_u64(TOOL, a, v, 1, 65535, &port);
        else if (strcmp(a, "--host") == 0)
            host = v;
        else if (strcmp(a, "--filter") == 0)
            p.filter = v;
        else if (strcmp(a, "--db") == 0)
            db = v;
        else if (strcmp(a, "--batch") == 0)
            r = bu_parse_u64(TOOL, a, v, 1, 1000000, &p.batch_max);
        else if (strcmp(a, "--max-ms") == 0)
            r = bu_parse_u64(TOOL, a, v, 1, 10000, &max_ms);
        else if (strcmp(a, "--status-ms") == 0)
            r = bu_parse_u64(TOOL, a, v, 10, 60000, &status_ms);
        else {
            fprintf(stderr, "%s: unknown option '%s'\n", TOOL, a);
            r = -1;
        }
        if (r < 0)
            return 64;
    }
    if (port == 0) {
        fprintf(stderr, "usage: minpipe --port P [--host H] [--filter F] [--db PATH] "
                        "[--batch N] [--max-ms MS] [--status-ms MS]\n");
        return 64;
    }
    p.max_us = max_ms * 1000u;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (db != NULL && db_open(&p, db) < 0)
        goto out;
    mosquitto_lib_init();
    p.m = mosquitto_new("minpipe", true, &p);
    if (p.m == NULL) {
        fprintf(stderr, "%s: cannot create the MQTT client\n", TOOL);
        goto out;
    }
    mosquitto_int_option(p.m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(p.m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(p.m, on_connect);
    mosquitto_subscribe_callback_set(p.m, on_subscribe);
    mosquitto_message_callback_set(p.m, on_message);
    mrc = mosquitto_connect(p.m, host, (int)port, 60);
    if (mrc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "%s: cannot connect to %s:%llu: %s\n", TOOL, host, (unsigned long long)port,
                mrc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(mrc));
        goto out;
    }
    next_status = bu_now_us() + status_ms * 1000u;
    while (!s_stop && !p.failed) {
        uint64_t now = bu_now_us(), wake = next_status;
        int timeout;

        if (p.in_txn && p.batch_t0 + p.max_us < wake)
            wake = p.batch_t0 + p.max_us;
        timeout = wake > now ? (int)((wake - now + 999) / 1000) : 0;
        pfd.fd = mosquitto_socket(p.m);
        pfd.events = POLLIN | (mosquitto_want_write(p.m) ? POLLOUT : 0);
        if (pfd.fd < 0) {
            fprintf(stderr, "%s: lost the broker\n", TOOL);
            break;
        }
        if (poll(&pfd, 1, timeout) > 0) {
            if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                for (int k = 0; k < BURST_MAX; k++) {
                    mrc = mosquitto_loop_read(p.m, 1);
                    if (mrc != MOSQ_ERR_SUCCESS) {
                        fprintf(stderr, "%s: lost the broker: %s\n", TOOL, mosquitto_strerror(mrc));
                        p.failed = true;
                        break;
                    }
                    if (ioctl(pfd.fd, FIONREAD, &avail) < 0 || avail <= 0)
                        break;
                }
            }
            if (!p.failed && mosquitto_want_write(p.m))
                mosquitto_loop_write(p.m, 1);
        }
        now = bu_now_us();
        if (p.in_txn && now >= p.batch_t0 + p.max_us)
            commit(&p);
        if (now >= next_status) {
            mosquitto_loop_misc(p.m);
            status(&p);
            next_status = now + status_ms * 1000u;
        }
    }
    commit(&p);
    status(&p);
    rc = p.failed ? 1 : 0;
out:
    if (p.m != NULL) {
        mosquitto_disconnect(p.m);
        mosquitto_destroy(p.m);
    }
    mosquitto_lib_cleanup();
    sqlite3_finalize(p.ins);
    sqlite3_close(p.db);
    return rc;
}
