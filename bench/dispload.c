/*
 * dispload.c - the dispense round trip at a sustained order rate over many machines
 * (docs/BENCH.md), against a running vendd whose machines and slots exist.
 *
 *   dispload --http-port P [--http-port P2 ..] --mqtt-port M --db VENDD_DB --machines N
 *            --rate R --seconds S [--prefix vm] [--first 1] [--slot 1] [--conns 16]
 *            [--id-prefix bd] [--poll-us 100] [--create-only 1] [--times FILE]
 *
 * VENDD_DB is vendd's SQLite file, or its postgres:// / postgresql:// URL (read with libpq).
 * --http-port given more than once: several vendd instances on one database and broker; HTTP
 * connection j (order creation and triggers) goes to instance j mod their number, so the
 * triggers are spread over them evenly. --create-only 1 stops after step 1 (a profiler's
 * baseline, bench/dispense_profile.sh).
 *
 * 1. Not timed: R x S manual orders "<id-prefix>0000001".., order k for machine k mod N, one
 *    unit of --slot each (POST /api/orders, 16 keep-alive connections).
 * 2. N machines connect (MQTT v5, TCP_NODELAY), each subscribed to its vm/{id}/command;
 *    a machine answers a dispense command at once, from the same loop, with success and a
 *    drop: an instant motor, so what is left is vendd, the broker and the disk.
 * 3. Timed: trigger k is due at t0 + k/R (POST /api/dispense/trigger on one of --conns
 *    keep-alive connections; a trigger whose connections are all busy waits: its lateness
 *    counts, since every time is taken from the schedule, not from when it went out).
 * 4. A second thread reads vendd's database (SQLite read-only, WAL; PostgreSQL over one
 *    connection, one prepared statement) every --poll-us and notes when a unit's
 *    dispense_logs row is no longer SENT or QUEUED: its result's transaction has committed
 *    (the order's COMPLETED commits in the same transaction).
 *
 * Times per order, all CLOCK_MONOTONIC in this process, from the trigger's due time:
 *   round trip  -> the poll that first sees the result committed (resolution ~0.1 ms + one
 *                  query; the figure the benchmark reports)
 *   trigger     -> vendd's HTTP answer to the trigger arrived
 *   command     -> the command reached the machine
 *   result->commit: the machine published its result -> the poll saw it committed
 *   late        -> the trigger went out after its due time (the driver's own lag)
 * Prints one line per figure: "dispload: <what> n=N p50_ms=X p90_ms=X p99_ms=X max_ms=X",
 * and "dispload: orders=N triggered=N trigger_ok=N completed=N failed=N machines=N seconds=S
 * rate=R done_rate=R unexpected_commands=N" (rate: triggers per second between the first and
 * the last due time reached; done_rate: completions per second from the first due time to the
 * last completion).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <mosquitto.h>
#include <sqlite3.h>

#include "bench_fleet.h"
#include "bench_http.h"
#include "bench_util.h"

#define TOOL         "dispload"
#define ORDERS_MAX   1000000u
#define CREATE_CONNS 16
#define DRAIN_US     10000000u
#define POLL_US      100u
/* All connections waiting for vendd: sleep until one answers (an epoll event), at most this. */
#define BUSY_WAIT_US 5000u
#define PORTS_MAX    8
#define ID_MAX       64
#define RESULT_MAX   320

static volatile sig_atomic_t s_stop;

struct order {
    uint64_t due, sent, http, cmd, res;
    _Atomic uint64_t done; /* written by the poller thread */
    int http_status;
    bool failed; /* the unit ended FAILED or NO_RESULT */
};

struct dispload {
    uint64_t http_port[PORTS_MAX], mqtt_port, machines, rate, seconds, first, slot, conns, poll_us;
    size_t nports;
    uint64_t create_only; /* 1: stop after step 1 (a profiler's baseline) */
    const char *db_path, *prefix, *id_prefix;
    const char *times_path;           /* --times: every order's stamps, for a look at the tail */
    struct sockaddr_in sa[PORTS_MAX]; /* one per vendd instance */
    int epfd;
    struct order *o;
    size_t n;
    struct fleet f;
    struct bh_conn *hc;
    uint64_t unexpected; /* commands for no order of ours */
    uint64_t refused;    /* triggers answered with another status than 200 */
    /* poller */
    int64_t base_id; /* dispense_logs ids above it are this run's */
    uint8_t *seen;   /* [id - base_id]: that unit has an outcome */
    _Atomic size_t completed;
    _Atomic bool poll_stop;
    bool poll_failed;
};

static void on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

/* The order number of "<id-prefix>NNNNNNN", or -1. */
static long order_index(const struct dispload *d, const char *id, size_t len)
{
    size_t plen = strlen(d->id_prefix);
    char num[16];
    long k;

    if (len <= plen || len - plen >= sizeof(num) || memcmp(id, d->id_prefix, plen) != 0)
        return -1;
    memcpy(num, id + plen, len - plen);
    num[len - plen] = '\0';
    k = strtol(num, NULL, 10) - 1;
    return k >= 0 && (size_t)k < d->n ? k : -1;
}

/* The integer after "key": in a flat JSON text, or -1. */
static long json_int(const char *p, int len, const char *key)
{
    char pat[32];
    const char *v;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    v = memmem(p, (size_t)len, pat, strlen(pat));
    return v != NULL ? strtol(v + strlen(pat), NULL, 10) : -1;
}

/* A machine got a command: answer a dispense at once with a success and a drop. */
static void on_command(struct fleet *f, size_t i, const char *topic, const void *payload, int len,
                       void *arg)
{
    struct dispload *d = arg;
    const char *p = payload, *id, *end;
    char res[RESULT_MAX], rtopic[FLEET_TOPIC_MAX];
    uint64_t now = bu_now_us();
    long k, slot, unit;
    int n;

    (void)topic;
    id = memmem(p, (size_t)len, "\"orderId\":\"", 11);
    end = id != NULL ? memchr(id + 11, '"', (size_t)(p + len - (id + 11))) : NULL;
    if (memmem(p, (size_t)len, "\"cmd\":\"dispense\"", 16) == NULL || end == NULL ||
        end - (id + 11) > ID_MAX) {
        d->unexpected++;
        return;
    }
    id += 11;
    k = order_index(d, id, (size_t)(end - id));
    slot = json_int(p, len, "slot");
    unit = json_int(p, len, "unit");
    if (unit > 0)
        n = snprintf(res, sizeof(res),
                     "{\"orderId\":\"%.*s\",\"slot\":%ld,\"success\":true,\"dropDetected\":true,"
                     "\"durationMs\":1,\"error\":null,\"unit\":%ld}",
                     (int)(end - id), id, slot, unit);
    else
        n = snprintf(res, sizeof(res),
                     "{\"orderId\":\"%.*s\",\"slot\":%ld,\"success\":true,\"dropDetected\":true,"
                     "\"durationMs\":1,\"error\":null}",
                     (int)(end - id), id, slot);
    snprintf(rtopic, sizeof(rtopic), "vm/%s/dispense_result", f->c[i].id);
    /* A command for no order of this run (one left over from an earlier run) is answered
     * too: unanswered, it would hold its machine until its deadline. */
    if (k < 0)
        d->unexpected++;
    else
        d->o[k].cmd = now;
    /* Stamped before the hand-off: fleet_publish() may write it at once, and the commit that
     * follows must never seem to come before it. */
    if (k >= 0)
        d->o[k].res = bu_now_us();
    if ((n <= 0 || (size_t)n >= sizeof(res) || fleet_publish(f, i, rtopic, res, n, 1, false) < 0) &&
        k >= 0)
        d->o[k].res = 0;
}

/* ---- the database: SQLite file or PostgreSQL URL ------------------------------------ */

#define DONE_SQL_LITE                                                                              \
    "SELECT id, order_id, status FROM dispense_logs WHERE id > ?1 AND status <> 'SENT' "           \
    "AND status <> 'QUEUED' ORDER BY id"
#define DONE_SQL_PG                                                                                \
    "SELECT id, order_id, status FROM dispense_logs WHERE id > $1 AND status <> 'SENT' "           \
    "AND status <> 'QUEUED' ORDER BY id"
#define BASE_SQL "SELECT coalesce(max(id), 0) FROM dispense_logs"

struct ddb {
    sqlite3 *lite;
    sqlite3_stmt *st;
    PGconn *pg;
};

static bool is_pg(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

static void ddb_close(struct ddb *b)
{
    sqlite3_finalize(b->st);
    sqlite3_close(b->lite);
    if (b->pg != NULL)
        PQfinish(b->pg);
    memset(b, 0, sizeof(*b));
}

/* Open the database for reading; `poll` also prepares the poller's statement. */
static int ddb_open(struct ddb *b, const char *path, bool poll)
{
    memset(b, 0, sizeof(*b));
    if (is_pg(path)) {
        PGresult *r;

        b->pg = PQconnectdb(path);
        if (PQstatus(b->pg) != CONNECTION_OK) {
            fprintf(stderr, "%s: cannot connect to '%s': %s", TOOL, path, PQerrorMessage(b->pg));
            ddb_close(b);
            return -1;
        }
        if (!poll)
            return 0;
        r = PQprepare(b->pg, "done", DONE_SQL_PG, 1, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "%s: cannot prepare on '%s': %s", TOOL, path, PQerrorMessage(b->pg));
            PQclear(r);
            ddb_close(b);
            return -1;
        }
        PQclear(r);
        return 0;
    }
    if (sqlite3_open_v2(path, &b->lite, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        (poll && sqlite3_prepare_v2(b->lite, DONE_SQL_LITE, -1, &b->st, NULL) != SQLITE_OK)) {
        fprintf(stderr, "%s: cannot read '%s': %s\n", TOOL, path, sqlite3_errmsg(b->lite));
        ddb_close(b);
        return -1;
    }
    sqlite3_busy_timeout(b->lite, 100);
    return 0;
}

typedef void (*ddb_row_fn)(struct dispload *d, int64_t id, const char *oid, const char *status);

/* The units above `lo` that have an outcome, each handed to fn; -1 on an error. */
static int ddb_done(struct ddb *b, int64_t lo, struct dispload *d, ddb_row_fn fn)
{
    if (b->pg != NULL) {
        char lo_s[24];
        const char *params[1] = {lo_s};
        PGresult *r;
        int rc = 0;

        snprintf(lo_s, sizeof(lo_s), "%lld", (long long)lo);
        r = PQexecPrepared(b->pg, "done", 1, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "%s: poll failed: %s", TOOL, PQerrorMessage(b->pg));
            rc = -1;
        }
        for (int i = 0; rc == 0 && i < PQntuples(r); i++)
            fn(d, strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
        PQclear(r);
        return rc;
    }
    sqlite3_bind_int64(b->st, 1, lo);
    while (sqlite3_step(b->st) == SQLITE_ROW)
        fn(d, sqlite3_column_int64(b->st, 0), (const char *)sqlite3_column_text(b->st, 1),
           (const char *)sqlite3_column_text(b->st, 2));
    sqlite3_reset(b->st);
    return 0;
}

/* ---- the poller thread ---------------------------------------------------------------- */

static void on_done_row(struct dispload *d, int64_t id, const char *oid, const char *status)
{
    long k = oid != NULL ? order_index(d, oid, strlen(oid)) : -1;
    uint64_t now = bu_now_us();

    if (id - d->base_id > 0 && (size_t)(id - d->base_id) <= d->n)
        d->seen[id - d->base_id] = 1;
    if (k >= 0 && atomic_load(&d->o[k].done) == 0) {
        d->o[k].failed = status == NULL || strcmp(status, "SUCCEEDED") != 0;
        atomic_store(&d->o[k].done, now);
        atomic_fetch_add(&d->completed, 1);
    }
}

static void *poller(void *arg)
{
    struct dispload *d = arg;
    struct timespec nap = {(time_t)(d->poll_us / 1000000u), (long)(d->poll_us % 1000000u) * 1000};
    struct ddb b;
    int64_t lo = d->base_id; /* every row at or below lo is seen done */

    if (ddb_open(&b, d->db_path, true) < 0) {
        d->poll_failed = true;
        return NULL;
    }
    while (!atomic_load(&d->poll_stop)) {
        if (ddb_done(&b, lo, d, on_done_row) < 0) {
            d->poll_failed = true;
            break;
        }
        while ((size_t)(lo - d->base_id) < d->n && d->seen[lo - d->base_id + 1])
            lo++;
        nanosleep(&nap, NULL);
    }
    ddb_close(&b);
    return NULL;
}

static int base_id(struct dispload *d)
{
    struct ddb b;
    int rc = -1;

    if (ddb_open(&b, d->db_path, false) < 0)
        return -1;
    if (b.pg != NULL) {
        PGresult *r = PQexec(b.pg, BASE_SQL);

        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            d->base_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            rc = 0;
        } else {
            fprintf(stderr, "%s: cannot read '%s': %s", TOOL, d->db_path, PQerrorMessage(b.pg));
        }
        PQclear(r);
    } else {
        sqlite3_stmt *st = NULL;

        if (sqlite3_prepare_v2(b.lite, BASE_SQL, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            d->base_id = sqlite3_column_int64(st, 0);
            rc = 0;
        } else {
            fprintf(stderr, "%s: cannot read '%s': %s\n", TOOL, d->db_path, sqlite3_errmsg(b.lite));
        }
        sqlite3_finalize(st);
    }
    ddb_close(&b);
    return rc;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

static void order_body(const struct dispload *d, size_t k, char *buf, size_t size)
{
    snprintf(buf, size,
             "{\"id\":\"%s%07zu\",\"machine_id\":\"%s%05llu\",\"slot\":%llu,"
             "\"payment_method\":\"manual\"}",
             d->id_prefix, k + 1, d->prefix, (unsigned long long)(d->first + k % d->machines),
             (unsigned long long)d->slot);
}

static void trigger_body(const struct dispload *d, size_t k, char *buf, size_t size)
{
    snprintf(buf, size, "{\"order_id\":\"%s%07zu\"}", d->id_prefix, k + 1);
}

/* Phase 1: create every order, CREATE_CONNS at a time; -1 if one is refused. */
static int create_orders(struct dispload *d)
{
    struct bh_conn c[CREATE_CONNS];
    size_t next = 0, answered = 0;
    uint64_t t0 = bu_now_us();
    char body[256];
    int rc = 0;

    memset(c, 0, sizeof(c));
    for (size_t i = 0; i < CREATE_CONNS; i++) {
        c[i].fd = -1;
        if (bh_open(&c[i], d->epfd, &d->sa[i % d->nports]) < 0)
            rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < CREATE_CONNS && next < d->n; i++) {
        order_body(d, next, body, sizeof(body));
        c[i].tag = (int64_t)next++;
        rc = bh_send(&c[i], "POST", "/api/orders", body);
    }
    while (rc == 0 && answered < d->n && !s_stop) {
        struct epoll_event ev[64];
        int n = epoll_wait(d->epfd, ev, 64, 1000);

        for (int e = 0; e < n && rc == 0; e++) {
            struct bh_conn *h = ev[e].data.ptr;
            struct bh_resp r;
            int got;

            if ((ev[e].events & EPOLLOUT) && bh_write(h) < 0) {
                rc = -1;
                break;
            }
            got = bh_read(h, &r);
            if (got == 0)
                continue;
            if (got < 0 || r.status != 201) {
                fprintf(stderr, "%s: order %lld refused: %d %.*s\n", TOOL, (long long)h->tag,
                        got < 0 ? -1 : r.status, got < 0 ? 0 : (int)r.body_len,
                        got < 0 ? "" : r.body);
                rc = -1;
                break;
            }
            answered++;
            if (bh_next(h, &r) < 0) {
                rc = -1;
                break;
            }
            if (next < d->n) {
                order_body(d, next, body, sizeof(body));
                h->tag = (int64_t)next++;
                rc = bh_send(h, "POST", "/api/orders", body);
            }
        }
    }
    for (size_t i = 0; i < CREATE_CONNS; i++)
        bh_close(&c[i]);
    if (rc == 0)
        printf("dispload: created %zu orders in %.1f s (not timed)\n", d->n,
               (double)(bu_now_us() - t0) / 1e6);
    fflush(stdout); /* the bench waits for this line to sample the database during triggers */
    return rc;
}

static void report(const char *what, uint64_t *v, size_t n)
{
    bu_sort_u64(v, n);
    printf("dispload: %s n=%zu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", what, n,
           (double)bu_pct(v, n, 0.50) / 1000.0, (double)bu_pct(v, n, 0.90) / 1000.0,
           (double)bu_pct(v, n, 0.99) / 1000.0, (double)bu_pct(v, n, 1.0) / 1000.0);
}

static void http_event(struct dispload *d, struct bh_conn *h, uint32_t events)
{
    struct bh_resp r;
    int got;

    if ((events & EPOLLOUT) && bh_write(h) < 0)
        goto lost;
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    got = bh_read(h, &r);
    if (got == 0)
        return;
    if (got < 0)
        goto lost;
    d->o[h->tag].http = bu_now_us();
    d->o[h->tag].http_status = r.status;
    if (r.status != 200 && d->refused++ < 3)
        fprintf(stderr, "%s: trigger %lld: %d %.*s\n", TOOL, (long long)h->tag, r.status,
                (int)(r.body_len > 200 ? 200 : r.body_len), r.body);
    if (bh_next(h, &r) < 0)
        goto lost;
    return;
lost:
    fprintf(stderr, "%s: lost a trigger connection\n", TOOL);
    if (h->busy)
        d->o[h->tag].http_status = -1;
    epoll_ctl(d->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    close(h->fd);
    h->fd = -1;
    h->busy = false;
    bh_open(h, d->epfd, &h->sa);
}

/* Waits for the sockets at most timeout_us. epoll_pwait2 sleeps to the microsecond: with
 * epoll_wait's milliseconds the driver had to spin for the next trigger, and a spinning
 * driver takes one of the box's two cores from vendd and the broker it measures. */
static void pump(struct dispload *d, uint64_t timeout_us)
{
    struct epoll_event ev[256];
    struct timespec ts = {(time_t)(timeout_us / 1000000u), (long)(timeout_us % 1000000u) * 1000};
    int n = epoll_pwait2(d->epfd, ev, 256, &ts, NULL);

    /* A kernel before 5.11: whole milliseconds, rounded down, so the caller comes back before
     * the due time and spins the rest; rounded up, every trigger went out up to 1 ms late. */
    if (n < 0 && errno == ENOSYS)
        n = epoll_wait(d->epfd, ev, 256, (int)(timeout_us / 1000));
    for (int e = 0; e < n; e++) {
        int *kind = ev[e].data.ptr;

        if (*kind == FLEET_KIND)
            fleet_event(ev[e].data.ptr, ev[e].events);
        else if (*kind == BH_KIND)
            http_event(d, ev[e].data.ptr, ev[e].events);
    }
    fleet_misc(&d->f);
}

/* Phase 3: the triggers on schedule; returns the time the last one was due. */
static void trigger_all(struct dispload *d, uint64_t *t0_out, uint64_t *t_last_out)
{
    uint64_t t0 = bu_now_us() + 1000, now;
    size_t next = 0, ci = 0;
    char body[128];
    bool busy;

    *t0_out = t0;
    while (next < d->n && !s_stop) {
        busy = false;
        now = bu_now_us();
        while (next < d->n && t0 + next * 1000000u / d->rate <= now) {
            struct bh_conn *h = NULL;

            for (size_t j = 0; j < d->conns && h == NULL; j++, ci = (ci + 1) % d->conns) {
                if (!d->hc[ci].busy && d->hc[ci].fd >= 0)
                    h = &d->hc[ci];
            }
            if (h == NULL) {
                busy = true;
                break; /* every connection is waiting for vendd: this trigger is late */
            }
            d->o[next].due = t0 + next * 1000000u / d->rate;
            trigger_body(d, next, body, sizeof(body));
            h->tag = (int64_t)next;
            if (bh_send(h, "POST", "/api/dispense/trigger", body) < 0)
                d->o[next].http_status = -1;
            d->o[next].sent = h->t_sent;
            next++;
        }
        now = bu_now_us();
        if (next < d->n) {
            uint64_t due = t0 + next * 1000000u / d->rate;

            /* Busy: an answer wakes the wait; a zero timeout would spin a core from vendd. */
            pump(d, busy ? BUSY_WAIT_US : due > now ? due - now : 0);
        }
    }
    *t_last_out = next > 0 ? d->o[next - 1].due : t0;
}

/* The figures: from one time of an order to another; an order without both (0: it never
 * happened) is left out. */
enum stamp { T_DUE, T_SENT, T_HTTP, T_CMD, T_RES, T_DONE };

static const struct {
    const char *name;
    enum stamp from, to;
} figures[] = {
    {"round_trip", T_DUE, T_DONE},
    {"trigger_answer", T_DUE, T_HTTP},
    {"command_at_machine", T_DUE, T_CMD},
    {"result_to_commit", T_RES, T_DONE},
    {"late", T_DUE, T_SENT},
};

static uint64_t stamp(const struct order *o, enum stamp s)
{
    switch (s) {
    case T_DUE:
        return o->due;
    case T_SENT:
        return o->sent;
    case T_HTTP:
        return o->http;
    case T_CMD:
        return o->cmd;
    case T_RES:
        return o->res;
    case T_DONE:
        return atomic_load(&o->done);
    }
    return 0;
}

/* --times FILE: one line per order, "k due sent http cmd res done", microseconds from the
 * first due time (0: never happened), to find what the slowest orders have in common. */
static int write_times(const struct dispload *d, uint64_t t0)
{
    FILE *fp = fopen(d->times_path, "w");
    int rc = 0;

    if (fp == NULL) {
        fprintf(stderr, "%s: cannot write '%s': %s\n", TOOL, d->times_path, strerror(errno));
        return -1;
    }
    for (size_t k = 0; k < d->n; k++) {
        const struct order *o = &d->o[k];

        fprintf(fp, "%zu", k);
        for (enum stamp s = T_DUE; s <= T_DONE; s++) {
            uint64_t t = stamp(o, s);
            fprintf(fp, " %lld", t >= t0 ? (long long)(t - t0) : 0LL);
        }
        fputc('\n', fp);
    }
    if (fclose(fp) != 0) {
        fprintf(stderr, "%s: cannot write '%s': %s\n", TOOL, d->times_path, strerror(errno));
        rc = -1;
    }
    return rc;
}

static int parse_args(struct dispload *d, int argc, char **argv)
{
    int rc = 0;

    for (int i = 1; i < argc && rc == 0; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL) {
            fprintf(stderr, "%s: option '%s' needs a value\n", TOOL, a);
            return -1;
        }
        if (strcmp(a, "--http-port") == 0 && d->nports == PORTS_MAX) {
            fprintf(stderr, "%s: at most %d --http-port\n", TOOL, PORTS_MAX);
            rc = -1;
        } else if (strcmp(a, "--http-port") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 65535, &d->http_port[d->nports++]);
        else if (strcmp(a, "--poll-us") == 0)
            rc = bu_parse_u64(TOOL, a, v, 10, 100000, &d->poll_us);
        else if (strcmp(a, "--mqtt-port") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 65535, &d->mqtt_port);
        else if (strcmp(a, "--db") == 0)
            d->db_path = v;
        else if (strcmp(a, "--machines") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 10000, &d->machines);
        else if (strcmp(a, "--rate") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 100000, &d->rate);
        else if (strcmp(a, "--seconds") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 600, &d->seconds);
        else if (strcmp(a, "--prefix") == 0)
            d->prefix = v;
        else if (strcmp(a, "--id-prefix") == 0)
            d->id_prefix = v;
        else if (strcmp(a, "--first") == 0)
            rc = bu_parse_u64(TOOL, a, v, 0, 99999, &d->first);
        else if (strcmp(a, "--slot") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 255, &d->slot);
        else if (strcmp(a, "--create-only") == 0)
            rc = bu_parse_u64(TOOL, a, v, 0, 1, &d->create_only);
        else if (strcmp(a, "--conns") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 1000, &d->conns);
        else if (strcmp(a, "--times") == 0)
            d->times_path = v;
        else {
            fprintf(stderr, "%s: unknown option '%s'\n", TOOL, a);
            rc = -1;
        }
    }
    if (rc == 0 && (d->nports == 0 || d->mqtt_port == 0 || d->db_path == NULL || d->machines == 0 ||
                    d->rate == 0 || d->seconds == 0)) {
        fprintf(stderr, "usage: dispload --http-port P [--http-port P2 ..] --mqtt-port M "
                        "--db VENDD_DB --machines N --rate R --seconds S [--prefix vm] "
                        "[--first 1] [--slot 1] [--conns 16] [--id-prefix bd] [--poll-us 100] "
                        "[--times FILE]\n");
        rc = -1;
    }
    if (rc == 0 && d->rate * d->seconds > ORDERS_MAX) {
        fprintf(stderr, "%s: at most %u orders (rate x seconds)\n", TOOL, ORDERS_MAX);
        rc = -1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    struct dispload d = {
        .prefix = "vm", .id_prefix = "bd", .first = 1, .slot = 1, .conns = 16, .poll_us = POLL_US};
    struct fleet_config fc;
    struct sigaction act;
    pthread_t th;
    bool th_started = false;
    uint64_t t0, t_last, deadline;
    uint64_t *v = NULL;
    size_t nv, ok = 0, failed = 0, done = 0, triggered = 0;
    uint64_t last_done = 0;
    int rc = 1;

    if (parse_args(&d, argc, argv) < 0)
        return 64;
    d.n = (size_t)(d.rate * d.seconds);
    memset(&act, 0, sizeof(act));
    act.sa_handler = on_signal;
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Triggers go out on time, not up to the default 50 us timer slack late. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    for (size_t i = 0; i < d.nports; i++) {
        if (bh_addr("127.0.0.1", (uint16_t)d.http_port[i], &d.sa[i]) < 0)
            return 1;
    }
    if (bu_raise_nofile(TOOL, (unsigned long)(d.machines + d.conns + 64)) < 0)
        return 1;
    d.o = calloc(d.n, sizeof(*d.o));
    d.hc = calloc(d.conns, sizeof(*d.hc));
    v = calloc(d.n, sizeof(*v));
    d.seen = calloc(d.n + 1, 1);
    d.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (d.o == NULL || d.hc == NULL || v == NULL || d.seen == NULL || d.epfd < 0) {
        fprintf(stderr, "%s: out of memory for %zu orders\n", TOOL, d.n);
        return 1;
    }
    mosquitto_lib_init();
    if (create_orders(&d) < 0 || base_id(&d) < 0)
        goto out;
    if (d.create_only) {
        rc = 0;
        goto out;
    }
    fc = (struct fleet_config){.host = "127.0.0.1",
                               .port = (uint16_t)d.mqtt_port,
                               .prefix = d.prefix,
                               .client_prefix = "dl-",
                               .first = (unsigned)d.first,
                               .n = d.machines,
                               .sub_fmt = "vm/%s/command",
                               .on_msg = on_command,
                               .arg = &d};
    if (fleet_open(&d.f, d.epfd, &fc, 30000) < 0)
        goto out;
    for (size_t i = 0; i < d.conns; i++) {
        d.hc[i].fd = -1;
        if (bh_open(&d.hc[i], d.epfd, &d.sa[i % d.nports]) < 0)
            goto out;
    }
    if (pthread_create(&th, NULL, poller, &d) != 0) {
        fprintf(stderr, "%s: cannot start the poller thread\n", TOOL);
        goto out;
    }
    th_started = true;
    trigger_all(&d, &t0, &t_last);
    deadline = bu_now_us() + DRAIN_US;
    while (atomic_load(&d.completed) < d.n && bu_now_us() < deadline && !s_stop && !d.poll_failed)
        pump(&d, 5000);
    atomic_store(&d.poll_stop, true);
    pthread_join(th, NULL);
    th_started = false;

    for (size_t k = 0; k < d.n; k++) {
        triggered += d.o[k].due != 0;
        ok += d.o[k].http_status == 200;
        done += atomic_load(&d.o[k].done) != 0;
        failed += atomic_load(&d.o[k].done) != 0 && d.o[k].failed;
        if (atomic_load(&d.o[k].done) > last_done)
            last_done = atomic_load(&d.o[k].done);
    }
    printf("dispload: orders=%zu triggered=%zu trigger_ok=%zu completed=%zu failed=%zu "
           "machines=%llu seconds=%.3f rate=%.0f done_rate=%.0f unexpected_commands=%llu\n",
           d.n, triggered, ok, done, failed, (unsigned long long)d.machines,
           (double)(t_last - t0) / 1e6,
           t_last > t0 ? (double)(triggered - 1) * 1e6 / (double)(t_last - t0) : 0.0,
           last_done > t0 ? (double)done * 1e6 / (double)(last_done - t0) : 0.0,
           (unsigned long long)d.unexpected);
    for (size_t f = 0; f < sizeof(figures) / sizeof(figures[0]); f++) {
        nv = 0;
        for (size_t k = 0; k < d.n; k++) {
            const struct order *o = &d.o[k];
            uint64_t from = stamp(o, figures[f].from), to = stamp(o, figures[f].to);

            if (from != 0 && to >= from)
                v[nv++] = to - from;
        }
        report(figures[f].name, v, nv);
    }
    rc = done == d.n && failed == 0 && ok == d.n ? 0 : 1;
    if (d.times_path != NULL && write_times(&d, t0) < 0)
        rc = 1;
out:
    if (th_started) {
        atomic_store(&d.poll_stop, true);
        pthread_join(th, NULL);
    }
    fleet_close(&d.f);
    for (size_t i = 0; d.hc != NULL && i < d.conns; i++)
        bh_close(&d.hc[i]);
    mosquitto_lib_cleanup();
    free(d.o);
    free(d.hc);
    free(v);
    free(d.seen);
    if (d.epfd >= 0)
        close(d.epfd);
    return rc;
}
