/*
 * test_query_plans.c - every table that holds an order_id is found by it through an index.
 * An order's answer, its settle, its refund and its payment story all look rows up by
 * order_id; one table without the index turned each read of an order into a scan of every
 * payment notification ever received (32 ms with 50,000 of them, found by profiling).
 * The tables are listed from the schema, so a new table with an order_id is checked too.
 *
 * On PostgreSQL (test_query_plans_pg) the planner chooses by statistics, and on a test's
 * empty tables a scan is cheapest. So sequential scans are priced out (enable_seqscan off):
 * a plan that still scans has no index it could use, which is what this test is about.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "db.h"
#include "fixture.h"

#define TABLES_MAX   32
#define NAME_MAX_LEN 64
#define PLAN_MAX     2048

struct tables {
    size_t n;
    char name[TABLES_MAX][NAME_MAX_LEN];
};

/* Tables whose rows are looked up by order only under a condition (a partial index), or
 * never by order (NULL: skipped). */
static const struct {
    const char *table, *condition;
} s_partial[] = {
    {"alerts", " AND resolved_at IS NULL"}, /* alerts.c: an order's open alerts */
    {"events", NULL}, /* events.c reads the stream by id; order_id is what it tells */
    /* stock.h: a unit's DISPENSE row, once (its unique index); no read by order otherwise */
    {"stock_logs", " AND change_type = 'DISPENSE'"},
};

static const char *condition_of(const char *table)
{
    for (size_t i = 0; i < sizeof(s_partial) / sizeof(s_partial[0]); i++)
        if (strcmp(s_partial[i].table, table) == 0)
            return s_partial[i].condition != NULL ? s_partial[i].condition : "";
    return "";
}

static bool never_by_order(const char *table)
{
    for (size_t i = 0; i < sizeof(s_partial) / sizeof(s_partial[0]); i++)
        if (strcmp(s_partial[i].table, table) == 0 && s_partial[i].condition == NULL)
            return true;
    return false;
}

static int take_table(void *arg, const struct db_row *r)
{
    struct tables *t = arg;

    assert_true(t->n < TABLES_MAX);
    snprintf(t->name[t->n++], NAME_MAX_LEN, "%s", db_row_text(r, 0));
    return 0;
}

/* SQLite's EXPLAIN QUERY PLAN says what it does in column 3, PostgreSQL's EXPLAIN in 0. */
static int take_plan(void *arg, const struct db_row *r)
{
    char *plan = arg;
    size_t n = strlen(plan);

    snprintf(plan + n, PLAN_MAX - n, "%s\n", db_row_text(r, dfx_pg() ? 0 : 3));
    return 0;
}

/* The plan uses an index, and reads no table whole. */
static bool by_index(const char *plan)
{
    if (dfx_pg())
        return strstr(plan, "Index") != NULL && strstr(plan, "Seq Scan") == NULL;
    return strstr(plan, "SEARCH") != NULL && strstr(plan, "SCAN") == NULL;
}

static void test_order_id_lookups_use_an_index(void **state)
{
    struct dfx f = {0};
    struct tables t = {0};

    (void)state;
    dfx_open(&f);
    assert_true(db_exec(f.v.db,
                        dfx_pg()
                            ? "SELECT table_name FROM information_schema.columns "
                              "WHERE table_schema = current_schema() AND "
                              "column_name = 'order_id' ORDER BY table_name"
                            : "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c "
                              "WHERE m.type = 'table' AND c.name = 'order_id' ORDER BY m.name",
                        NULL, 0, take_table, &t) >= 0);
    if (dfx_pg())
        dfx_sql(f.v.db, "SET enable_seqscan = off");
    assert_true(t.n >= 5); /* order_items, dispense_logs, payments, payment_events, refunds */
    for (size_t i = 0; i < t.n; i++) {
        char sql[256], plan[PLAN_MAX] = "";
        struct db_value p[1] = {DB_TEXT("ORD1")};

        if (never_by_order(t.name[i]))
            continue;

        snprintf(sql, sizeof(sql), "%s SELECT * FROM %s WHERE order_id = $1%s",
                 dfx_pg() ? "EXPLAIN" : "EXPLAIN QUERY PLAN", t.name[i], condition_of(t.name[i]));
        if (db_exec(f.v.db, sql, p, 1, take_plan, plan) < 0)
            fail_msg("'%s': %s", sql, db_errmsg(f.v.db));
        if (!by_index(plan))
            fail_msg("%s is not found by order_id through an index:\n%s", t.name[i], plan);
    }
    dfx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_id_lookups_use_an_index),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
