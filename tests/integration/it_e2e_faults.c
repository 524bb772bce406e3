/*
 * it_e2e_faults.c - the fault matrix of issue 12 for the machine and the broker, run for real:
 * mosquitto, vendd, fake-midtrans and vmsim (the firmware core, which journals and announces
 * "settle":true) as VM01. Each case is a customer order paid through the fake, and ends with
 * what SPEC §4 promises: the order final once, the product dropped at most once (vmsim's own
 * count of motor runs), the stock exact, and a refund, paid once at Midtrans, only for a
 * product that did not drop.
 *
 *  a. the machine is offline when the order is paid (killed: its will says OFFLINE): the
 *     command reaches nobody, the unit waits UNSETTLED, and when the machine is back its
 *     journal settles it as never run: FAILED, refunded once, no motor run;
 *  b. the broker (no persistence) restarts while the motor runs and another order waits: both
 *     COMPLETED once, one run each;
 *  c. the broker is frozen (SIGSTOP) while the motor runs and thawed after the deadline: the
 *     unit is UNSETTLED, not refunded, and COMPLETED when the result arrives; the order that
 *     waited behind it goes out then;
 *  d. the broker with persistence restarts while vendd runs: the order in flight COMPLETED
 *     once, and the next order dispenses too.
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

#define WAIT_MS   5000
#define SETTLE_MS 20000 /* deadline (1.5 s + 2 s grace), the settle asks, a loaded machine */
#define MOTOR_MS  "1000"

struct e2e {
    struct harness_fixture *f;
    pid_t sim;
    char state_dir[HARNESS_PATH_MAX + 16];
    char sim_log[HARNESS_PATH_MAX + 16];
    char drops[HARNESS_PATH_MAX + 16]; /* vmsim --drop-log, for harness_check() */
};

static const char *const env[] = {
    "DISPENSE_RESULT_GRACE_MS=2000", "ORDER_RATE_PER_MIN=10000", "ORDER_PENDING_MAX=1000",
    "MIDTRANS_TIMEOUT_MS=3000",      "REFUND_RETRY_S=1",         NULL};

/* vmsim as VM01 on the harness's broker: one slot, a 1 s motor, every run drops. */
static pid_t start_vmsim(struct e2e *e)
{
    const char *bin = getenv("VMSIM");
    char url[64];
    pid_t pid;

    if (bin == NULL)
        return -1;
    snprintf(url, sizeof(url), "mqtt://127.0.0.1:%u", (unsigned)e->f->h.broker.port);
    pid = fork();
    if (pid == 0) {
        FILE *log = freopen(e->sim_log, "a", stdout);

        if (log == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(126);
        setenv("MQTT_BROKER_URL", url, 1);
        execl(bin, bin, "--id", "VM01", "--slots", "1", "--stock", "10", "--motor-ms", MOTOR_MS,
              "--drop-prob", "1", "--state-dir", e->state_dir, "--drop-log", e->drops,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int setup(void **state)
{
    /* The slot's timeoutMs 1.5 s covers vmsim's 1 s motor. */
    static const struct harness_slot slots[] = {{1, 5, 1500}, {0, 0, 0}};
    struct e2e *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return -1;
    e->f = harness_fixture_new_midtrans(env, NULL, slots, NULL);
    if (e->f == NULL)
        goto fail;
    snprintf(e->state_dir, sizeof(e->state_dir), "%s/vmsim", e->f->h.dir);
    snprintf(e->sim_log, sizeof(e->sim_log), "%s/vmsim.log", e->f->h.dir);
    snprintf(e->drops, sizeof(e->drops), "%s/drops.log", e->f->h.dir);
    if (mkdir(e->state_dir, 0700) != 0)
        goto fail;
    e->sim = start_vmsim(e);
    if (e->sim <= 0)
        goto fail;
    if (harness_sql_wait(&e->f->h, "SELECT status || ' ' || settle FROM machines WHERE id = 'VM01'",
                         "ONLINE 1", 10000) < 0)
        goto fail;
    *state = e;
    return 0;
fail:
    if (e->sim > 0)
        kill(e->sim, SIGKILL);
    harness_fixture_free(e->f);
    free(e);
    return -1;
}

static int teardown(void **state)
{
    struct e2e *e = *state;
    int status = 0;

    if (e->sim > 0) {
        kill(e->sim, SIGCONT);
        kill(e->sim, SIGTERM);
        waitpid(e->sim, &status, 0);
    }
    if (e->f->h.broker.pid > 0)
        kill(e->f->h.broker.pid, SIGCONT);
    harness_fixture_free(e->f);
    free(e);
    return 0;
}

/* Lines of vmsim's log with needle ("motor on": a motor run). */
static int sim_count(struct e2e *e, const char *needle)
{
    char line[256];
    int n = 0;
    FILE *log = fopen(e->sim_log, "r");

    if (log == NULL)
        return -1;
    while (fgets(line, sizeof(line), log) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(log);
    return n;
}

static void sim_wait(struct e2e *e, const char *needle, int n)
{
    uint64_t deadline = harness_now_ms() + WAIT_MS;

    while (sim_count(e, needle) < n) {
        if (harness_now_ms() >= deadline)
            fail_msg("vmsim: no '%s' x%d (log: %s)", needle, n, e->sim_log);
        harness_sleep_ms(5);
    }
}

static long long sql_int(struct e2e *e, const char *sql)
{
    long long n = -1;

    if (harness_sql_int(&e->f->h, sql, &n) != 1)
        fail_msg("no row for: %s", sql);
    return n;
}

/* expect_sql(e, fmt, arg, want, timeout_ms): the query fmt (with arg) gives want in time. */
#define expect_sql(e, fmt, arg, want, timeout_ms) expect_sql_at(e, want, timeout_ms, fmt, arg)

static void __attribute__((format(printf, 4, 5)))
expect_sql_at(struct e2e *e, const char *want, int timeout_ms, const char *fmt, ...)
{
    char sql[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (harness_sql_wait(&e->f->h, sql, want, timeout_ms) < 0)
        fail_msg("%s: wanted '%s' (log: %s)", sql, want, e->f->h.log_path);
}

/* Connections so far: vmsim's (subscribed) and vendd's dispense session (subscribed). */
struct links {
    int sim, vendd;
};

static struct links links_now(struct e2e *e)
{
    return (struct links){sim_count(e, "'VM01' connected"),
                          harness_log_count(&e->f->h, "Subscribed to vm/+/dispense_result")};
}

/* Both are back on the broker since before: the next command reaches the machine. */
static void reconnected(struct e2e *e, struct links before)
{
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    struct links now;

    for (;;) {
        now = links_now(e);
        if (now.sim > before.sim && now.vendd > before.vendd)
            return;
        if (harness_now_ms() >= deadline)
            fail_msg("not reconnected: vmsim %d -> %d, vendd %d -> %d (logs: %s, %s)", before.sim,
                     now.sim, before.vendd, now.vendd, e->sim_log, e->f->h.log_path);
        harness_sleep_ms(10);
    }
}

/* A customer's QRIS order for one unit of slot 1, paid at the fake (which notifies). */
static void paid_order(struct e2e *e, char id[64])
{
    struct harness *h = &e->f->h;
    char path[128];

    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, 64, NULL), 201);
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(h, "POST", path, NULL, NULL), 200);
}

/* What Midtrans holds for id: how much it refunded, in how many refunds. */
static void expect_fake_refunded(struct e2e *e, const char *id, int64_t refunded, size_t n)
{
    json_t *tx = harness_fake_tx(&e->f->h, id);

    assert_non_null(tx);
    assert_int_equal(json_integer_value(json_object_get(tx, "refunded")), refunded);
    assert_int_equal(json_array_size(json_object_get(tx, "refunds")), n);
    json_decref(tx);
}

/* id's product dropped once: COMPLETED, one unit out, one payment, nothing refunded. */
static void expect_order_dropped(struct e2e *e, const char *id)
{
    expect_sql(e, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED", SETTLE_MS);
    expect_sql(e,
               "SELECT count(*) FROM stock_logs WHERE order_id = '%s' AND change_type = "
               "'DISPENSE'",
               id, "1", 0);
    expect_sql(e, "SELECT count(*) FROM dispense_logs WHERE order_id = '%s'", id, "1", 0);
    expect_sql(e, "SELECT count(*) FROM payment_events WHERE order_id = '%s' AND outcome = 'PAID'",
               id, "1", 0);
    expect_sql(e, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "0", 0);
    expect_fake_refunded(e, id, 0, 0);
}

/* The same, and then the slot holds stock units and vmsim ran its motor runs times. */
static void expect_dropped_once(struct e2e *e, const char *id, long long stock, int runs)
{
    char want[32];

    expect_order_dropped(e, id);
    snprintf(want, sizeof(want), "%lld", stock);
    expect_sql(e, "SELECT current_stock FROM slots WHERE slot_number = %s", "1", want, 0);
    assert_int_equal(sim_count(e, "motor on"), runs);
}

/* a. Paid while the machine is away: settled by its journal when it is back, refunded once. */
static void machine_offline_when_paid(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    int status = 0;
    char id[64];

    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, sizeof(id), NULL),
        201);
    /* The machine dies: the broker sends its will. */
    kill(e->sim, SIGKILL);
    waitpid(e->sim, &status, 0);
    e->sim = 0;
    expect_sql(e, "SELECT status FROM machines WHERE id = '%s'", "VM01", "OFFLINE", WAIT_MS);
    {
        char path[128];

        snprintf(path, sizeof(path), "/_fake/pay/%s", id);
        assert_int_equal(harness_fake_call(h, "POST", path, NULL, NULL), 200);
    }
    /* Paid, sent to nobody; at the deadline, asked about and not answered: UNSETTLED. */
    expect_sql(e, "SELECT status FROM dispense_logs WHERE order_id = '%s'", id, "UNSETTLED",
               SETTLE_MS);
    expect_sql(e, "SELECT status FROM orders WHERE id = '%s'", id, "DISPENSING", 0);
    expect_sql(e, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "0", 0);

    /* Back: asked at once; its journal never saw the unit, so it never runs it. */
    e->sim = start_vmsim(e);
    assert_true(e->sim > 0);
    expect_sql(e, "SELECT status || ' ' || failure_reason FROM orders WHERE id = '%s'", id,
               "FAILED CANCELLED", SETTLE_MS);
    expect_sql(e, "SELECT settled_by FROM dispense_logs WHERE order_id = '%s'", id, "MACHINE", 0);
    expect_sql(e, "SELECT status || ' ' || amount FROM refunds WHERE order_id = '%s'", id,
               "DONE 8000", SETTLE_MS);
    expect_sql(e, "SELECT status FROM orders WHERE id = '%s'", id, "REFUNDED", WAIT_MS);
    expect_fake_refunded(e, id, 8000, 1);
    assert_int_equal(sim_count(e, "motor on"), 0);
    assert_int_equal(sql_int(e, "SELECT current_stock FROM slots WHERE slot_number = 1"), 5);
    /* The machine serves the next order. */
    paid_order(e, id);
    expect_dropped_once(e, id, 4, 1);
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* b. The broker restarts, its sessions gone, while the motor runs and a second order waits
 * for the machine. */
static void broker_restart_while_the_motor_runs(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    char id[64], next[64];
    struct links before;

    paid_order(e, id);
    sim_wait(e, "motor on", 1);
    paid_order(e, next);
    expect_sql(e, "SELECT status FROM dispense_logs WHERE order_id = '%s'", next, "QUEUED",
               WAIT_MS);
    before = links_now(e);
    assert_int_equal(test_broker_restart(&h->broker), 0);
    expect_order_dropped(e, id);
    expect_dropped_once(e, next, 3, 2);
    reconnected(e, before);
    /* Both came back: the next order dispenses. */
    paid_order(e, id);
    expect_dropped_once(e, id, 2, 3);
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* c. The broker frozen while the motor runs (a second order waiting), thawed after the unit's
 * deadline. */
static void broker_frozen_while_the_motor_runs(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    char id[64], next[64];

    paid_order(e, id);
    sim_wait(e, "motor on", 1);
    paid_order(e, next);
    expect_sql(e, "SELECT status FROM dispense_logs WHERE order_id = '%s'", next, "QUEUED",
               WAIT_MS);
    assert_int_equal(kill(h->broker.pid, SIGSTOP), 0);
    /* The result sits in the frozen broker's socket: at the deadline the unit may have
     * dropped, so it is not failed, nor refunded, and the next waits. */
    expect_sql(e, "SELECT status FROM dispense_logs WHERE order_id = '%s'", id, "UNSETTLED",
               SETTLE_MS);
    expect_sql(e, "SELECT status FROM orders WHERE id = '%s'", id, "DISPENSING", 0);
    expect_sql(e, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "0", 0);
    expect_sql(e, "SELECT status FROM dispense_logs WHERE order_id = '%s'", next, "QUEUED", 0);
    assert_int_equal(kill(h->broker.pid, SIGCONT), 0);
    expect_order_dropped(e, id);
    expect_dropped_once(e, next, 3, 2);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM alerts WHERE kind = 'UNIT_UNSETTLED' AND "
                                "resolved_at IS NULL"),
                     0);
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* d. The broker, with persistence, restarts while vendd runs and a unit is in flight. */
static void persistent_broker_restart(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    char id[64];

    struct links before = links_now(e);

    assert_int_equal(test_broker_set_persistence(&h->broker, true), 0);
    assert_int_equal(test_broker_restart(&h->broker), 0);
    reconnected(e, before);
    paid_order(e, id);
    sim_wait(e, "motor on", 1);
    before = links_now(e);
    assert_int_equal(test_broker_restart(&h->broker), 0);
    expect_dropped_once(e, id, 4, 1);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM orders WHERE status <> 'COMPLETED'"), 0);
    reconnected(e, before);
    /* Everything reconnected: the next order dispenses, once. */
    paid_order(e, id);
    expect_dropped_once(e, id, 3, 2);
    assert_true(harness_vendd_alive(h));
    assert_int_equal(harness_check(h, e->drops), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(machine_offline_when_paid, setup, teardown),
        cmocka_unit_test_setup_teardown(broker_restart_while_the_motor_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(broker_frozen_while_the_motor_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(persistent_broker_restart, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
