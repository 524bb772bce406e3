/*
 * it_clock_step.c - wall-clock steps of an hour, forwards and back, on a real vendd and on a
 * real machine (issue 12's fault matrix; SPEC §4 rules 3, 6 and 9, §3 expiresAt).
 *
 * The server: vendd runs with tests/support/clockshift.c preloaded, which adds the offset in a
 * file to its wall clock; the test steps it by rewriting the file. The monotonic clock, which
 * a real step leaves alone, is untouched; so are the broker, the fake Midtrans and the test.
 *
 *   - mid-dispense: the NO_RESULT deadline still fires at timeout + grace, not at once and
 *     not an hour late;
 *   - during the refund hold of a unit that failed for no result: a step forwards does not
 *     send the refund early (another order's result, which re-arms the refund timer, comes in
 *     between), so the late drop still completes the order and nothing is paid back for it;
 *     a step back does not hold the refund an hour, nor a refund's retry after Midtrans did
 *     not answer;
 *   - a PENDING order is not expired by a step forwards (another order's creation re-arms the
 *     payment checks in between), and is served when paid.
 *
 * The machine: vmsim's clock is an hour ahead (--clock-offset-ms) or steps on SIGUSR2
 * (--clock-step-ms). One ahead refuses every command as past its expiresAt: the order fails
 * with EXPIRED and is refunded, nothing dropped. One behind runs them: drop, COMPLETED.
 */
#define _GNU_SOURCE
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

#define MOTOR_MS 100
#define GRACE_MS 3000
#define SLACK_MS 1500 /* scheduling, sanitizers, a loaded machine */
#define WAIT_MS  5000
#define HOUR_MS  3600000LL

struct clk {
    struct harness_fixture *f;
    char dir[256];       /* holds the offset file; "" once removed */
    char off_path[300];  /* CLOCKSHIFT_FILE */
    char sim_state[300]; /* vmsim's journal directory */
    char sim_log[300];
    char drops[300]; /* vmsim --drop-log, for harness_check() */
    pid_t sim;
};

/* Set vendd's wall clock to the real time plus ms: a new file renamed over the old one. */
static void server_clock(struct clk *c, long long ms)
{
    char tmp[320];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.new", c->off_path);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f, "%lld\n", ms);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, c->off_path), 0);
    harness_sleep_ms(50); /* the shim reads the file again after 20 ms */
}

/* expect_sql(h, fmt, arg, want, timeout_ms): the query fmt (with arg) gives want in time. */
#define expect_sql(h, fmt, arg, want, timeout_ms) expect_sql_at(h, want, timeout_ms, fmt, arg)

static void __attribute__((format(printf, 4, 5)))
expect_sql_at(struct harness *h, const char *want, int timeout_ms, const char *fmt, ...)
{
    char sql[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (harness_sql_wait(h, sql, want, timeout_ms) < 0)
        fail_msg("%s: wanted '%s' (log: %s)", sql, want, h->log_path);
}

/* The shim is found by the dynamic loader; under ASan the runtime must not insist on being
 * first in the list. */
static int shim_env(struct clk *c, char *preload, size_t preload_size, char *file, size_t file_size)
{
    const char *so = getenv("CLOCKSHIFT_SO");
    const char *asan = getenv("ASAN_OPTIONS");
    const char *tmp = getenv("TMPDIR");
    char opts[512];

    if (so == NULL || *so == '\0')
        return -1;
    if (asan != NULL && strstr(asan, "verify_asan_link_order") == NULL) {
        snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan, *asan ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
    }
    snprintf(c->dir, sizeof(c->dir), "%s/it-clock-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    if (mkdtemp(c->dir) == NULL)
        return -1;
    snprintf(c->off_path, sizeof(c->off_path), "%s/offset", c->dir);
    if ((size_t)snprintf(preload, preload_size, "LD_PRELOAD=%s", so) >= preload_size ||
        (size_t)snprintf(file, file_size, "CLOCKSHIFT_FILE=%s", c->off_path) >= file_size)
        return -1;
    return 0;
}

static int setup_server(void **state)
{
    static const struct harness_slot slots[] = {{1, 10, MOTOR_MS}, {0, 0, 0}};
    static char preload[96], file[96];
    const char *env[] = {"DISPENSE_RESULT_GRACE_MS=3000",
                         "ORDER_RATE_PER_MIN=10000",
                         "ORDER_PENDING_MAX=100",
                         "ORDER_PAYMENT_TTL_S=60",
                         "MIDTRANS_TIMEOUT_MS=2000",
                         "REFUND_RETRY_S=1",
                         preload,
                         file,
                         NULL};
    struct clk *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -1;
    *state = c;
    if (shim_env(c, preload, sizeof(preload), file, sizeof(file)) < 0) {
        fprintf(stderr, "it_clock_step: no clock shim (CLOCKSHIFT_SO) or no directory\n");
        return -1;
    }
    c->f = harness_fixture_new_midtrans(env, NULL, slots, "it-clock-step");
    return c->f != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    struct clk *c = *state;
    int status = 0;

    if (c == NULL)
        return 0;
    if (c->sim > 0) {
        kill(c->sim, SIGTERM);
        waitpid(c->sim, &status, 0);
    }
    harness_fixture_free(c->f);
    if (c->dir[0] != '\0') {
        char tmp[320];

        snprintf(tmp, sizeof(tmp), "%s.new", c->off_path);
        unlink(tmp);
        unlink(c->off_path);
        rmdir(c->dir);
    }
    free(c);
    return 0;
}

/* Command n (1-based) for id has come; returns its slot (and unit in *unit). */
static int command_for(struct harness_fixture *f, size_t n, const char *id, int *unit)
{
    char got[64];
    int slot = 0;

    if (harness_mqtt_wait(&f->machine, n, WAIT_MS) < n)
        fail_msg("no command %zu for '%s' (log: %s)", n, id, f->h.log_path);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, n - 1), got,
                                           sizeof(got), &slot, unit),
                     0);
    assert_string_equal(got, id);
    return slot;
}

/* A manual order on slot 1, triggered; its command is number n. */
static void manual_order_sent(struct harness_fixture *f, const char *id, size_t n)
{
    int unit = 0;

    assert_int_equal(harness_order(&f->h, id, 1, 1), 0);
    assert_int_equal(harness_trigger(&f->h, id, NULL), 200);
    assert_int_equal(command_for(f, n, id, &unit), 1);
}

/* A QRIS order paid at the fake; its command is number n. */
static void paid_order_sent(struct harness_fixture *f, char id[64], size_t n)
{
    char path[128];
    int unit = 0;

    assert_int_equal(
        harness_order_customer(&f->h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, 64, NULL), 201);
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(&f->h, "POST", path, NULL, NULL), 200);
    assert_int_equal(command_for(f, n, id, &unit), 1);
}

/* The order fails for no result, at its deadline: not before, not long after. */
static void fails_at_the_deadline(struct harness *h, const char *id, uint64_t sent)
{
    uint64_t failed;

    expect_sql(h, "SELECT status || ' ' || failure_reason FROM orders WHERE id = '%s'", id,
               "FAILED NO_RESULT", MOTOR_MS + GRACE_MS + SLACK_MS);
    failed = harness_now_ms();
    if (failed - sent + 50 < MOTOR_MS + GRACE_MS)
        fail_msg("order '%s' failed %llu ms after its command, before its deadline (%d ms)", id,
                 (unsigned long long)(failed - sent), MOTOR_MS + GRACE_MS);
}

/* The refund calls the fake got for id. */
static int refund_calls(struct harness *h, const char *id)
{
    char path[128];

    snprintf(path, sizeof(path), "/v2/%s/refund", id);
    return harness_fake_requests(h, "POST", path, NULL);
}

static void server_step_mid_dispense(void **state)
{
    struct clk *c = *state;
    struct harness_fixture *f = c->f;
    uint64_t sent;

    manual_order_sent(f, "mid-fwd", 1);
    sent = harness_now_ms();
    server_clock(c, HOUR_MS);
    fails_at_the_deadline(&f->h, "mid-fwd", sent);

    manual_order_sent(f, "mid-back", 2);
    sent = harness_now_ms();
    server_clock(c, -HOUR_MS);
    fails_at_the_deadline(&f->h, "mid-back", sent);
    server_clock(c, 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

/* Forwards during the hold, with traffic: the late drop wins, nothing is paid back. */
static void server_step_forward_in_refund_hold(void **state)
{
    struct clk *c = *state;
    struct harness_fixture *f = c->f;
    size_t n = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64];

    paid_order_sent(f, id, ++n);
    fails_at_the_deadline(&f->h, id, harness_now_ms() - 100);
    expect_sql(&f->h, "SELECT status FROM refunds WHERE order_id = '%s'", id, "QUEUED", 0);
    server_clock(c, HOUR_MS);
    /* Another order dispenses meanwhile: its result re-arms the refund timer. */
    manual_order_sent(f, "traffic-1", ++n);
    assert_int_equal(harness_answer(&f->machine, "traffic-1", 1, 0), 0);
    expect_sql(&f->h, "SELECT status FROM orders WHERE id = '%s'", "traffic-1", "COMPLETED",
               WAIT_MS);
    harness_sleep_ms(300);
    expect_sql(&f->h, "SELECT status FROM refunds WHERE order_id = '%s'", id, "QUEUED", 0);
    /* The machine did drop it, and says so within the hold. */
    assert_int_equal(harness_answer(&f->machine, id, 1, 0), 0);
    expect_sql(&f->h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED", WAIT_MS);
    expect_sql(&f->h, "SELECT status FROM refunds WHERE order_id = '%s'", id, "CANCELLED", 0);
    expect_sql(&f->h, "SELECT count(*) FROM alerts WHERE kind = '%s'", "REFUNDED_ORDER_DISPENSED",
               "0", 0);
    harness_sleep_ms(GRACE_MS);
    assert_int_equal(refund_calls(&f->h, id), 0);
    server_clock(c, 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

/* Back during the hold: the refund still goes out after one grace period. */
static void server_step_back_in_refund_hold(void **state)
{
    struct clk *c = *state;
    struct harness_fixture *f = c->f;
    size_t n = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64];

    paid_order_sent(f, id, ++n);
    fails_at_the_deadline(&f->h, id, harness_now_ms() - 100);
    server_clock(c, -HOUR_MS);
    expect_sql(&f->h, "SELECT status FROM orders WHERE id = '%s'", id, "REFUNDED",
               GRACE_MS + SLACK_MS);
    assert_int_equal(refund_calls(&f->h, id), 1);
    server_clock(c, 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

/* Back while a refund waits to be retried (no answer from Midtrans): retried after its
 * backoff (REFUND_RETRY_S=1), not an hour later. */
static void server_step_back_in_refund_backoff(void **state)
{
    struct clk *c = *state;
    struct harness_fixture *f = c->f;
    size_t n = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64];

    paid_order_sent(f, id, ++n);
    assert_int_equal(harness_fake_call(&f->h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"refund\",\"mode\":\"http_error\","
                                       "\"http_status\":503}",
                                       NULL),
                     200);
    fails_at_the_deadline(&f->h, id, harness_now_ms() - 100);
    expect_sql(&f->h, "SELECT status || ' ' || attempts FROM refunds WHERE order_id = '%s'", id,
               "QUEUED 1", GRACE_MS + SLACK_MS);
    server_clock(c, -HOUR_MS);
    expect_sql(&f->h, "SELECT status FROM orders WHERE id = '%s'", id, "REFUNDED", 1000 + SLACK_MS);
    assert_int_equal(refund_calls(&f->h, id), 2);
    server_clock(c, 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

/* Forwards with an order waiting for payment: not expired, and served when paid. */
static void server_step_forward_with_pending_order(void **state)
{
    struct clk *c = *state;
    struct harness_fixture *f = c->f;
    size_t n = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], other[64], path[128];
    int unit = 0;

    assert_int_equal(
        harness_order_customer(&f->h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, 64, NULL), 201);
    server_clock(c, HOUR_MS);
    /* Another customer orders: its creation re-arms the payment checks. */
    assert_int_equal(harness_order_customer(&f->h, "[{\"slot\":1,\"quantity\":1}]", "snap", other,
                                            sizeof(other), NULL),
                     201);
    harness_sleep_ms(1500);
    expect_sql(&f->h, "SELECT status FROM orders WHERE id = '%s'", id, "PENDING", 0);
    /* The customer pays. */
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(&f->h, "POST", path, NULL, NULL), 200);
    assert_int_equal(command_for(f, ++n, id, &unit), 1);
    assert_int_equal(harness_answer(&f->machine, id, 1, 0), 0);
    expect_sql(&f->h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED", WAIT_MS);
    expect_sql(&f->h, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "0", 0);
    server_clock(c, 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

/* The cancel calls the fake got for id. */
static int cancel_calls(struct harness *h, const char *id)
{
    char path[128];

    snprintf(path, sizeof(path), "/v2/%s/cancel", id);
    return harness_fake_requests(h, "POST", path, NULL);
}

/* The customer cancels a QRIS order while Midtrans answers the cancel with a 5xx (count
 * times); id gets the order's id. */
static void cancel_unconfirmed(struct harness_fixture *f, char id[64], int count)
{
    char body[128], path[128];

    assert_int_equal(
        harness_order_customer(&f->h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, 64, NULL), 201);
    snprintf(body, sizeof(body), "{\"endpoint\":\"cancel\",\"mode\":\"http_error\",\"count\":%d}",
             count);
    assert_int_equal(harness_fake_call(&f->h, "POST", "/_fake/fail", body, NULL), 200);
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(&f->h, "POST", path, NULL, NULL), 200);
    expect_sql(&f->h, "SELECT status FROM orders WHERE id = '%s'", id, "CANCELLED", 0);
}

/* Back with a cancel Midtrans has not confirmed: called again every check interval, not in a
 * loop as fast as Midtrans answers. */
static void server_step_back_with_unconfirmed_cancel(void **state)
{
    struct clk *c = *state;
    struct harness_fixture *f = c->f;
    char id[64];
    int calls;

    server_clock(c, -HOUR_MS);
    cancel_unconfirmed(f, id, 1000);
    harness_sleep_ms(3000);
    calls = cancel_calls(&f->h, id);
    if (calls > 2)
        fail_msg("order '%s': %d cancel calls in 3 s, wanted at most 2 (log: %s)", id, calls,
                 f->h.log_path);
    /* Midtrans confirms the next call; then the calls stop. */
    assert_int_equal(harness_fake_call(&f->h, "DELETE", "/_fake/fail", NULL, NULL), 200);
    expect_sql(&f->h, "SELECT count(*) FROM orders WHERE id = '%s' AND next_check_at IS NULL", id,
               "1", 10000 + 2000 + SLACK_MS);
    calls = cancel_calls(&f->h, id);
    harness_sleep_ms(2000);
    assert_int_equal(cancel_calls(&f->h, id), calls);
    server_clock(c, 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

/* Forwards with a cancel Midtrans has not confirmed, then paid without a notification: the
 * cancel is called again within the check interval, the payment found and refunded once,
 * not an hour later. */
static void server_step_forward_with_unconfirmed_cancel(void **state)
{
    struct clk *c = *state;
    struct harness_fixture *f = c->f;
    char id[64], path[128];

    server_clock(c, HOUR_MS);
    cancel_unconfirmed(f, id, 1);
    assert_true(harness_log_wait(&f->h, "cannot cancel order", 1, WAIT_MS) >= 1);
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(&f->h, "POST", path, "{\"notify\":false}", NULL), 200);
    /* A check interval (10 s), Midtrans's timeout (2 s), the refund's hold (3 s), room. */
    expect_sql(&f->h, "SELECT status || ' ' || reason FROM refunds WHERE order_id = '%s'", id,
               "DONE PAID_AFTER_CANCEL", 10000 + 2000 + GRACE_MS + 2 * SLACK_MS);
    assert_int_equal(refund_calls(&f->h, id), 1);
    server_clock(c, 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

/* ---- the machine's clock ------------------------------------------------------------------ */

#define SIM_MOTOR_MS 1000 /* long enough to step its clock while the motor runs */

/* vmsim as VM01: one slot, every run drops, its wall clock offset_ms off; SIGUSR2 steps it
 * by step_ms. */
static pid_t start_vmsim(struct clk *c, long long offset_ms, long long step_ms)
{
    const char *bin = getenv("VMSIM");
    char url[64], offset[32], step[32], motor[16];
    pid_t pid;

    if (bin == NULL)
        return -1;
    snprintf(url, sizeof(url), "mqtt://127.0.0.1:%u", (unsigned)c->f->h.broker.port);
    snprintf(offset, sizeof(offset), "%lld", offset_ms);
    snprintf(step, sizeof(step), "%lld", step_ms);
    snprintf(motor, sizeof(motor), "%d", SIM_MOTOR_MS);
    pid = fork();
    if (pid == 0) {
        FILE *log = freopen(c->sim_log, "a", stdout);

        if (log == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(126);
        setenv("MQTT_BROKER_URL", url, 1);
        execl(bin, bin, "--id", "VM01", "--slots", "1", "--stock", "10", "--motor-ms", motor,
              "--drop-prob", "1", "--state-dir", c->sim_state, "--clock-offset-ms", offset,
              "--clock-step-ms", step, "--drop-log", c->drops, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The fixture with payments and vmsim as VM01, its clock sim_offset_ms off (SIGUSR2 steps it
 * by sim_step_ms); with the shim, vendd's clock starts server_offset_ms off. */
static int machine_fixture(void **state, bool shim, long long server_offset_ms,
                           long long sim_offset_ms, long long sim_step_ms)
{
    static const struct harness_slot slots[] = {{1, 10, 2 * SIM_MOTOR_MS}, {0, 0, 0}};
    static char preload[96], file[96];
    const char *env[] = {"DISPENSE_RESULT_GRACE_MS=3000",
                         "ORDER_RATE_PER_MIN=10000",
                         "ORDER_PENDING_MAX=100",
                         shim ? preload : NULL,
                         file,
                         NULL};
    struct clk *c = calloc(1, sizeof(*c));
    FILE *off;

    if (c == NULL)
        return -1;
    *state = c;
    if (shim) {
        if (shim_env(c, preload, sizeof(preload), file, sizeof(file)) < 0)
            return -1;
        off = fopen(c->off_path, "w");
        if (off == NULL)
            return -1;
        fprintf(off, "%lld\n", server_offset_ms);
        if (fclose(off) != 0)
            return -1;
    }
    c->f = harness_fixture_new_midtrans(env, NULL, slots, NULL);
    if (c->f == NULL)
        return -1;
    snprintf(c->sim_state, sizeof(c->sim_state), "%s/vmsim", c->f->h.dir);
    snprintf(c->sim_log, sizeof(c->sim_log), "%s/vmsim.log", c->f->h.dir);
    snprintf(c->drops, sizeof(c->drops), "%s/drops.log", c->f->h.dir);
    if (mkdir(c->sim_state, 0700) != 0)
        return -1;
    c->sim = start_vmsim(c, sim_offset_ms, sim_step_ms);
    if (c->sim <= 0)
        return -1;
    /* VM01 settles, so its commands carry expiresAt. */
    return harness_sql_wait(&c->f->h,
                            "SELECT status || ' ' || settle FROM machines WHERE id = 'VM01'",
                            "ONLINE 1", 10000);
}

/* vmsim an hour ahead; SIGUSR2 steps it two hours back. */
static int setup_machine(void **state)
{
    return machine_fixture(state, false, 0, HOUR_MS, -2 * HOUR_MS);
}

/* vendd's host an hour slow at its start; vmsim synced. */
static int setup_ntp(void **state)
{
    return machine_fixture(state, true, -HOUR_MS, 0, 0);
}

/* Lines of vmsim's log containing needle. */
static int sim_log_count(struct clk *c, const char *needle)
{
    char line[256];
    int n = 0;
    FILE *log = fopen(c->sim_log, "r");

    if (log == NULL)
        return -1;
    while (fgets(line, sizeof(line), log) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(log);
    return n;
}

/* Wait (bounded) until vmsim's log has n lines containing needle. */
static void sim_log_wait(struct clk *c, const char *needle, int n)
{
    uint64_t t0 = harness_now_ms();

    while (sim_log_count(c, needle) < n && harness_now_ms() - t0 < WAIT_MS)
        harness_sleep_ms(20);
    if (sim_log_count(c, needle) != n)
        fail_msg("vmsim's log has %d line(s) with '%s', wanted %d (%s)", sim_log_count(c, needle),
                 needle, n, c->sim_log);
}

/* A QRIS order of slot 1 paid at the fake. */
static void machine_paid_order(struct clk *c, char id[64])
{
    char path[128];

    assert_int_equal(
        harness_order_customer(&c->f->h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, 64, NULL),
        201);
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(&c->f->h, "POST", path, NULL, NULL), 200);
}

/*
 * Ahead by an hour, the machine takes every command as past its expiresAt: refused EXPIRED
 * before the motor, so the order fails and is refunded in full, the stock untouched. Stepped
 * back (an hour behind) it runs them, and a step forwards while the motor runs changes
 * nothing of the run: the unit drops and the order completes. Either way one order, one end.
 */
static void machine_clock_ahead_then_behind(void **state)
{
    struct clk *c = *state;
    struct harness *h = &c->f->h;
    char id[64], id2[64];

    machine_paid_order(c, id);
    expect_sql(h, "SELECT status || ' ' || failure_reason FROM orders WHERE id = '%s'", id,
               "REFUNDED EXPIRED", WAIT_MS + GRACE_MS);
    expect_sql(h, "SELECT status || ' ' || amount FROM refunds WHERE order_id = '%s'", id,
               "DONE 8000", 0);
    assert_int_equal(refund_calls(h, id), 1);
    assert_int_equal(sim_log_count(c, "motor on"), 0);
    expect_sql(h, "SELECT current_stock || ' ' || reserved FROM slots WHERE slot_number = %d", 1,
               "10 0", 0);

    /* Its SNTP corrects it, too far: an hour behind now. */
    assert_int_equal(kill(c->sim, SIGUSR2), 0);
    sim_log_wait(c, "wall clock stepped", 1);
    assert_int_equal(
        harness_call(h, "PUT", "/api/machines/VM01/slots/1", "{\"needs_inspection\":false}", NULL),
        200);
    machine_paid_order(c, id2);
    sim_log_wait(c, "motor on", 1);
    /* And back to an hour ahead while the motor runs. */
    assert_int_equal(kill(c->sim, SIGUSR2), 0);
    sim_log_wait(c, "wall clock stepped", 2);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id2, "COMPLETED",
               SIM_MOTOR_MS + WAIT_MS);
    expect_sql(h, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id2, "0", 0);
    expect_sql(h, "SELECT current_stock || ' ' || reserved FROM slots WHERE slot_number = %d", 1,
               "9 0", 0);
    assert_int_equal(sim_log_count(c, "motor on"), 1);
    assert_int_equal(harness_check(h, c->drops), 0);
}

/*
 * vendd started on a host whose clock was an hour slow, and NTP has corrected it since; the
 * machine's clock is true. A command's expiresAt must follow the corrected clock: one on the
 * clock vendd anchored at its start would be an hour in the past, and every synced machine
 * would refuse every order (EXPIRED, refunded) until the host rebooted, vendd's restarts
 * included. The deadline still runs on the monotonic clock.
 */
static void server_clock_corrected_machine_synced(void **state)
{
    struct clk *c = *state;
    struct harness *h = &c->f->h;
    char id[64];

    server_clock(c, 0);
    machine_paid_order(c, id);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED",
               SIM_MOTOR_MS + WAIT_MS);
    expect_sql(h, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "0", 0);
    /* And after a restart on the same boot. */
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM machines WHERE id = 'VM01'", "ONLINE", WAIT_MS), 0);
    machine_paid_order(c, id);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED",
               SIM_MOTOR_MS + WAIT_MS);
    assert_int_equal(sim_log_count(c, "motor on"), 2);
    assert_int_equal(harness_check(h, c->drops), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(server_step_mid_dispense, setup_server, teardown),
        cmocka_unit_test_setup_teardown(server_step_forward_in_refund_hold, setup_server, teardown),
        cmocka_unit_test_setup_teardown(server_step_back_in_refund_hold, setup_server, teardown),
        cmocka_unit_test_setup_teardown(server_step_back_in_refund_backoff, setup_server, teardown),
        cmocka_unit_test_setup_teardown(server_step_forward_with_pending_order, setup_server,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_step_back_with_unconfirmed_cancel, setup_server,
                                        teardown),
        cmocka_unit_test_setup_teardown(server_step_forward_with_unconfirmed_cancel, setup_server,
                                        teardown),
        cmocka_unit_test_setup_teardown(machine_clock_ahead_then_behind, setup_machine, teardown),
        cmocka_unit_test_setup_teardown(server_clock_corrected_machine_synced, setup_ntp, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
