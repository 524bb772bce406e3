/*
 * it_payments_gateway.c - Midtrans failing or slow while a customer orders (payments.h: no
 * PENDING order is left behind), and the one event loop serving everyone else meanwhile.
 *
 *   - Midtrans down (5xx, garbage, a refusal, the process gone): 502, the order CANCELLED
 *     and its stock promise released;
 *   - Midtrans slow (an answer held past MIDTRANS_TIMEOUT_MS): 504 after the timeout, the
 *     transaction cancelled at Midtrans too; and while vendd waits, /health, a manual order,
 *     its trigger and the machine's result over MQTT are all served, each within a bound
 *     measured here.
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

#define WAIT_MS      5000
#define TIMEOUT_MS   2000 /* MIDTRANS_TIMEOUT_MS */
#define HELD_MS      6000 /* the fake holds its answer this long: far past the timeout */
#define SERVE_MAX_MS 800  /* any other request while vendd waits for Midtrans */
#define SLACK_MS     1500

static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", "ORDER_RATE_PER_MIN=10000",
                                  "ORDER_PENDING_MAX=1000", "MIDTRANS_TIMEOUT_MS=2000", NULL};

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 10, 100}, {2, 10, 100}, {0, 0, 0}};

    *state = harness_fixture_new_midtrans(env, NULL, slots, "it-pay-gateway");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void expect_sql(struct harness *h, const char *sql, const char *want, int timeout_ms)
{
    if (harness_sql_wait(h, sql, want, timeout_ms) < 0)
        fail_msg("%s: wanted '%s' (log: %s)", sql, want, h->log_path);
}

static void arm(struct harness *h, const char *failure)
{
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail", failure, NULL), 200);
}

/* The newest order's id and status. */
static void newest_order(struct harness *h, char *id, size_t size)
{
    assert_int_equal(
        harness_sql_text(h, "SELECT id FROM orders ORDER BY created_at DESC, id DESC LIMIT 1", id,
                         size),
        1);
}

/* One refused creation: 502 (or want), the order CANCELLED, nothing promised or pending. */
static void expect_refused(struct harness *h, const char *method, long want, const char *code)
{
    struct harness_reply r;
    long long before = 0;
    char id[64], sql[256];

    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM orders", &before), 1);
    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", method, NULL, 0, &r), want);
    assert_string_equal(harness_reply_str(&r, "error.code"), code);
    harness_reply_free(&r);
    expect_sql(h, "SELECT count(*) FROM orders WHERE status = 'PENDING'", "0", 0);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = 1", "0", 0);
    /* The attempt is on record, cancelled, with its payment FAILED. */
    snprintf(sql, sizeof(sql), "SELECT count(*) - %lld FROM orders", before);
    expect_sql(h, sql, "1", 0);
    newest_order(h, id, sizeof(id));
    snprintf(sql, sizeof(sql),
             "SELECT o.status || ' ' || p.status FROM orders o JOIN payments p ON "
             "p.order_id = o.id WHERE o.id = '%s'",
             id);
    expect_sql(h, sql, "CANCELLED FAILED", 0);
}

static void midtrans_down_is_502(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r;

    /* A snap order works when Midtrans does. */
    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "snap", NULL, 0, &r), 201);
    assert_non_null(harness_reply_str(&r, "redirect_url"));
    assert_non_null(harness_reply_str(&r, "snap_token"));
    harness_reply_free(&r);
    assert_int_equal(harness_call(h, "POST", "/api/orders/x/cancel", NULL, NULL), 404);
    {
        char id[64], path[128];

        newest_order(h, id, sizeof(id));
        snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
        assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
    }

    arm(h, "{\"endpoint\":\"charge\",\"mode\":\"http_error\",\"http_status\":503}");
    expect_refused(h, "qris", 502, "PAYMENT_GATEWAY");
    arm(h, "{\"endpoint\":\"snap\",\"mode\":\"http_error\",\"http_status\":500}");
    expect_refused(h, "snap", 502, "PAYMENT_GATEWAY");
    arm(h, "{\"endpoint\":\"charge\",\"mode\":\"garbage\"}");
    expect_refused(h, "qris", 502, "PAYMENT_GATEWAY");
    arm(h, "{\"endpoint\":\"charge\",\"mode\":\"refuse\",\"status_code\":\"400\","
           "\"status_message\":\"refused by the test\"}");
    expect_refused(h, "qris", 502, "PAYMENT_GATEWAY");
    assert_true(harness_vendd_alive(h));
    assert_int_equal(harness_check(h, NULL), 0);
}

struct slow_order {
    struct harness *h;
    long status;
    char code[64];
    uint64_t started, answered;
};

static void *slow_order_thread(void *arg)
{
    struct slow_order *s = arg;
    struct harness_reply r;
    const char *code;

    s->started = harness_now_ms();
    s->status = harness_order_customer(s->h, "[{\"slot\":1,\"quantity\":1}]", "qris", NULL, 0, &r);
    __atomic_store_n(&s->answered, harness_now_ms(), __ATOMIC_SEQ_CST);
    code = harness_reply_str(&r, "error.code");
    snprintf(s->code, sizeof(s->code), "%s", code != NULL ? code : "");
    harness_reply_free(&r);
    return NULL;
}

static uint64_t timed_call(struct harness *h, const char *method, const char *path,
                           const char *body, long want)
{
    uint64_t t0 = harness_now_ms(), took;
    long st = harness_call(h, method, path, body, NULL);

    took = harness_now_ms() - t0;
    if (st != want)
        fail_msg("%s %s: HTTP %ld, wanted %ld", method, path, st, want);
    if (took > SERVE_MAX_MS)
        fail_msg("%s %s took %llu ms while vendd waited for Midtrans (bound %d ms)", method, path,
                 (unsigned long long)took, SERVE_MAX_MS);
    return took;
}

static void midtrans_slow_is_504_and_the_loop_serves(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct slow_order s = {.h = h};
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char failure[160], id[64], sql[256];
    uint64_t t_health, t_order, t_trigger, t0, t_result;
    pthread_t th;
    json_t *tx;
    int unit = 0, slot = 0;

    snprintf(failure, sizeof(failure),
             "{\"endpoint\":\"charge\",\"mode\":\"timeout\",\"delay_ms\":%d}", HELD_MS);
    arm(h, failure);
    assert_int_equal(pthread_create(&th, NULL, slow_order_thread, &s), 0);
    /* Until the charge is at the fake, vendd is not waiting yet. */
    {
        uint64_t deadline = harness_now_ms() + WAIT_MS;

        while (harness_fake_requests(h, "POST", "/v2/charge", NULL) < 1 &&
               harness_now_ms() < deadline)
            harness_sleep_ms(5);
    }

    /* Meanwhile: the loop answers HTTP, dispenses a manual order and takes its result. */
    t_health = timed_call(h, "GET", "/health", NULL, 200);
    t_order = timed_call(h, "POST", "/api/orders",
                         "{\"id\":\"it-meanwhile\",\"slot\":2,\"payment_method\":\"manual\"}", 201);
    t_trigger =
        timed_call(h, "POST", "/api/dispense/trigger", "{\"order_id\":\"it-meanwhile\"}", 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, SERVE_MAX_MS), seen + 1);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), id, sizeof(id),
                                           &slot, &unit),
                     0);
    assert_string_equal(id, "it-meanwhile");
    t0 = harness_now_ms();
    assert_int_equal(harness_answer(&f->machine, "it-meanwhile", 2, unit), 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = 'it-meanwhile'", "COMPLETED", SERVE_MAX_MS);
    t_result = harness_now_ms() - t0;
    /* All of it before the customer's order was answered. */
    if (__atomic_load_n(&s.answered, __ATOMIC_SEQ_CST) != 0)
        fail_msg("the slow order was answered before the other requests were done");
    print_message("while vendd waited: /health %llu ms, order %llu ms, trigger %llu ms, "
                  "result to COMPLETED %llu ms\n",
                  (unsigned long long)t_health, (unsigned long long)t_order,
                  (unsigned long long)t_trigger, (unsigned long long)t_result);

    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(s.status, 504);
    assert_string_equal(s.code, "PAYMENT_GATEWAY_TIMEOUT");
    if (s.answered - s.started + 50 < TIMEOUT_MS || s.answered - s.started > TIMEOUT_MS + SLACK_MS)
        fail_msg("504 after %llu ms, MIDTRANS_TIMEOUT_MS is %d",
                 (unsigned long long)(s.answered - s.started), TIMEOUT_MS);
    expect_sql(h, "SELECT count(*) FROM orders WHERE status = 'PENDING'", "0", 0);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = 1", "0", 0);
    assert_int_equal(harness_sql_text(h,
                                      "SELECT id FROM orders WHERE origin = 'customer' ORDER BY "
                                      "created_at DESC, id DESC LIMIT 1",
                                      id, sizeof(id)),
                     1);
    snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", id);
    expect_sql(h, sql, "CANCELLED", 0);
    /* The charge did happen at Midtrans (the answer was only late): vendd cancels it there. */
    {
        uint64_t deadline = harness_now_ms() + WAIT_MS;
        const char *st = NULL;

        do {
            tx = harness_fake_tx(h, id);
            st = json_string_value(json_object_get(tx, "transaction_status"));
            if (st != NULL && strcmp(st, "cancel") == 0)
                break;
            json_decref(tx);
            tx = NULL;
            harness_sleep_ms(20);
        } while (harness_now_ms() < deadline);
        if (tx == NULL)
            fail_msg("the late transaction of '%s' was not cancelled at Midtrans", id);
        json_decref(tx);
    }
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 200), seen + 1);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void midtrans_gone_is_502(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    assert_int_equal(harness_fake_stop(h), 0);
    expect_refused(h, "qris", 502, "PAYMENT_GATEWAY");
    expect_refused(h, "snap", 502, "PAYMENT_GATEWAY");
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(midtrans_down_is_502),
        cmocka_unit_test(midtrans_slow_is_504_and_the_loop_serves),
        cmocka_unit_test(midtrans_gone_is_502),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
