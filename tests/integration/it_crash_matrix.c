/*
 * it_crash_matrix.c - kill -9 of vendd at every step of an order, then a restart (issue 12):
 * vendd is started with VENDD_CRASH_AT (daemon/src/core/crashpoint.h), which makes it raise
 * SIGKILL on itself at the named point, an order is driven there (a customer order paid
 * through the real fake-midtrans, or an operator's manual order and its trigger), vendd is
 * started again without it, and once the order has had its deadline and grace, SPEC §4 must
 * hold:
 *
 *   - no unit dropped twice: the machine's own count of its motor runs (vmsim's log), or, for
 *     the guide machine (no journal: it runs every command it gets), the commands it got;
 *   - the order final (COMPLETED, REFUNDED, or FAILED with its refund for the operator), no
 *     unit left QUEUED, SENT or UNSETTLED, no refund left QUEUED or SENT;
 *   - stock = initial - units recorded as dropped, one stock_logs row each, and that count is
 *     what the machine really dropped (one known exception below);
 *   - one PAID payment event; at most one refund, of the total less the dropped units' price,
 *     paid once at the fake Midtrans.
 *
 * Each point with an order of one unit and of two (the second unit is not yet published when
 * the first one's result commits), and a few where the restart crashes again at the order's
 * next step (then), on two machines, one ctest entry each (argv[1]):
 *
 *   guide  the harness's client playing VM01 as in the integration guide: no journal, no
 *          settle; it answers each command at once (or fails the last unit, or stays silent);
 *   vmsim  the firmware core on Linux (journal, settle, re-publishes its results).
 *
 * The known exception: a result vendd has received (libmosquitto PUBACKs it before vendd
 * sees it) and dies with (result_received) is gone for a machine that does not settle; its
 * unit fails at its deadline and is refunded though the product dropped (the customer is
 * made whole; the stock is one too high). A settling machine's journal recovers it.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define PRICE     8000
#define STOCK     10
#define MOTOR_MS  1000 /* the unit's timeout_ms; vmsim's motor runs 300 ms */
#define UNITS_MAX 2
#define WAIT_MS   15000
#define FINAL_MS  30000
#define CRASH_MS  20000
#define QUIET_MS  1500 /* after the end: a stray command or result would show by then */

enum machine_kind { GUIDE, VMSIM };

struct crash_case {
    const char *at;   /* VENDD_CRASH_AT */
    const char *then; /* the restart crashes again here (NULL: it does not) */
    int units;
    bool manual;         /* an operator's order and its trigger (no payment, refund by hand) */
    bool fail_last;      /* the last unit does not drop (guide: JAMMED; vmsim: no unit drops) */
    bool silent;         /* the guide machine answers nothing */
    bool stopped;        /* vmsim is stopped (SIGSTOP) until vendd is back */
    const char *crashed; /* the order's status as the crash left it (NULL: not checked) */
    /* the end */
    const char *status; /* the order's */
    int runs;           /* physical runs (guide: commands run; vmsim: motor runs) */
    int dropped;        /* units the stock and the order count as dropped */
};

/* The guide machine: every command it gets is a run. Counts them per unit. */
struct guide {
    struct harness_autoanswer answer;
    pthread_mutex_t mu;
    bool silent;
    int runs[UNITS_MAX + 1]; /* [unit]: unit 0 is a command without "unit" (unit 1) */
    int commands;
};

struct run {
    const struct crash_case *c;
    enum machine_kind kind;
    struct harness_fixture *f;
    struct guide guide;
    pid_t sim;
    char sim_dir[HARNESS_PATH_MAX + 16];
    char sim_log[HARNESS_PATH_MAX + 16];
    char drop_log[HARNESS_PATH_MAX + 16]; /* vmsim --drop-log, for vend-check */
    char order_id[64];
};

/* What a cmocka case starts with. */
struct entry {
    const struct crash_case *c;
    enum machine_kind kind;
};

static void guide_machine(struct harness_mqtt *c, const char *topic, const char *payload,
                          size_t len, void *arg)
{
    struct guide *g = arg;
    char text[HARNESS_PAYLOAD_MAX + 1], order_id[128];
    int slot, unit;
    bool silent;

    if (strstr(topic, "/command") == NULL || len > HARNESS_PAYLOAD_MAX)
        return;
    memcpy(text, payload, len);
    text[len] = '\0';
    if (harness_command_parse(text, order_id, sizeof(order_id), &slot, &unit) < 0)
        return;
    pthread_mutex_lock(&g->mu);
    g->commands++;
    if (unit >= 0 && unit <= UNITS_MAX)
        g->runs[unit == 0 ? 1 : unit]++;
    silent = g->silent;
    pthread_mutex_unlock(&g->mu);
    if (!silent)
        harness_autoanswer(c, topic, payload, len, &g->answer);
}

/* vmsim as VM01: one slot of STOCK, a 300 ms motor, every run drops (or none does). */
static pid_t start_vmsim(struct run *r, bool drops)
{
    const char *bin = getenv("VMSIM");
    char url[64];
    pid_t pid;

    if (bin == NULL)
        return -1;
    snprintf(url, sizeof(url), "mqtt://127.0.0.1:%u", (unsigned)r->f->h.broker.port);
    pid = fork();
    if (pid == 0) {
        FILE *log = freopen(r->sim_log, "a", stdout);

        if (log == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(126);
        setenv("MQTT_BROKER_URL", url, 1);
        execl(bin, bin, "--id", "VM01", "--slots", "1", "--stock", "10", "--motor-ms", "300",
              "--drop-prob", drops ? "1" : "0", "--state-dir", r->sim_dir, "--drop-log",
              r->drop_log, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Lines of the file at path holding needle; -1 if it cannot be read. */
static int file_count(const char *path, const char *needle)
{
    char line[512];
    int n = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* vmsim's motor runs, from its log. */
static int vmsim_runs(const struct run *r)
{
    return file_count(r->sim_log, "motor on");
}

static int setup(void **state)
{
    const struct entry *e = *state;
    const struct crash_case *c = e->c;
    static const struct harness_slot slots[] = {{1, STOCK, MOTOR_MS}, {0, 0, 0}};
    char at[96];
    const char *env[] = {"DISPENSE_RESULT_GRACE_MS=1000", "ORDER_RATE_PER_MIN=10000",
                         "MIDTRANS_TIMEOUT_MS=3000", at, NULL};
    struct run *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return -1;
    r->c = c;
    r->kind = e->kind;
    pthread_mutex_init(&r->guide.mu, NULL);
    pthread_mutex_init(&r->guide.answer.mu, NULL);
    snprintf(at, sizeof(at), "VENDD_CRASH_AT=%s", c->at);
    r->f =
        harness_fixture_new_midtrans(env, NULL, slots, e->kind == GUIDE ? "it-crash-vm01" : NULL);
    if (r->f == NULL)
        goto fail;
    if (e->kind == GUIDE) {
        r->guide.silent = c->silent;
        /* Units are numbered from 1; bit N fails unit N (a command without "unit" is 1). */
        if (c->fail_last)
            r->guide.answer.fail_units = (uint64_t)1 << c->units;
        harness_mqtt_set_handler(&r->f->machine, guide_machine, &r->guide);
    } else {
        snprintf(r->sim_dir, sizeof(r->sim_dir), "%s/vmsim", r->f->h.dir);
        snprintf(r->sim_log, sizeof(r->sim_log), "%s/vmsim.log", r->f->h.dir);
        snprintf(r->drop_log, sizeof(r->drop_log), "%s/drops.log", r->f->h.dir);
        if (mkdir(r->sim_dir, 0700) != 0)
            goto fail;
        r->sim = start_vmsim(r, !c->fail_last);
        if (r->sim <= 0)
            goto fail;
        if (harness_sql_wait(&r->f->h,
                             "SELECT status || ' ' || settle FROM machines WHERE id = 'VM01'",
                             "ONLINE 1", 10000) < 0)
            goto fail;
    }
    *state = r;
    return 0;
fail:
    if (r->sim > 0) {
        kill(r->sim, SIGKILL);
        waitpid(r->sim, NULL, 0);
    }
    harness_fixture_free(r->f);
    free(r);
    return -1;
}

static int teardown(void **state)
{
    struct run *r = *state;
    int status = 0;

    if (r->sim > 0) {
        kill(r->sim, SIGCONT);
        kill(r->sim, SIGTERM);
        waitpid(r->sim, &status, 0);
    }
    harness_fixture_free(r->f);
    free(r);
    return 0;
}

/* ---- queries ------------------------------------------------------------------------------ */

static long long sql_int(const struct run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static long long sql_int(const struct run *r, const char *fmt, ...)
{
    char sql[512];
    long long n = -1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (harness_sql_int(&r->f->h, sql, &n) != 1)
        fail_msg("%s: no row (log: %s)", sql, r->f->h.log_path);
    return n;
}

static void sql_text(const struct run *r, char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void sql_text(const struct run *r, char *buf, size_t size, const char *fmt, ...)
{
    char sql[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (harness_sql_text(&r->f->h, sql, buf, size) != 1)
        fail_msg("%s: no row (log: %s)", sql, r->f->h.log_path);
}

/* Final: the order ended, none of its units or refunds is still on its way. */
static void wait_final(struct run *r)
{
    char sql[768];

    snprintf(sql, sizeof(sql),
             "SELECT (o.status IN ('COMPLETED', 'REFUNDED') OR (o.status = 'FAILED' AND "
             "EXISTS (SELECT 1 FROM refunds f WHERE f.order_id = o.id AND f.status = "
             "'OPERATOR'))) AND NOT EXISTS (SELECT 1 FROM dispense_logs l WHERE l.order_id = o.id "
             "AND l.status IN ('QUEUED', 'SENT', 'UNSETTLED')) AND NOT EXISTS (SELECT 1 FROM "
             "refunds f WHERE f.order_id = o.id AND f.status IN ('QUEUED', 'SENT')) "
             "FROM orders o WHERE o.id = '%s'",
             r->order_id);
    if (harness_sql_wait(&r->f->h, sql, "1", FINAL_MS) < 0)
        fail_msg("order '%s' not final within %d ms of the restart (log: %s)", r->order_id,
                 FINAL_MS, r->f->h.log_path);
}

/* ---- the run -------------------------------------------------------------------------------- */

static void place_order(struct run *r)
{
    struct harness *h = &r->f->h;
    const struct crash_case *c = r->c;
    char items[96], path[128];

    if (c->manual) {
        snprintf(r->order_id, sizeof(r->order_id), "crash-manual");
        assert_int_equal(harness_order(h, r->order_id, 1, c->units), 0);
        /* vendd dies before it answers: no status to expect. */
        harness_trigger(h, r->order_id, NULL);
        return;
    }
    snprintf(items, sizeof(items), "[{\"slot\":1,\"quantity\":%d}]", c->units);
    assert_int_equal(
        harness_order_customer(h, items, "qris", r->order_id, sizeof(r->order_id), NULL), 201);
    snprintf(path, sizeof(path), "/_fake/pay/%s", r->order_id);
    assert_int_equal(harness_fake_call(h, "POST", path, NULL, NULL), 200);
}

/* vendd dies by SIGKILL at crash point at, its seen-th time there. */
static void expect_crash(struct run *r, const char *at, int seen)
{
    struct harness *h = &r->f->h;
    char needle[96];
    int sig;

    sig = harness_vendd_wait_death(h, CRASH_MS);
    if (sig != SIGKILL)
        fail_msg("vendd did not die by SIGKILL at %s (got %d; log: %s)", at, sig, h->log_path);
    snprintf(needle, sizeof(needle), "crash point %s%s reached", at,
             strchr(at, ':') != NULL ? "" : ":1");
    assert_int_equal(harness_log_count(h, needle), seen);
}

/* Start vendd again, to crash next at then (or not): that may come before the start is over. */
static void restart(struct run *r, const char *then)
{
    struct harness *h = &r->f->h;
    char env[96];

    snprintf(env, sizeof(env), "VENDD_CRASH_AT=%s", then != NULL ? then : "");
    assert_int_equal(harness_env_set(h, env), 0);
    if (r->kind == VMSIM && r->c->stopped)
        kill(r->sim, SIGCONT);
    if (harness_vendd_start(h) < 0 && (then == NULL || h->pid > 0 || !h->reaped))
        fail_msg("vendd did not start again (log: %s)", h->log_path);
}

/* Physical runs per unit must be at most one, and their sum what the case says. */
static int machine_runs(struct run *r)
{
    int total = 0;

    if (r->kind == VMSIM)
        return vmsim_runs(r);
    pthread_mutex_lock(&r->guide.mu);
    for (int u = 1; u <= UNITS_MAX; u++) {
        if (r->guide.runs[u] > 1) {
            pthread_mutex_unlock(&r->guide.mu);
            fail_msg("the guide machine got unit %d of '%s' %d times: it ran it twice", u,
                     r->order_id, r->guide.runs[u]);
        }
        total += r->guide.runs[u];
    }
    pthread_mutex_unlock(&r->guide.mu);
    return total;
}

static void check_money(struct run *r, int dropped)
{
    struct harness *h = &r->f->h;
    const char *id = r->order_id;
    long long due = (long long)PRICE * (r->c->units - dropped);
    long long refunds = sql_int(r, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id);
    json_t *tx;

    if (r->c->manual) {
        assert_int_equal(refunds, due > 0 ? 1 : 0);
        if (due > 0)
            assert_int_equal(sql_int(r,
                                     "SELECT amount FROM refunds WHERE order_id = '%s' AND "
                                     "status = 'OPERATOR'",
                                     id),
                             due);
        return;
    }
    assert_int_equal(sql_int(r,
                             "SELECT count(*) FROM payment_events WHERE order_id = '%s' AND "
                             "outcome = 'PAID'",
                             id),
                     1);
    assert_int_equal(refunds, due > 0 ? 1 : 0);
    tx = harness_fake_tx(h, id);
    assert_non_null(tx);
    if (due > 0) {
        assert_int_equal(
            sql_int(r, "SELECT amount FROM refunds WHERE order_id = '%s' AND status = 'DONE'", id),
            due);
        assert_int_equal(json_integer_value(json_object_get(tx, "refunded")), due);
        assert_int_equal(json_array_size(json_object_get(tx, "refunds")), 1);
    } else {
        assert_int_equal(json_integer_value(json_object_get(tx, "refunded")), 0);
    }
    json_decref(tx);
}

static void crash_case(void **state)
{
    struct run *r = *state;
    const struct crash_case *c = r->c;
    char status[32];
    long long dropped;
    int runs;

    if (r->kind == VMSIM && c->stopped)
        assert_int_equal(kill(r->sim, SIGSTOP), 0);
    place_order(r);
    expect_crash(r, c->at, 1);
    if (c->crashed != NULL) {
        sql_text(r, status, sizeof(status), "SELECT status FROM orders WHERE id = '%s'",
                 r->order_id);
        assert_string_equal(status, c->crashed);
    }
    restart(r, c->then);
    if (c->then != NULL) {
        expect_crash(r, c->then, strcmp(c->then, c->at) == 0 ? 2 : 1);
        restart(r, NULL);
    }
    wait_final(r);
    harness_sleep_ms(QUIET_MS);

    sql_text(r, status, sizeof(status), "SELECT status FROM orders WHERE id = '%s'", r->order_id);
    assert_string_equal(status, c->status);
    dropped = sql_int(r,
                      "SELECT count(*) FROM dispense_logs WHERE order_id = '%s' AND success = 1 "
                      "AND drop_detected = 1",
                      r->order_id);
    assert_int_equal(dropped, c->dropped);
    runs = machine_runs(r);
    assert_int_equal(runs, c->runs);
    /* Stock: one down, with one log row, per unit recorded as dropped. */
    assert_int_equal(sql_int(r, "SELECT current_stock FROM slots WHERE slot_number = 1"),
                     STOCK - dropped);
    assert_int_equal(sql_int(r,
                             "SELECT count(*) FROM stock_logs WHERE order_id = '%s' AND "
                             "change_type = 'DISPENSE'",
                             r->order_id),
                     dropped);
    check_money(r, (int)dropped);
    /* And SPEC §4 as vend-check reads it, with vmsim's record of what really fell. The guide
     * machine keeps no record: its lost drop (result_received) is the documented exception. */
    assert_int_equal(harness_check(&r->f->h, r->kind == VMSIM ? r->drop_log : NULL), 0);
    /* Under the sanitizers: nothing they found on the way (vendd ends killed, unchecked). */
    assert_int_equal(harness_log_count(&r->f->h, "Sanitizer"), 0);
    assert_int_equal(harness_log_count(&r->f->h, "runtime error:"), 0);
    if (r->kind == VMSIM) {
        assert_int_equal(file_count(r->sim_log, "Sanitizer"), 0);
        assert_int_equal(file_count(r->sim_log, "runtime error:"), 0);
    }
}

/* ---- the matrix ----------------------------------------------------------------------------- */

/* clang-format off */
static const struct crash_case s_guide[] = {
    /* The webhook dies unanswered: Midtrans's retry, or vendd's own check, applies it. */
    {.at = "payment_received", .units = 1, .crashed = "PENDING", .status = "COMPLETED", .runs = 1,
     .dropped = 1},
    /* PAID and unit 1 SENT, never published: its deadline fails it, all refunded. */
    {.at = "payment_committed", .units = 1, .crashed = "DISPENSING", .status = "REFUNDED"},
    {.at = "payment_committed", .units = 2, .status = "REFUNDED"},
    {.at = "trigger_committed", .units = 1, .manual = true, .status = "FAILED"},
    /* The command is at the broker: the machine runs it, its result waits in vendd's session. */
    {.at = "command_published", .units = 1, .status = "COMPLETED", .runs = 1, .dropped = 1},
    {.at = "command_published", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    {.at = "command_published:2", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    /* The known exception (see the top): the drop is lost with vendd, the unit refunded. */
    {.at = "result_received", .units = 1, .status = "REFUNDED", .runs = 1, .dropped = 0},
    {.at = "result_received", .units = 2, .status = "REFUNDED", .runs = 1, .dropped = 0},
    {.at = "result_received:2", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 1},
    /* Unit 1 durable; unit 2 SENT with it, never published: it fails, its price refunded. */
    {.at = "result_committed", .units = 1, .status = "COMPLETED", .runs = 1, .dropped = 1},
    {.at = "result_committed", .units = 2, .status = "COMPLETED", .runs = 1, .dropped = 1},
    {.at = "result_committed:2", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    /* A silent machine: the unit failed by its deadline, the refund still to queue. */
    {.at = "unit_expired", .units = 1, .silent = true, .status = "REFUNDED", .runs = 1},
    {.at = "unit_expired", .units = 2, .silent = true, .status = "REFUNDED", .runs = 1},
    /* The refund SENT, Midtrans not called / its answer not stored: sent again, paid once. */
    {.at = "refund_committed", .units = 1, .fail_last = true, .status = "REFUNDED", .runs = 1},
    {.at = "refund_committed", .units = 2, .fail_last = true, .status = "COMPLETED", .runs = 2,
     .dropped = 1},
    {.at = "refund_answered", .units = 1, .fail_last = true, .status = "REFUNDED", .runs = 1},
    {.at = "refund_answered", .units = 2, .fail_last = true, .status = "COMPLETED", .runs = 2,
     .dropped = 1},
    /* The restart dies too, at the next step of the same order. */
    {.at = "payment_committed", .then = "unit_expired", .units = 2, .status = "REFUNDED"},
    {.at = "result_committed", .then = "unit_expired", .units = 2, .status = "COMPLETED",
     .runs = 1, .dropped = 1},
    {.at = "unit_expired", .then = "refund_committed", .units = 1, .silent = true,
     .status = "REFUNDED", .runs = 1},
    {.at = "refund_committed", .then = "refund_committed", .units = 1, .fail_last = true,
     .status = "REFUNDED", .runs = 1},
};

static const struct crash_case s_vmsim[] = {
    {.at = "payment_received", .units = 1, .crashed = "PENDING", .status = "COMPLETED", .runs = 1,
     .dropped = 1},
    /* Unit 1 never published: the machine is asked (settle), never got it, all refunded. */
    {.at = "payment_committed", .units = 1, .crashed = "DISPENSING", .status = "REFUNDED"},
    {.at = "payment_committed", .units = 2, .status = "REFUNDED"},
    {.at = "trigger_committed", .units = 1, .manual = true, .status = "FAILED"},
    {.at = "command_published", .units = 1, .status = "COMPLETED", .runs = 1, .dropped = 1},
    {.at = "command_published", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    {.at = "command_published:2", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    /* The result lost with vendd: the machine's journal has it (settle, or its re-publish). */
    {.at = "result_received", .units = 1, .status = "COMPLETED", .runs = 1, .dropped = 1},
    {.at = "result_received", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    {.at = "result_received:2", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    {.at = "result_committed", .units = 1, .status = "COMPLETED", .runs = 1, .dropped = 1},
    {.at = "result_committed", .units = 2, .status = "COMPLETED", .runs = 1, .dropped = 1},
    {.at = "result_committed:2", .units = 2, .status = "COMPLETED", .runs = 2, .dropped = 2},
    /* A stopped machine: UNSETTLED, the ask not sent; it wakes, refuses the late command. */
    {.at = "unit_unsettled", .units = 1, .stopped = true, .status = "REFUNDED"},
    /* No drop (NO_DROP): the refund SENT, then as for the guide machine. */
    {.at = "refund_committed", .units = 1, .fail_last = true, .status = "REFUNDED", .runs = 1},
    {.at = "refund_answered", .units = 1, .fail_last = true, .status = "REFUNDED", .runs = 1},
    /* The restart dies too, at the next step of the same order. */
    {.at = "payment_committed", .then = "unit_unsettled", .units = 2, .status = "REFUNDED"},
    {.at = "result_received", .then = "result_received", .units = 1, .status = "COMPLETED",
     .runs = 1, .dropped = 1},
    {.at = "result_committed", .then = "unit_unsettled", .units = 2, .status = "COMPLETED",
     .runs = 1, .dropped = 1},
    /* The settle's answer (never got it) lost with vendd too: asked again. */
    {.at = "payment_committed", .then = "result_received", .units = 1, .status = "REFUNDED"},
    {.at = "unit_unsettled", .then = "result_received", .units = 1, .stopped = true,
     .status = "REFUNDED"},
    /* Unit 2 SENT with unit 1's result, never published: never run, its price refunded. */
    {.at = "command_published", .then = "result_committed", .units = 2, .status = "COMPLETED",
     .runs = 1, .dropped = 1},
};
/* clang-format on */

#define CASES_MAX 32

int main(int argc, char **argv)
{
    struct CMUnitTest tests[CASES_MAX];
    static char names[CASES_MAX][96];
    static struct entry entries[CASES_MAX];
    const struct crash_case *cases = s_guide;
    enum machine_kind kind = GUIDE;
    size_t n = sizeof(s_guide) / sizeof(s_guide[0]);

    if (argc > 1 && strcmp(argv[1], "vmsim") == 0) {
        kind = VMSIM;
        cases = s_vmsim;
        n = sizeof(s_vmsim) / sizeof(s_vmsim[0]);
    } else if (argc > 1 && strcmp(argv[1], "guide") != 0) {
        fprintf(stderr, "usage: it_crash_matrix [guide|vmsim]\n");
        return 2;
    }
    for (size_t i = 0; i < n && i < CASES_MAX; i++) {
        entries[i] = (struct entry){.c = &cases[i], .kind = kind};
        snprintf(names[i], sizeof(names[i]), "%s_%s%s%s_%d_unit%s",
                 kind == GUIDE ? "guide" : "vmsim", cases[i].at, cases[i].then ? "_then_" : "",
                 cases[i].then ? cases[i].then : "", cases[i].units, cases[i].units > 1 ? "s" : "");
        tests[i] = (struct CMUnitTest){.name = names[i],
                                       .test_func = crash_case,
                                       .setup_func = setup,
                                       .teardown_func = teardown,
                                       .initial_state = &entries[i]};
    }
    return _cmocka_run_group_tests(kind == GUIDE ? "it_crash_matrix_guide"
                                                 : "it_crash_matrix_vmsim",
                                   tests, n < CASES_MAX ? n : CASES_MAX, NULL, NULL);
}
