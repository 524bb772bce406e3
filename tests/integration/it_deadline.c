/*
 * it_deadline.c - the NO_RESULT deadline and the late result (SPEC §4 rules 3 and 6).
 * DISPENSE_RESULT_GRACE_MS=1000 and motor_duration_ms 100: a command nobody answers fails
 * its order with NO_RESULT within timeout + grace (+ slack) and queues a refund; a success
 * result that comes after that completes the order, cancels the refund and takes the unit
 * off the stock.
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

#define MOTOR_MS 100
#define GRACE_MS 1000
#define SLACK_MS 1500 /* scheduling, sanitizers, a loaded CI machine */

static int setup(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", NULL};
    static const struct harness_slot slots[] = {{1, 5, MOTOR_MS}, {2, 5, MOTOR_MS}, {0, 0, 0}};

    *state = harness_fixture_new(env, slots, "it-deadline");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void no_result_fails_then_late_result_completes(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char reason[64];
    long long stock;
    uint64_t sent, failed;

    assert_int_equal(harness_order(h, "late-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "late-1", NULL), 200);
    sent = harness_now_ms();
    assert_int_equal(harness_mqtt_wait(&f->machine, 1, 5000), 1);

    /* Nobody answers: FAILED / NO_RESULT, not before the deadline and not long after. */
    assert_int_equal(harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'late-1'", "FAILED",
                                      MOTOR_MS + GRACE_MS + SLACK_MS),
                     0);
    failed = harness_now_ms();
    if (failed - sent + 50 < MOTOR_MS + GRACE_MS)
        fail_msg("order failed after %llu ms, before its deadline of %d ms",
                 (unsigned long long)(failed - sent), MOTOR_MS + GRACE_MS);
    assert_int_equal(harness_sql_text(h, "SELECT failure_reason FROM orders WHERE id = 'late-1'",
                                      reason, sizeof(reason)),
                     1);
    assert_string_equal(reason, "NO_RESULT");
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status FROM dispense_logs WHERE order_id = 'late-1'",
                                      "NO_RESULT", 0),
                     0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || amount FROM refunds "
                                      "WHERE order_id = 'late-1'",
                                      "QUEUED 8000", 0),
                     0);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1", &stock), 1);
    assert_int_equal(stock, 5);

    /* The machine did drop it, and says so late. */
    assert_int_equal(harness_answer(&f->machine, "late-1", 1, 0), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'late-1'", "COMPLETED", 5000), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM refunds WHERE order_id = 'late-1'", "CANCELLED", 0),
        0);
    assert_int_equal(harness_sql_wait(h, "SELECT count(*) FROM refunds", "1", 0), 0);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1", &stock), 1);
    assert_int_equal(stock, 4);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT quantity_before || '->' || quantity_after "
                                      "FROM stock_logs WHERE change_type = 'DISPENSE'",
                                      "5->4", 0),
                     0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT late_result FROM dispense_logs WHERE order_id = 'late-1'", "1",
                         0),
        0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT dispensed_at IS NOT NULL FROM orders "
                                      "WHERE id = 'late-1'",
                                      "1", 0),
                     0);
    /* One command in all. */
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 300), 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/*
 * SPEC §4 rule 4: COMPLETED means success && dropDetected. A motor cycle without a drop
 * fails with NO_DROP; a drop the machine does not call a success fails too, with an alert
 * that the count may be one too high. Both flag the slot; neither touches the stock.
 */
static void failed_results_flag_the_slot(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen;

    assert_int_equal(harness_vendd_start(h), 0); /* the case before stopped it */
    seen = harness_mqtt_wait(&f->machine, 0, 0);
    assert_int_equal(harness_order(h, "nodrop-1", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "nodrop-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 5000), seen + 1);
    assert_int_equal(harness_answer_ex(&f->machine, "nodrop-1", 2, 0, true, false, NULL), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || failure_reason FROM orders "
                                      "WHERE id = 'nodrop-1'",
                                      "FAILED NO_DROP", 5000),
                     0);

    assert_int_equal(harness_order(h, "jam-1", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "jam-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 5000), seen + 2);
    assert_int_equal(harness_answer_ex(&f->machine, "jam-1", 2, 0, false, true, "JAMMED"), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || failure_reason FROM orders "
                                      "WHERE id = 'jam-1'",
                                      "FAILED JAMMED", 5000),
                     0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT current_stock || ' ' || needs_inspection FROM slots "
                                      "WHERE slot_number = 2",
                                      "5 1", 0),
                     0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT string_agg(kind || ':' || order_id, ',') FROM "
                                      "(SELECT kind, order_id FROM alerts WHERE order_id IN "
                                      "('nodrop-1', 'jam-1') ORDER BY id) q",
                                      "DISPENSE_FAILED:nodrop-1,DROP_WITHOUT_SUCCESS:jam-1,"
                                      "DISPENSE_FAILED:jam-1",
                                      0),
                     0);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_result_fails_then_late_result_completes),
        cmocka_unit_test(failed_results_flag_the_slot),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
