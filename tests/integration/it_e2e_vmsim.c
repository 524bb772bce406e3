/*
 * it_e2e_vmsim.c - end to end with the machine's own code: a real mosquitto, vendd and vmsim
 * (the firmware core on Linux) as VM01. An order dispenses from vmsim and ends COMPLETED with
 * the stock and its log right; the same command delivered twice (a QoS 1 duplicate) is
 * answered from vmsim's journal without a second motor run, and vendd counts it as a
 * duplicate without touching the stock.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
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

struct e2e {
    struct harness_fixture *f; /* vendd and the broker; no harness machine client */
    struct harness_mqtt watch; /* sees commands and results, to count them */
    pid_t sim;
    char state_dir[HARNESS_PATH_MAX + 16];
    char sim_log[HARNESS_PATH_MAX + 16];
    char drops[HARNESS_PATH_MAX + 16]; /* vmsim --drop-log, for harness_check() */
};

/* Start vmsim as VM01 on the harness's broker, its journal and log in the test's directory. */
static pid_t start_vmsim(struct e2e *e, bool crash_after_start)
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
        if (crash_after_start)
            execl(bin, bin, "--id", "VM01", "--slots", "2", "--stock", "10", "--motor-ms", "300",
                  "--drop-prob", "1", "--state-dir", e->state_dir, "--drop-log", e->drops,
                  "--crash-after-start", (char *)NULL);
        else
            execl(bin, bin, "--id", "VM01", "--slots", "2", "--stock", "10", "--motor-ms", "300",
                  "--drop-prob", "1", "--state-dir", e->state_dir, "--drop-log", e->drops,
                  (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int setup(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=2000", NULL};
    static const struct harness_slot slots[] = {{1, 5, 1000}, {0, 0, 0}};
    struct e2e *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return -1;
    e->f = harness_fixture_new(env, slots, NULL);
    if (e->f == NULL)
        goto fail;
    snprintf(e->state_dir, sizeof(e->state_dir), "%s/vmsim", e->f->h.dir);
    snprintf(e->sim_log, sizeof(e->sim_log), "%s/vmsim.log", e->f->h.dir);
    snprintf(e->drops, sizeof(e->drops), "%s/drops.log", e->f->h.dir);
    if (mkdir(e->state_dir, 0700) != 0)
        goto fail;
    if (harness_mqtt_open(&e->watch, e->f->h.broker.port, "e2e-watch", "vm/VM01/#", NULL, NULL) < 0)
        goto fail;
    e->sim = start_vmsim(e, false);
    if (e->sim <= 0)
        goto fail;
    /* VM01 is there when vendd has its retained ONLINE status. */
    if (harness_sql_wait(&e->f->h, "SELECT status FROM machines WHERE id = 'VM01'", "ONLINE",
                         10000) < 0)
        goto fail;
    *state = e;
    return 0;
fail:
    if (e->sim > 0)
        kill(e->sim, SIGKILL);
    if (e->watch.m != NULL)
        harness_mqtt_close(&e->watch);
    harness_fixture_free(e->f);
    free(e);
    return -1;
}

static int teardown(void **state)
{
    struct e2e *e = *state;
    int status = 0;

    if (e->sim > 0) {
        kill(e->sim, SIGTERM);
        waitpid(e->sim, &status, 0);
    }
    harness_mqtt_close(&e->watch);
    harness_fixture_free(e->f);
    free(e);
    return 0;
}

/* Messages seen on topic (a vm/VM01/... topic) so far. */
static size_t count_on(struct e2e *e, const char *topic)
{
    size_t n = 0, total = harness_mqtt_wait(&e->watch, 0, 0);

    pthread_mutex_lock(&e->watch.mu);
    for (size_t i = 0; i < total && i < HARNESS_MSG_MAX; i++) {
        if (e->watch.topics[i] != NULL && strcmp(e->watch.topics[i], topic) == 0)
            n++;
    }
    pthread_mutex_unlock(&e->watch.mu);
    return n;
}

static void order_dispenses_from_the_machine_and_a_duplicate_changes_nothing(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    const char *cmd = "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"e2e-1\",\"timeoutMs\":1000}";
    long long n = -1;

    assert_int_equal(harness_order(h, "e2e-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "e2e-1", NULL), 200);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'e2e-1'", "COMPLETED", 10000), 0);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1", &n), 1);
    assert_int_equal(n, 4);
    assert_int_equal(harness_sql_int(h,
                                     "SELECT count(*) FROM stock_logs WHERE order_id = 'e2e-1' "
                                     "AND change_type = 'DISPENSE'",
                                     &n),
                     1);
    assert_int_equal(n, 1);
    /* The watcher is another subscriber of the same broker: vendd may have committed the result
     * before the watcher's copy of it arrives. */
    for (int i = 0; i < 100 && count_on(e, "vm/VM01/dispense_result") < 1; i++)
        harness_sleep_ms(50);
    assert_int_equal(count_on(e, "vm/VM01/dispense_result"), 1);

    /* The broker delivers the same command again: the journal answers, the motor stays off. */
    assert_int_equal(harness_mqtt_publish(&e->watch, "vm/VM01/command", cmd, strlen(cmd)), 0);
    for (int i = 0; i < 100 && count_on(e, "vm/VM01/dispense_result") < 2; i++)
        harness_sleep_ms(50);
    assert_int_equal(count_on(e, "vm/VM01/dispense_result"), 2);
    assert_int_equal(harness_log_wait(h, "duplicate of the recorded", 1, 5000), 1);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1", &n), 1);
    assert_int_equal(n, 4);
    /* One motor run in vmsim's own account. */
    {
        char line[256];
        int runs = 0;
        FILE *log = fopen(e->sim_log, "r");

        assert_non_null(log);
        while (fgets(line, sizeof(line), log) != NULL)
            runs += strstr(line, "motor on") != NULL;
        fclose(log);
        assert_int_equal(runs, 1);
    }
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* The machine loses power mid-run and comes back: it says so (POWER_LOSS) from its journal,
 * never runs the unit again, and vendd leaves the unit to a person (the product may have
 * dropped), who settles it by hand; only then is anything refunded. */
static void machine_crash_mid_dispense_is_reported_not_rerun(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    int status = 0;

    kill(e->sim, SIGTERM);
    waitpid(e->sim, &status, 0);
    e->sim = start_vmsim(e, true);
    assert_true(e->sim > 0);
    assert_int_equal(harness_log_wait(h, "machine 'VM01' is ONLINE", 2, 10000), 2);
    assert_int_equal(harness_order(h, "e2e-crash", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "e2e-crash", NULL), 200);
    assert_int_equal(waitpid(e->sim, &status, 0), e->sim); /* vmsim dies with the motor on */
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    e->sim = start_vmsim(e, false);
    assert_true(e->sim > 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || error_message FROM dispense_logs "
                                      "WHERE order_id = 'e2e-crash'",
                                      "UNSETTLED POWER_LOSS", 10000),
                     0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'e2e-crash'", "DISPENSING", 0),
        0);
    assert_int_equal(harness_sql_wait(h, "SELECT count(*) FROM refunds", "0", 0), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT needs_inspection FROM slots WHERE slot_number = 1", "1", 0), 0);
    /* The operator counts the slot: nothing fell. The customer gets the money back. */
    {
        struct harness_reply r = {0};

        assert_int_equal(harness_call(h, "POST", "/api/dispense/settle",
                                      "{\"order_id\":\"e2e-crash\",\"dropped\":false}", &r),
                         200);
        harness_reply_free(&r);
    }
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || failure_reason FROM orders "
                                      "WHERE id = 'e2e-crash'",
                                      "FAILED SETTLED_NOT_DROPPED", 0),
                     0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT count(*) FROM refunds WHERE order_id = "
                                      "'e2e-crash'",
                                      "1", 0),
                     0);
    assert_int_equal(harness_check(h, e->drops), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            order_dispenses_from_the_machine_and_a_duplicate_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(machine_crash_mid_dispense_is_reported_not_rerun, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
