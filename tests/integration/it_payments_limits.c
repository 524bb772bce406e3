/*
 * it_payments_limits.c - who may order and pay, and how much (SPEC §2 customer-facing
 * limits, §4 rule 10, §7):
 *
 *   - ORDER_PENDING_MAX PENDING orders per machine (429 TOO_MANY_PENDING) and
 *     ORDER_RATE_PER_MIN orders per client address (429 TOO_MANY_REQUESTS);
 *   - an OFFLINE machine takes no customer order (409), the operator's manual order still;
 *   - with API_TOKEN set a customer orders without a token, a manual order needs it; the
 *     customer cancels with the order's status_key;
 *   - without MIDTRANS_SERVER_KEY: customer orders are 503; an unsigned notification is taken
 *     from loopback in development mode only, and refused (403) once API_TOKEN is set.
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

#define WAIT_MS    5000
#define TOKEN      "it-operator-token-0123456789abcdef"
#define ITEM       "[{\"slot\":1,\"quantity\":1}]"
#define REFUSAL_MS 1000 /* a refusal needs no Midtrans: it is answered at once */

static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", "ORDER_PENDING_MAX=2",
                                  "ORDER_RATE_PER_MIN=4", "MIDTRANS_TIMEOUT_MS=2000", NULL};

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 20, 100}, {0, 0, 0}};

    *state = harness_fixture_new_midtrans(env, NULL, slots, "it-pay-limits");
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

/* vendd again with these settings (each "KEY=VALUE"; "KEY=" unsets). */
static void restart(struct harness *h, const char *const *settings)
{
    assert_int_equal(harness_vendd_term(h), 0);
    for (size_t i = 0; settings[i] != NULL; i++)
        assert_int_equal(harness_env_set(h, settings[i]), 0);
    assert_int_equal(harness_vendd_start(h), 0);
}

/*
 * VENDD BUG (found by these tests): a customer order refused before Midtrans is called (no
 * free stock, too many PENDING, machine OFFLINE, no MIDTRANS_SERVER_KEY) is answered only when
 * some other request makes the HTTP server run again, up to 60 s later: create_customer()
 * (api_orders.c) defers the request and answers it with http_deferred_error() from inside the
 * handler, and deferred_answer()'s wake-up timer is replaced by mhd_run() (http.c) right after.
 * Such refusals are sent with harness_call_wake(), which wakes vendd so that their content is
 * still checked; the case then fails on the stall.
 */
static void expect_no_stall(struct harness *h)
{
    int stalled = h->stalled;

    h->stalled = 0; /* counted per case */
    if (stalled > 0)
        fail_msg("VENDD BUG: %d refused request(s) (last: %s) got no answer until another request "
                 "woke vendd's HTTP server (http_deferred_error() inside the handler)",
                 stalled, h->stalled_what);
}

static void order_refused(struct harness *h, long status, const char *code)
{
    struct harness_reply r;

    assert_int_equal(harness_call_wake(h, "POST", "/api/orders",
                                       "{\"machine_id\":\"VM01\",\"items\":" ITEM
                                       ",\"payment_method\":\"qris\"}",
                                       &r, REFUSAL_MS),
                     status);
    assert_string_equal(harness_reply_str(&r, "error.code"), code);
    harness_reply_free(&r);
}

static void cancel(struct harness *h, const char *id)
{
    char path[128];

    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
}

static void pending_and_rate_limits(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char a[64], b[64], c[64];

    assert_int_equal(harness_order_customer(h, ITEM, "qris", a, sizeof(a), NULL), 201);
    assert_int_equal(harness_order_customer(h, ITEM, "qris", b, sizeof(b), NULL), 201);
    /* Two PENDING on VM01: the third waits until one is paid, expires or is cancelled. */
    order_refused(h, 429, "TOO_MANY_PENDING");
    expect_sql(h,
               "SELECT count(*) || ' ' || (SELECT reserved FROM slots WHERE slot_number = 1) "
               "FROM orders WHERE status = '%s'",
               "PENDING", "2 2", 0);
    cancel(h, a);
    assert_int_equal(harness_order_customer(h, ITEM, "qris", c, sizeof(c), NULL), 201);
    /* The fifth order from this address within the minute (ORDER_RATE_PER_MIN=4). */
    cancel(h, b);
    order_refused(h, 429, "TOO_MANY_REQUESTS");
    expect_sql(h, "SELECT count(*) FROM orders WHERE origin = '%s'", "customer", "3", 0);
    cancel(h, c);
    expect_sql(h, "SELECT reserved FROM slots WHERE slot_number = %s", "1", "0", 0);
    expect_no_stall(h);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void offline_machine_takes_no_customer_order(void **state)
{
    static const char offline[] = "{\"status\":\"OFFLINE\"}";
    static const char *const roomy[] = {"ORDER_PENDING_MAX=1000", "ORDER_RATE_PER_MIN=10000", NULL};
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r;

    restart(h, roomy);
    assert_int_equal(mosquitto_publish_v5(f->machine.m, NULL, "vm/VM01/status",
                                          (int)strlen(offline), offline, 1, true, NULL),
                     MOSQ_ERR_SUCCESS);
    expect_sql(h, "SELECT status FROM machines WHERE id = '%s'", "VM01", "OFFLINE", WAIT_MS);
    assert_int_equal(harness_call_wake(h, "POST", "/api/orders",
                                       "{\"machine_id\":\"VM01\",\"items\":" ITEM
                                       ",\"payment_method\":\"qris\"}",
                                       &r, REFUSAL_MS),
                     409);
    assert_string_equal(harness_reply_str(&r, "error.code"), "WRONG_STATE");
    assert_non_null(strstr(harness_reply_str(&r, "error.message"), "OFFLINE"));
    harness_reply_free(&r);
    expect_sql(h, "SELECT count(*) FROM orders WHERE status = '%s'", "PENDING", "0", 0);
    /* The operator's manual order does not ask for presence (the guide's own test). */
    assert_int_equal(harness_order(h, "it-manual-offline", 1, 1), 0);
    assert_int_equal(harness_machine_online(h, &f->machine), 0);
    assert_int_equal(harness_order_customer(h, ITEM, "qris", NULL, 0, NULL), 201);
    expect_no_stall(h);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void token_mode_customer_and_operator(void **state)
{
    static const char *const token[] = {"API_TOKEN=" TOKEN, NULL};
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r;
    char id[64], path[128], key[40];
    static const char manual[] = "{\"id\":\"it-manual-token\",\"slot\":1,\"payment_method\":"
                                 "\"manual\"}";

    restart(h, token);
    /* The customer needs no token. */
    assert_int_equal(harness_order_customer(h, ITEM, "qris", id, sizeof(id), &r), 201);
    snprintf(key, sizeof(key), "%s", harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    /* A manual order does. */
    assert_int_equal(harness_call(h, "POST", "/api/orders", manual, &r), 403);
    assert_string_equal(harness_reply_str(&r, "error.code"), "FORBIDDEN");
    harness_reply_free(&r);
    snprintf(h->bearer, sizeof(h->bearer), "not-the-token");
    assert_int_equal(harness_call(h, "POST", "/api/orders", manual, NULL), 403);
    snprintf(path, sizeof(path), "/api/orders/%s", id);
    assert_int_equal(harness_call(h, "GET", path, NULL, NULL), 401);
    expect_sql(h, "SELECT count(*) FROM orders WHERE id = '%s'", "it-manual-token", "0", 0);
    snprintf(h->bearer, sizeof(h->bearer), "%s", TOKEN);
    assert_int_equal(harness_call(h, "POST", "/api/orders", manual, NULL), 201);
    assert_int_equal(harness_call(h, "GET", path, NULL, &r), 200);
    assert_string_equal(harness_reply_str(&r, "status"), "PENDING");
    harness_reply_free(&r);
    h->bearer[0] = '\0';
    /* Without the token, a customer cancels with the order's key only (it_buy.c says more). */
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 404);
    snprintf(path, sizeof(path), "/api/orders/%s/cancel?key=%s", id, key);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void no_server_key(void **state)
{
    static const char *const dev_with_key[] = {"API_TOKEN=", NULL};
    static const char *const dev_no_key[] = {"MIDTRANS_SERVER_KEY=", NULL};
    static const char *const prod_no_key[] = {"API_TOKEN=" TOKEN, NULL};
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r;
    char p[64], q[64], *before, *after;
    long long orders = 0, reserved = 0, now = 0;
    int unit = 0, slot = 0;
    size_t seen;
    char got[64];

    restart(h, dev_with_key);
    assert_int_equal(harness_order_customer(h, ITEM, "qris", p, sizeof(p), NULL), 201);
    assert_int_equal(harness_order_customer(h, ITEM, "qris", q, sizeof(q), NULL), 201);

    assert_int_equal(
        harness_sql_int(h, "SELECT reserved FROM slots WHERE slot_number = 1", &reserved), 1);

    restart(h, dev_no_key);
    assert_int_equal(harness_log_count(h, "Midtrans at"), 4); /* only the starts with a key */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM orders", &orders), 1);
    order_refused(h, 503, "PAYMENTS_UNAVAILABLE");
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM orders", &now), 1);
    assert_int_equal(now, orders);
    assert_int_equal(harness_sql_int(h, "SELECT reserved FROM slots WHERE slot_number = 1", &now),
                     1);
    assert_int_equal(now, reserved);

    /* Development mode, loopback: an unsigned notification pays P. */
    seen = harness_mqtt_wait(&f->machine, 0, 0);
    assert_int_equal(harness_notify(h, p, "settlement", "8000.00", NULL, &r), 200);
    harness_reply_free(&r);
    if (harness_mqtt_wait(&f->machine, seen + 1, WAIT_MS) < seen + 1)
        fail_msg("no command for '%s' (log: %s)", p, h->log_path);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), got,
                                           sizeof(got), &slot, &unit),
                     0);
    assert_string_equal(got, p);
    assert_int_equal(harness_answer(&f->machine, p, 1, unit), 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", p, "COMPLETED", WAIT_MS);
    expect_sql(h,
               "SELECT signature_ok FROM payment_events WHERE order_id = '%s' AND "
               "transaction_status = 'settlement'",
               p, "0", 0);

    /* Production (API_TOKEN) without a key: nothing unsigned is believed, even from here. */
    restart(h, prod_no_key);
    before = harness_db_dump(h);
    assert_non_null(before);
    assert_int_equal(harness_notify(h, q, "settlement", "8000.00", NULL, &r), 403);
    assert_string_equal(harness_reply_str(&r, "error.code"), "FORBIDDEN");
    harness_reply_free(&r);
    assert_int_equal(harness_notify(h, q, "settlement", "8000.00", HARNESS_FAKE_KEY, NULL), 403);
    after = harness_db_dump(h);
    assert_non_null(after);
    if (strcmp(before, after) != 0) {
        harness_db_diff(before, after);
        fail_msg("a refused notification changed the database (the rows that differ are above)");
    }
    free(before);
    free(after);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", q, "PENDING", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 300), seen + 1);
    assert_int_equal(harness_vendd_term(h), 0);
    expect_no_stall(h);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pending_and_rate_limits),
        cmocka_unit_test(offline_machine_takes_no_customer_order),
        cmocka_unit_test(token_mode_customer_and_operator),
        cmocka_unit_test(no_server_key),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
