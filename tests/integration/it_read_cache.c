/*
 * it_read_cache.c - the kept answers of the hot reads (core/http_cache.h) are never older
 * than the data: GET /api/stock/{machine} and GET /api/orders/{id} asked again after a change
 * made through the API, by a dispense, or by another process on the database file answer the
 * new data; asked again with no change, the same bytes. On PostgreSQL also a transaction of
 * another connection that commits after a younger one did.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <libpq-fe.h>

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

/* Slot 1's sensor_at in the stock answer ("-" for null), into buf. */
static void sensor_at_of_slot1(struct harness *h, char *buf, size_t size)
{
    struct harness_reply r = {0};
    json_t *slots, *slot;

    snprintf(buf, size, "?");
    assert_int_equal(harness_call(h, "GET", "/api/stock/VM01", NULL, &r), 200);
    slots = json_object_get(r.json, "slots");
    for (size_t i = 0; i < json_array_size(slots); i++) {
        slot = json_array_get(slots, i);
        if (json_integer_value(json_object_get(slot, "slot_number")) == 1) {
            const char *at = json_string_value(json_object_get(slot, "sensor_at"));
            snprintf(buf, size, "%s", at != NULL ? at : "-");
        }
    }
    harness_reply_free(&r);
}

/*
 * A telemetry reading of every slot with unchanged levels writes no slot, only the machine
 * row's slots_seen_at (schema 0017): the kept stock answer moves with it, and shows the time
 * of that reading.
 */
static void kept_stock_follows_a_reading(void **state)
{
    static const struct harness_slot slots[] = {{1, 5, 1000}, {0, 0, 0}};
    static const char reading[] = "{\"slots\":[{\"id\":1,\"level\":\"HIGH\"}]}";
    struct harness_fixture *f = harness_fixture_new(NULL, slots, "it-cache-vm01");
    struct harness *h;
    char first[64], at[64], seen[64];

    (void)state;
    assert_non_null(f);
    h = &f->h;
    sensor_at_of_slot1(h, at, sizeof(at));
    assert_string_equal(at, "-");
    for (int n = 1; n <= 2; n++) {
        char want[16];

        assert_int_equal(
            harness_mqtt_publish(&f->machine, "vm/VM01/telemetry", reading, sizeof(reading) - 1),
            0);
        snprintf(want, sizeof(want), "%d", n);
        assert_int_equal(harness_sql_wait(h, "SELECT count(*) FROM telemetry", want, 5000), 0);
        if (n == 1) {
            sensor_at_of_slot1(h, first, sizeof(first)); /* kept from here */
            assert_string_not_equal(first, "-");
            nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL); /* a later time */
        }
    }
    assert_int_equal(harness_sql_text(h, "SELECT slots_seen_at FROM machines WHERE id = 'VM01'",
                                      seen, sizeof(seen)),
                     1);
    sensor_at_of_slot1(h, at, sizeof(at));
    assert_string_not_equal(at, first);
    assert_string_equal(at, seen);
    harness_fixture_free(f);
}

/* One statement on a connection of the test's own; fails the test if it fails. */
static void pg_run(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        fail_msg("'%s': %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/*
 * PostgreSQL: transaction A writes the stock, then B (a younger transaction id) commits, and
 * the stock is read and kept while A is still open; then A commits. A's commit leaves the
 * snapshot's xmax where B's put it, yet the next read must see A's write.
 */
static void older_transaction_committing_later_is_seen(void **state)
{
    static const struct harness_slot slots[] = {{1, 5, 1000}, {0, 0, 0}};
    struct harness_fixture *f;
    PGconn *a, *b;

    (void)state;
    if (getenv("VEND_TEST_DB") == NULL || strcmp(getenv("VEND_TEST_DB"), "pg") != 0)
        skip(); /* SQLite has one writer at a time: its commits come in order */
    f = harness_fixture_new(NULL, slots, "it-cache-vm02");
    assert_non_null(f);
    assert_true(harness_db_pg(&f->h));
    a = PQconnectdb(f->h.db_url);
    b = PQconnectdb(f->h.db_url);
    assert_int_equal(PQstatus(a), CONNECTION_OK);
    assert_int_equal(PQstatus(b), CONNECTION_OK);
    assert_int_equal(stock_of_slot1(&f->h), 5);

    pg_run(a, "BEGIN");
    pg_run(a, "UPDATE slots SET current_stock = 2 WHERE slot_number = 1");
    pg_run(b, "BEGIN");
    pg_run(b, "SELECT pg_current_xact_id()"); /* a younger transaction id, committed first */
    pg_run(b, "COMMIT");
    assert_int_equal(stock_of_slot1(&f->h), 5); /* A not committed: kept at this version */
    pg_run(a, "COMMIT");
    assert_int_equal(stock_of_slot1(&f->h), 2);

    PQfinish(a);
    PQfinish(b);
    harness_fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kept_answers_follow_every_change),
        cmocka_unit_test(kept_stock_follows_a_reading),
        cmocka_unit_test(older_transaction_committing_later_is_seen),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
