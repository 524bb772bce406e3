/*
 * it_alerts.c - the alerts vendd raises by itself, black box (SPEC §8): a machine's will
 * OFFLINE raises MACHINE_OFFLINE after its grace (MACHINE_OFFLINE_ALERT_S=1) and ONLINE
 * resolves it; units dispensed down to the threshold raise LOW_STOCK and a restock resolves
 * it. Each shows in GET /api/alerts as it is.
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

#define MOTOR_MS 2000

static int setup(void **state)
{
    static const char *const env[] = {"MACHINE_OFFLINE_ALERT_S=1", NULL};
    /* capacity 10 (harness_put_slot): low at 2 or fewer (LOW_STOCK_PERCENT 20) */
    static const struct harness_slot slots[] = {{1, 4, MOTOR_MS}, {0, 0, 0}};

    *state = harness_fixture_new(env, slots, "it-alerts-machine");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

/* The kinds of the open alerts GET /api/alerts lists, comma separated, into buf. */
static void open_kinds(struct harness *h, char *buf, size_t size)
{
    struct harness_reply r = {0};
    size_t at = 0;

    buf[0] = '\0';
    assert_int_equal(harness_call(h, "GET", "/api/alerts", NULL, &r), 200);
    for (size_t i = 0; i < json_array_size(json_object_get(r.json, "items")); i++) {
        const json_t *a = json_array_get(json_object_get(r.json, "items"), i);
        const char *k = json_string_value(json_object_get(a, "kind"));

        at += (size_t)snprintf(buf + at, size - at, "%s%s", at > 0 ? "," : "", k ? k : "?");
        assert_true(at < size);
    }
    harness_reply_free(&r);
}

static void offline_after_grace_and_back(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    static const char will[] = "{\"status\":\"OFFLINE\"}";
    uint64_t t0;
    char kinds[256];

    assert_int_equal(harness_machine_online(h, &f->machine), 0);
    /* The will, as the broker publishes it for a machine gone (retained). */
    assert_int_equal(harness_mqtt_publish(&f->machine, "vm/VM01/status", will, sizeof(will) - 1),
                     0);
    t0 = harness_now_ms();
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM machines WHERE id = 'VM01'", "OFFLINE", 5000), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT count(*) FROM alerts WHERE kind = "
                                      "'MACHINE_OFFLINE' AND resolved_at IS NULL",
                                      "1", 5000),
                     0);
    /* not before the grace */
    assert_true(harness_now_ms() - t0 >= 900);
    open_kinds(h, kinds, sizeof(kinds));
    assert_string_equal(kinds, "MACHINE_OFFLINE");
    assert_int_equal(harness_log_count(h, "alert MACHINE_OFFLINE: machine 'VM01'"), 1);

    /* back ONLINE: resolved */
    assert_int_equal(harness_machine_online(h, &f->machine), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT count(*) FROM alerts WHERE kind = "
                                      "'MACHINE_OFFLINE' AND resolved_at IS NOT NULL",
                                      "1", 5000),
                     0);
    open_kinds(h, kinds, sizeof(kinds));
    assert_string_equal(kinds, "");
    assert_int_equal(harness_check(h, NULL), 0);
}

static void low_stock_by_dispense_and_restock(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char kinds[256];

    assert_int_equal(harness_machine_online(h, &f->machine), 0);
    assert_int_equal(harness_order(h, "low-1", 1, 2), 0);
    assert_int_equal(harness_trigger(h, "low-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, 1, 5000), 1);
    assert_int_equal(harness_answer(&f->machine, "low-1", 1, 1), 0);
    /* 3 left of 10: not low yet */
    assert_int_equal(
        harness_sql_wait(h, "SELECT current_stock FROM slots WHERE slot_number = 1", "3", 5000), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT count(*) FROM alerts WHERE kind = 'LOW_STOCK'", "0", 0), 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 5000), 2);
    assert_int_equal(harness_answer(&f->machine, "low-1", 1, 2), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT current_stock || ' ' || (SELECT count(*) FROM "
                                      "alerts WHERE kind = 'LOW_STOCK' AND resolved_at IS NULL) "
                                      "FROM slots WHERE slot_number = 1",
                                      "2 1", 5000),
                     0);
    open_kinds(h, kinds, sizeof(kinds));
    assert_string_equal(kinds, "LOW_STOCK");

    /* the restock resolves it */
    assert_int_equal(harness_put_slot(h, 1, 10, MOTOR_MS), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT count(*) FROM alerts WHERE kind = 'LOW_STOCK' "
                                      "AND resolved_at IS NOT NULL",
                                      "1", 5000),
                     0);
    open_kinds(h, kinds, sizeof(kinds));
    assert_string_equal(kinds, "");
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(offline_after_grace_and_back),
        cmocka_unit_test(low_stock_by_dispense_and_restock),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
