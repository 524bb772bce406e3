/*
 * test_sales.c - sales.c on a real database (SQLite, or PostgreSQL as test_sales_pg): the units
 * that dropped (a late drop too, not a failed unit) per UTC day, machine and product, at the price
 * of their order item; the day range taken whole at both ends; the row limit; the dates it accepts;
 * the query plans, which must read migration 0012's daily rollup (a row per day, machine and
 * product), never the units; and the rollup against the GROUP BY over every dropped unit it
 * replaced (the oracle below), on random histories made by the unit state machine itself, by hand,
 * and by the migration's backfill of a history written before it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db_backend.h"
#include "fixture.h"
#include "sales.h"
#include "schema.h"
#include "store.h"
#include "unit_status.h"
#include "vend/err.h"

/* Machines VM01..VM03, products Cola and Teh; slots 1, 2 of VM01, 3 of VM02, 4 of VM03. */
static void seed(struct db *db)
{
    dfx_sql(db, "INSERT INTO machines (id, name, created_at, updated_at) VALUES "
                "('VM01', 'VM01', 'x', 'x'), ('VM02', 'VM02', 'x', 'x'), "
                "('VM03', 'VM03', 'x', 'x')");
    dfx_sql(db, "INSERT INTO products (id, name, price, created_at, updated_at) VALUES "
                "(1, 'Cola', 8000, 'x', 'x'), (2, 'Teh', 5000, 'x', 'x')");
    dfx_sql(db, "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, "
                "created_at, updated_at) VALUES (1, 'VM01', 1, 1, 10, 'x', 'x'), "
                "(2, 'VM01', 2, 2, 10, 'x', 'x'), (3, 'VM02', 1, 1, 10, 'x', 'x'), "
                "(4, 'VM03', 1, NULL, 10, 'x', 'x')");
}

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_open(f);
    dfx_clock_set(1764235800000); /* 2025-11-27T09:30:00.000Z */
    seed(f->v.db);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct dfx *f = *state;

    dfx_close(f);
    free(f);
    return 0;
}

/* An order of machine m with one item per slot (quantity q each, at price), its units with
 * status and completed_at as given (in unit order). */
static void add_order(struct dfx *f, const char *id, const char *m, int slot_id, int q, int price,
                      const char *const *status, const char *const *at)
{
    char sql[1024];

    snprintf(sql, sizeof(sql),
             "INSERT INTO orders (id, machine_id, quantity, total_amount, status, origin, "
             "payment_method, created_at, updated_at) VALUES ('%s', '%s', %d, %d, 'COMPLETED', "
             "'customer', 'qris', 'x', 'x')",
             id, m, q, q * price);
    dfx_sql(f->v.db, sql);
    snprintf(sql, sizeof(sql),
             "INSERT INTO order_items (order_id, position, slot_id, product_id, product_name, "
             "quantity, unit_price, total, first_unit) VALUES ('%s', 1, %d, %d, "
             "(SELECT name FROM products WHERE id = %d), %d, %d, %d, 1)",
             id, slot_id, slot_id == 2 ? 2 : 1, slot_id == 2 ? 2 : 1, q, price, q * price);
    dfx_sql(f->v.db, sql);
    for (int u = 0; u < q; u++) {
        bool late = strcmp(status[u], "LATE_DROP") == 0;

        snprintf(sql, sizeof(sql),
                 "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, slot_number, "
                 "timeout_ms, status, completed_at, success, drop_detected, late_result, "
                 "created_at) VALUES ('%s', %d, '%s', %d, 1, 1500, '%s', '%s', %d, %d, %d, 'x')",
                 id, u + 1, m, slot_id, late ? "NO_RESULT" : status[u], at[u],
                 strcmp(status[u], "SUCCEEDED") == 0 || late,
                 strcmp(status[u], "SUCCEEDED") == 0 || late, late);
        dfx_sql(f->v.db, sql);
    }
}

static json_t *row(json_t *rows, size_t i)
{
    json_t *r = json_array_get(rows, i);

    assert_non_null(r);
    return r;
}

static void expect_row(json_t *r, const char *day, const char *m, const char *product, int units,
                       int revenue)
{
    assert_string_equal(json_string_value(json_object_get(r, "day")), day);
    assert_string_equal(json_string_value(json_object_get(r, "machine_id")), m);
    assert_string_equal(json_string_value(json_object_get(r, "product_name")), product);
    assert_int_equal(json_integer_value(json_object_get(r, "units")), units);
    assert_int_equal(json_integer_value(json_object_get(r, "revenue")), revenue);
}

static int64_t day_of(const char *s)
{
    int64_t d = 0;

    assert_int_equal(sales_day_parse(s, &d), VEND_OK);
    return d;
}

static void test_dropped_units_by_day_machine_product(void **state)
{
    struct dfx *f = *state;
    static const char *const ok3[] = {"SUCCEEDED", "SUCCEEDED", "FAILED"};
    static const char *const at3[] = {"2025-11-26T23:59:59.999Z", "2025-11-27T00:00:00.000Z",
                                      "2025-11-27T00:00:01.000Z"};
    static const char *const late[] = {"LATE_DROP", "NO_RESULT"};
    static const char *const at2[] = {"2025-11-27T10:00:00.000Z", "2025-11-27T10:00:00.000Z"};
    static const char *const one[] = {"SUCCEEDED"};
    static const char *const at_teh[] = {"2025-11-27T12:00:00.000Z"};
    static const char *const at_vm2[] = {"2025-11-25T08:00:00.000Z"};
    static const char *const at_out[] = {"2025-11-28T00:00:00.000Z"};
    json_t *rows = NULL;

    add_order(f, "A", "VM01", 1, 3, 8000, ok3, at3);    /* 26th: 1, 27th: 1 (+1 failed) */
    add_order(f, "B", "VM01", 1, 2, 7500, late, at2);   /* 27th: the late drop, at its price */
    add_order(f, "C", "VM01", 2, 1, 5000, one, at_teh); /* 27th: Teh */
    add_order(f, "D", "VM02", 3, 1, 8000, one, at_vm2); /* 25th, VM02 */
    add_order(f, "E", "VM01", 1, 1, 8000, one, at_out); /* 28th: after the range */

    assert_int_equal(sales_json(&f->v, day_of("2025-11-25"), day_of("2025-11-27"), NULL, &rows),
                     VEND_OK);
    assert_int_equal(json_array_size(rows), 4);
    expect_row(row(rows, 0), "2025-11-25", "VM02", "Cola", 1, 8000);
    expect_row(row(rows, 1), "2025-11-26", "VM01", "Cola", 1, 8000);
    expect_row(row(rows, 2), "2025-11-27", "VM01", "Cola", 2, 15500);
    expect_row(row(rows, 3), "2025-11-27", "VM01", "Teh", 1, 5000);
    json_decref(rows);

    assert_int_equal(sales_json(&f->v, day_of("2025-11-27"), day_of("2025-11-28"), "VM01", &rows),
                     VEND_OK);
    assert_int_equal(json_array_size(rows), 3);
    expect_row(row(rows, 0), "2025-11-27", "VM01", "Cola", 2, 15500);
    expect_row(row(rows, 1), "2025-11-27", "VM01", "Teh", 1, 5000);
    expect_row(row(rows, 2), "2025-11-28", "VM01", "Cola", 1, 8000);
    json_decref(rows);

    assert_int_equal(sales_json(&f->v, day_of("2025-11-01"), day_of("2025-11-24"), NULL, &rows),
                     VEND_OK);
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
}

static void test_row_limit(void **state)
{
    struct dfx *f = *state;
    json_t *rows = (json_t *)1;
    int64_t first = day_of("2000-01-01");
    char sql[1024];

    /* SALES_ROWS_MAX + 1 days from 2000-01-01 with a sale each: one row too many. In
     * statements of 200 rows: PostgreSQL's triggers make 10,000 at once take longer than
     * db_pg.c's client deadline (6 s), and 1,000 on a loaded machine. */
    for (int from = 0; from <= 10000; from += 200) {
        /* Date arithmetic is the one thing here each backend spells its own way. */
        snprintf(sql, sizeof(sql),
                 "WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM n "
                 "WHERE i < %d) INSERT INTO orders (id, machine_id, quantity, "
                 "total_amount, status, origin, payment_method, created_at, updated_at) "
                 "SELECT 'L' || i, 'VM01', 1, 100, 'COMPLETED', 'customer', 'qris', %s, 'x' "
                 "FROM n",
                 from, from + 199 < 10000 ? from + 199 : 10000,
                 dfx_pg()
                     ? "to_char(DATE '2000-01-01' + i, 'YYYY-MM-DD') || 'T12:00:00.000Z'"
                     : "strftime('%Y-%m-%dT12:00:00.000Z', '2000-01-01', '+' || i || ' days')");
        dfx_sql(f->v.db, sql);
        dfx_sql(f->v.db, "INSERT INTO order_items (order_id, position, slot_id, product_id, "
                         "product_name, quantity, unit_price, total, first_unit) "
                         "SELECT id, 1, 1, 1, 'Cola', 1, 100, 100, 1 FROM orders o WHERE NOT "
                         "EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)");
        dfx_sql(f->v.db, "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, "
                         "slot_number, timeout_ms, status, completed_at, success, "
                         "drop_detected, created_at) SELECT id, 1, 'VM01', 1, 1, 1500, "
                         "'SUCCEEDED', created_at, 1, 1, 'x' FROM orders o WHERE NOT EXISTS "
                         "(SELECT 1 FROM dispense_logs d WHERE d.order_id = o.id)");
    }
    assert_int_equal(SALES_ROWS_MAX, 10000);
    assert_int_equal(sales_json(&f->v, first, first + SALES_ROWS_MAX, NULL, &rows), VEND_ELIMIT);
    assert_null(rows);
    assert_int_equal(sales_json(&f->v, first, first + SALES_ROWS_MAX - 1, NULL, &rows), VEND_OK);
    assert_int_equal(json_array_size(rows), SALES_ROWS_MAX);
    json_decref(rows);
}

static void test_days(void **state)
{
    static const char *const good[] = {"1970-01-01", "2024-02-29", "2000-02-29", "2025-12-31",
                                       "9999-12-31"};
    static const char *const bad[] = {"",
                                      "2025-1-01",
                                      "2025-01-1",
                                      "2025/01/01",
                                      "2023-02-29",
                                      "2100-02-29",
                                      "2025-04-31",
                                      "2025-13-01",
                                      "2025-00-10",
                                      "2025-01-00",
                                      "1969-12-31",
                                      "2025-01-01 ",
                                      "2025-01-01T00:00:00Z",
                                      "+025-01-01",
                                      "20250101"};
    char out[SALES_DAY_SIZE];
    int64_t d = -1;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(sales_day_parse(good[i], &d), VEND_OK);
        sales_day_format(d, out);
        assert_string_equal(out, good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sales_day_parse(bad[i], &d) == VEND_OK)
            fail_msg("'%s' is taken for a date", bad[i]);
    }
    assert_int_equal(day_of("1970-01-01"), 0);
    assert_int_equal(day_of("2025-11-27"), 1764235800000 / 86400000);
    /* Every day of 400 years (a whole Gregorian cycle) formats and parses back to itself. */
    for (int64_t day = day_of("2000-01-01"); day < day_of("2400-01-01"); day++) {
        sales_day_format(day, out);
        assert_int_equal(sales_day_parse(out, &d), VEND_OK);
        assert_int_equal(d, day);
    }
}

static int take_plan(void *arg, const struct db_row *r)
{
    char *plan = arg;
    size_t n = strlen(plan);

    snprintf(plan + n, 2048 - n, "%s\n", db_row_text(r, dfx_pg() ? 0 : 3));
    return 0;
}

/*
 * The range is read from the rollup, in the answer's order: a SEARCH of sales_daily by its key
 * (or, for one machine, its machine index), no sort, and never a read of dispense_logs, so the
 * work is bounded by the rows answered, whatever the number of units sold.
 *
 * PostgreSQL's planner chooses by statistics, and on a test's small tables a scan and a sort
 * are cheapest; so both are priced out (enable_seqscan, enable_sort off), and a plan that still
 * scans or sorts has no index that gives the range in order.
 */
static void test_plans_read_the_rollup(void **state)
{
    struct dfx *f = *state;
    static const char *const want_sqlite[2] = {
        "SEARCH sales_daily USING INDEX sqlite_autoindex_sales_daily_1 (day>? AND day<?)",
        "SEARCH sales_daily USING INDEX sales_daily_machine (machine_id=? AND day>? AND day<?)"};
    static const char *const want_pg[2] = {"Index Scan using sales_daily_pkey on sales_daily",
                                           "Index Scan using sales_daily_machine on sales_daily"};
    const char *const *want = dfx_pg() ? want_pg : want_sqlite;
    struct db_value p[4] = {DB_TEXT("2025-11-01"), DB_TEXT("2025-11-07"), DB_INT(10001),
                            DB_TEXT("VM01")};

    if (dfx_pg()) {
        dfx_sql(f->v.db, "SET enable_seqscan = off");
        dfx_sql(f->v.db, "SET enable_sort = off");
    }
    for (int m = 0; m < 2; m++) {
        char sql[2048], plan[2048] = "";

        snprintf(sql, sizeof(sql), "%s %s", dfx_pg() ? "EXPLAIN" : "EXPLAIN QUERY PLAN",
                 sales_sql[m]);
        if (db_exec(f->v.db, sql, p, m ? 4 : 3, take_plan, plan) < 0)
            fail_msg("'%s': %s", sql, db_errmsg(f->v.db));
        if (strstr(plan, want[m]) == NULL || strstr(plan, "TEMP B-TREE") != NULL ||
            strstr(plan, "Sort") != NULL || strstr(plan, "Seq Scan") != NULL ||
            strstr(plan, "dispense_logs") != NULL || strstr(plan, " d ") != NULL)
            fail_msg("sales_sql[%d] plan:\n%s", m, plan);
    }
}

/* ---- the rollup against the query it replaced --------------------------------------------- */

/*
 * The oracle: GET /api/sales before the rollup, a GROUP BY over every dropped unit of the range
 * (UNIT_DROPPED_SQL), each unit priced by the order item that holds it. $1, $2: the times from
 * and before; $3: the row limit; $4: the machine.
 */
#define ORACLE_SELECT                                                                              \
    "SELECT substr(d.completed_at, 1, 10) AS day, d.machine_id, "                                  \
    "COALESCE(i.product_name, '') AS product_name, count(*) AS units, "                            \
    "sum(i.unit_price) AS revenue FROM dispense_logs d JOIN order_items i "                        \
    "ON i.order_id = d.order_id AND d.unit >= i.first_unit "                                       \
    "AND d.unit < i.first_unit + i.quantity WHERE " UNIT_DROPPED_SQL                               \
    " AND d.completed_at >= $1 AND d.completed_at < $2"
#define ORACLE_ORDER                                                                               \
    " GROUP BY day, d.machine_id, product_name ORDER BY day, d.machine_id, product_name LIMIT $3"

/* xorshift64*: the histories are reproducible from the seed a failure prints. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (*s * 2685821657736338717ull) >> 11;
}

static unsigned pick(uint64_t *s, unsigned n)
{
    return (unsigned)(rnd(s) % n);
}

/* A time in the nine days from 2025-11-20, often on a day's first or last millisecond. */
static void some_time(uint64_t *s, char out[32])
{
    int64_t ms = 1763596800000 + (int64_t)pick(s, 9) * 86400000; /* 2025-11-20T00:00Z */

    switch (pick(s, 4)) {
    case 0:
        break;
    case 1:
        ms += 86400000 - 1;
        break;
    default:
        ms += (int64_t)(rnd(s) % 86400000);
        break;
    }
    db_iso_time(out, 32, ms);
}

/* Machine, slots and item names of the orders: VM03 sells a slot without product (NULL). */
static const struct {
    const char *machine;
    int slot[2];
} s_shop[3] = {{"VM01", {1, 2}}, {"VM02", {3, 3}}, {"VM03", {4, 4}}};
static const char *const s_names[4] = {"Cola", "Teh", NULL, "Kopi"};

/* Unit log_id ends by a result (or a settle) that says success and drop as given. */
static struct unit_change result(const char *at, bool success, bool drop, bool by_operator)
{
    return (struct unit_change){.at = at,
                                .success = success,
                                .drop_detected = drop,
                                .has_duration = true,
                                .duration_ms = 1500,
                                .error = success && drop ? NULL : "MOTOR_JAM",
                                .by_operator = by_operator};
}

/*
 * One unit's life, by the unit state machine's own functions (unit_status.h), each step in a
 * transaction as vendd runs it: every path the diagram has, some stopped half way.
 */
static void live_unit(struct db *db, struct vendd *v, uint64_t *s, int64_t id, const char *order)
{
    char at[32], later[32];
    struct unit_change c;
    int rc = VEND_OK;

    some_time(s, at);
    some_time(s, later);
    if (strcmp(later, at) < 0) {
        char t[32];

        memcpy(t, at, sizeof(t));
        memcpy(at, later, sizeof(at));
        memcpy(later, t, sizeof(later));
    }
    assert_int_equal(db_begin(db), VEND_OK);
    switch (pick(s, 10)) {
    case 0: /* never sent */
        if (pick(s, 2))
            rc = unit_fail_unsent_locked(v, order, at);
        else
            rc = unit_transition_locked(v, id, UNIT_QUEUED, UNIT_FAILED,
                                        &(struct unit_change){.at = at, .error = "NOT_SENT"});
        break;
    case 1: /* still queued */
        break;
    default: {
        unsigned path = pick(s, 6);

        c = (struct unit_change){.at = at, .deadline = later};
        rc = unit_transition_locked(v, id, UNIT_QUEUED, UNIT_SENT, &c);
        if (rc < 0)
            break;
        if (path == 0) { /* the broker was gone: back in the queue (one in flight per machine) */
            rc = unit_transition_locked(v, id, UNIT_SENT, UNIT_QUEUED, NULL);
            break;
        }
        if (path <= 2) { /* the machine answers */
            bool ok = pick(s, 4) != 0, drop = ok && pick(s, 5) != 0;

            c = result(at, ok, drop, false);
            rc = unit_transition_locked(v, id, UNIT_SENT, ok && drop ? UNIT_SUCCEEDED : UNIT_FAILED,
                                        &c);
        } else if (path == 3) { /* no answer in time; perhaps a late one */
            rc = unit_transition_locked(v, id, UNIT_SENT, UNIT_NO_RESULT,
                                        &(struct unit_change){.at = at});
            if (rc == VEND_OK && pick(s, 3) != 0) {
                bool ok = pick(s, 3) != 0;

                c = result(later, ok, ok && pick(s, 4) != 0, false);
                rc = unit_record_late_result_locked(v, id, &c);
            }
        } else { /* a settling machine: asked, then the machine or an operator says */
            bool operator= pick(s, 2), ok = pick(s, 2), drop = ok && pick(s, 4) != 0;

            c = (struct unit_change){.at = at, .deadline = later};
            rc = unit_transition_locked(v, id, UNIT_SENT, UNIT_UNSETTLED, &c);
            /* Held for the operator (no longer in flight), and perhaps left there. */
            if (rc == VEND_OK)
                rc = unit_await_operator_locked(v, id, UNIT_UNSETTLED, "POWER_LOSS", at);
            if (rc < 0 || pick(s, 5) == 0)
                break;
            c = result(later, ok, drop, operator);
            rc = unit_transition_locked(v, id, UNIT_UNSETTLED,
                                        ok && drop ? UNIT_SUCCEEDED : UNIT_FAILED, &c);
            /* The machine's journal says otherwise, after the operator's word. */
            if (rc == VEND_OK && operator&& pick(s, 2))
                rc = unit_record_operator_contradiction_locked(v, id, !(ok && drop), !(ok && drop));
        }
        break;
    }
    }
    if (rc < 0)
        fail_msg("unit %lld of order %s: %d", (long long)id, order, rc);
    assert_int_equal(db_commit(db), VEND_OK);
}

/*
 * n random orders of 1..3 items (1..3 units each) on the three machines, their units lived
 * through live_unit(); by_hand: some units then rewritten by hand (undone, moved to another day
 * or machine, deleted), which vendd does not do but the rollup must follow all the same.
 */
static void random_history(struct db *db, struct vendd *v, uint64_t *s, int n, bool by_hand)
{
    static int next_order;
    /* By hand: $1 the row, $2 a time. */
    static const char *const hand[5] = {
        "UPDATE dispense_logs SET status = 'FAILED', late_result = 0 WHERE id = $1 AND $2 > ''",
        "UPDATE dispense_logs SET completed_at = $2 WHERE id = $1",
        "UPDATE dispense_logs SET machine_id = 'VM02' WHERE id = $1 AND $2 > ''",
        ("UPDATE dispense_logs SET status = 'SUCCEEDED', success = 1, drop_detected = 1, "
         "completed_at = COALESCE(completed_at, $2) WHERE id = $1"),
        "DELETE FROM dispense_logs WHERE id = $1 AND $2 > ''",
    };

    for (int o = 0; o < n; o++) {
        int m = (int)pick(s, 3), nitems = 1 + (int)pick(s, 3), unit = 1;
        char id[32];
        struct db_value p[8];

        snprintf(id, sizeof(id), "R%d", ++next_order);
        p[0] = DB_TEXT(id);
        p[1] = DB_TEXT(s_shop[m].machine);
        assert_int_equal(db_exec(db,
                                 "INSERT INTO orders (id, machine_id, quantity, total_amount, "
                                 "status, origin, payment_method, created_at, updated_at) VALUES "
                                 "($1, $2, 1, 0, 'PAID', 'customer', 'qris', 'x', 'x')",
                                 p, 2, NULL, NULL),
                         1);
        for (int i = 0; i < nitems; i++) {
            int q = 1 + (int)pick(s, 3), price = 1000 * (1 + (int)pick(s, 9));
            const char *name = s_names[pick(s, 4)];

            p[1] = DB_INT(i + 1);
            p[2] = DB_INT(s_shop[m].slot[pick(s, 2)]);
            p[3] = name != NULL ? DB_TEXT(name) : DB_NULL;
            p[4] = DB_INT(q);
            p[5] = DB_INT(price);
            p[6] = DB_INT(q * price);
            p[7] = DB_INT(unit);
            assert_int_equal(db_exec(db,
                                     "INSERT INTO order_items (order_id, position, slot_id, "
                                     "product_name, quantity, unit_price, total, first_unit) "
                                     "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                     p, 8, NULL, NULL),
                             1);
            for (int u = unit; u < unit + q; u++) {
                p[1] = DB_INT(u);
                p[2] = DB_TEXT(s_shop[m].machine);
                p[3] = DB_INT(s_shop[m].slot[0]);
                assert_int_equal(db_exec(db,
                                         "INSERT INTO dispense_logs (order_id, unit, machine_id, "
                                         "slot_id, slot_number, timeout_ms, status, created_at) "
                                         "VALUES ($1, $2, $3, $4, 1, 1500, 'QUEUED', 'x')",
                                         p, 4, NULL, NULL),
                                 1);
                live_unit(db, v, s, dfx_int(db, "SELECT max(id) FROM dispense_logs"), id);
            }
            unit += q;
        }
    }
    for (int k = 0; by_hand && k < n / 4; k++) {
        char at[32];
        struct db_value p[2];

        some_time(s, at);
        p[0] = DB_INT(1 +
                      (int64_t)pick(s, (unsigned)dfx_int(db, "SELECT max(id) FROM dispense_logs")));
        p[1] = DB_TEXT(at);
        assert_true(db_exec(db, hand[pick(s, 5)], p, 2, NULL, NULL) >= 0);
    }
}

/* The rollup's answer and the oracle's, for days from..to of machine (NULL: all). */
static void expect_same(struct vendd *v, uint64_t seed, int64_t from, int64_t to,
                        const char *machine)
{
    char a[SALES_DAY_SIZE], b[SALES_DAY_SIZE], from_iso[40], before_iso[40];
    struct db_value p[4];
    json_t *got = NULL, *want;
    char *gs, *ws;

    sales_day_format(from, a);
    sales_day_format(to + 1, b);
    snprintf(from_iso, sizeof(from_iso), "%sT00:00:00.000Z", a);
    snprintf(before_iso, sizeof(before_iso), "%sT00:00:00.000Z", b);
    p[0] = DB_TEXT(from_iso);
    p[1] = DB_TEXT(before_iso);
    p[2] = DB_INT(SALES_ROWS_MAX + 1);
    p[3] = DB_TEXT(machine);
    want = store_query_json(v->db,
                            machine != NULL ? ORACLE_SELECT " AND d.machine_id = $4" ORACLE_ORDER
                                            : ORACLE_SELECT ORACLE_ORDER,
                            p, machine != NULL ? 4 : 3);
    assert_non_null(want);
    assert_int_equal(sales_json(v, from, to, machine, &got), VEND_OK);
    if (!json_equal(got, want)) {
        gs = json_dumps(got, JSON_COMPACT);
        ws = json_dumps(want, JSON_COMPACT);
        fail_msg("seed %llu, %s to %s of %s:\n rollup %s\n oracle %s", (unsigned long long)seed, a,
                 b, machine != NULL ? machine : "all", gs, ws);
    }
    json_decref(got);
    json_decref(want);
}

/* Every range of the window (and a day either side), for every machine and for all. */
static void expect_same_everywhere(struct vendd *v, uint64_t seed)
{
    static const char *const machines[] = {NULL, "VM01", "VM02", "VM03", "VM09"};
    int64_t first = day_of("2025-11-19"), last = day_of("2025-11-29");

    for (size_t m = 0; m < sizeof(machines) / sizeof(machines[0]); m++) {
        for (int64_t from = first; from <= last; from++) {
            for (int64_t to = from; to <= last; to++)
                expect_same(v, seed, from, to, machines[m]);
        }
    }
    /* Nothing left behind: no row of 0 units. */
    assert_int_equal(dfx_int(v->db, "SELECT count(*) FROM sales_daily WHERE units <= 0"), 0);
}

static void test_rollup_equals_the_group_by(void **state)
{
    struct dfx *f = *state;

    for (uint64_t seed = 1; seed <= 4; seed++) {
        uint64_t s = seed * 0x9e3779b97f4a7c15ull;

        /* Grown in steps, compared after each: a rollup kept, not rebuilt. */
        for (int step = 0; step < 3; step++) {
            random_history(f->v.db, &f->v, &s, 40, seed % 2 == 0);
            expect_same_everywhere(&f->v, seed);
        }
    }
    /* The histories sold something, failed something, and the rollup has rows. */
    assert_true(dfx_int(f->v.db, "SELECT count(*) FROM sales_daily") > 20);
    assert_true(dfx_int(f->v.db, "SELECT count(*) FROM dispense_logs WHERE status = 'FAILED'") > 0);
    assert_true(dfx_int(f->v.db, "SELECT count(*) FROM dispense_logs WHERE late_result = 1 "
                                 "AND success = 1 AND drop_detected = 1") > 0);
}

/* A history written before migration 0012 is in the rollup once it has run. */
static void test_migration_backfills(void **state)
{
    struct dfx *f = *state;
    char url[1024], err[256] = "";
    struct db *old = NULL;
    struct vendd ov;
    uint64_t s = 77;

    const struct schema_migration *list = dfx_pg() ? schema_pg : schema_sqlite;

    dfx_empty_url(f, "before.db", url, sizeof(url));
    assert_int_equal(list[11].version, 12);
    if (db_open_with(&old, url, list, 11, err, sizeof(err)) != VEND_OK)
        fail_msg("db_open_with %s: %s", url, err);
    seed(old);
    ov = f->v;
    ov.db = old;
    random_history(old, &ov, &s, 150, true);
    db_close(old);
    old = NULL;
    if (db_open(&old, url, err, sizeof(err)) != VEND_OK)
        fail_msg("db_open %s: %s", url, err);
    db_close(f->v.db);
    f->v.db = old;
    assert_true(dfx_int(f->v.db, "SELECT count(*) FROM sales_daily") > 10);
    expect_same_everywhere(&f->v, 77);
    /* And kept from there on. */
    random_history(f->v.db, &f->v, &s, 40, true);
    expect_same_everywhere(&f->v, 77);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dropped_units_by_day_machine_product, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_limit, setup, teardown),
        cmocka_unit_test(test_days),
        cmocka_unit_test_setup_teardown(test_plans_read_the_rollup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollup_equals_the_group_by, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_backfills, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
