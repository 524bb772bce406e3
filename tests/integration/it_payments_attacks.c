/*
 * it_payments_attacks.c - attacks on the payment path found by an independent review (SPEC §4
 * rules 1-3, 7-10), against the real vendd, the real fake Midtrans, a real broker and VM01:
 * shutdown with requests and refunds in flight, odd gross_amount forms, a fraud challenge,
 * a payment after a cancel Midtrans refused, refund answers lost, and Midtrans's refund
 * notification for a refund vendd re-queued.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define WAIT_MS 5000

static const char *const env[] = {
    "DISPENSE_RESULT_GRACE_MS=1000", "ORDER_RATE_PER_MIN=10000", "ORDER_PENDING_MAX=1000",
    "MIDTRANS_TIMEOUT_MS=2000",      "REFUND_RETRY_S=1",         NULL};

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 50, 100}, {0, 0, 0}};

    *state = harness_fixture_new_midtrans(env, NULL, slots, "it-pay-attacks");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

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

static long fake_post(struct harness *h, const char *action, const char *id, const char *body)
{
    char path[160];

    snprintf(path, sizeof(path), "/_fake/%s/%s", action, id);
    return harness_fake_call(h, "POST", path, body, NULL);
}

static void new_order(struct harness *h, char id[64])
{
    long http = 0;

    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, 64, NULL), 201);
    assert_true(harness_fake_notified(h, id, "pending", 1, WAIT_MS, &http) >= 1);
}

/* A signed notification with a hand-made body (gross as given). */
static long notify_raw(struct harness *h, const char *id, const char *status, const char *code,
                       const char *gross, const char *fraud, struct harness_reply *r)
{
    char sig[129], body[1024];

    harness_midtrans_sign(id, code, gross, HARNESS_FAKE_KEY, sig);
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"transaction_status\":\"%s\",\"status_code\":\"%s\","
             "\"gross_amount\":\"%s\",\"signature_key\":\"%s\",\"payment_type\":\"qris\","
             "\"transaction_id\":\"tx-%s\"%s%s%s}",
             id, status, code, gross, sig, id, fraud ? ",\"fraud_status\":\"" : "",
             fraud ? fraud : "", fraud ? "\"" : "");
    return harness_http(h, "POST", "/api/payments/webhook", NULL, body, strlen(body), r);
}

/* ---- 1. SIGTERM while a customer's creation is suspended on Midtrans -------------------- */

struct order_thread {
    struct harness *h;
    long status;
    char body[512];
    uint64_t ms;
};

static void *order_thread(void *arg)
{
    struct order_thread *t = arg;
    struct harness_reply r = {0};
    const char *b = "{\"machine_id\":\"VM01\",\"items\":[{\"slot\":1,\"quantity\":1}],"
                    "\"payment_method\":\"qris\"}";
    uint64_t t0 = harness_now_ms();

    t->status = harness_http(t->h, "POST", "/api/orders", NULL, b, strlen(b), &r);
    t->ms = harness_now_ms() - t0;
    snprintf(t->body, sizeof(t->body), "%s", r.body != NULL ? r.body : "(none)");
    harness_reply_free(&r);
    return NULL;
}

static void shutdown_with_creation_in_flight(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct order_thread t = {.h = h};
    pthread_t th;
    int before = harness_fake_requests(h, "POST", "/v2/charge", NULL), rc;

    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"charge\",\"mode\":\"timeout\","
                                       "\"delay_ms\":10000,\"drop\":true}",
                                       NULL),
                     200);
    assert_int_equal(pthread_create(&th, NULL, order_thread, &t), 0);
    for (int i = 0; i < 200 && harness_fake_requests(h, "POST", "/v2/charge", NULL) <= before; i++)
        harness_sleep_ms(10);
    harness_sleep_ms(100);
    rc = harness_vendd_term(h);
    pthread_join(th, NULL);
    print_message("shutdown: vendd exit %d; customer got HTTP %ld after %llu ms: %s\n", rc,
                  t.status, (unsigned long long)t.ms, t.body);
    harness_fake_call(h, "DELETE", "/_fake/fail", NULL, NULL);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(harness_machine_online(h, &f->machine), 0);
    assert_int_equal(rc, 0);
    assert_int_equal(t.status, 503);
    /* Its customer never got a QR: the order ends at the restart, its stock given back. */
    expect_sql(h,
               "SELECT count(*) FROM orders WHERE status = 'PENDING' AND payment_qr IS NULL "
               "AND payment_token IS NULL AND %s",
               "origin = 'customer'", "0", WAIT_MS);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* ---- 2. gross_amount formats, correctly signed ------------------------------------------ */

static void gross_amount_formats(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    /* Midtrans writes "8000.00"; a plain "8000" is whole rupiah too. Anything else is refused
     * (400) even when signed: it is not how Midtrans writes an amount. */
    static const struct {
        const char *gross;
        long want;
    } cases[] = {
        {"8000", 200},  {"8000.0", 200}, {"8000.00", 200}, {"8000.000", 400}, {"08000", 400},
        {"8e3", 400},   {" 8000", 400},  {"8000.", 400},   {"8000.001", 400}, {"+8000", 400},
        {"8000 ", 400}, {"0x1F40", 400}, {"-8000", 400},   {"8,000.00", 400},
    };
    char id[64];

    new_order(h, id);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct harness_reply r = {0};
        long st = notify_raw(h, id, "pending", "201", cases[i].gross, NULL, &r);

        if (st != cases[i].want)
            fail_msg("gross_amount '%s': HTTP %ld, want %ld (%s)", cases[i].gross, st,
                     cases[i].want, r.body ? r.body : "");
        harness_reply_free(&r);
    }
    /* status_code "0200" is not "200": not paid. */
    {
        struct harness_reply r = {0};

        assert_int_equal(notify_raw(h, id, "settlement", "0200", "8000.00", NULL, &r), 200);
        harness_reply_free(&r);
    }
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "PENDING", 0);
    assert_int_equal(harness_call(h, "POST", "/api/orders/x/cancel", NULL, NULL), 404);
    {
        char path[128];

        snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
        assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
    }
    assert_int_equal(harness_check(h, NULL), 0);
}

/* ---- 3. capture with fraud challenge, then accept --------------------------------------- */

static void challenge_then_accept(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    struct harness_reply r = {0};
    char id[64], got[64];
    int slot = 0, unit = 0;

    new_order(h, id);
    assert_int_equal(notify_raw(h, id, "capture", "200", "8000.00", "challenge", &r), 200);
    print_message("capture/challenge -> %s\n", r.body);
    harness_reply_free(&r);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "PENDING", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 300), seen);
    assert_int_equal(notify_raw(h, id, "capture", "200", "8000.00", "accept", &r), 200);
    print_message("capture/accept -> %s\n", r.body);
    harness_reply_free(&r);
    assert_true(harness_mqtt_wait(&f->machine, seen + 1, WAIT_MS) >= seen + 1);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), got,
                                           sizeof(got), &slot, &unit),
                     0);
    assert_string_equal(got, id);
    assert_int_equal(harness_answer(&f->machine, id, slot, unit), 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED", WAIT_MS);
    /* A second accept is a replay: no second command. */
    assert_int_equal(notify_raw(h, id, "settlement", "200", "8000.00", "accept", &r), 200);
    harness_reply_free(&r);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 500), seen + 1);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* ---- 4. cancel fails at Midtrans, the customer pays anyway ------------------------------ */

static void paid_after_cancel_refunded_once(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], path[128];
    long http = 0;
    json_t *tx;

    new_order(h, id);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"cancel\",\"mode\":\"http_error\","
                                       "\"http_status\":503}",
                                       NULL),
                     200);
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "0", 0);
    harness_sleep_ms(300);
    assert_int_equal(fake_post(h, "pay", id, NULL), 200);
    assert_true(harness_fake_notified(h, id, "settlement", 1, WAIT_MS, &http) >= 1);
    /* The order stays CANCELLED and nothing is dispensed; the refund goes out in full. */
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "CANCELLED", 0);
    expect_sql(h, "SELECT status || ' ' || amount FROM refunds WHERE order_id = '%s'", id,
               "DONE 8000", WAIT_MS);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 300), seen);
    tx = harness_fake_tx(h, id);
    {
        char *dump = json_dumps(tx, JSON_COMPACT);

        print_message("fake after refund: %s\n", dump);
        free(dump);
    }
    json_decref(tx);
    /* Replay of the settlement: still one refund. */
    assert_int_equal(fake_post(h, "notify", id, "{\"transaction_status\":\"settlement\"}"), 200);
    harness_sleep_ms(500);
    expect_sql(h, "SELECT count(*) FROM refunds WHERE order_id = '%s'", id, "1", 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* ---- 5. a refund whose answer is lost; Midtrans's refund notification comes late ------- */

static void refund_answer_lost(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], got[64];
    int slot = 0, unit = 0;
    json_t *tx;

    new_order(h, id);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/config", "{\"auto_notify\":false}", NULL),
                     200);
    assert_int_equal(fake_post(h, "pay", id, "{\"notify\":true}"), 200);
    assert_true(harness_mqtt_wait(&f->machine, seen + 1, WAIT_MS) >= seen + 1);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), got,
                                           sizeof(got), &slot, &unit),
                     0);
    /* Every refund call takes effect but its answer is dropped. */
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"refund\",\"mode\":\"timeout\","
                                       "\"delay_ms\":3000,\"drop\":true,\"count\":1000}",
                                       NULL),
                     200);
    assert_int_equal(harness_answer_ex(&f->machine, id, slot, unit, false, false, "DOOR_OPEN"), 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "FAILED", WAIT_MS);
    expect_sql(h, "SELECT status || ' ' || attempts FROM refunds WHERE order_id = '%s'", id,
               "QUEUED 1", 8000);
    /* Midtrans paid it: its refund notification now arrives. */
    assert_int_equal(fake_post(h, "notify", id, NULL), 200);
    harness_sleep_ms(500);
    {
        char out[64] = "";

        harness_sql_text(h, "SELECT outcome FROM payment_events ORDER BY id DESC LIMIT 1", out,
                         sizeof(out));
        print_message("refund notification while QUEUED (sent once) -> %s\n", out);
        harness_sql_text(h,
                         "SELECT status || ' ' || attempts FROM refunds ORDER BY id DESC LIMIT 1",
                         out, sizeof(out));
        print_message("refund row now: %s\n", out);
    }
    harness_fake_call(h, "DELETE", "/_fake/fail", NULL, NULL);
    expect_sql(h, "SELECT status FROM refunds WHERE order_id = '%s'", id, "DONE", 8000);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "REFUNDED", WAIT_MS);
    tx = harness_fake_tx(h, id);
    assert_int_equal(json_array_size(json_object_get(tx, "refunds")), 1);
    json_decref(tx);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/config", "{\"auto_notify\":true}", NULL),
                     200);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* ---- 7. Midtrans's refund notification is ignored unless the refund is SENT right now --- */

static void refund_notification_ends_a_requeued_refund(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], got[64], path[128], rid[32] = "";
    int slot = 0, unit = 0;
    json_t *tx;

    new_order(h, id);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/config", "{\"auto_notify\":false}", NULL),
                     200);
    assert_int_equal(fake_post(h, "pay", id, "{\"notify\":true}"), 200);
    assert_true(harness_mqtt_wait(&f->machine, seen + 1, WAIT_MS) >= seen + 1);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), got,
                                           sizeof(got), &slot, &unit),
                     0);
    /* The first refund call takes effect at Midtrans; its answer never comes. */
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"refund\",\"mode\":\"timeout\","
                                       "\"delay_ms\":3000,\"drop\":true}",
                                       NULL),
                     200);
    assert_int_equal(harness_answer_ex(&f->machine, id, slot, unit, false, false, "DOOR_OPEN"), 0);
    expect_sql(h, "SELECT status || ' ' || attempts FROM refunds WHERE order_id = '%s'", id,
               "QUEUED 1", 8000);
    /* Midtrans tells vendd the refund went through (signed refund notification, 200): that
     * ends it, whatever the retry would have said. */
    assert_int_equal(fake_post(h, "notify", id, NULL), 200);
    expect_sql(h, "SELECT status FROM refunds WHERE order_id = '%s'", id, "DONE", WAIT_MS);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "REFUNDED", 0);
    harness_sql_text(h, "SELECT id FROM refunds ORDER BY id DESC LIMIT 1", rid, sizeof(rid));
    snprintf(path, sizeof(path), "/api/refunds/%s/done", rid);
    /* Nothing left for a person to pay. */
    assert_int_equal(harness_call(h, "POST", path, "{\"note\":\"cash\"}", NULL), 409);
    harness_fake_call(h, "DELETE", "/_fake/fail", NULL, NULL);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/config", "{\"auto_notify\":true}", NULL),
                     200);
    tx = harness_fake_tx(h, id);
    assert_int_equal(json_array_size(json_object_get(tx, "refunds")), 1);
    json_decref(tx);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* ---- 8. SIGTERM with several creations and a refund in flight (run under ASan) ---------- */

static void shutdown_with_calls_in_flight(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct order_thread t[4];
    pthread_t th[4];
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], got[64];
    int slot = 0, unit = 0, rc, before;

    new_order(h, id);
    /* Midtrans's own refund notification would end the refund before the shutdown. */
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/config", "{\"auto_notify\":false}", NULL),
                     200);
    assert_int_equal(fake_post(h, "pay", id, "{\"notify\":true}"), 200);
    assert_true(harness_mqtt_wait(&f->machine, seen + 1, WAIT_MS) >= seen + 1);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), got,
                                           sizeof(got), &slot, &unit),
                     0);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"refund\",\"mode\":\"timeout\","
                                       "\"delay_ms\":20000,\"count\":100}",
                                       NULL),
                     200);
    assert_int_equal(harness_fake_call(h, "POST", "/_fake/fail",
                                       "{\"endpoint\":\"charge\",\"mode\":\"timeout\","
                                       "\"delay_ms\":20000,\"count\":10}",
                                       NULL),
                     200);
    assert_int_equal(harness_answer_ex(&f->machine, id, slot, unit, false, false, "DOOR_OPEN"), 0);
    expect_sql(h, "SELECT status FROM refunds WHERE order_id = '%s'", id, "SENT", 8000);
    before = harness_fake_requests(h, "POST", "/v2/charge", NULL);
    for (int i = 0; i < 4; i++) {
        t[i] = (struct order_thread){.h = h};
        assert_int_equal(pthread_create(&th[i], NULL, order_thread, &t[i]), 0);
    }
    for (int i = 0; i < 200 && harness_fake_requests(h, "POST", "/v2/charge", NULL) < before + 4;
         i++)
        harness_sleep_ms(10);
    rc = harness_vendd_term(h);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        print_message("customer %d: HTTP %ld after %llu ms\n", i, t[i].status,
                      (unsigned long long)t[i].ms);
    }
    print_message("vendd exit status %d\n", rc);
    harness_fake_call(h, "POST", "/_fake/config", "{\"auto_notify\":true}", NULL);
    harness_fake_call(h, "DELETE", "/_fake/fail", NULL, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(harness_vendd_start(h), 0);
    /* The refund that was SENT goes out again with the same key, paid once. */
    expect_sql(h, "SELECT status FROM refunds WHERE order_id = '%s'", id, "DONE", 8000);
    {
        json_t *tx = harness_fake_tx(h, id);

        assert_int_equal(json_integer_value(json_object_get(tx, "refunded")), 8000);
        json_decref(tx);
    }
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gross_amount_formats),
        cmocka_unit_test(challenge_then_accept),
        cmocka_unit_test(paid_after_cancel_refunded_once),
        cmocka_unit_test(refund_answer_lost),
        cmocka_unit_test(shutdown_with_calls_in_flight),
        cmocka_unit_test(refund_notification_ends_a_requeued_refund),
        cmocka_unit_test(shutdown_with_creation_in_flight),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
