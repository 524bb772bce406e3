/*
 * it_bad_http.c - bad input on the routes (SPEC §5): malformed JSON 400, wrong types 422,
 * oversize 413, not JSON 415, unknown order 404, a control character (%00 too) in the path
 * 400, trigger of a non-PAID order 409 with the current status in the body. Every error has
 * the {"error":{"code","message"}} shape, and none changes the database.
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

#define OVERSIZE (64 * 1024 + 1) /* one byte over HTTP_BODY_MAX_DEFAULT */

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 8, 2150}, {0, 0, 0}};
    struct harness_fixture *f = harness_fixture_new(NULL, slots, "it-bad-http");

    *state = f;
    return f == NULL || harness_order(&f->h, "paid-1", 1, 1) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

/* Send, expect status and error code, and that nothing in the database moved. */
static void expect_error(struct harness *h, const char *method, const char *path, const char *ctype,
                         const char *body, size_t len, long status, const char *code)
{
    struct harness_reply r;
    char *before = harness_db_dump(h), *after;
    long got;

    assert_non_null(before);
    got = harness_http(h, method, path, ctype, body, len, &r);
    if (got != status)
        fail_msg("%s %s: HTTP %ld, expected %ld: %s", method, path, got, status,
                 r.body ? r.body : "");
    if (harness_reply_str(&r, "error.code") == NULL ||
        harness_reply_str(&r, "error.message") == NULL)
        fail_msg("%s %s: no {\"error\":{\"code\",\"message\"}} in %s", method, path,
                 r.body ? r.body : "");
    if (code != NULL)
        assert_string_equal(harness_reply_str(&r, "error.code"), code);
    harness_reply_free(&r);
    after = harness_db_dump(h);
    assert_non_null(after);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void json_expect(struct harness *h, const char *method, const char *path, const char *body,
                        long status, const char *code)
{
    expect_error(h, method, path, NULL, body, strlen(body), status, code);
}

static void malformed_json_is_400(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    json_expect(h, "POST", "/api/orders", "{\"id\":\"x-1\",\"slot\":1,", 400, NULL);
    json_expect(h, "POST", "/api/dispense/trigger", "{order_id: paid-1}", 400, NULL);
    json_expect(h, "POST", "/api/dispense/trigger", "[\"paid-1\"]", 400, NULL);
}

static void wrong_types_are_422(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    json_expect(h, "POST", "/api/orders",
                "{\"id\":\"x-1\",\"slot\":\"1\",\"payment_method\":\"manual\"}", 422,
                "INVALID_FIELD");
    json_expect(h, "POST", "/api/orders",
                "{\"id\":\"x-1\",\"slot\":1,\"quantity\":1.5,\"payment_method\":\"manual\"}", 422,
                "INVALID_FIELD");
    json_expect(h, "POST", "/api/dispense/trigger", "{\"order_id\":123}", 422, "INVALID_FIELD");
    json_expect(h, "POST", "/api/dispense/trigger", "{}", 422, "INVALID_FIELD");
    json_expect(h, "PUT", "/api/machines/VM01/slots/1",
                "{\"product_name\":\"Coca Cola\",\"price\":\"8000\",\"capacity\":10,"
                "\"current_stock\":8,\"motor_duration_ms\":2150}",
                422, "INVALID_FIELD");
    /* A typo is never a silent success: unknown fields are named and refused. */
    json_expect(h, "POST", "/api/dispense/trigger", "{\"order_id\":\"paid-1\",\"force\":true}", 422,
                "INVALID_FIELD");
    json_expect(h, "PUT", "/api/machines/VM01/slots/1", "{\"stock\":5}", 422, "INVALID_FIELD");
    json_expect(h, "POST", "/api/machines", "{\"id\":\"VM09\",\"nmae\":\"x\"}", 422,
                "INVALID_FIELD");
}

/* A control character in a text field is refused naming the field: it would end up in the
 * dashboard, in CSV exports and in log lines. */
static void control_characters_in_fields_are_422(void **state)
{
    static const struct {
        const char *method, *path, *body, *field;
    } cases[] = {
        {"PUT", "/api/machines/VM01/slots/2",
         "{\"product_name\":\"Coca\\u0007Cola\",\"price\":8000,\"capacity\":10,"
         "\"current_stock\":8,\"motor_duration_ms\":2150}",
         "'product_name'"},
        {"PUT", "/api/machines/VM01/slots/2",
         "{\"product_name\":\"Coca\\nCola\",\"price\":8000,\"capacity\":10,"
         "\"current_stock\":8,\"motor_duration_ms\":2150}",
         "'product_name'"},
        {"PUT", "/api/machines/VM01/slots/2",
         "{\"product_name\":\"Coca\\u007fCola\",\"price\":8000,\"capacity\":10,"
         "\"current_stock\":8,\"motor_duration_ms\":2150}",
         "'product_name'"},
        {"POST", "/api/machines", "{\"id\":\"VM09\",\"name\":\"tab\\there\"}", "'name'"},
        {"POST", "/api/machines", "{\"id\":\"VM09\",\"location\":\"lobby\\u0085\"}", "'location'"},
        {"POST", "/api/orders", "{\"slot\":1,\"payment_method\":\"man\\u001bual\"}",
         "'payment_method'"},
    };
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_expect(h, cases[i].method, cases[i].path, cases[i].body, 422, "INVALID_FIELD");
        harness_call(h, cases[i].method, cases[i].path, cases[i].body, &r);
        if (harness_reply_str(&r, "error.message") == NULL ||
            strstr(harness_reply_str(&r, "error.message"), cases[i].field) == NULL)
            fail_msg("%s %s: the error does not name %s: %s", cases[i].method, cases[i].path,
                     cases[i].field, r.body ? r.body : "");
        harness_reply_free(&r);
    }
}

static void oversize_is_413(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char *big = malloc(OVERSIZE);
    static const char head[] = "{\"order_id\":\"paid-1\",\"pad\":\"";

    assert_non_null(big);
    memset(big, 'a', OVERSIZE);
    memcpy(big, head, sizeof(head) - 1);
    memcpy(big + OVERSIZE - 2, "\"}", 2);
    expect_error(h, "POST", "/api/dispense/trigger", NULL, big, OVERSIZE, 413, NULL);
    free(big);
    /* Still PAID: the trigger inside the oversize body was not acted on. */
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'paid-1'", "PAID", 0), 0);
}

static void not_json_is_415(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    static const char body[] = "{\"order_id\":\"paid-1\"}";

    expect_error(h, "POST", "/api/dispense/trigger", "text/plain", body, strlen(body), 415, NULL);
    expect_error(h, "POST", "/api/dispense/trigger", "application/x-www-form-urlencoded",
                 "order_id=paid-1", 15, 415, NULL);
}

static void unknown_order_is_404(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    expect_error(h, "GET", "/api/orders/nope-1", NULL, NULL, 0, 404, "NOT_FOUND");
    expect_error(h, "GET", "/api/dispense/status/nope-1", NULL, NULL, 0, 404, "NOT_FOUND");
    json_expect(h, "POST", "/api/dispense/trigger", "{\"order_id\":\"nope-1\"}", 404, "NOT_FOUND");
}

/* A %00 must not cut the path: paid-1%00x is not order paid-1. No control characters. */
static void control_characters_in_path_are_400(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    expect_error(h, "GET", "/api/orders/paid-1%00x", NULL, NULL, 0, 400, "BAD_PATH");
    expect_error(h, "GET", "/api/dispense/status/paid-1%00", NULL, NULL, 0, 400, "BAD_PATH");
    expect_error(h, "GET", "/api/machines/VM01%0A", NULL, NULL, 0, 400, "BAD_PATH");
    json_expect(h, "POST", "/api/dispense/trigger%00", "{\"order_id\":\"paid-1\"}", 400,
                "BAD_PATH");
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'paid-1'", "PAID", 0), 0);
}

/* 409 with the order's current status in error.status. */
static void expect_409(struct harness *h, const char *order_id, const char *status)
{
    struct harness_reply r;

    assert_int_equal(harness_trigger(h, order_id, &r), 409);
    assert_non_null(harness_reply_str(&r, "error.status"));
    assert_string_equal(harness_reply_str(&r, "error.status"), status);
    assert_non_null(strstr(harness_reply_str(&r, "error.message"), status));
    harness_reply_free(&r);
}

static void trigger_of_non_paid_is_409(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    assert_int_equal(harness_trigger(h, "paid-1", NULL), 200);
    expect_409(h, "paid-1", "DISPENSING");
    assert_int_equal(harness_answer(&f->machine, "paid-1", 1, 0), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'paid-1'", "COMPLETED", 5000), 0);
    expect_409(h, "paid-1", "COMPLETED");
    assert_int_equal(harness_vendd_term(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(malformed_json_is_400),
        cmocka_unit_test(wrong_types_are_422),
        cmocka_unit_test(control_characters_in_fields_are_422),
        cmocka_unit_test(oversize_is_413),
        cmocka_unit_test(not_json_is_415),
        cmocka_unit_test(unknown_order_is_404),
        cmocka_unit_test(control_characters_in_path_are_400),
        cmocka_unit_test(trigger_of_non_paid_is_409),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
