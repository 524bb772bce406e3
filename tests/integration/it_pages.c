/*
 * it_pages.c - the pagination rule of every list route (docs/HTTP-API.md "Lists"), over real
 * HTTP against the real vendd: walking a list page by page with next_cursor shows every row
 * exactly once, in the list's order (the order a plain ORDER BY over the whole table gives,
 * ties on a timestamp included), every page but the last full and the last one's
 * next_cursor null; a bad limit, cursor or filter is 422 INVALID_FIELD naming it.
 *
 * 120 machines are created through the API; orders through the API; alerts, telemetry,
 * dispense logs and refunds are written into the file while vendd is stopped, with ties on
 * their timestamps and dispense units never sent, the cases a keyset gets wrong first.
 * vendd then stops with status 0 (under ASan: nothing leaked on any of these paths).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define MACHINES   120
#define ORDERS     23
#define IDS_MAX    16384 /* the ids of one list, joined by ',' */
#define PAGES_MAX  200   /* a walk that goes on longer loops */
#define CURSOR_MAX 512

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 100, 1500}, {0, 0, 0}};

    *state = harness_fixture_new(NULL, slots, NULL);
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void append_id(char *ids, size_t size, const json_t *id)
{
    size_t used = strlen(ids);

    if (json_is_integer(id))
        snprintf(ids + used, size - used, "%s%lld", used > 0 ? "," : "",
                 (long long)json_integer_value(id));
    else if (json_is_string(id))
        snprintf(ids + used, size - used, "%s%s", used > 0 ? "," : "", json_string_value(id));
    else
        fail_msg("an item without an id");
    if (strlen(ids) + 1 >= size)
        fail_msg("more ids than the test has room for");
}

/*
 * Walk every page of path, limit items a page, and join the "id" of each item of array into
 * ids. Fails the test on any page that breaks the rule. Returns the number of pages.
 */
static int walk(struct harness *h, const char *path, const char *array, int limit, char *ids,
                size_t size)
{
    char url[640], cursor[CURSOR_MAX] = "";
    int pages = 0;

    ids[0] = '\0';
    for (;;) {
        struct harness_reply r;
        const json_t *items, *next, *it;
        size_t i;
        long status;
        bool more;

        snprintf(url, sizeof(url), "%s%climit=%d%s%s", path, strchr(path, '?') ? '&' : '?', limit,
                 cursor[0] != '\0' ? "&cursor=" : "", cursor);
        status = harness_call(h, "GET", url, NULL, &r);
        if (status != 200)
            fail_msg("GET %s: HTTP %ld: %s", url, status, r.body ? r.body : "");
        items = json_object_get(r.json, array);
        next = json_object_get(r.json, "next_cursor");
        if (!json_is_array(items) || !(json_is_null(next) || json_is_string(next)))
            fail_msg("GET %s: no \"%s\" array or no next_cursor: %s", url, array, r.body);
        if (json_array_size(items) > (size_t)limit)
            fail_msg("GET %s: %zu items, limit %d", url, json_array_size(items), limit);
        /* Read limit + 1 rows, show limit: a page that is not the last is full. */
        if (json_is_string(next) && json_array_size(items) != (size_t)limit)
            fail_msg("GET %s: %zu items and a next_cursor", url, json_array_size(items));
        json_array_foreach(items, i, it)
        {
            append_id(ids, size, json_object_get(it, "id"));
        }
        pages++;
        more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        harness_reply_free(&r);
        if (!more)
            break;
        if (pages > PAGES_MAX)
            fail_msg("GET %s: still a next_cursor after %d pages", path, pages);
    }
    return pages;
}

/* The walk of path equals the ids sql lists (group_concat of one ordered column). */
static void expect_walk(struct harness *h, const char *path, const char *array, int limit,
                        const char *sql, int pages)
{
    static char got[IDS_MAX], want[IDS_MAX];
    int n;

    assert_int_equal(harness_sql_text(h, sql, want, sizeof(want)), 1);
    n = walk(h, path, array, limit, got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("GET %s, %d a page:\n got  %s\n want %s", path, limit, got, want);
    if (pages > 0 && n != pages)
        fail_msg("GET %s, %d a page: %d pages, want %d", path, limit, n, pages);
}

/* GET path answers 422 INVALID_FIELD with a message that names field. */
static void expect_422(struct harness *h, const char *path, const char *field)
{
    struct harness_reply r;
    char quoted[64];
    long status = harness_call(h, "GET", path, NULL, &r);
    const char *code = harness_reply_str(&r, "error.code");
    const char *msg = harness_reply_str(&r, "error.message");

    snprintf(quoted, sizeof(quoted), "'%s'", field);
    if (status != 422 || code == NULL || strcmp(code, "INVALID_FIELD") != 0 || msg == NULL ||
        strstr(msg, quoted) == NULL)
        fail_msg("GET %s: HTTP %ld %s, want 422 INVALID_FIELD naming %s", path, status,
                 r.body ? r.body : "", quoted);
    harness_reply_free(&r);
}

/* The next_cursor of the first page of path with limit 1. */
static void first_cursor(struct harness *h, const char *path, char *cursor, size_t size)
{
    struct harness_reply r;
    char url[256];
    const char *next;

    snprintf(url, sizeof(url), "%s%climit=1", path, strchr(path, '?') ? '&' : '?');
    assert_int_equal(harness_call(h, "GET", url, NULL, &r), 200);
    next = harness_reply_str(&r, "next_cursor");
    if (next == NULL)
        fail_msg("GET %s: no next_cursor on a list of more than one", url);
    snprintf(cursor, size, "%s", next);
    harness_reply_free(&r);
}

static void machines_walk(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r;
    char body[96];

    /* VM01 is there already: 121 machines, so pages of 50, 50 and 21. */
    for (int i = 1; i <= MACHINES; i++) {
        snprintf(body, sizeof(body), "{\"id\":\"M%03d\",\"name\":\"machine %d\"}", i, i);
        assert_int_equal(harness_call(h, "POST", "/api/machines", body, NULL), 201);
    }
    expect_walk(
        h, "/api/machines", "machines", 50,
        "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM machines ORDER BY id) q", 3);
    expect_walk(
        h, "/api/machines", "machines", 500,
        "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM machines ORDER BY id) q", 1);
    expect_walk(
        h, "/api/machines", "machines", 7,
        "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM machines ORDER BY id) q",
        18);

    /* No ?limit=: 50, and the same document shape as before pages ("machines"). */
    assert_int_equal(harness_call(h, "GET", "/api/machines", NULL, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "machines")), 50);
    assert_non_null(harness_reply_str(&r, "next_cursor"));
    harness_reply_free(&r);
}

static void orders_walk(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char id[32], body[160];

    assert_int_equal(harness_call(h, "PUT", "/api/machines/M002/slots/1",
                                  "{\"product_name\":\"Coca Cola\",\"price\":8000,"
                                  "\"capacity\":50,\"current_stock\":50}",
                                  NULL),
                     201);
    /* Orders made in a burst share created_at's millisecond: the id orders those. */
    for (int i = 0; i < ORDERS; i++) {
        snprintf(id, sizeof(id), "pg-o-%02d", i);
        if (i % 3 == 0) {
            snprintf(body, sizeof(body),
                     "{\"id\":\"%s\",\"machine_id\":\"M002\",\"slot\":1,"
                     "\"payment_method\":\"manual\"}",
                     id);
            assert_int_equal(harness_call(h, "POST", "/api/orders", body, NULL), 201);
        } else {
            assert_int_equal(harness_order(h, id, 1, 1), 0);
        }
    }
    expect_walk(h, "/api/orders", "items", 4,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM "
                "(SELECT id FROM orders ORDER BY created_at DESC, id DESC) q",
                6);
    expect_walk(h, "/api/orders?machine_id=M002", "items", 2,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM orders "
                "WHERE machine_id = 'M002' ORDER BY created_at DESC, id DESC) q",
                4);
    expect_walk(h, "/api/orders?status=PAID&machine_id=VM01", "items", 5,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM orders WHERE status "
                "= 'PAID' "
                "AND machine_id = 'VM01' ORDER BY created_at DESC, id DESC) q",
                3);
    expect_walk(h, "/api/orders?status=COMPLETED", "items", 5, "SELECT '' FROM orders LIMIT 1", 1);
}

/* Rows a running vendd would not make on demand, written while it is stopped. */
static void seed(struct harness *h)
{
    static const char *const sql[] = {
        /* 25 alerts over 3 timestamps (ties), of VM01, M002 and no machine; each third
         * resolved. */
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 24) "
        "INSERT INTO alerts (machine_id, kind, message, created_at, resolved_at) "
        "SELECT CASE i % 3 WHEN 0 THEN 'VM01' WHEN 1 THEN 'M002' ELSE NULL END, 'TEST', "
        "'alert ' || i, '2026-11-27T09:30:0' || (i % 3) || '.000Z', "
        "CASE WHEN i % 3 = 2 THEN '2026-11-27T10:00:00.000Z' END FROM n",
        /* 23 telemetry rows of VM01 over 4 timestamps, and 5 of M002. */
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 27) "
        "INSERT INTO telemetry (machine_id, temperature, door, data, received_at) "
        "SELECT CASE WHEN i < 23 THEN 'VM01' ELSE 'M002' END, 4.5, 'CLOSED', "
        "'{\"temperature\":4.5,\"door\":\"CLOSED\",\"n\":' || i || '}', "
        "'2026-11-27T09:3' || (i % 4) || ':00.000Z' FROM n",
        /* 17 units of one finished order of VM01: 12 sent (ties on the time), 5 never sent
         * (command_sent_at NULL), interleaved by id. */
        "INSERT INTO orders (id, machine_id, quantity, total_amount, status, origin, "
        "payment_method, created_at, updated_at) VALUES ('pg-logs', 'VM01', 17, 0, 'FAILED', "
        "'operator', 'manual', '2026-11-27T09:00:00.000Z', '2026-11-27T09:00:00.000Z')",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 17) "
        "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, slot_number, "
        "timeout_ms, status, command_sent_at, error_message, created_at) "
        "SELECT 'pg-logs', i, 'VM01', (SELECT id FROM slots WHERE machine_id = 'VM01'), 1, "
        "1500, CASE WHEN i % 3 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END, "
        "CASE WHEN i % 3 = 0 THEN NULL ELSE '2026-11-27T09:0' || (i % 4) || ':00.000Z' END, "
        "CASE WHEN i % 3 = 0 THEN 'MACHINE_UNREACHABLE' END, '2026-11-27T09:00:00.000Z' FROM n",
        /* 13 refunds nobody sends: the operator's queue, done and cancelled ones. */
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 13) "
        "INSERT INTO refunds (order_id, refund_key, amount, reason, status, created_at, "
        "updated_at) SELECT 'pg-logs', 'pg-r-' || i, 100, 'test', "
        "CASE i % 3 WHEN 0 THEN 'OPERATOR' WHEN 1 THEN 'DONE' ELSE 'CANCELLED' END, "
        "'2026-11-27T09:00:00.000Z', '2026-11-27T09:00:00.000Z' FROM n",
    };

    assert_int_equal(harness_vendd_term(h), 0);
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++)
        assert_true(harness_sql_exec(h, sql[i]) > 0);
    assert_int_equal(harness_vendd_start(h), 0);
}

static void seeded_walks(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    seed(h);
    expect_walk(h, "/api/alerts", "items", 4,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM alerts "
                "WHERE resolved_at IS NULL ORDER BY created_at DESC, id DESC) q",
                5);
    expect_walk(h, "/api/alerts?open=false", "items", 3,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM alerts "
                "WHERE resolved_at IS NOT NULL ORDER BY created_at DESC, id DESC) q",
                3);
    expect_walk(
        h, "/api/alerts?open=true&machine_id=M002", "items", 3,
        "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM alerts WHERE resolved_at IS "
        "NULL AND machine_id = 'M002' ORDER BY created_at DESC, id DESC) q",
        3);
    expect_walk(h, "/api/machines/VM01/telemetry", "items", 5,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM telemetry "
                "WHERE machine_id = 'VM01' ORDER BY received_at DESC, id DESC) q",
                5);
    /* Sent units newest command first, then the ones never sent, newest first; pages of 4
     * cross from one kind to the other inside a page. */
    expect_walk(h, "/api/dispense/logs/VM01", "logs", 4,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM dispense_logs "
                "WHERE machine_id = 'VM01' "
                "ORDER BY command_sent_at IS NULL, command_sent_at DESC, id DESC) q",
                5);
    expect_walk(h, "/api/dispense/logs/VM01", "logs", 1,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM dispense_logs "
                "WHERE machine_id = 'VM01' "
                "ORDER BY command_sent_at IS NULL, command_sent_at DESC, id DESC) q",
                17);
    expect_walk(h, "/api/refunds", "refunds", 2,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM refunds "
                "WHERE status IN ('OPERATOR', 'QUEUED') ORDER BY id DESC) q",
                2);
    expect_walk(
        h, "/api/refunds?status=all", "refunds", 5,
        "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM refunds ORDER BY id DESC) q",
        3);
    expect_walk(h, "/api/refunds?status=CANCELLED", "refunds", 2,
                "SELECT string_agg(CAST(id AS TEXT), ',') FROM (SELECT id FROM refunds "
                "WHERE status = 'CANCELLED' ORDER BY id DESC) q",
                2);
}

/* An operator resolves an alert: it leaves the open list, once; a second time is 409. */
static void alert_is_resolved_once(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_reply r = {0};
    long long id = 0, open = 0;
    char path[64], sql[128];

    assert_int_equal(harness_sql_exec(h, "INSERT INTO alerts (machine_id, kind, message, "
                                         "created_at) VALUES ('VM01', 'TEST', 'resolve me', "
                                         "'2026-11-29T00:00:00.000Z')"),
                     1);
    assert_int_equal(
        harness_sql_int(h, "SELECT max(id) FROM alerts WHERE resolved_at IS NULL", &id), 1);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM alerts WHERE resolved_at IS NULL", &open), 1);
    snprintf(path, sizeof(path), "/api/alerts/%lld/resolve", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, &r), 200);
    assert_non_null(harness_reply_str(&r, "resolved_at"));
    harness_reply_free(&r);
    snprintf(sql, sizeof(sql), "SELECT resolved_at IS NOT NULL FROM alerts WHERE id = %lld", id);
    assert_int_equal(harness_sql_wait(h, sql, "1", 0), 0);
    snprintf(sql, sizeof(sql), "%lld", open - 1);
    assert_int_equal(
        harness_sql_wait(h, "SELECT count(*) FROM alerts WHERE resolved_at IS NULL", sql, 0), 0);
    assert_int_equal(harness_call(h, "POST", path, NULL, &r), 409);
    harness_reply_free(&r);
    assert_int_equal(harness_call(h, "POST", "/api/alerts/999999/resolve", NULL, &r), 404);
    harness_reply_free(&r);
    assert_int_equal(harness_call(h, "POST", "/api/alerts/x1/resolve", NULL, &r), 404);
    harness_reply_free(&r);
}

static void bad_arguments_are_422(void **state)
{
    static const char *const lists[] = {"/api/machines",           "/api/orders",
                                        "/api/alerts?open=false",  "/api/machines/VM01/telemetry",
                                        "/api/dispense/logs/VM01", "/api/refunds?status=all"};
    static const char *const bad_limits[] = {"0", "501", "-1", "%2B5", "5x", "", "1000000000"};
    static const char *const bad_cursors[] = {"", "x", "!!!!", "%00", "bWFjaGluZXM"};
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char url[768], cursor[CURSOR_MAX], other[CURSOR_MAX];
    size_t n = sizeof(lists) / sizeof(lists[0]);
    struct harness_reply r;

    for (size_t i = 0; i < n; i++) {
        char sep = strchr(lists[i], '?') ? '&' : '?';

        for (size_t k = 0; k < sizeof(bad_limits) / sizeof(bad_limits[0]); k++) {
            snprintf(url, sizeof(url), "%s%climit=%s", lists[i], sep, bad_limits[k]);
            expect_422(h, url, "limit");
        }
        for (size_t k = 0; k < sizeof(bad_cursors) / sizeof(bad_cursors[0]); k++) {
            snprintf(url, sizeof(url), "%s%ccursor=%s", lists[i], sep, bad_cursors[k]);
            expect_422(h, url, "cursor");
        }
        /* Another list's cursor (same key shape or not), and this list's with its first
         * character changed: the name of the list it was made for. */
        first_cursor(h, lists[(i + 1) % n], other, sizeof(other));
        snprintf(url, sizeof(url), "%s%ccursor=%s", lists[i], sep, other);
        expect_422(h, url, "cursor");
        first_cursor(h, lists[i], cursor, sizeof(cursor));
        snprintf(url, sizeof(url), "%s%ccursor=%s", lists[i], sep, cursor);
        assert_int_equal(harness_call(h, "GET", url, NULL, NULL), 200);
        cursor[0] = cursor[0] == 'A' ? 'B' : 'A';
        snprintf(url, sizeof(url), "%s%ccursor=%s", lists[i], sep, cursor);
        expect_422(h, url, "cursor");
    }
    expect_422(h, "/api/orders?status=NOPE", "status");
    expect_422(h, "/api/orders?status=paid", "status");
    expect_422(h, "/api/orders?machine_id=bad.id", "machine_id");
    expect_422(h, "/api/alerts?open=yes", "open");
    expect_422(h, "/api/alerts?machine_id=", "machine_id");
    expect_422(h, "/api/refunds?status=NOPE", "status");
    /* A path's machine is a resource: unknown is 404, not an empty list. */
    assert_int_equal(harness_call(h, "GET", "/api/machines/NOPE/telemetry", NULL, &r), 404);
    assert_string_equal(harness_reply_str(&r, "error.code"), "NOT_FOUND");
    harness_reply_free(&r);
}

/* Exit status 0 after all of it: under ASan, no leak on any path above. */
static void stops_cleanly(void **state)
{
    struct harness_fixture *f = *state;

    assert_int_equal(harness_vendd_term(&f->h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(machines_walk),         cmocka_unit_test(orders_walk),
        cmocka_unit_test(seeded_walks),          cmocka_unit_test(alert_is_resolved_once),
        cmocka_unit_test(bad_arguments_are_422), cmocka_unit_test(stops_cleanly),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
