/*
 * chaos.c - load with faults (issue 12, `make chaos SEED=...`): a fleet of simulated machines
 * (vmsim, the real firmware core), customers ordering at a steady rate and paying through the
 * fake Midtrans, and faults injected at random, one at a time, for a while: vendd killed -9 or
 * restarted, the broker frozen (SIGSTOP) or restarted without persistence, the machines killed
 * -9, Midtrans failing, slow or answering garbage, the database locked past the busy timeout.
 * Then the faults stop, the fleet drains, and vend-check judges the database with vmsim's
 * record of every physical drop: the run passes only if every invariant of SPEC §4 holds.
 *
 *   chaos [--seed N] [--seconds S] [--machines M] [--rate R]
 *
 * The same seed makes the same sequence of faults and of customers' choices (their effects
 * depend on timing, so a failing seed is a lead, not a replay). Needs VENDD, VMSIM, FAKE_MIDTRANS
 * and VEND_CHECK in the environment (ctest and `make chaos` set them). Exit: 0 pass, 1 a check
 * failed, 2 setup.
 */
#define _GNU_SOURCE /* kill() and friends with -std=c11 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define PREFIX       "CH"
#define SLOTS        2
#define STOCK        60    /* per slot, in vendd and in vmsim */
#define PRICE        5000  /* per unit, every slot */
#define MOTOR_MS     300   /* vmsim: the motor run until the product reaches the beam */
#define UNIT_MS      2000  /* the slots' motor_duration_ms */
#define ONLINE_MS    60000 /* the fleet's first ONLINE */
#define DRAIN_MS     180000
#define FAULT_GAP_MS 1500 /* calm between two faults, at least */

struct chaos;

/* One kind of fault: start it; recovery runs when its time is up (NULL: nothing to undo). */
struct fault {
    const char *name;
    int (*start)(struct chaos *c, unsigned ms);
    int (*recover)(struct chaos *c);
    unsigned min_ms, max_ms; /* how long it lasts */
};

struct chaos {
    struct harness_fixture *f;
    struct harness *h;
    uint64_t rng, fault_rng; /* customers; faults */
    unsigned seconds, machines, rate;
    pid_t sim, locker;
    char state_dir[HARNESS_PATH_MAX + 16], drop_log[HARNESS_PATH_MAX + 16];
    char sim_log[HARNESS_PATH_MAX + 16];
    const struct fault *active; /* NULL: calm */
    uint64_t active_until, calm_until;
    /* What happened. */
    long orders, refused, unavailable, paid, settled, faults[16];
};

/* xorshift64*: the plan of one seed, the same on every machine. Two streams, so the faults'
 * sequence does not depend on how many customers came between them. */
static uint64_t rnd(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ull;
}

static unsigned rnd_in(uint64_t *state, unsigned lo, unsigned hi)
{
    return lo + (unsigned)(rnd(state) % (uint64_t)(hi - lo + 1));
}

static int say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int say(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "chaos: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

/* ---- the machines ----------------------------------------------------------------------- */

static int sim_start(struct chaos *c)
{
    const char *bin = getenv("VMSIM");
    char url[64], machines[16], stock[16], motor[16], seed[24];

    if (bin == NULL)
        return say("VMSIM is not set");
    snprintf(url, sizeof(url), "mqtt://127.0.0.1:%u", (unsigned)c->h->broker.port);
    snprintf(machines, sizeof(machines), "%u", c->machines);
    snprintf(stock, sizeof(stock), "%d", STOCK);
    snprintf(motor, sizeof(motor), "%d", MOTOR_MS);
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)(rnd(&c->fault_rng) % 1000000000));
    c->sim = fork();
    if (c->sim < 0)
        return say("fork: %s", strerror(errno));
    if (c->sim == 0) {
        FILE *log = freopen(c->sim_log, "a", stdout);

        if (log == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(126);
        setenv("MQTT_BROKER_URL", url, 1);
        /* The journals in state_dir carry each machine's unit in flight across a kill -9,
         * as flash does on the ESP32; the drop log is what vend-check counts. */
        execl(bin, bin, "--machines", machines, "--prefix", PREFIX, "--slots", "2", "--stock",
              stock, "--motor-ms", motor, "--drop-prob", "0.97", "--jam-rate", "0.01", "--seed",
              seed, "--telemetry-ms", "10000", "--state-dir", c->state_dir, "--drop-log",
              c->drop_log, (char *)NULL);
        _exit(127);
    }
    return 0;
}

static void sim_signal_and_reap(struct chaos *c, int sig)
{
    int status;

    if (c->sim <= 0)
        return;
    kill(c->sim, sig);
    for (int i = 0; i < 1000 && waitpid(c->sim, &status, WNOHANG) == 0; i++)
        harness_sleep_ms(10);
    if (waitpid(c->sim, &status, WNOHANG) == 0) {
        kill(c->sim, SIGKILL);
        waitpid(c->sim, &status, 0);
    }
    c->sim = 0;
}

/* ---- the faults ------------------------------------------------------------------------- */

static int vendd_kill(struct chaos *c, unsigned ms)
{
    (void)ms;
    harness_vendd_kill(c->h);
    return 0;
}

static int vendd_term(struct chaos *c, unsigned ms)
{
    (void)ms;
    return harness_vendd_term(c->h) == 0 ? 0 : say("vendd did not stop cleanly on SIGTERM");
}

static int vendd_back(struct chaos *c)
{
    return harness_vendd_start(c->h);
}

static int broker_freeze(struct chaos *c, unsigned ms)
{
    (void)ms;
    return kill(c->h->broker.pid, SIGSTOP);
}

static int broker_thaw(struct chaos *c)
{
    return kill(c->h->broker.pid, SIGCONT);
}

static int broker_down(struct chaos *c, unsigned ms)
{
    (void)ms;
    return test_broker_kill(&c->h->broker);
}

static int broker_back(struct chaos *c)
{
    return test_broker_restart(&c->h->broker);
}

static int machines_kill(struct chaos *c, unsigned ms)
{
    (void)ms;
    sim_signal_and_reap(c, SIGKILL);
    return 0;
}

static int machines_back(struct chaos *c)
{
    return sim_start(c);
}

static int midtrans_fail(struct chaos *c, const char *body)
{
    long st = harness_fake_call(c->h, "POST", "/_fake/fail", body, NULL);

    return st == 200 ? 0 : say("POST /_fake/fail %s: HTTP %ld", body, st);
}

static int midtrans_5xx(struct chaos *c, unsigned ms)
{
    (void)ms;
    return midtrans_fail(c, "{\"endpoint\":\"any\",\"mode\":\"http_error\",\"count\":20}");
}

static int midtrans_garbage(struct chaos *c, unsigned ms)
{
    (void)ms;
    return midtrans_fail(c, "{\"endpoint\":\"any\",\"mode\":\"garbage\",\"count\":20}");
}

static int midtrans_slow(struct chaos *c, unsigned ms)
{
    (void)ms;
    /* Taken, then the answer is lost: vendd must find out what happened by asking again. */
    return midtrans_fail(
        c,
        "{\"endpoint\":\"any\",\"mode\":\"timeout\",\"delay_ms\":3000,\"drop\":true,\"count\":5}");
}

static int midtrans_back(struct chaos *c)
{
    long st = harness_fake_call(c->h, "DELETE", "/_fake/fail", NULL, NULL);

    return st == 200 || st == 204 ? 0 : say("DELETE /_fake/fail: HTTP %ld", st);
}

/* A writer holds the database for ms, past vendd's busy timeout (SQLite: BEGIN EXCLUSIVE;
 * PostgreSQL: the advisory lock of db_pg.c, harness_db_lock()): in a child, so the customers
 * go on meanwhile. */
static int db_lock(struct chaos *c, unsigned ms)
{
    c->locker = fork();
    if (c->locker < 0)
        return say("fork: %s", strerror(errno));
    if (c->locker == 0) {
        struct harness_db_lock *l = harness_db_lock(c->h);

        if (l == NULL)
            _exit(1);
        usleep(ms * 1000u);
        _exit(harness_db_unlock(l) == 0 ? 0 : 1);
    }
    return 0;
}

static int db_unlock(struct chaos *c)
{
    int status = 0;

    waitpid(c->locker, &status, 0);
    c->locker = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : say("the locker failed");
}

static const struct fault s_faults[] = {
    {"vendd_kill9", vendd_kill, vendd_back, 0, 2000},
    {"vendd_restart", vendd_term, vendd_back, 0, 1000},
    {"broker_freeze", broker_freeze, broker_thaw, 1000, 6000},
    {"broker_restart", broker_down, broker_back, 200, 3000},
    {"machines_kill9", machines_kill, machines_back, 200, 4000},
    {"midtrans_5xx", midtrans_5xx, midtrans_back, 1000, 4000},
    {"midtrans_garbage", midtrans_garbage, midtrans_back, 1000, 4000},
    {"midtrans_answer_lost", midtrans_slow, midtrans_back, 3500, 6000},
    {"db_locked", db_lock, db_unlock, 6000, 9000},
};
#define NFAULTS (sizeof(s_faults) / sizeof(s_faults[0]))

static int fault_step(struct chaos *c, uint64_t now)
{
    const struct fault *f;
    unsigned ms;

    if (c->active != NULL) {
        if (now < c->active_until)
            return 0;
        f = c->active;
        c->active = NULL;
        c->calm_until = now + FAULT_GAP_MS + rnd_in(&c->fault_rng, 0, 3000);
        if (f->recover != NULL && f->recover(c) < 0)
            return say("cannot recover from %s", f->name);
        return 0;
    }
    if (now < c->calm_until)
        return 0;
    f = &s_faults[rnd(&c->fault_rng) % NFAULTS];
    ms = rnd_in(&c->fault_rng, f->min_ms, f->max_ms);
    fprintf(stderr, "chaos: %s for %u ms\n", f->name, ms);
    if (f->start(c, ms) < 0)
        return say("cannot start %s", f->name);
    c->faults[f - s_faults]++;
    c->active = f;
    c->active_until = now + ms;
    return 0;
}

/* ---- the customers ---------------------------------------------------------------------- */

static void customer(struct chaos *c)
{
    char body[256], id[80], path[128];
    struct harness_reply r = {0};
    unsigned m = rnd_in(&c->rng, 1, c->machines), s = rnd_in(&c->rng, 1, SLOTS);
    unsigned q = rnd_in(&c->rng, 1, 2);
    bool pays = rnd_in(&c->rng, 1, 10) <= 9; /* one in ten walks away */
    long st;

    snprintf(body, sizeof(body),
             "{\"machine_id\":\"" PREFIX "%02u\",\"items\":[{\"slot\":%u,\"quantity\":%u}],"
             "\"payment_method\":\"qris\"}",
             m, s, q);
    st = harness_call(c->h, "POST", "/api/orders", body, &r);
    if (st == 201 && harness_reply_str(&r, "order_id") != NULL) {
        snprintf(id, sizeof(id), "%s", harness_reply_str(&r, "order_id"));
        c->orders++;
        if (pays) {
            snprintf(path, sizeof(path), "/_fake/pay/%s", id);
            if (harness_fake_call(c->h, "POST", path, NULL, NULL) == 200)
                c->paid++;
        }
    } else if (st >= 400 && st < 500) {
        c->refused++; /* an OFFLINE machine, an empty slot, too many pending */
    } else {
        c->unavailable++; /* vendd down or Midtrans failing: the customer tries elsewhere */
    }
    harness_reply_free(&r);
}

/* ---- setup and the end ------------------------------------------------------------------ */

static int register_fleet(struct chaos *c)
{
    char path[96], body[256];
    struct harness_reply r;

    for (unsigned m = 1; m <= c->machines; m++) {
        snprintf(body, sizeof(body), "{\"id\":\"" PREFIX "%02u\",\"name\":\"Chaos %u\"}", m, m);
        if (harness_call(c->h, "POST", "/api/machines", body, NULL) != 201)
            return say("cannot register machine %u", m);
        for (int s = 1; s <= SLOTS; s++) {
            snprintf(path, sizeof(path), "/api/machines/" PREFIX "%02u/slots/%d", m, s);
            snprintf(body, sizeof(body),
                     "{\"product_name\":\"Chaos %d\",\"price\":%d,\"capacity\":%d,"
                     "\"current_stock\":%d,\"motor_duration_ms\":%d}",
                     s, PRICE, STOCK, STOCK, UNIT_MS);
            if (harness_call(c->h, "PUT", path, body, &r) != 201) {
                say("PUT %s: %s", path, r.body != NULL ? r.body : "");
                harness_reply_free(&r);
                return -1;
            }
            harness_reply_free(&r);
        }
    }
    return 0;
}

static long long sql_int(struct chaos *c, const char *sql)
{
    long long v = -1;

    return harness_sql_int(c->h, sql, &v) == 1 ? v : -1;
}

/* Whether vmsim's drop log records machine dropping order's unit. */
static bool dropped(const struct chaos *c, const char *machine, const char *order, int unit)
{
    char line[256], want[224], want0[224];
    bool found = false;
    FILE *f = fopen(c->drop_log, "r");

    if (f == NULL)
        return false;
    snprintf(want, sizeof(want), " %s %s %d ", machine, order, unit);
    /* A command without "unit" (a one-unit order, as in the guide) is unit 0 to the machine. */
    snprintf(want0, sizeof(want0), " %s %s 0 ", machine, order);
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strncmp(line, "drop ", 5) == 0 &&
                (strstr(line, want) != NULL || (unit == 1 && strstr(line, want0) != NULL));
    fclose(f);
    return found;
}

/* The operator's part: a unit whose machine lost power mid-run stays UNSETTLED (vendd cannot
 * know whether it fell); the operator looks into the machine and says. Here the drop log is
 * the look. Returns the units settled, or -1. */
static int settle_as_operator(struct chaos *c)
{
    long long last = 0;
    int n = 0;

    /* One unit at a time by id, through the harness: the same on both backends. */
    for (;;) {
        char sql[256], row[512], order[128], machine[64], body[384];
        long long id;
        int unit, rc;
        long http;

        snprintf(sql, sizeof(sql),
                 "SELECT id || ' ' || unit || ' ' || machine_id || ' ' || order_id FROM "
                 "dispense_logs WHERE status = 'UNSETTLED' AND id > %lld ORDER BY id LIMIT 1",
                 last);
        rc = harness_sql_text(c->h, sql, row, sizeof(row));
        if (rc < 0)
            return say("cannot read the UNSETTLED units");
        if (rc == 0)
            return n;
        if (sscanf(row, "%lld %d %63s %127s", &id, &unit, machine, order) != 4)
            return say("an UNSETTLED unit reads '%s'", row);
        last = id;
        snprintf(body, sizeof(body), "{\"order_id\":\"%s\",\"unit\":%d,\"dropped\":%s}", order,
                 unit, dropped(c, machine, order, unit) ? "true" : "false");
        http = harness_call(c->h, "POST", "/api/dispense/settle", body, NULL);
        if (http == 409)
            continue; /* the machine answered a settle ask meanwhile */
        if (http != 200)
            return say("POST /api/dispense/settle %s: HTTP %ld", body, http);
        n++;
    }
}

/* Everything back up; wait until no unit is on its way; settle what only the operator can;
 * then no paid order may be left open. */
static int drain(struct chaos *c)
{
    uint64_t end = harness_now_ms() + DRAIN_MS;
    long long busy = -1;
    int settled;

    if (c->active != NULL) {
        const struct fault *f = c->active;

        c->active = NULL;
        if (f->recover != NULL && f->recover(c) < 0)
            return say("cannot recover from %s", f->name);
    }
    while (harness_now_ms() < end) {
        busy = sql_int(c, "SELECT (SELECT count(*) FROM orders WHERE status = 'PAID') + "
                          "(SELECT count(*) FROM dispense_logs WHERE status IN "
                          "('QUEUED', 'SENT'))");
        if (busy == 0)
            break;
        harness_sleep_ms(500);
    }
    if (busy != 0)
        return say("%lld paid orders or units in flight %d s after the faults stopped", busy,
                   DRAIN_MS / 1000);
    settled = settle_as_operator(c);
    if (settled < 0)
        return -1;
    fprintf(stderr, "chaos: the operator settled %d unit(s) left UNSETTLED\n", settled);
    c->settled = settled;
    for (end = harness_now_ms() + 30000; harness_now_ms() < end;) {
        busy = sql_int(c, "SELECT count(*) FROM orders WHERE status IN ('PAID', 'DISPENSING')");
        if (busy == 0)
            return 0;
        harness_sleep_ms(500);
    }
    return say("%lld paid orders still not final after the operator settled", busy);
}

static int run_check(struct chaos *c)
{
    const char *bin = getenv("VEND_CHECK");
    int status = 0;
    pid_t pid;

    if (bin == NULL)
        return say("VEND_CHECK is not set");
    pid = fork();
    if (pid == 0) {
        dup2(STDOUT_FILENO, STDERR_FILENO);
        execl(bin, bin, "--drops", c->drop_log, c->h->db_url, (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return say("cannot run vend-check");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return say("vend-check failed (exit %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

static void report(struct chaos *c)
{
    static const char *const states[] = {"PENDING", "PAID",    "DISPENSING", "COMPLETED",
                                         "FAILED",  "EXPIRED", "CANCELLED",  "REFUNDED"};
    char sql[160];

    fprintf(stderr, "chaos: %ld orders placed, %ld paid, %ld refused, %ld unavailable\n", c->orders,
            c->paid, c->refused, c->unavailable);
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM orders WHERE status = '%s'", states[i]);
        fprintf(stderr, "chaos:   orders %-10s %lld\n", states[i], sql_int(c, sql));
    }
    fprintf(stderr, "chaos:   units SUCCEEDED %lld, refunds %lld\n",
            sql_int(c, "SELECT count(*) FROM dispense_logs WHERE status = 'SUCCEEDED'"),
            sql_int(c, "SELECT count(*) FROM refunds"));
    for (size_t i = 0; i < NFAULTS; i++)
        fprintf(stderr, "chaos:   fault %-22s %ld\n", s_faults[i].name, c->faults[i]);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"seed", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 't'},
        {"machines", required_argument, NULL, 'm'},
        {"rate", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    static const char *const env[] = {"ORDER_RATE_PER_MIN=10000", "ORDER_PENDING_MAX=1000",
                                      "DISPENSE_RESULT_GRACE_MS=4000", "MIDTRANS_TIMEOUT_MS=2000",
                                      NULL};
    struct chaos c = {.seconds = 60, .machines = 100, .rate = 20};
    unsigned long long seed = 1;
    uint64_t start, next_order;
    int rc = 2, opt;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        unsigned long v = optarg != NULL ? strtoul(optarg, &end, 10) : 0;

        if (optarg == NULL || *optarg < '0' || *optarg > '9' || *end != '\0') {
            fprintf(stderr, "usage: chaos [--seed N] [--seconds S] [--machines M] [--rate R]\n");
            return 2;
        }
        if (opt == 's')
            seed = v;
        else if (opt == 't' && v >= 1 && v <= 86400)
            c.seconds = (unsigned)v;
        else if (opt == 'm' && v >= 1 && v <= 1000)
            c.machines = (unsigned)v;
        else if (opt == 'r' && v >= 1 && v <= 1000)
            c.rate = (unsigned)v;
        else if (opt != 's') {
            fprintf(stderr, "chaos: --seconds 1..86400, --machines 1..1000, --rate 1..1000\n");
            return 2;
        }
    }
    c.rng = seed * 0x9E3779B97F4A7C15ull + 1;
    c.fault_rng = seed * 0xBF58476D1CE4E5B9ull + 7;
    fprintf(stderr, "chaos: seed %llu, %u s, %u machines, %u orders/s\n", seed, c.seconds,
            c.machines, c.rate);

    c.f = harness_fixture_new_midtrans(env, NULL, NULL, NULL);
    if (c.f == NULL)
        return 2;
    c.h = &c.f->h;
    snprintf(c.state_dir, sizeof(c.state_dir), "%s/vmsim", c.h->dir);
    snprintf(c.drop_log, sizeof(c.drop_log), "%s/drops.log", c.h->dir);
    snprintf(c.sim_log, sizeof(c.sim_log), "%s/vmsim.log", c.h->dir);
    if (mkdir(c.state_dir, 0700) < 0 || register_fleet(&c) < 0 || sim_start(&c) < 0)
        goto out;
    {
        char want[16];

        snprintf(want, sizeof(want), "%u", c.machines);
        if (harness_sql_wait(c.h,
                             "SELECT count(*) FROM machines WHERE status = 'ONLINE' AND "
                             "id LIKE '" PREFIX "%'",
                             want, ONLINE_MS) < 0) {
            say("the fleet did not come ONLINE");
            goto out;
        }
    }

    rc = 1;
    start = next_order = harness_now_ms();
    c.calm_until = start + 2000;
    while (harness_now_ms() < start + 1000ull * c.seconds) {
        uint64_t now = harness_now_ms();

        if (fault_step(&c, now) < 0)
            goto out;
        if (now >= next_order) {
            customer(&c);
            next_order += 1000 / c.rate;
        } else {
            harness_sleep_ms((unsigned)(next_order - now));
        }
    }
    if (drain(&c) < 0) {
        report(&c);
        goto out;
    }
    sim_signal_and_reap(&c, SIGTERM);
    report(&c);
    rc = run_check(&c) < 0 ? 1 : 0;
    fprintf(stderr, "chaos: %s (seed %llu)\n", rc == 0 ? "PASS" : "FAIL", seed);
out:
    if (rc != 0)
        fprintf(stderr, "chaos: the run's files are kept in %s\n", c.h->dir);
    sim_signal_and_reap(&c, SIGKILL);
    if (c.locker > 0)
        waitpid(c.locker, NULL, 0);
    if (rc != 0)
        c.h->dir[0] = '\0'; /* keep the evidence: harness_stop() removes only a named dir */
    harness_fixture_free(c.f);
    return rc;
}
