/*
 * test_sales.c - sales.c on a real SQLite file: the units that dropped (a late drop too, not a
 * failed unit) per UTC day, machine and product, at the price of their order item; the day
 * range taken whole at both ends; the row limit; the dates it accepts; and the query plans,
 * which must read the dropped units from migration 0011's indexes, not scan the history.
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

#include "fixture.h"
#include "sales.h"
#include "vend/err.h"

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_open(f);
    dfx_clock_set(1764235800000); /* 2025-11-27T09:30:00.000Z */
    dfx_sql(f->v.db, "INSERT INTO machines (id, name, created_at, updated_at) VALUES "
                     "('VM01', 'VM01', 'x', 'x'), ('VM02', 'VM02', 'x', 'x')");
    dfx_sql(f->v.db, "INSERT INTO products (id, name, price, created_at, updated_at) VALUES "
                     "(1, 'Cola', 8000, 'x', 'x'), (2, 'Teh', 5000, 'x', 'x')");
    dfx_sql(f->v.db, "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, "
                     "created_at, updated_at) VALUES (1, 'VM01', 1, 1, 10, 'x', 'x'), "
                     "(2, 'VM01', 2, 2, 10, 'x', 'x'), (3, 'VM02', 1, 1, 10, 'x', 'x')");
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

    /* SALES_ROWS_MAX + 1 days from 2000-01-01 with a sale each: one row too many. */
    dfx_sql(f->v.db, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n "
                     "WHERE i < 10000) INSERT INTO orders (id, machine_id, quantity, "
                     "total_amount, status, origin, payment_method, created_at, updated_at) "
                     "SELECT 'L' || i, 'VM01', 1, 100, 'COMPLETED', 'customer', 'qris', "
                     "strftime('%Y-%m-%dT12:00:00.000Z', '2000-01-01', '+' || i || ' days'), 'x' "
                     "FROM n");
    dfx_sql(f->v.db, "INSERT INTO order_items (order_id, position, slot_id, product_id, "
                     "product_name, quantity, unit_price, total, first_unit) "
                     "SELECT id, 1, 1, 1, 'Cola', 1, 100, 100, 1 FROM orders");
    dfx_sql(f->v.db, "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, "
                     "slot_number, timeout_ms, status, completed_at, success, drop_detected, "
                     "created_at) SELECT id, 1, 'VM01', 1, 1, 1500, 'SUCCEEDED', created_at, 1, "
                     "1, 'x' FROM orders");
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

    snprintf(plan + n, 2048 - n, "%s\n", db_row_text(r, 3));
    return 0;
}

/* The range is read from the partial indexes of dropped units: a SEARCH, never a SCAN of
 * dispense_logs, whatever the history of failed units. */
static void test_plans_use_the_indexes(void **state)
{
    struct dfx *f = *state;
    static const char *const want[2] = {"SEARCH d USING INDEX dispense_logs_dropped (",
                                        "SEARCH d USING INDEX dispense_logs_dropped_machine ("};
    struct db_value p[4] = {DB_TEXT("2025-11-01T00:00:00.000Z"),
                            DB_TEXT("2025-11-08T00:00:00.000Z"), DB_INT(10001), DB_TEXT("VM01")};

    for (int m = 0; m < 2; m++) {
        char sql[2048], plan[2048] = "";

        snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", sales_sql[m]);
        assert_true(db_exec(f->v.db, sql, p, m ? 4 : 3, take_plan, plan) >= 0);
        if (strstr(plan, want[m]) == NULL || strstr(plan, "SCAN d") != NULL)
            fail_msg("sales_sql[%d] plan:\n%s", m, plan);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dropped_units_by_day_machine_product, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_limit, setup, teardown),
        cmocka_unit_test(test_days),
        cmocka_unit_test_setup_teardown(test_plans_use_the_indexes, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
