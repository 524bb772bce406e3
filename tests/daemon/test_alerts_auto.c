/*
 * test_alerts_auto.c - the alerts vendd raises and resolves by itself (SPEC §8): an offline
 * machine after its grace (offline.c) and a slot running low (stock.c), with one open alert
 * each, raised and resolved in the transaction of the change, on the fixture's clock.
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

#include "alerts.h"
#include "api.h"
#include "fixture.h"
#include "http.h"
#include "machines.h"
#include "offline.h"
#include "stock.h"
#include "vend/err.h"
#include "vend/msg.h"

#define T0      1764235800000
#define T0_ISO  "2025-11-27T09:30:00.000Z"
#define HOUR_MS 3600000

/* The monotonic clock follows the fixture's wall clock but for the steps a test makes. */
static int64_t s_step_ms;

static int64_t mono_ms(void)
{
    return dfx_clock_ms() - s_step_ms;
}

/* The wall clock steps by delta_ms; the monotonic clock does not. */
static void wall_step(int64_t delta_ms)
{
    s_step_ms += delta_ms;
    dfx_clock_set(dfx_clock_ms() + delta_ms);
}

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_open(f);
    dfx_clock_set(T0);
    s_step_ms = 0;
    f->v.mono_ms = mono_ms;
    dfx_sql(f->v.db, "INSERT INTO machines (id, name, created_at, updated_at) VALUES "
                     "('VM01', 'VM01', '" T0_ISO "', '" T0_ISO "'), "
                     "('VM02', 'VM02', '" T0_ISO "', '" T0_ISO "')");
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

static void presence(struct dfx *f, const char *id, enum vend_presence p)
{
    struct vend_status st = {.status = p};
    bool changed = false;

    assert_int_equal(machines_apply_status(&f->v, id, &st, &changed), VEND_OK);
}

static int64_t open_alerts(struct dfx *f, const char *kind)
{
    char sql[160];

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM alerts WHERE resolved_at IS NULL AND kind = '%s'", kind);
    return dfx_int(f->v.db, sql);
}

/* ---- MACHINE_OFFLINE ------------------------------------------------------------------ */

/* OFFLINE past the grace (60 s default): one alert, however often the sweep runs. */
static void test_offline_after_grace(void **state)
{
    struct dfx *f = *state;
    char buf[256];

    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    dfx_clock_set(T0 + 1000);
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    assert_int_equal(offline_armed_for(&f->v), T0 + 1000 + 60000);
    dfx_clock_set(T0 + 1000 + 59999);
    assert_int_equal(offline_sweep(&f->v), 0);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 0);
    dfx_clock_set(T0 + 1000 + 60000);
    assert_int_equal(offline_sweep(&f->v), 1);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 1);
    dfx_text(f->v.db, "SELECT machine_id || '|' || message || '|' || created_at FROM alerts", buf,
             sizeof(buf));
    assert_string_equal(buf, "VM01|machine 'VM01' has been OFFLINE since "
                             "2025-11-27T09:30:01.000Z|2025-11-27T09:31:01.000Z");
    /* the event stream hears of it (schema 0010's trigger) */
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM events WHERE kind = 'alert' AND "
                                      "detail = 'MACHINE_OFFLINE' AND status = 'OPEN'"),
                     1);
    /* later sweeps, a repeated will: still one */
    dfx_clock_set(T0 + 300000);
    assert_int_equal(offline_sweep(&f->v), 0);
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    assert_int_equal(offline_sweep(&f->v), 0);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 1);
    /* nothing left for the timer (it re-arms from the rows after each sweep) */
    offline_arm(&f->v);
    assert_int_equal(offline_armed_for(&f->v), -1);
    /* back ONLINE: resolved in the status's transaction */
    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 0);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE resolved_at = "
                                      "'2025-11-27T09:35:00.000Z'"),
                     1);
    /* and it can go again: a second alert, one open */
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    dfx_clock_set(T0 + 400000);
    assert_int_equal(offline_sweep(&f->v), 1);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 1);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 2);
}

/* A reconnect within the grace raises nothing; a machine never seen raises nothing. */
static void test_offline_reconnect_within_grace(void **state)
{
    struct dfx *f = *state;

    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    dfx_clock_set(T0 + 30000);
    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    dfx_clock_set(T0 + 3600000);
    assert_int_equal(offline_sweep(&f->v), 0);
    /* VM02 is registered OFFLINE and was never seen: no alert either */
    presence(f, "VM02", VEND_PRESENCE_OFFLINE);
    assert_int_equal(offline_sweep(&f->v), 0);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 0);
    offline_arm(&f->v);
    assert_int_equal(offline_armed_for(&f->v), -1);
}

/* Resolved by hand while still OFFLINE: not raised again until it has been back. */
static void test_offline_resolved_by_hand(void **state)
{
    struct dfx *f = *state;
    char at[32];

    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    dfx_clock_set(T0 + 61000);
    assert_int_equal(offline_sweep(&f->v), 1);
    assert_int_equal(alerts_resolve(&f->v, dfx_int(f->v.db, "SELECT id FROM alerts"), at), VEND_OK);
    dfx_clock_set(T0 + 600000);
    assert_int_equal(offline_sweep(&f->v), 0);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 1);
}

/* The grace runs on the monotonic clock (as SPEC §4 rule 3's deadlines): a wall clock
 * stepped back an hour neither holds the alert an hour, nor does one stepped forward an hour
 * raise it at the next sweep. */
static void test_offline_clock_step(void **state)
{
    struct dfx *f = *state;

    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    presence(f, "VM02", VEND_PRESENCE_ONLINE);
    dfx_clock_set(T0 + 1000);
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    dfx_clock_set(T0 + 10000);
    wall_step(-HOUR_MS);
    dfx_clock_set(dfx_clock_ms() + 51000); /* 60 s since the will, monotonic */
    assert_int_equal(offline_sweep(&f->v), 1);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 1);
    /* VM02 goes, the wall clock jumps an hour ahead 5 s later: not due for 55 s more */
    presence(f, "VM02", VEND_PRESENCE_OFFLINE);
    dfx_clock_set(dfx_clock_ms() + 5000);
    wall_step(HOUR_MS);
    assert_int_equal(offline_sweep(&f->v), 0);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 1);
    dfx_clock_set(dfx_clock_ms() + 55000);
    assert_int_equal(offline_sweep(&f->v), 1);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 2);
}

/* vendd restarted while a machine is OFFLINE: within the grace the timer keeps its time;
 * past it, the first sweep waits for the statuses the broker retained (the machine may be
 * back), so one that reconnected meanwhile raises nothing, and one still gone raises once. */
static void test_offline_restart(void **state)
{
    struct dfx *f = *state;
    int64_t start;

    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    presence(f, "VM02", VEND_PRESENCE_ONLINE);
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    presence(f, "VM02", VEND_PRESENCE_OFFLINE);
    /* restarted 30 s in: due at the grace */
    dfx_clock_set(T0 + 30000);
    offline_stop(&f->v);
    offline_start(&f->v);
    assert_int_equal(offline_armed_for(&f->v), T0 + 60000);
    /* restarted 10 min in: not before the retained statuses had their turn */
    dfx_clock_set(start = T0 + 600000);
    offline_stop(&f->v);
    offline_start(&f->v);
    assert_true(offline_armed_for(&f->v) >= start + OFFLINE_START_SETTLE_MS);
    presence(f, "VM01", VEND_PRESENCE_ONLINE); /* retained, came back while vendd was down */
    assert_true(offline_armed_for(&f->v) >= start + OFFLINE_START_SETTLE_MS);
    dfx_clock_set(start + OFFLINE_START_SETTLE_MS);
    assert_int_equal(offline_sweep(&f->v), 1);
    assert_int_equal(offline_sweep(&f->v), 0);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE machine_id = 'VM02'"), 1);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE machine_id = 'VM01'"), 0);
}

/* The unique index: a second open MACHINE_OFFLINE for a machine is skipped, not an error. */
static void test_offline_one_open_per_machine(void **state)
{
    struct dfx *f = *state;
    struct alert a = {.machine_id = "VM01", .kind = "MACHINE_OFFLINE", .message = "m"};

    assert_int_equal(db_begin(f->v.db), VEND_OK);
    assert_int_equal(alerts_raise_locked(&f->v, &a, T0_ISO), 1);
    assert_int_equal(alerts_raise_locked(&f->v, &a, T0_ISO), 0);
    a.machine_id = "VM02";
    assert_int_equal(alerts_raise_locked(&f->v, &a, T0_ISO), 1);
    /* other machine-wide kinds are not limited */
    a.kind = "BROKER_DROPS";
    assert_int_equal(alerts_raise_locked(&f->v, &a, T0_ISO), 1);
    assert_int_equal(alerts_raise_locked(&f->v, &a, T0_ISO), 1);
    assert_int_equal(db_commit(f->v.db), VEND_OK);
}

/* Grace 0: raised in the transaction of the will. */
static void test_offline_grace_zero(void **state)
{
    struct dfx *f = *state;

    f->conf.machine_offline_alert_s = 0;
    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    presence(f, "VM01", VEND_PRESENCE_OFFLINE);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 1);
    assert_int_equal(offline_armed_for(&f->v), -1);
    presence(f, "VM01", VEND_PRESENCE_ONLINE);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), 0);
}

/* A whole site dropping at once: a sweep alerts OFFLINE_SWEEP_BATCH machines at most. */
static void test_offline_sweep_bounded(void **state)
{
    struct dfx *f = *state;
    int n = OFFLINE_SWEEP_BATCH + 10;

    dfx_sql(f->v.db, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
                     "WHERE i < 266) INSERT INTO machines (id, name, status, last_seen, "
                     "offline_alert_since, created_at, updated_at) SELECT 'M' || i, 'M' || i, "
                     "'OFFLINE', '" T0_ISO "', '" T0_ISO "', '" T0_ISO "', '" T0_ISO "' FROM k");
    dfx_clock_set(T0 + 60000);
    assert_int_equal(offline_sweep(&f->v), OFFLINE_SWEEP_BATCH);
    assert_int_equal(offline_sweep(&f->v), n - OFFLINE_SWEEP_BATCH);
    assert_int_equal(offline_sweep(&f->v), 0);
    assert_int_equal(open_alerts(f, "MACHINE_OFFLINE"), n);
}

/* ---- LOW_STOCK ------------------------------------------------------------------------ */

static int put_slot(struct dfx *f, const char *body)
{
    struct http_request req = {0};
    struct http_response res = {0};
    json_error_t err;

    req.method = HTTP_PUT;
    req.path = "/api/machines/VM01/slots/1";
    req.pattern_ = "/api/machines/{id}/slots/{slot}";
    req.params[0] = "VM01";
    req.params[1] = "1";
    req.nparams = 2;
    req.body = body;
    req.body_len = strlen(body);
    req.json = json_loads(body, 0, &err);
    req.loopback = true;
    assert_non_null(req.json);
    api_machines_put_slot(&f->v, &req, &res);
    json_decref(req.json);
    free(res.body);
    return res.status;
}

/* One unit leaves slot 1 (as dispense.c does), in its own transaction. */
static void take_unit(struct dfx *f, int64_t unit)
{
    int64_t slot_id = dfx_int(f->v.db, "SELECT id FROM slots WHERE slot_number = 1");

    assert_int_equal(db_begin(f->v.db), VEND_OK);
    assert_int_equal(stock_take_unit_locked(&f->v, slot_id, "VM01", "ORD-1", unit, T0_ISO),
                     VEND_OK);
    assert_int_equal(db_commit(f->v.db), VEND_OK);
}

static void test_low_stock_threshold(void **state)
{
    struct dfx *f = *state;

    assert_int_equal(stock_low_threshold(&f->v, 10), 2);
    assert_int_equal(stock_low_threshold(&f->v, 12), 2);
    assert_int_equal(stock_low_threshold(&f->v, 3), 1); /* at least 1 unit */
    assert_int_equal(stock_low_threshold(&f->v, 0), -1);
    f->conf.low_stock_percent = 0;
    assert_int_equal(stock_low_threshold(&f->v, 10), -1);
}

/* Sales down to the threshold raise one alert; more sales, none more; a restock resolves. */
static void test_low_stock_raised_and_resolved(void **state)
{
    struct dfx *f = *state;
    char buf[256];

    dfx_sql(f->v.db,
            "INSERT INTO orders (id, machine_id, status, total_amount, quantity, origin, "
            "payment_method, created_at, updated_at) VALUES ('ORD-1', 'VM01', 'PAID', 0, 1, "
            "'operator', 'manual', '" T0_ISO "', '" T0_ISO "')");
    assert_int_equal(put_slot(f, "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                                 "\"current_stock\":4}"),
                     201);
    take_unit(f, 1); /* 3 */
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 0);
    take_unit(f, 2); /* 2: low */
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 1);
    dfx_text(f->v.db, "SELECT message FROM alerts", buf, sizeof(buf));
    assert_string_equal(buf, "slot 1 of 'VM01' is low: 2 of 10 left (low at 2 or fewer)");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM events WHERE kind = 'alert' AND "
                                      "detail = 'LOW_STOCK' AND slot = 1"),
                     1);
    take_unit(f, 3); /* 1 */
    take_unit(f, 4); /* 0 */
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 1);
    /* a restock to the threshold is still low; above it resolves */
    assert_int_equal(put_slot(f, "{\"current_stock\":2,\"version\":5}"), 200);
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 1);
    assert_int_equal(put_slot(f, "{\"current_stock\":10,\"version\":6}"), 200);
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 0);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 1);
}

/* Resolved by hand while low: the next sales do not raise it again. */
static void test_low_stock_resolved_by_hand(void **state)
{
    struct dfx *f = *state;
    char at[32];

    dfx_sql(f->v.db,
            "INSERT INTO orders (id, machine_id, status, total_amount, quantity, origin, "
            "payment_method, created_at, updated_at) VALUES ('ORD-1', 'VM01', 'PAID', 0, 1, "
            "'operator', 'manual', '" T0_ISO "', '" T0_ISO "')");
    assert_int_equal(put_slot(f, "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                                 "\"current_stock\":3}"),
                     201);
    take_unit(f, 1);
    assert_int_equal(alerts_resolve(&f->v, dfx_int(f->v.db, "SELECT id FROM alerts"), at), VEND_OK);
    take_unit(f, 2);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 1);
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 0);
}

/* The capacity moves the line: larger makes the slot low, smaller no longer. */
static void test_low_stock_capacity(void **state)
{
    struct dfx *f = *state;

    assert_int_equal(put_slot(f, "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                                 "\"current_stock\":3}"),
                     201);
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 0);
    assert_int_equal(put_slot(f, "{\"capacity\":20,\"version\":1}"), 200); /* 3 <= 4 */
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 1);
    assert_int_equal(put_slot(f, "{\"capacity\":5,\"version\":2}"), 200); /* 3 > 1 */
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 0);
}

/* A new slot made empty says so; LOW_STOCK_PERCENT 0 raises nothing. */
static void test_low_stock_new_slot_and_disabled(void **state)
{
    struct dfx *f = *state;

    f->conf.low_stock_percent = 0;
    assert_int_equal(put_slot(f, "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                                 "\"current_stock\":0}"),
                     201);
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 0);
    f->conf.low_stock_percent = 20;
    dfx_sql(f->v.db, "DELETE FROM stock_logs");
    dfx_sql(f->v.db, "DELETE FROM events");
    dfx_sql(f->v.db, "DELETE FROM slots");
    assert_int_equal(put_slot(f, "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                                 "\"current_stock\":1}"),
                     201);
    assert_int_equal(open_alerts(f, "LOW_STOCK"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offline_after_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_reconnect_within_grace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_resolved_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_one_open_per_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_clock_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_grace_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_sweep_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_stock_threshold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_stock_raised_and_resolved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_stock_resolved_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_stock_capacity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_stock_new_slot_and_disabled, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
