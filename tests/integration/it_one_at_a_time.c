/*
 * it_one_at_a_time.c - one dispense at a time per machine (SPEC §4 rule 10, §3 "unit"):
 * a manual order of quantity 2 sends unit 1's command only; unit 2's command (with
 * "unit":2) goes out when unit 1's result has arrived; after both results the order is
 * COMPLETED and the stock is down by 2 with one stock_logs row per unit.
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

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 8, 2150}, {0, 0, 0}};

    *state = harness_fixture_new(NULL, slots, "it-one");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void quantity_two_goes_one_unit_at_a_time(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    long long stock;

    assert_int_equal(harness_order(h, "two-1", 1, 2), 0);
    assert_int_equal(harness_trigger(h, "two-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, 1, 5000), 1);
    assert_string_equal(harness_mqtt_payload(&f->machine, 0),
                        "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"two-1\",\"timeoutMs\":2150,"
                        "\"unit\":1}");
    /* Unit 2 waits for unit 1. */
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 700), 1);
    assert_int_equal(
        harness_sql_wait(h,
                         "SELECT string_agg(status, ',') FROM (SELECT status "
                         "FROM dispense_logs WHERE order_id = 'two-1' ORDER BY unit) q",
                         "SENT,QUEUED", 0),
        0);

    assert_int_equal(harness_answer(&f->machine, "two-1", 1, 1), 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 5000), 2);
    assert_string_equal(harness_mqtt_payload(&f->machine, 1),
                        "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"two-1\",\"timeoutMs\":2150,"
                        "\"unit\":2}");
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'two-1'", "DISPENSING", 0), 0);

    assert_int_equal(harness_answer(&f->machine, "two-1", 1, 2), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'two-1'", "COMPLETED", 5000), 0);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1", &stock), 1);
    assert_int_equal(stock, 6);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT string_agg(q, ',') FROM (SELECT unit || ':' || "
                                      "quantity_before || '->' || quantity_after AS q FROM "
                                      "stock_logs WHERE change_type = 'DISPENSE' ORDER BY unit) q",
                                      "1:8->7,2:7->6", 0),
                     0);
    assert_int_equal(harness_mqtt_wait(&f->machine, 3, 500), 2);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quantity_two_goes_one_unit_at_a_time),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
