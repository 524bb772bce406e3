/*
 * it_dispatch_ttl.c - a unit QUEUED behind another dispense must go out within
 * DISPENSE_DISPATCH_TTL_S after the dispense ahead of it ends (SPEC §4 rule 3). Found in
 * review: queued units had no limit at all.
 *
 * Order q-a is in flight, q-b is triggered behind it (DISPENSING, unit QUEUED). The broker
 * dies. q-a fails at its deadline; q-b just sits in DISPENSING with no deadline for as
 * long as the broker is away (the trigger API answers 409 "not PAID", so the operator
 * cannot do anything), and when the broker comes back its command goes out - however
 * long after the trigger.
 * Expected: after DISPENSE_DISPATCH_TTL_S (1 s here) without a way to send it, q-b is no
 * longer waiting for the broker in DISPENSING (FAILED MACHINE_UNREACHABLE, or back to PAID
 * for the operator), and its command is never published late.
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

#define MOTOR_MS 1000

static int setup(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", "DISPENSE_DISPATCH_TTL_S=1",
                                      NULL};
    static const struct harness_slot slots[] = {{1, 5, MOTOR_MS}, {0, 0, 0}};

    *state = harness_fixture_new(env, slots, NULL);
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void queued_unit_does_not_wait_forever_for_the_broker(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r;
    char st[64];

    assert_int_equal(harness_order(h, "q-a", 1, 1), 0);
    assert_int_equal(harness_order(h, "q-b", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "q-a", NULL), 200);
    assert_int_equal(harness_trigger(h, "q-b", &r), 200);
    assert_true(json_is_false(json_object_get(r.json, "command_sent")));
    harness_reply_free(&r);

    assert_int_equal(test_broker_kill(&h->broker), 0);
    assert_true(harness_log_wait(h, "MQTT connection to broker lost", 1, 5000) >= 1);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'q-a'", "FAILED", 5000), 0);
    harness_sleep_ms(2500); /* well past DISPENSE_DISPATCH_TTL_S */

    assert_int_equal(
        harness_sql_text(h,
                         "SELECT o.status || ' ' || l.status || ' ' || "
                         "COALESCE(l.deadline_at, 'no-deadline') FROM orders o "
                         "JOIN dispense_logs l ON l.order_id = o.id WHERE o.id = 'q-b'",
                         st, sizeof(st)),
        1);
    /* Not sent within DISPENSE_DISPATCH_TTL_S after q-a's deadline: failed and refunded. */
    assert_string_equal(st, "FAILED FAILED no-deadline");
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT failure_reason || ' ' || (SELECT status || ' ' || "
                                      "amount FROM refunds WHERE order_id = 'q-b') FROM orders "
                                      "WHERE id = 'q-b'",
                                      /* a manual order: its refund waits for a person */
                                      "MACHINE_UNREACHABLE OPERATOR 8000", 5000),
                     0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT error_message FROM dispense_logs "
                                      "WHERE order_id = 'q-b'",
                                      "MACHINE_UNREACHABLE", 0),
                     0);

    /* The broker comes back: q-b's command must not go out this late. */
    assert_int_equal(test_broker_restart(&h->broker), 0);
    assert_true(harness_log_wait(h, "MQTT connected to broker", 2, 15000) >= 2);
    harness_sleep_ms(500);
    assert_int_equal(
        harness_sql_text(h,
                         "SELECT o.status || ' ' || l.status FROM orders o "
                         "JOIN dispense_logs l ON l.order_id = o.id WHERE o.id = 'q-b'",
                         st, sizeof(st)),
        1);
    assert_string_equal(st, "FAILED FAILED");
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT count(*) FROM dispense_logs WHERE order_id = 'q-b' "
                                      "AND command_sent_at IS NOT NULL",
                                      "0", 0),
                     0);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queued_unit_does_not_wait_forever_for_the_broker),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
