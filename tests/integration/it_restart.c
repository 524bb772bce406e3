/*
 * it_restart.c - restarts of vendd (SPEC §4 rules 1 and 3, §8).
 *
 * 1. Trigger, SIGKILL vendd before any result, start it again: the unit's deadline is
 *    resumed from the database and fires (FAILED / NO_RESULT, refund queued), and no
 *    second command is ever published for it.
 * 2. Trigger, SIGTERM vendd (clean exit 0), the machine's result arrives while vendd is
 *    down (the broker queues it in vendd's persistent session), start vendd: the result is
 *    applied and the order is COMPLETED, again with one command in all.
 * 3. The same past the unit's deadline; 4. the same with vendd back on another HTTP port
 *    (the session's id, MQTT_CLIENT_ID, does not depend on it); 5. MQTT_CLIENT_ID is used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define MOTOR1_MS 2000  /* deadline 3 s: passes after the restart, not before it */
#define MOTOR2_MS 10000 /* deadline 11 s: never reached in part 2 */
#define GRACE_MS  1000
#define SLACK_MS  2000

static int setup(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", NULL};
    static const struct harness_slot slots[] = {{1, 5, MOTOR1_MS}, {2, 5, MOTOR2_MS}, {0, 0, 0}};

    *state = harness_fixture_new(env, slots, "it-restart");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void deadline_survives_sigkill(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    uint64_t sent, restarted, failed;

    assert_int_equal(harness_order(h, "kill-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "kill-1", NULL), 200);
    sent = harness_now_ms();
    assert_int_equal(harness_mqtt_wait(&f->machine, 1, 5000), 1);
    harness_vendd_kill(h);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'kill-1'", "DISPENSING", 0), 0);

    assert_int_equal(harness_vendd_start(h), 0);
    restarted = harness_now_ms();
    if (restarted - sent >= MOTOR1_MS + GRACE_MS)
        print_message("note: restart took until past the deadline; resume fails it at start\n");
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || failure_reason FROM orders "
                                      "WHERE id = 'kill-1'",
                                      "FAILED NO_RESULT", MOTOR1_MS + GRACE_MS + SLACK_MS),
                     0);
    failed = harness_now_ms();
    if (failed - sent + 50 < MOTOR1_MS + GRACE_MS)
        fail_msg("failed after %llu ms, before the deadline", (unsigned long long)(failed - sent));
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM refunds WHERE order_id = 'kill-1'", "QUEUED", 0),
        0);
    /* The unit was SENT before the crash: it must not go out again. */
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 1000), 1);
}

static void result_queued_while_down_is_applied(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    long long stock;

    assert_int_equal(harness_order(h, "term-1", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "term-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 5000), 2);
    assert_non_null(strstr(harness_mqtt_payload(&f->machine, 1), "\"orderId\":\"term-1\""));
    assert_int_equal(harness_vendd_term(h), 0);

    assert_int_equal(harness_answer(&f->machine, "term-1", 2, 0), 0);
    harness_sleep_ms(200);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'term-1'", "DISPENSING", 0), 0);

    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'term-1'", "COMPLETED", 5000), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || late_result FROM dispense_logs "
                                      "WHERE order_id = 'term-1'",
                                      "SUCCEEDED 0", 0),
                     0);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 2", &stock), 1);
    assert_int_equal(stock, 4);
    assert_int_equal(harness_mqtt_wait(&f->machine, 3, 1000), 2);
    assert_int_equal(harness_vendd_term(h), 0);
}

/*
 * vendd is down past the unit's deadline while the machine's result waits in vendd's broker
 * session. On restart the result must be applied as it is, not after a NO_RESULT failure,
 * an alert and a refund: the first deadline sweep waits one grace period for it.
 */
static void result_held_past_deadline_is_applied_first(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);

    assert_int_equal(harness_vendd_start(h), 0); /* the case before stopped it */
    assert_int_equal(harness_order(h, "held-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "held-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 5000), seen + 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_answer(&f->machine, "held-1", 1, 0), 0);
    harness_sleep_ms(MOTOR1_MS + GRACE_MS + 500); /* well past the unit's deadline */

    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'held-1'", "COMPLETED", 5000), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || late_result FROM dispense_logs "
                                      "WHERE order_id = 'held-1'",
                                      "SUCCEEDED 0", 0),
                     0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT (SELECT count(*) FROM refunds WHERE order_id = "
                                      "'held-1') + (SELECT count(*) FROM alerts WHERE order_id = "
                                      "'held-1')",
                                      "0", 0),
                     0);
    assert_int_equal(harness_vendd_term(h), 0);
}

/*
 * The broker keys vendd's session on MQTT_CLIENT_ID alone (SPEC §2): vendd restarted on
 * another HTTP port still finds the result the machine published while it was down.
 * Found in review: the id was "vendd-<host>-<PORT>", so a new port meant a new, empty session.
 */
static void session_survives_a_port_change(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);

    assert_int_equal(harness_vendd_start(h), 0); /* the case before stopped it */
    assert_int_equal(harness_order(h, "port-1", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "port-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 5000), seen + 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_answer(&f->machine, "port-1", 2, 0), 0);

    assert_int_equal(harness_new_http_port(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'port-1'", "COMPLETED", 5000), 0);
    /* Every start so far connected as the default id. */
    assert_int_equal(harness_broker_log_count(h, " as vendd ("), h->starts);
    assert_int_equal(harness_vendd_term(h), 0);
}

/* An installation that shares its broker names its own session. */
static void client_id_is_configurable(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    assert_int_equal(harness_env_set(h, "MQTT_CLIENT_ID=it-restart-vendd"), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(harness_broker_log_count(h, " as it-restart-vendd ("), 1);
    assert_int_equal(harness_vendd_term(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deadline_survives_sigkill),
        cmocka_unit_test(result_queued_while_down_is_applied),
        cmocka_unit_test(result_held_past_deadline_is_applied_first),
        cmocka_unit_test(session_survives_a_port_change),
        cmocka_unit_test(client_id_is_configurable),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
