/*
 * test_slot_rules.c - the slot API's optimistic concurrency (SPEC §4 rule 5) and the
 * lifecycle of the alerts an operator answers through it. Found in review: a stock change
 * without a version, or a price change that left the version alone, let a stale operator
 * overwrite newer data; mismatch alerts and needs_inspection could never be cleared.
 * Handlers are called directly with a hand-built http_request on the dfx fixture.
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

#include "api.h"
#include "fixture.h"
#include "http.h"
#include "ingest.h"
#include "orders.h"
#include "vend/err.h"

#define T0     1764235800000
#define T0_ISO "2025-11-27T09:30:00.000Z"

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_open(f);
    dfx_clock_set(T0);
    dfx_sql(f->v.db, "INSERT INTO machines (id, name, created_at, updated_at) "
                     "VALUES ('VM01', 'VM01', '" T0_ISO "', '" T0_ISO "')");
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

/* PUT /api/machines/VM01/slots/{slot} with body; returns status, *out the parsed reply. */
static int put_slot(struct dfx *f, const char *slot, const char *body, json_t **out)
{
    struct http_request req = {0};
    struct http_response res = {0};
    json_error_t err;
    int status;

    req.method = HTTP_PUT;
    req.path = "/api/machines/VM01/slots/x";
    req.pattern_ = "/api/machines/{id}/slots/{slot}";
    req.params[0] = "VM01";
    req.params[1] = slot;
    req.nparams = 2;
    req.body = body;
    req.body_len = strlen(body);
    req.json = json_loads(body, 0, &err);
    req.loopback = true;
    assert_non_null(req.json);
    api_machines_put_slot(&f->v, &req, &res);
    json_decref(req.json);
    status = res.status;
    if (out != NULL)
        *out = json_loads(res.body, 0, &err);
    free(res.body);
    return status;
}

static int64_t version_of(json_t *slot)
{
    int64_t v = json_integer_value(json_object_get(slot, "version"));

    json_decref(slot);
    return v;
}

/*
 * HTTP-API.md: "version grows with every change of the slot", and PUT with a stale
 * version must 409. A price change through the slot does not bump slots.version, so a
 * second operator holding the same (now stale) version silently overwrites it.
 */
static void test_price_change_bumps_version(void **state)
{
    struct dfx *f = *state;
    json_t *r = NULL;

    assert_int_equal(
        put_slot(f, "1", "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10}", &r), 201);
    assert_int_equal(version_of(r), 1);
    /* operator B: price 6000 based on version 1 */
    assert_int_equal(put_slot(f, "1", "{\"price\":6000,\"version\":1}", &r), 200);
    /* the slot's shown price changed, so its version must have grown */
    assert_int_not_equal(version_of(r), 1);
    /* operator A, still on version 1, must be refused */
    assert_int_equal(put_slot(f, "1", "{\"price\":5500,\"version\":1}", NULL), 409);
}

/*
 * SPEC §4 rule 5: restocks and audits go through the API "with optimistic concurrency".
 * A stock change without 'version' is applied blindly: a lost update.
 */
static void test_stock_change_requires_version(void **state)
{
    struct dfx *f = *state;

    assert_int_equal(put_slot(f, "1",
                              "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                              "\"current_stock\":8}",
                              NULL),
                     201);
    /* a dispense happens meanwhile (as dispense.c does: stock - 1, version + 1) */
    dfx_sql(f->v.db, "UPDATE slots SET current_stock = 7, version = version + 1");
    /* the operator, who saw 8, "restocks 2" as an absolute 10 without a version */
    assert_int_equal(put_slot(f, "1", "{\"current_stock\":10}", NULL), 422);
}

/*
 * handle_telemetry.c says the operator resolves a STOCK_SENSOR_MISMATCH after an audit
 * through PUT .../slots/{slot}. Nothing ever sets alerts.resolved_at, so the audit leaves
 * the alert open and the one-open-per-slot index suppresses every later real mismatch.
 */
static void test_audit_resolves_mismatch(void **state)
{
    struct dfx *f = *state;
    const char *empty = "{\"slots\":[{\"id\":1,\"level\":\"EMPTY\"}]}";

    assert_int_equal(put_slot(f, "1",
                              "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                              "\"current_stock\":5}",
                              NULL),
                     201);
    assert_int_equal(handle_telemetry(&f->v, "VM01", empty, strlen(empty)), 0);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE resolved_at IS NULL"), 1);
    /* the operator audits: the slot really is empty */
    assert_int_equal(put_slot(f, "1", "{\"current_stock\":0,\"version\":1}", NULL), 200);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE resolved_at IS NULL "
                                      "AND kind = 'STOCK_SENSOR_MISMATCH'"),
                     0);
    /* what it asks for now is a restock (LOW_STOCK, the default 20 %) */
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE resolved_at IS NULL"), 1);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE resolved_at IS NULL "
                                      "AND kind = 'LOW_STOCK'"),
                     1);
}

/* The DISPENSE path flags needs_inspection; the slot API offers no way to clear it. */
static void test_inspection_can_be_cleared(void **state)
{
    struct dfx *f = *state;
    json_t *r = NULL;

    assert_int_equal(
        put_slot(f, "1", "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10}", &r), 201);
    json_decref(r);
    dfx_sql(f->v.db, "UPDATE slots SET needs_inspection = 1");
    assert_int_equal(put_slot(f, "1", "{\"needs_inspection\":false,\"version\":1}", &r), 200);
    assert_false(json_is_true(json_object_get(r, "needs_inspection")));
    json_decref(r);
}

/* A paid order waits for a unit of Cola: the slot cannot turn into Tea under it. */
static void test_product_swap_refused_while_promised(void **state)
{
    struct dfx *f = *state;
    struct order_new o = {.nitems = 1, .items = {{.slot = 1, .quantity = 1}}};
    char why[256];
    json_t *r = NULL;

    assert_int_equal(put_slot(f, "1",
                              "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                              "\"current_stock\":3}",
                              NULL),
                     201);
    snprintf(o.id, sizeof(o.id), "swap-1");
    snprintf(o.machine_id, sizeof(o.machine_id), "VM01");
    assert_int_equal(orders_create_manual(&f->v, &o, why, sizeof(why)), VEND_OK);
    assert_int_equal(put_slot(f, "1", "{\"product_name\":\"Tea\",\"price\":4000}", &r), 409);
    assert_non_null(strstr(
        json_string_value(json_object_get(json_object_get(r, "error"), "message")), "promised"));
    json_decref(r);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM products WHERE name = 'Tea'"), 0);
    /* Once nothing is promised, the swap goes through. */
    dfx_sql(f->v.db, "UPDATE orders SET status = 'COMPLETED' WHERE id = 'swap-1'");
    dfx_sql(f->v.db, "UPDATE slots SET reserved = 0"); /* as its dispensed unit gives it back */
    assert_int_equal(put_slot(f, "1", "{\"product_name\":\"Tea\",\"price\":4000}", NULL), 200);
}

/* The stock_logs rows as "TYPE:before>after:reason:by", oldest first. */
static void assert_stock_logs(struct dfx *f, const char *want)
{
    char buf[1024];

    dfx_join(f->v.db,
             "SELECT change_type || ':' || quantity_before || '>' || quantity_after || ':' || "
             "reason || ':' || performed_by FROM stock_logs ORDER BY id",
             " ", buf, sizeof(buf));
    assert_string_equal(buf, want);
}

/*
 * stock.c moves the version of a slot whose count it changes, and the slot rules move it for
 * the other fields: one PUT must still move it by exactly one, whichever fields change
 * together, and a count and a capacity that both fall (or both rise) must pass the CHECK
 * current_stock <= capacity on the way.
 */
static void test_one_put_moves_version_by_one(void **state)
{
    struct dfx *f = *state;
    json_t *r = NULL;

    /* A new slot with stock is restocked from 0, and still shows version 1. */
    assert_int_equal(put_slot(f, "1",
                              "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,"
                              "\"current_stock\":8}",
                              &r),
                     201);
    assert_int_equal(version_of(r), 1);
    assert_stock_logs(f, "RESTOCK:0>8:new slot:operator");
    /* Count, capacity and motor up together. */
    assert_int_equal(put_slot(f, "1",
                              "{\"capacity\":12,\"current_stock\":12,\"motor_duration_ms\":2000,"
                              "\"version\":1}",
                              &r),
                     200);
    assert_int_equal(version_of(r), 2);
    /* Count and capacity down together: the count must fall first. */
    assert_int_equal(put_slot(f, "1", "{\"capacity\":5,\"current_stock\":3,\"version\":2}", &r),
                     200);
    assert_int_equal(version_of(r), 3);
    /* Count and capacity up together, with a flag: the capacity must rise first. */
    assert_int_equal(put_slot(f, "1",
                              "{\"capacity\":20,\"current_stock\":15,\"needs_inspection\":true,"
                              "\"version\":3}",
                              &r),
                     200);
    assert_int_equal(version_of(r), 4);
    /* The count alone. */
    assert_int_equal(put_slot(f, "1", "{\"current_stock\":14,\"version\":4}", &r), 200);
    assert_int_equal(version_of(r), 5);
    /* Nothing that differs: nothing moves. */
    assert_int_equal(put_slot(f, "1", "{\"current_stock\":14,\"capacity\":20,\"version\":5}", &r),
                     200);
    assert_int_equal(version_of(r), 5);
    assert_int_equal(dfx_int(f->v.db, "SELECT version FROM slots"), 5);
    assert_int_equal(dfx_int(f->v.db, "SELECT current_stock FROM slots"), 14);
    assert_int_equal(dfx_int(f->v.db, "SELECT capacity FROM slots"), 20);
    assert_int_equal(dfx_int(f->v.db, "SELECT motor_duration_ms FROM slots"), 2000);
    assert_int_equal(dfx_int(f->v.db, "SELECT needs_inspection FROM slots"), 1);
    assert_stock_logs(f, "RESTOCK:0>8:new slot:operator MANUAL_ADJUST:8>12:slot update:operator "
                         "MANUAL_ADJUST:12>3:slot update:operator "
                         "MANUAL_ADJUST:3>15:slot update:operator "
                         "MANUAL_ADJUST:15>14:slot update:operator");
    /* A price with the count: the slot's own change, and the product's for every slot. */
    assert_int_equal(
        put_slot(f, "2", "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":4}", &r), 201);
    assert_int_equal(version_of(r), 1);
    assert_int_equal(put_slot(f, "1", "{\"price\":5500,\"current_stock\":13,\"version\":5}", &r),
                     200);
    assert_int_equal(version_of(r), 7);
    assert_int_equal(dfx_int(f->v.db, "SELECT version FROM slots WHERE slot_number = 2"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_put_moves_version_by_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_product_swap_refused_while_promised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_price_change_bumps_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_change_requires_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_resolves_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspection_can_be_cleared, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
