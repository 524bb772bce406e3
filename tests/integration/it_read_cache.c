/*
 * it_read_cache.c - the kept answers of the hot reads (core/http_cache.h) are never older
 * than the data: GET /api/stock/{machine} and GET /api/orders/{id} asked again after a change
 * made through the API, by a dispense, or by another process on the database file answer the
 * new data; asked again with no change, the same bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

/* The body of a 200 GET, malloc'd. */
static char *get(struct harness *h, const char *path)
{
    struct harness_reply r = {0};
    char *body;

    assert_int_equal(harness_call(h, "GET", path, NULL, &r), 200);
    assert_non_null(r.body);
    body = strdup(r.body);
    harness_reply_free(&r);
    return body;
}

static long long stock_of_slot1(struct harness *h)
{
    struct harness_reply r = {0};
    json_t *slots, *slot;
    long long n = -1;

    assert_int_equal(harness_call(h, "GET", "/api/stock/VM01", NULL, &r), 200);
    slots = json_object_get(r.json, "slots");
    for (size_t i = 0; i < json_array_size(slots); i++) {
        slot = json_array_get(slots, i);
        if (json_integer_value(json_object_get(slot, "slot_number")) == 1)
            n = json_integer_value(json_object_get(slot, "current_stock"));
    }
    harness_reply_free(&r);
    return n;
}

static void kept_answers_follow_every_change(void **state)
{
    static const struct harness_slot slots[] = {{1, 5, 1000}, {0, 0, 0}};
    struct harness_fixture *f = harness_fixture_new(NULL, slots, "it-cache-vm01");
    struct harness *h;
    char *a, *b;

    (void)state;
    assert_non_null(f);
    h = &f->h;
    /* No change: the same bytes. */
    a = get(h, "/api/stock/VM01");
    b = get(h, "/api/stock/VM01");
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_int_equal(stock_of_slot1(h), 5);

    /* A change through the API. */
    assert_int_equal(harness_put_slot(h, 1, 7, 1000), 0);
    assert_int_equal(stock_of_slot1(h), 7);

    /* A dispense: the order's answer and the stock move. */
    assert_int_equal(harness_order(h, "cache-1", 1, 1), 0);
    a = get(h, "/api/orders/cache-1");
    assert_non_null(strstr(a, "\"PAID\""));
    assert_int_equal(harness_trigger(h, "cache-1", NULL), 200);
    assert_int_equal(harness_answer(&f->machine, "cache-1", 1, 0), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'cache-1'", "COMPLETED", 5000),
        0);
    b = get(h, "/api/orders/cache-1");
    assert_non_null(strstr(b, "\"COMPLETED\""));
    free(a);
    free(b);
    assert_int_equal(stock_of_slot1(h), 6);

    /* Another process writes the file: seen too. */
    assert_int_equal(
        harness_sql_exec(h, "UPDATE slots SET current_stock = 3 WHERE slot_number = 1"), 1);
    assert_int_equal(stock_of_slot1(h), 3);
    harness_fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kept_answers_follow_every_change),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
