/*
 * it_payments_reconcile.c - a settlement whose notification was lost (payments.h): vendd asks
 * Midtrans about a PENDING order every PAYMENT_CHECK_INTERVAL_S (10 s, fixed), finds it paid,
 * and dispenses it exactly once, as the notification would have; the notification that comes
 * after all changes nothing.
 *
 * And a check that fails (a 5xx, or an answer that is not JSON) changes nothing: the order
 * stays PENDING until the next check finds it paid.
 *
 * The tests wait for that real interval (about 10 s) three times.
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
}

/* Status requests for id the fake has logged, waited for until there are n. */
static int status_calls(struct harness *h, const char *id, int n, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    char path[160];
    int got;

    snprintf(path, sizeof(path), "/v2/%s/status", id);
    while ((got = harness_fake_requests(h, "GET", path, NULL)) < n && harness_now_ms() < deadline)
        harness_sleep_ms(20);
    return got;
}

/* The check itself fails: Midtrans answers 503 for one order and a proxy's HTML page for the
 * other. Neither says the order was paid, so both stay PENDING with nothing sent; the next
 * check finds them paid and each dispenses once. */
static void failed_check_is_asked_again(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char ids[2][64], path[160], got[64];
    uint64_t failed;
    int slot = 0, unit = 0;

    for (int i = 0; i < 2; i++) {
        assert_int_equal(harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", ids[i],
                                                sizeof(ids[i]), NULL),
                         201);
        snprintf(path, sizeof(path), "/_fake/pay/%s", ids[i]);
        assert_int_equal(harness_fake_call(h, "POST", path, "{\"notify\":false}", NULL), 200);
    }
    /* The first status call gets the 503, the next one the garbage ("any" comes second). */
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"status\",\"mode\":\"http_error\","
                                       "\"http_status\":503}",
                                       NULL),
                     200);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"any\",\"mode\":\"garbage\"}", NULL),
                     200);
    for (int i = 0; i < 2; i++)
        assert_int_equal(status_calls(h, ids[i], 1, INTERVAL_MS + SLACK_MS), 1);
    failed = harness_now_ms();
    assert_true(harness_log_wait(h, "cannot check order", 2, WAIT_MS) >= 2);
    for (int i = 0; i < 2; i++) {
        expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", ids[i], "PENDING", 0);
        expect_sql(h,
                   "SELECT count(*) FROM payment_events WHERE order_id = '%s' AND "
                   "transaction_status = 'settlement'",
                   ids[i], "0", 0);
    }
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 0), seen);

    /* The next check: both found paid, one command each. */
    if (harness_mqtt_wait(&f->machine, seen + 2, INTERVAL_MS + SLACK_MS) < seen + 2)
        fail_msg("the paid orders were not found again (log: %s)", h->log_path);
    print_message("found paid %llu ms after the failed check\n",
                  (unsigned long long)(harness_now_ms() - failed));
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen + k), got,
                                               sizeof(got), &slot, &unit),
                         0);
        assert_int_equal(harness_answer(&f->machine, got, slot, unit), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(status_calls(h, ids[i], 2, 0), 2);
        expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", ids[i], "COMPLETED", WAIT_MS);
        expect_sql(h,
                   "SELECT count(*) || ' ' || min(outcome) FROM payment_events WHERE order_id = "
                   "'%s' AND transaction_status = 'settlement'",
                   ids[i], "1 PAID", 0);
        expect_sql(h, "SELECT count(*) FROM dispense_logs WHERE order_id = '%s'", ids[i], "1", 0);
        expect_sql(h, "SELECT count(*) FROM stock_logs WHERE order_id = '%s'", ids[i], "1", 0);
    }
    expect_sql(h, "SELECT current_stock || ' ' || reserved FROM slots WHERE slot_number = %s", "1",
               "2 0", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 3, 300), seen + 2);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lost_settlement_is_found),
        cmocka_unit_test(failed_check_is_asked_again),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
