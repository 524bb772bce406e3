/*
 * it_payments_expiry.c - orders that are never paid, or paid too late (payments.h):
 *
 *   - Midtrans's own expiry notification ends a PENDING order EXPIRED and gives its stock
 *     promise back;
 *   - vendd's own expiry (ORDER_PAYMENT_TTL_S): the order EXPIRED, its promise given back,
 *     and the transaction expired at Midtrans too;
 *   - a payment that arrives after the order was cancelled or expired is refunded in full
 *     through Midtrans with refund_key "<order>-refund", and the order stays as it ended,
 *     also when Midtrans's answer to the cancel or expire was a 5xx or not JSON at all.
 *
 * ORDER_PAYMENT_TTL_S cannot go below 60 s (conf.c) and PAYMENT_CHECK_INTERVAL_S is a fixed
 * 10 s, so waiting for vendd's own expiry would take over a minute. These tests move vendd's
 * wall clock instead: with vendd stopped, the order's timestamps are set 61 s into the past
 * (as if that time had passed while it was down), and the next start's reconciliation finds
 * the order due.
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

#define WAIT_MS       5000
#define UNNOTIFIED_MS 20000 /* a check interval (10 s), the refund's hold, room */

static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", "ORDER_RATE_PER_MIN=10000",
                                  "ORDER_PENDING_MAX=1000",        "MIDTRANS_TIMEOUT_MS=2000",
                                  "ORDER_PAYMENT_TTL_S=60",        NULL};

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 10, 100}, {0, 0, 0}};

    *state = harness_fixture_new_midtrans(env, NULL, slots, "it-pay-expiry");
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

static void new_order(struct harness *h, char id[64])
{
    long http = 0;

    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, 64, NULL), 201);
    assert_true(harness_fake_notified(h, id, "pending", 1, WAIT_MS, &http) >= 1);
    assert_int_equal(http, 200);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "1", 0);
}

static long fake_post(struct harness *h, const char *action, const char *id, const char *body)
{
    char path[160];

    snprintf(path, sizeof(path), "/_fake/%s/%s", action, id);
    return harness_fake_call(h, "POST", path, body, NULL);
}

/* The fake's transaction status for id, waited for. */
static void expect_fake_status(struct harness *h, const char *id, const char *want)
{
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    char got[32] = "";

    for (;;) {
        json_t *tx = harness_fake_tx(h, id);
        const char *st = json_string_value(json_object_get(tx, "transaction_status"));

        snprintf(got, sizeof(got), "%s", st != NULL ? st : "(none)");
        json_decref(tx);
        if (strcmp(got, want) == 0)
            return;
        if (harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(20);
    }
    fail_msg("fake-midtrans: '%s' is '%s', wanted '%s'", id, got, want);
}

/* Stop vendd, move id 61 s into the past (ORDER_PAYMENT_TTL_S is 60), start vendd. */
static void let_time_pass(struct harness *h, const char *id)
{
    static const char *const cols[] = {"created_at", "expires_at", "next_check_at"};
    char sql[512], was[32], moved[32], now[32];

    assert_int_equal(harness_vendd_term(h), 0);
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        snprintf(sql, sizeof(sql), "SELECT %s FROM orders WHERE id = '%s'", cols[i], id);
        assert_int_equal(harness_sql_text(h, sql, was, sizeof(was)), 1);
        if (was[0] == '\0')
            continue; /* NULL stays NULL */
        assert_int_equal(harness_iso_add(was, -61000, moved, sizeof(moved)), 0);
        snprintf(sql, sizeof(sql),
                 "UPDATE orders SET %s = '%s' WHERE id = '%s' AND status = 'PENDING'", cols[i],
                 moved, id);
        assert_int_equal(harness_sql_exec(h, sql), 1);
    }
    harness_iso_time(now, sizeof(now), 0);
    snprintf(sql, sizeof(sql),
             "SELECT CASE WHEN expires_at < '%s' THEN 1 ELSE 0 END FROM orders WHERE id = '%s'",
             now, id);
    assert_int_equal(harness_sql_wait(h, sql, "1", 0), 0);
    assert_int_equal(harness_vendd_start(h), 0);
}

static void midtrans_expiry_ends_the_order(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char id[64];
    long http = 0;

    new_order(h, id);
    assert_int_equal(fake_post(h, "expire", id, NULL), 200);
    assert_true(harness_fake_notified(h, id, "expire", 1, WAIT_MS, &http) >= 1);
    assert_int_equal(http, 200);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "EXPIRED", 0);
    expect_sql(h, "SELECT status FROM payments WHERE order_id = '%s'", id, "EXPIRED", 0);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "0", 0);
    expect_sql(h, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "0", 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void vendd_expires_an_unpaid_order(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char id[64], path[128];

    new_order(h, id);
    let_time_pass(h, id);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "EXPIRED", WAIT_MS);
    expect_sql(h, "SELECT status FROM payments WHERE order_id = '%s'", id, "EXPIRED", 0);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "0", 0);
    /* It was asked about first, then expired at Midtrans. */
    snprintf(path, sizeof(path), "/v2/%s/status", id);
    assert_true(harness_fake_requests(h, "GET", path, NULL) >= 1);
    snprintf(path, sizeof(path), "/v2/%s/expire", id);
    expect_fake_status(h, id, "expire");
    assert_int_equal(harness_fake_requests(h, "POST", path, NULL), 1);
    expect_sql(h, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "0", 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* A paid order that had ended: refunded in full with its key, and it stays ended. */
static void expect_refunded_in(struct harness_fixture *f, const char *id, const char *status,
                               const char *reason, size_t seen, int timeout_ms)
{
    struct harness *h = &f->h;
    char key[96], path[128], want[160];
    json_t *tx, *refunds, *req = NULL;

    snprintf(key, sizeof(key), "%s-refund", id);
    snprintf(want, sizeof(want), "DONE 8000 %s %s", reason, key);
    expect_sql(h,
               "SELECT status || ' ' || amount || ' ' || reason || ' ' || refund_key FROM refunds "
               "WHERE order_id = '%s'",
               id, want, timeout_ms);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, status, 0);
    expect_sql(h, "SELECT status FROM payments WHERE order_id = '%s'", id, "SUCCESS", 0);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "0", 0);
    expect_sql(h, "SELECT count(*) FROM dispense_logs WHERE order_id = '%s'", id, "0", 0);
    /* Midtrans refunded it once, the whole amount, under the order's key. */
    snprintf(path, sizeof(path), "/v2/%s/refund", id);
    assert_int_equal(harness_fake_requests(h, "POST", path, &req), 1);
    assert_string_equal(json_string_value(json_object_get(req, "refund_key")), key);
    assert_int_equal(json_integer_value(json_object_get(req, "amount")), 8000);
    json_decref(req);
    tx = harness_fake_tx(h, id);
    assert_non_null(tx);
    assert_string_equal(json_string_value(json_object_get(tx, "transaction_status")), "refund");
    assert_int_equal(json_integer_value(json_object_get(tx, "refunded")), 8000);
    refunds = json_object_get(tx, "refunds");
    assert_int_equal(json_array_size(refunds), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(refunds, 0), "refund_key")), key);
    json_decref(tx);
    /* Nothing was dispensed for it. */
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 200), seen);
}

static void expect_refunded(struct harness_fixture *f, const char *id, const char *status,
                            const char *reason, size_t seen)
{
    expect_refunded_in(f, id, status, reason, seen, WAIT_MS);
}

/* The customer cancels; Midtrans did not hear of it (its cancel failed as failure says); then
 * they pay. */
static void cancel_fails_then_paid(struct harness_fixture *f, const char *failure)
{
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], path[128];
    long http = 0;

    new_order(h, id);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail", failure, NULL), 200);
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "CANCELLED", 0);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "0", 0);
    snprintf(path, sizeof(path), "/v2/%s/cancel", id);
    {
        uint64_t deadline = harness_now_ms() + WAIT_MS;

        while (harness_fake_requests(h, "POST", path, NULL) < 1 && harness_now_ms() < deadline)
            harness_sleep_ms(10);
    }
    expect_fake_status(h, id, "pending");

    assert_int_equal(fake_post(h, "pay", id, NULL), 200);
    assert_true(harness_fake_notified(h, id, "settlement", 1, WAIT_MS, &http) >= 1);
    assert_int_equal(http, 200);
    expect_refunded(f, id, "CANCELLED", "PAID_AFTER_CANCEL", seen);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void paid_after_cancel_is_refunded(void **state)
{
    cancel_fails_then_paid(*state, "{\"endpoint\":\"cancel\",\"mode\":\"http_error\"}");
}

/* The cancel answered by a proxy's HTML page, HTTP 200: not taken for Midtrans's word. */
static void paid_after_garbled_cancel_is_refunded(void **state)
{
    cancel_fails_then_paid(*state, "{\"endpoint\":\"cancel\",\"mode\":\"garbage\"}");
}

/* As above, but Midtrans's notification of the payment never reaches vendd (its retries all
 * failed, or vendd was down for them). The cancel was never confirmed by Midtrans, so vendd
 * cannot take the transaction for closed: it must find the payment by itself, as it does for
 * a PENDING order, and give it back once, also across a restart. */
static void paid_after_garbled_cancel_unnotified_is_refunded(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], path[128];

    new_order(h, id);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"cancel\",\"mode\":\"garbage\"}", NULL),
                     200);
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "CANCELLED", 0);
    assert_true(harness_log_wait(h, "cannot cancel order", 1, WAIT_MS) >= 1);
    expect_fake_status(h, id, "pending");
    /* What is left to do survives a restart. */
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(fake_post(h, "pay", id, "{\"notify\":false}"), 200);
    /* Within a check interval (10 s) and the refund's hold (1 s), and some room. */
    expect_refunded_in(f, id, "CANCELLED", "PAID_AFTER_CANCEL", seen, UNNOTIFIED_MS);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* Paid at Midtrans a moment before the customer cancelled here, the notification not yet in:
 * Midtrans refuses the cancel, and vendd finds the payment and gives it back. */
static void paid_before_cancel_is_refunded(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], path[128];

    new_order(h, id);
    assert_int_equal(fake_post(h, "pay", id, "{\"notify\":false}"), 200);
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
    expect_refunded(f, id, "CANCELLED", "PAID_AFTER_CANCEL", seen);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* vendd expired the order (Midtrans did not hear of it: its expire failed as failure says);
 * then it is paid. */
static void expire_fails_then_paid(struct harness_fixture *f, const char *failure)
{
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    int before = harness_log_count(h, "cannot expire order");
    char id[64];
    long http = 0;

    new_order(h, id);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail", failure, NULL), 200);
    let_time_pass(h, id);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "EXPIRED", WAIT_MS);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "0", 0);
    assert_true(harness_log_wait(h, "cannot expire order", before + 1, WAIT_MS) >= before + 1);
    expect_fake_status(h, id, "pending");

    assert_int_equal(fake_post(h, "pay", id, NULL), 200);
    assert_true(harness_fake_notified(h, id, "settlement", 1, WAIT_MS, &http) >= 1);
    assert_int_equal(http, 200);
    expect_refunded(f, id, "EXPIRED", "PAID_AFTER_EXPIRY", seen);
}

static void paid_after_expiry_is_refunded(void **state)
{
    struct harness_fixture *f = *state;

    expire_fails_then_paid(f, "{\"endpoint\":\"expire\",\"mode\":\"http_error\"}");
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

static void paid_after_garbled_expiry_is_refunded(void **state)
{
    struct harness_fixture *f = *state;

    expire_fails_then_paid(f, "{\"endpoint\":\"expire\",\"mode\":\"garbage\"}");
    assert_int_equal(harness_vendd_term(&f->h), 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(midtrans_expiry_ends_the_order),
        cmocka_unit_test(vendd_expires_an_unpaid_order),
        cmocka_unit_test(paid_after_cancel_is_refunded),
        cmocka_unit_test(paid_after_garbled_cancel_is_refunded),
        cmocka_unit_test(paid_after_garbled_cancel_unnotified_is_refunded),
        cmocka_unit_test(paid_before_cancel_is_refunded),
        cmocka_unit_test(paid_after_expiry_is_refunded),
        cmocka_unit_test(paid_after_garbled_expiry_is_refunded),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
