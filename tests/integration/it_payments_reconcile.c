/*
 * it_payments_reconcile.c - a settlement whose notification was lost (payments.h): vendd asks
 * Midtrans about a PENDING order every PAYMENT_CHECK_INTERVAL_S (10 s, fixed), finds it paid,
 * and dispenses it exactly once, as the notification would have; the notification that comes
 * after all changes nothing.
 *
 * This test waits for that real interval once (about 10 s).
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

#define WAIT_MS     5000
#define INTERVAL_MS 10000 /* PAYMENT_CHECK_INTERVAL_S */
#define SLACK_MS    5000

static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", "MIDTRANS_TIMEOUT_MS=2000",
                                  NULL};

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 5, 100}, {0, 0, 0}};

    *state = harness_fixture_new_midtrans(env, NULL, slots, "it-pay-reconcile");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
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

static void lost_settlement_is_found(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], gone[64], got[64], path[160];
    uint64_t created, found;
    int slot = 0, unit = 0;
    long http = 0;

    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, sizeof(id), NULL),
        201);
    created = harness_now_ms();
    assert_int_equal(harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", gone,
                                            sizeof(gone), NULL),
                     201);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "2", 0);
    /* Paid, and Midtrans's notification never arrives; the other expired there, unheard. */
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(h, "POST", path, "{\"notify\":false}", NULL), 200);
    snprintf(path, sizeof(path), "/_fake/expire/%s", gone);
    assert_int_equal(harness_fake_call(h, "POST", path, "{\"notify\":false}", NULL), 200);

    if (harness_mqtt_wait(&f->machine, seen + 1, INTERVAL_MS + SLACK_MS) < seen + 1)
        fail_msg("the paid order '%s' was not found within %d ms (log: %s)", id,
                 INTERVAL_MS + SLACK_MS, h->log_path);
    found = harness_now_ms();
    print_message("found paid after %llu ms\n", (unsigned long long)(found - created));
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), got,
                                           sizeof(got), &slot, &unit),
                     0);
    assert_string_equal(got, id);
    snprintf(path, sizeof(path), "/v2/%s/status", id);
    assert_true(harness_fake_requests(h, "GET", path, NULL) >= 1);
    expect_sql(h,
               "SELECT outcome || ' ' || transaction_status FROM payment_events WHERE order_id = "
               "'%s' AND transaction_status = 'settlement'",
               id, "PAID settlement", 0);
    expect_sql(h, "SELECT status FROM payments WHERE order_id = '%s'", id, "SUCCESS", 0);
    /* The same sweep asked about the other one: EXPIRED, its promise given back. */
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", gone, "EXPIRED", WAIT_MS);
    expect_sql(h, "SELECT status FROM payments WHERE order_id = '%s'", gone, "EXPIRED", 0);

    assert_int_equal(harness_answer(&f->machine, id, slot, unit), 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED", WAIT_MS);
    expect_sql(h, "SELECT current_stock || ' ' || reserved FROM slots WHERE slot_number = %s", "1",
               "4 0", 0);
    expect_sql(h, "SELECT count(*) FROM stock_logs WHERE order_id = '%s'", id, "1", 0);

    /* The notification arrives after all: a replay. */
    snprintf(path, sizeof(path), "/_fake/notify/%s", id);
    assert_int_equal(harness_fake_call(h, "POST", path, NULL, NULL), 200);
    assert_int_equal(harness_fake_notified(h, id, "settlement", 1, WAIT_MS, &http), 1);
    assert_int_equal(http, 200);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED", 0);
    expect_sql(h,
               "SELECT string_agg(outcome, ',') FROM (SELECT outcome FROM payment_events WHERE "
               "order_id = '%s' AND transaction_status = 'settlement' ORDER BY id) q",
               id, "PAID,REPLAY", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 300), seen + 1);
    assert_int_equal(harness_vendd_term(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lost_settlement_is_found),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
