/*
 * test_dispense.c - every branch of the dispense path (dispense.c, dispense_result.c,
 * deadline.c, refunds.c, stock.c) in milliseconds: the real modules on a real database (an
 * SQLite file, or PostgreSQL as test_dispense_pg: fixture.h),
 * a fake broker behind the broker seam, and both clocks pinned, so deadlines are crossed
 * by moving the clock instead of sleeping. The black-box tests (tests/integration) run the
 * same rules through a real mosquitto.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "dispense.h"
#include "dispense_group.h"
#include "dispense_result.h"
#include "fixture.h"
#include "log.h"
#include "loop.h"
#include "machines.h"
#include "refunds.h"
#include "settle.h"
#include "store.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"

#define T0_WALL  1764235800000 /* 2025-11-27T09:30:00.000Z */
#define GRACE_MS 5000
#define TTL_S    60
#define MOTOR_MS 1500

/* What the machine would have received. */
struct fake_broker {
    const char *db_url; /* set: a command must find its unit committed, seen from outside */
    bool up;
    int fail_with; /* returned by the next publish instead of VEND_OK, then cleared */
    int published;
    char topic[8][64];
    char payload[8][256];
};

struct t {
    struct dfx f;
    struct vendd_conf conf;
    struct fake_broker broker;
    char *log;
    size_t log_len;
    FILE *log_out;
    bool damaged; /* the test wrote rows no code path could: skip the invariant */
};

/* The pinned monotonic clock (a plain function pointer, as in vendd.h). */
static int64_t s_mono_ms = 1000000;

static int64_t mono_ms(void)
{
    return s_mono_ms;
}

/* Both clocks move together, as they do when nobody steps the wall clock. */
static void advance(int64_t ms)
{
    s_mono_ms += ms;
    dfx_clock_set(dfx_clock_ms() + ms);
}

/* SPEC 4: a command goes out only once its unit's SENT has committed. Another connection
 * sees committed rows only. */
static void expect_unit_committed(const char *url, const void *payload, size_t len)
{
    char text[256], sql[160], err[256] = "";
    const char *id;
    struct db *other = NULL;
    int64_t sent = 0;
    size_t n;

    snprintf(text, sizeof(text), "%.*s", (int)len, (const char *)payload);
    id = strstr(text, "\"orderId\":\"");
    assert_non_null(id);
    id += strlen("\"orderId\":\"");
    n = strcspn(id, "\"");
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM dispense_logs WHERE order_id = '%.*s' AND status = 'SENT'",
             (int)n, id);
    /* Opening checks the schema in a write transaction: a writer still holding its
     * transaction makes this fail too (busy), which is as much a failure as no row. */
    if (db_open(&other, url, err, sizeof(err)) != VEND_OK)
        fail_msg("second connection while publishing order '%.*s': %s", (int)n, id, err);
    assert_int_equal(store_query_int(other, sql, NULL, 0, &sent), 1);
    if (sent < 1)
        fail_msg("command for order '%.*s' published before its SENT unit committed", (int)n, id);
    db_close(other);
}

static int fake_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                        bool retain, uint32_t expiry_s)
{
    struct fake_broker *b = ctx;
    int rc = b->fail_with;

    (void)qos;
    (void)retain;
    (void)expiry_s;
    if (!b->up)
        return VEND_EUNAVAILABLE;
    b->fail_with = VEND_OK;
    if (rc == VEND_EUNAVAILABLE)
        return rc;
    /* EIO: it may have gone out, so the machine may have it: record it like a success. */
    assert_true(b->published < 8);
    if (b->db_url != NULL)
        expect_unit_committed(b->db_url, payload, len);
    snprintf(b->topic[b->published], sizeof(b->topic[0]), "%s", topic);
    snprintf(b->payload[b->published], sizeof(b->payload[0]), "%.*s", (int)len,
             (const char *)payload);
    b->published++;
    return rc;
}

static bool fake_up(void *ctx)
{
    return ((struct fake_broker *)ctx)->up;
}

static int setup(void **state)
{
    struct t *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    dfx_clock_set(T0_WALL);
    s_mono_ms = 1000000;
    dfx_open(&t->f);
    t->conf.dispense_result_grace_ms = GRACE_MS;
    t->conf.dispense_dispatch_ttl_s = TTL_S;
    t->f.v.conf = &t->conf;
    t->f.v.mono_ms = mono_ms;
    t->f.v.boot_id = "test-boot";
    t->broker.up = true;
    t->f.v.broker = (struct broker){.publish = fake_publish, .up = fake_up, .ctx = &t->broker};
    t->log_out = open_memstream(&t->log, &t->log_len);
    assert_non_null(t->log_out);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, t->log_out);

    dfx_sql(t->f.v.db,
            "INSERT INTO machines (id, name, status, created_at, updated_at) VALUES "
            "('VM01', 'VM01', 'ONLINE', 'x', 'x'), ('VM02', 'VM02', 'ONLINE', 'x', 'x')");
    dfx_sql(t->f.v.db, "INSERT INTO products (id, name, price, created_at, updated_at) VALUES "
                       "(1, 'Cola', 5000, 'x', 'x'), (2, 'Chips', 7000, 'x', 'x')");
    dfx_sql(t->f.v.db,
            "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, current_stock, "
            "motor_duration_ms, created_at, updated_at) VALUES "
            "(1, 'VM01', 1, 1, 10, 5, 1500, 'x', 'x'), (2, 'VM01', 2, 2, 10, 5, 1500, 'x', 'x'), "
            "(3, 'VM02', 1, 1, 10, 5, 1500, 'x', 'x')");
    /* As app.c does at start: the deadline clock anchored for this boot. */
    assert_int_equal(deadline_resume(&t->f.v), VEND_OK);
    *state = t;
    return 0;
}

/* stock.h's invariant: reserved = units of PENDING and PAID orders + QUEUED, SENT and
 * UNSETTLED units. */
static void expect_reservations_consistent(struct t *t)
{
    int64_t drift = dfx_int(
        t->f.v.db,
        "SELECT count(*) FROM slots s WHERE s.reserved <> "
        "(SELECT COALESCE(sum(i.quantity), 0) FROM order_items i JOIN orders o "
        "ON o.id = i.order_id WHERE i.slot_id = s.id AND o.status IN ('PENDING', 'PAID')) + "
        "(SELECT count(*) FROM dispense_logs l WHERE l.slot_id = s.id "
        "AND l.status IN ('QUEUED', 'SENT', 'UNSETTLED'))");

    if (drift != 0)
        fail_msg("%lld slot(s) with a reserved count that does not match the open orders",
                 (long long)drift);
}

static int teardown(void **state)
{
    struct t *t = *state;

    /* Every test ends with the promised stock in step with the open orders. */
    if (!t->damaged)
        expect_reservations_consistent(t);

    deadline_stop(&t->f.v);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
    fclose(t->log_out);
    free(t->log);
    dfx_close(&t->f);
    free(t);
    return 0;
}

/* How many log lines so far contain needle. */
static int log_count(struct t *t, const char *needle)
{
    int n = 0;

    fflush(t->log_out);
    for (const char *p = t->log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/*
 * A PAID operator order on machine: each item is {slot_id, quantity, unit_price}.
 * Written with SQL so this test does not depend on the order API.
 */
struct item {
    int slot_id, quantity, price;
};

static void paid_order(struct t *t, const char *id, const char *machine, const struct item *items,
                       size_t n)
{
    char sql[512];
    int total = 0, quantity = 0, first = 1;

    for (size_t i = 0; i < n; i++) {
        total += items[i].quantity * items[i].price;
        quantity += items[i].quantity;
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO orders (id, machine_id, slot_id, quantity, total_amount, status, origin, "
             "payment_method, paid_at, created_at, updated_at) VALUES ('%s', '%s', %d, %d, %d, "
             "'PAID', 'operator', 'manual', 'x', 'x', 'x')",
             id, machine, items[0].slot_id, quantity, total);
    dfx_sql(t->f.v.db, sql);
    for (size_t i = 0; i < n; i++) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO order_items (order_id, position, slot_id, quantity, unit_price, "
                 "total, first_unit) VALUES ('%s', %zu, %d, %d, %d, %d, %d)",
                 id, i + 1, items[i].slot_id, items[i].quantity, items[i].price,
                 items[i].quantity * items[i].price, first);
        dfx_sql(t->f.v.db, sql);
        /* What the order API promises at creation (stock_reserve_locked). */
        snprintf(sql, sizeof(sql), "UPDATE slots SET reserved = reserved + %d WHERE id = %d",
                 items[i].quantity, items[i].slot_id);
        dfx_sql(t->f.v.db, sql);
        first += items[i].quantity;
    }
}

static void one_unit_order(struct t *t, const char *id)
{
    const struct item it[] = {{1, 1, 5000}};

    paid_order(t, id, "VM01", it, 1);
}

static void trigger_ok(struct t *t, const char *id, bool expect_sent)
{
    char status[DISPENSE_STATUS_SIZE];
    bool sent = !expect_sent;

    assert_int_equal(dispense_trigger(&t->f.v, id, status, &sent), VEND_OK);
    assert_string_equal(status, "DISPENSING");
    assert_int_equal(sent, expect_sent);
}

/* A result as the machine sends it; unit 0 = absent. */
static int result(struct t *t, const char *machine, const char *order, int slot, int unit,
                  bool success, bool drop, const char *error)
{
    struct vend_dispense_result r = {0};

    snprintf(r.order_id, sizeof(r.order_id), "%s", order);
    r.slot = (uint16_t)slot;
    r.unit = (uint16_t)unit;
    r.success = success;
    r.drop_detected = drop;
    r.has_duration = true;
    r.duration_ms = 1200;
    if (error != NULL) {
        r.has_error = true;
        snprintf(r.error, sizeof(r.error), "%s", error);
    }
    return dispense_result_apply(&t->f.v, machine, &r);
}

static void expect_text(struct t *t, const char *sql, const char *want)
{
    char got[256];

    dfx_text(t->f.v.db, sql, got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("'%s': got '%s', want '%s'", sql, got, want);
}

/* The first column of every row of sql, joined by sep (group_concat on both backends). */
static void expect_join(struct t *t, const char *sql, const char *sep, const char *want)
{
    char got[256];

    dfx_join(t->f.v.db, sql, sep, got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("'%s': got '%s', want '%s'", sql, got, want);
}

/* Another connection holds the write lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory
 * lock), and ours waits for it only a few milliseconds. */
static struct db *hold_write_lock(struct t *t)
{
    struct db *other = NULL;
    char err[256] = "";

    dfx_busy_ms(t->f.v.db, 10);
    if (db_open(&other, t->f.url, err, sizeof(err)) != VEND_OK)
        fail_msg("second connection: %s", err);
    assert_int_equal(db_begin(other), VEND_OK);
    return other;
}

static void release_write_lock(struct db *other)
{
    db_rollback(other);
    db_close(other);
}

static void expect_int(struct t *t, const char *sql, int64_t want)
{
    int64_t got = dfx_int(t->f.v.db, sql);

    if (got != want)
        fail_msg("'%s': got %lld, want %lld", sql, (long long)got, (long long)want);
}

/* Everything the money rules touch, as one string: equal means nothing changed. */
static char *money_snapshot(struct t *t)
{
    static const char *const tables[] = {"orders",     "dispense_logs", "slots",
                                         "stock_logs", "refunds",       "alerts"};
    json_t *all = json_object();
    char sql[64], *out;

    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        json_t *rows;

        snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY id", tables[i]);
        rows = store_query_json(t->f.v.db, sql, NULL, 0);
        assert_non_null(rows);
        json_object_set_new(all, tables[i], rows);
    }
    out = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    assert_non_null(out);
    json_decref(all);
    return out;
}

/* ---- the happy path and repeats -------------------------------------------------------- */

static void completed_takes_one_from_stock(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(t->broker.published, 1);
    assert_string_equal(t->broker.topic[0], "vm/VM01/command");
    assert_string_equal(t->broker.payload[0],
                        "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"O1\",\"timeoutMs\":1500}");
    expect_text(t, "SELECT status FROM dispense_logs WHERE order_id = 'O1'", "SENT");

    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "COMPLETED");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_int(t,
               "SELECT count(*) FROM stock_logs WHERE order_id = 'O1' AND change_type = 'DISPENSE' "
               "AND quantity_before = 5 AND quantity_after = 4",
               1);
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    /* Nothing in flight: no timer. */
    assert_int_equal(deadline_armed_for(&t->f.v), -1);
}

static void repeated_trigger_changes_nothing(void **state)
{
    struct t *t = *state;
    char status[DISPENSE_STATUS_SIZE], *before, *after;
    bool sent = false;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    before = money_snapshot(t);
    assert_int_equal(dispense_trigger(&t->f.v, "O1", status, &sent), VEND_ESTATE);
    assert_string_equal(status, "DISPENSING");
    assert_false(sent);
    assert_int_equal(t->broker.published, 1);
    after = money_snapshot(t);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void duplicate_and_contradicting_results_change_nothing(void **state)
{
    struct t *t = *state;
    char *before, *after;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    before = money_snapshot(t);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_ECONFLICT);
    assert_int_equal(t->f.v.metrics.dispense_duplicate_results, 1);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "JAMMED"), VEND_ESTATE);
    /* From another machine, for another slot, or for a unit never ordered. */
    assert_int_equal(result(t, "VM02", "O1", 1, 0, true, true, NULL), VEND_ENOTFOUND);
    assert_int_equal(result(t, "VM01", "O1", 2, 0, true, true, NULL), VEND_ESTATE);
    assert_int_equal(result(t, "VM01", "O1", 1, 2, true, true, NULL), VEND_ESTATE);
    assert_int_equal(result(t, "VM01", "NOPE", 1, 0, true, true, NULL), VEND_ENOTFOUND);
    after = money_snapshot(t);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* ---- failures ------------------------------------------------------------------------- */

static void no_drop_fails_flags_and_refunds(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, false, NULL), VEND_OK);
    expect_text(t, "SELECT status || ' ' || error_message FROM dispense_logs", "FAILED NO_DROP");
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders", "FAILED NO_DROP");
    expect_int(t, "SELECT needs_inspection FROM slots WHERE id = 1", 1);
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 5);
    expect_text(t, "SELECT status || ' ' || amount FROM refunds WHERE order_id = 'O1'",
                "QUEUED 5000");
    expect_text(t, "SELECT message FROM alerts WHERE kind = 'DISPENSE_FAILED'",
                "order 'O1' failed (NO_DROP): refund of 5000 due");
}

/* What the firmware core sends (success and drop both false, with a code): a fault of the
 * slot flags it; a refusal or a door does not. */
static void slot_faults_from_the_firmware_flag_the_slot(void **state)
{
    static const struct {
        const char *code;
        int flagged;
    } cases[] = {{"NO_DROP", 1}, {"JAMMED", 1},  {"MOTOR_FAULT", 1}, {"DOOR_OPEN", 0},
                 {"BUSY", 0},    {"EXPIRED", 0}, {"CANCELLED", 0}};
    struct t *t = *state;
    char id[16], sql[128], want[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(id, sizeof(id), "F%zu", i);
        one_unit_order(t, id);
        trigger_ok(t, id, true);
        assert_int_equal(result(t, "VM01", id, 1, 0, false, false, cases[i].code), VEND_OK);
        snprintf(sql, sizeof(sql),
                 "SELECT status || ' ' || error_message FROM dispense_logs "
                 "WHERE order_id = '%s'",
                 id);
        snprintf(want, sizeof(want), "FAILED %s", cases[i].code);
        expect_text(t, sql, want);
        if (dfx_int(t->f.v.db, "SELECT needs_inspection FROM slots WHERE id = 1") !=
            cases[i].flagged)
            fail_msg("%s: needs_inspection should be %d", cases[i].code, cases[i].flagged);
        dfx_sql(t->f.v.db, "UPDATE slots SET needs_inspection = 0 WHERE id = 1");
    }
}

static void drop_without_success_alerts(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, true, "JAMMED"), VEND_OK);
    expect_text(t, "SELECT status || ' ' || error_message FROM dispense_logs", "FAILED JAMMED");
    expect_int(t, "SELECT needs_inspection FROM slots WHERE id = 1", 1);
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'DROP_WITHOUT_SUCCESS' AND slot_id = 1",
               1);
    expect_text(t, "SELECT status FROM refunds", "QUEUED");
}

static void out_of_range_unit_fails_invalid_unit(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    one_unit_order(t, "O2");
    trigger_ok(t, "O1", true);
    trigger_ok(t, "O2", false);
    /* 100 s is within the schema's CHECK but beyond what the codec (and the machine)
     * accepts: the unit must fail at once, not sit SENT until a deadline that far away. */
    dfx_sql(t->f.v.db, "UPDATE dispense_logs SET timeout_ms = 100000 WHERE order_id = 'O2'");
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    assert_int_equal(t->broker.published, 1);
    expect_text(t, "SELECT status || ' ' || error_message FROM dispense_logs WHERE order_id = 'O2'",
                "FAILED INVALID_UNIT");
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders WHERE id = 'O2'",
                "FAILED INVALID_UNIT");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds WHERE order_id = 'O2'",
                "QUEUED 5000");
}

static void failed_unit_fails_the_units_behind_it_not_sent(void **state)
{
    struct t *t = *state;
    const struct item it[] = {{1, 3, 5000}};

    paid_order(t, "O1", "VM01", it, 1);
    trigger_ok(t, "O1", true);
    assert_string_equal(
        t->broker.payload[0],
        "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"O1\",\"timeoutMs\":1500,\"unit\":1}");
    assert_int_equal(result(t, "VM01", "O1", 1, 1, true, true, NULL), VEND_OK);
    assert_int_equal(t->broker.published, 2);
    assert_int_equal(result(t, "VM01", "O1", 1, 2, false, false, "MOTOR_FAULT"), VEND_OK);
    expect_join(t,
                "SELECT status || ':' || error_message FROM dispense_logs WHERE unit > 1 "
                "ORDER BY unit",
                ",", "FAILED:MOTOR_FAULT,FAILED:NOT_SENT");
    assert_int_equal(t->broker.published, 2);
    expect_text(t, "SELECT amount FROM refunds", "10000");
}

static void two_item_order_refunds_exactly_the_failed_unit(void **state)
{
    struct t *t = *state;
    const struct item it[] = {{1, 1, 5000}, {2, 1, 7000}};

    paid_order(t, "O1", "VM01", it, 2);
    trigger_ok(t, "O1", true);
    assert_int_equal(result(t, "VM01", "O1", 1, 1, true, true, NULL), VEND_OK);
    assert_int_equal(result(t, "VM01", "O1", 2, 2, true, false, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders", "FAILED");
    expect_int(t, "SELECT amount FROM refunds WHERE order_id = 'O1'", 7000);
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 2", 5);
}

static void drop_from_a_slot_counted_empty_alerts_stock_mismatch(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    dfx_sql(t->f.v.db, "UPDATE slots SET current_stock = 0 WHERE id = 1");
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders", "COMPLETED");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 0);
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'STOCK_MISMATCH' AND slot_id = 1", 1);
    expect_int(t, "SELECT count(*) FROM stock_logs", 0);
}

/* ---- deadlines ------------------------------------------------------------------------- */

static void no_result_by_the_deadline_fails_and_refunds(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(deadline_armed_for(&t->f.v), T0_WALL + MOTOR_MS + GRACE_MS);
    advance(MOTOR_MS + GRACE_MS - 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "SENT");
    advance(2);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders", "FAILED NO_RESULT");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
    assert_int_equal(t->f.v.metrics.dispense_no_result, 1);
}

static void queued_unit_fails_machine_unreachable_after_the_ttl(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    one_unit_order(t, "O2");
    trigger_ok(t, "O1", true);
    trigger_ok(t, "O2", false); /* behind O1 on the same machine */
    t->broker.up = false;
    /* O1 times out; O2 cannot be sent while the broker is away. */
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs WHERE order_id = 'O2'", "QUEUED");
    advance(TTL_S * 1000);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status || ' ' || error_message FROM dispense_logs WHERE order_id = 'O2'",
                "FAILED MACHINE_UNREACHABLE");
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders WHERE id = 'O2'",
                "FAILED MACHINE_UNREACHABLE");
    expect_int(t, "SELECT count(*) FROM refunds WHERE status = 'QUEUED'", 2);
    assert_int_equal(t->broker.published, 1);
    /* The broker back: nothing is sent late. */
    t->broker.up = true;
    dispense_pump_all(&t->f.v);
    assert_int_equal(t->broker.published, 1);
}

static void broker_gone_at_publish_requeues_and_sends_once_later(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    t->broker.fail_with = VEND_EUNAVAILABLE;
    trigger_ok(t, "O1", false);
    expect_text(t, "SELECT status || ' ' || coalesce(deadline_at, '-') FROM dispense_logs",
                "QUEUED -");
    dispense_pump_all(&t->f.v);
    assert_int_equal(t->broker.published, 1);
    dispense_pump_all(&t->f.v);
    assert_int_equal(t->broker.published, 1);
    expect_text(t, "SELECT status FROM dispense_logs", "SENT");
}

static void publish_that_may_have_left_is_never_resent(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    t->broker.fail_with = VEND_EIO;
    trigger_ok(t, "O1", false);
    expect_text(t, "SELECT status FROM dispense_logs", "SENT");
    dispense_pump_all(&t->f.v);
    assert_int_equal(t->broker.published, 1);
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
}

/* SPEC §4 rule 3: a wall-clock step neither postpones nor hastens a deadline. */
static void wall_clock_steps_do_not_move_deadlines(void **state)
{
    struct t *t = *state;
    int64_t armed;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    armed = deadline_armed_for(&t->f.v);
    /* Forwards by an hour: the unit is still in flight. */
    dfx_clock_set(dfx_clock_ms() + 3600 * 1000);
    s_mono_ms += 1000;
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    deadline_arm(&t->f.v);
    expect_text(t, "SELECT status FROM dispense_logs", "SENT");
    assert_int_equal(deadline_armed_for(&t->f.v), armed);
    /* Backwards by two hours: the deadline still comes when the monotonic clock says. */
    dfx_clock_set(dfx_clock_ms() - 7200 * 1000);
    deadline_arm(&t->f.v);
    assert_int_equal(deadline_armed_for(&t->f.v), armed);
    s_mono_ms += MOTOR_MS + GRACE_MS;
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
}

static void first_sweep_after_restart_waits_one_grace_period(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    /* A new process: a fresh deadline state, long after the deadline passed. */
    deadline_stop(&t->f.v);
    memset(&t->f.v.deadline, 0, sizeof(t->f.v.deadline));
    advance(60 * 1000);
    assert_int_equal(deadline_resume(&t->f.v), VEND_OK);
    assert_int_equal(deadline_armed_for(&t->f.v), dfx_clock_ms() + GRACE_MS);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "SENT");
    /* The result the broker held arrives first and wins. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    advance(GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM orders", "COMPLETED");
}

static void stop_loop(void *arg)
{
    loop_stop(arg);
}

/* Run the real loop for about ms of real time (timers use the real monotonic clock). */
static void run_loop_for(struct t *t, uint64_t ms)
{
    assert_true(loop_timer_add(t->f.v.loop, ms, stop_loop, t->f.v.loop) != 0);
    assert_int_equal(loop_run(t->f.v.loop), 0);
}

static void sweep_on_a_locked_database_backs_off(void **state)
{
    struct t *t = *state;
    struct db *other;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    advance(MOTOR_MS + GRACE_MS + 1);
    /* Another process holds the write lock. */
    other = hold_write_lock(t);
    /* Re-armed for the clock as moved: the loop's timers run on real time. */
    deadline_stop(&t->f.v);
    deadline_arm(&t->f.v);
    run_loop_for(t, 150);
    /* One failed sweep, then a retry a second later: not a spinning timer. */
    assert_int_equal(t->f.v.metrics.dispense_sweep_retries, 1);
    assert_int_equal(deadline_armed_for(&t->f.v), deadline_now_ms(&t->f.v) + 1000);
    expect_text(t, "SELECT status FROM dispense_logs", "SENT");
    /* The second failure waits longer. */
    advance(1000);
    deadline_stop(&t->f.v);
    t->f.v.deadline.retry_at_ms = 0;
    deadline_arm(&t->f.v);
    run_loop_for(t, 150);
    assert_int_equal(t->f.v.metrics.dispense_sweep_retries, 2);
    assert_int_equal(deadline_armed_for(&t->f.v), deadline_now_ms(&t->f.v) + 2000);
    /* The lock goes: the next sweep does the work and the backoff ends. */
    release_write_lock(other);
    advance(2000);
    deadline_stop(&t->f.v);
    t->f.v.deadline.retry_at_ms = 0;
    deadline_arm(&t->f.v);
    run_loop_for(t, 150);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
    assert_int_equal(t->f.v.deadline.retry_ms, 0);
    assert_int_equal(deadline_armed_for(&t->f.v), -1);
}

static void unusable_overdue_row_is_logged_and_backed_off(void **state)
{
    struct t *t = *state;
    char sql[512];

    advance(GRACE_MS); /* well after the start: the first sweep is not held back */
    /* A row no CHECK would let in: only a damaged file holds one. */
    t->damaged = true;
    dfx_unchecked(t->f.v.db, true);
    snprintf(sql, sizeof(sql),
             "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, slot_number, "
             "timeout_ms, status, created_at, dispatch_by, deadline_at) VALUES ('O1', 1, "
             "'%0100d', 1, 1, 1500, 'SENT', 'x', 'x', '2025-11-27T09:00:00.000Z')",
             7);
    dfx_sql(t->f.v.db, sql);
    deadline_arm(&t->f.v);
    run_loop_for(t, 150);
    assert_int_equal(t->f.v.metrics.dispense_sweep_retries, 1);
    assert_int_equal(log_count(t, "is past its limit but unusable"), 1);
    assert_int_equal(deadline_armed_for(&t->f.v), deadline_now_ms(&t->f.v) + 1000);
}

static void nop_timer(void *arg)
{
    (void)arg;
}

static void no_timer_for_the_deadline_stops_vendd(void **state)
{
    struct t *t = *state;

    /* Fill the loop's timer table: the deadline cannot be armed. */
    while (loop_timer_add(t->f.v.loop, 3600 * 1000, nop_timer, NULL) != 0)
        ;
    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_true(t->f.v.failed);
    assert_int_equal(log_count(t, "cannot arm the dispense deadline timer"), 1);
}

/* ---- late results and the refund they meet --------------------------------------------- */

static void fail_by_deadline(struct t *t)
{
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
}

static void late_drop_before_the_refund_went_out_completes(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    expect_int(
        t, "SELECT count(*) FROM alerts WHERE kind = 'DISPENSE_FAILED' AND resolved_at IS NULL", 1);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status || ' ' || coalesce(failure_reason, '-') FROM orders",
                "COMPLETED -");
    expect_text(t, "SELECT status FROM refunds", "CANCELLED");
    expect_text(t, "SELECT status || ' ' || late_result FROM dispense_logs", "NO_RESULT 1");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    /* The "refund due" alert goes with the refund. */
    expect_int(
        t, "SELECT count(*) FROM alerts WHERE kind = 'DISPENSE_FAILED' AND resolved_at IS NULL", 0);
    /* Said twice, it changes nothing. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_ECONFLICT);
}

static void late_drop_after_the_refund_went_out_alerts(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    dfx_sql(t->f.v.db, "UPDATE refunds SET status = 'SENT'");
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders", "FAILED");
    expect_text(t, "SELECT status FROM refunds", "SENT");
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'REFUNDED_ORDER_DISPENSED'", 1);
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
}

/* A refund that was handed to Midtrans once and got no answer may have been paid there: a
 * late drop must not withdraw it silently (it would be sent again with the product out). */
static void late_drop_after_a_refund_attempt_alerts(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    dfx_sql(t->f.v.db, "UPDATE refunds SET attempts = 1"); /* sent once, back in the queue */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders", "FAILED");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'REFUNDED_ORDER_DISPENSED'", 1);
}

static void late_partial_drop_shrinks_the_refund_and_its_alert(void **state)
{
    struct t *t = *state;
    const struct item it[] = {{1, 2, 5000}};

    paid_order(t, "O1", "VM01", it, 1);
    trigger_ok(t, "O1", true);
    fail_by_deadline(t); /* unit 1 NO_RESULT, unit 2 NOT_SENT */
    expect_text(t, "SELECT amount FROM refunds", "10000");
    expect_text(t, "SELECT message FROM alerts WHERE kind = 'DISPENSE_FAILED'",
                "order 'O1' failed (NO_RESULT): refund of 10000 due");
    assert_int_equal(result(t, "VM01", "O1", 1, 1, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders", "FAILED");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
    /* An operator acting on the alert pays what the refund row says, not more. */
    expect_text(t, "SELECT message FROM alerts WHERE kind = 'DISPENSE_FAILED'",
                "order 'O1' failed (NO_RESULT): refund of 5000 due");
}

/* ---- from the review: restarts across clock steps, one stuck row among many ---------- */

static void late_partial_drop_after_a_try_keeps_alert_and_row_in_step(void **state)
{
    struct t *t = *state;
    const struct item it[] = {{1, 2, 5000}};
    char msg[256], want[256];

    paid_order(t, "O1", "VM01", it, 1);
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    dfx_sql(t->f.v.db, "UPDATE refunds SET attempts = 1");
    assert_int_equal(result(t, "VM01", "O1", 1, 1, true, true, NULL), VEND_OK);
    dfx_text(t->f.v.db,
             "SELECT message FROM alerts WHERE kind = 'DISPENSE_FAILED' AND resolved_at IS NULL",
             msg, sizeof(msg));
    snprintf(want, sizeof(want), "order 'O1' failed (NO_RESULT): refund of %lld due",
             (long long)dfx_int(t->f.v.db, "SELECT amount FROM refunds"));
    assert_string_equal(msg, want);
}

static void backoff_for_one_row_does_not_delay_the_others(void **state)
{
    struct t *t = *state;
    char sql[512];

    advance(GRACE_MS); /* well after the start: the first sweep is not held back */
    t->damaged = true;
    dfx_unchecked(t->f.v.db, true);
    snprintf(sql, sizeof(sql),
             "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, slot_number, "
             "timeout_ms, status, created_at, dispatch_by, deadline_at) VALUES ('BAD', 1, "
             "'%0100d', 3, 1, 1500, 'SENT', 'x', 'x', '2025-11-27T09:00:00.000Z')",
             7);
    dfx_sql(t->f.v.db, sql);
    dfx_unchecked(t->f.v.db, false);
    for (int i = 0; i < 6; i++) { /* 1, 2, 4, 8, 16, 30 s */
        advance(t->f.v.deadline.retry_ms);
        deadline_stop(&t->f.v);
        deadline_arm(&t->f.v);
        run_loop_for(t, 50);
    }
    assert_int_equal(t->f.v.deadline.retry_ms, 30000);
    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(deadline_armed_for(&t->f.v), deadline_now_ms(&t->f.v) + MOTOR_MS + GRACE_MS);
}

/* A new process on the same boot: a fresh deadline state, the same database and clocks. */
static void restart(struct t *t)
{
    deadline_stop(&t->f.v);
    memset(&t->f.v.deadline, 0, sizeof(t->f.v.deadline));
    assert_int_equal(deadline_resume(&t->f.v), VEND_OK);
}

static void step_back_then_restart_does_not_postpone_the_deadline(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    dfx_clock_set(dfx_clock_ms() - 3600 * 1000);
    advance(1000);
    restart(t);
    advance(MOTOR_MS + GRACE_MS + GRACE_MS);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
}

static void step_forward_then_restart_does_not_fail_a_sendable_unit(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    one_unit_order(t, "O2");
    trigger_ok(t, "O1", true);
    trigger_ok(t, "O2", false);
    dfx_clock_set(dfx_clock_ms() + 3600 * 1000);
    advance(500);
    restart(t);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    assert_int_equal(t->broker.published, 2);
    expect_text(t, "SELECT status FROM dispense_logs WHERE order_id = 'O2'", "SENT");
}

/* A new boot: the monotonic clock starts over, and only the wall clock links the two. */
static void new_boot_anchors_on_the_wall_clock(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    t->f.v.boot_id = "another-boot";
    s_mono_ms = 5; /* the new boot's monotonic clock */
    dfx_clock_set(dfx_clock_ms() + 60 * 1000);
    restart(t);
    assert_int_equal(deadline_now_ms(&t->f.v), dfx_clock_ms());
    advance(GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
}

/* The boot before kept, in its deadline clock, a wall-clock error NTP corrected after it
 * anchored (here: an hour fast at its start, stepped back). A new boot anchors on the true
 * time, so the limits it stored lie an hour ahead. None may be further ahead than its longest
 * duration: a paid order does not hang an hour for want of a result (SPEC §4 rule 3). */
static void new_boot_after_a_corrected_clock_keeps_the_deadline(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    dfx_clock_set(dfx_clock_ms() - 3600 * 1000);
    advance(100);
    t->f.v.boot_id = "another-boot";
    s_mono_ms = 5;
    restart(t);
    /* At most the longest a unit can take (VEND_TIMEOUT_MS_MAX) and its grace. */
    advance(VEND_TIMEOUT_MS_MAX + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
}

/* The same for a refund's hold: it ends one grace period after the new start at the latest,
 * not an hour later. */
static void new_boot_after_a_corrected_clock_keeps_the_refund_hold(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    expect_text(t, "SELECT status FROM refunds", "QUEUED");
    dfx_clock_set(dfx_clock_ms() - 3600 * 1000);
    advance(100);
    t->f.v.boot_id = "another-boot";
    s_mono_ms = 5;
    restart(t);
    assert_int_equal(refunds_resume(&t->f.v), VEND_OK);
    advance(GRACE_MS + 1);
    refunds_sweep(&t->f.v);
    expect_text(t, "SELECT status FROM refunds", "OPERATOR");
    refunds_stop(&t->f.v);
}

/* The refund of a unit that failed for no result is held one grace period (refunds.h), so a
 * late drop can still withdraw it. A wall-clock step forward must not release it early: the
 * unit's result may still come, and a refund paid for a dropped unit is money lost. */
static void step_forward_keeps_the_refund_hold(void **state)
{
    struct t *t = *state;
    const struct item it[] = {{3, 1, 5000}};

    one_unit_order(t, "O1");
    paid_order(t, "O2", "VM02", it, 1);
    trigger_ok(t, "O1", true);
    trigger_ok(t, "O2", true);
    fail_by_deadline(t);
    expect_join(t, "SELECT status FROM refunds ORDER BY id", ",", "QUEUED,QUEUED");
    dfx_clock_set(dfx_clock_ms() + 3600 * 1000);
    s_mono_ms += 1000;
    refunds_sweep(&t->f.v);
    expect_join(t, "SELECT status FROM refunds ORDER BY id", ",", "QUEUED,QUEUED");
    /* The late drop still wins over the refund it withdraws. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "COMPLETED");
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'REFUNDED_ORDER_DISPENSED'", 0);
    /* The other one goes out when its hold has passed on the monotonic clock. */
    advance(GRACE_MS);
    refunds_sweep(&t->f.v);
    expect_join(t, "SELECT status FROM refunds ORDER BY id", ",", "CANCELLED,OPERATOR");
}

/* Backwards: the hold still ends after one grace period, not an hour later. */
static void step_back_does_not_prolong_the_refund_hold(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    dfx_clock_set(dfx_clock_ms() - 3600 * 1000);
    advance(GRACE_MS + 1);
    refunds_sweep(&t->f.v);
    expect_text(t, "SELECT status FROM refunds", "OPERATOR");
}

/* A step between two processes on the same boot: the hold is the one the first wrote. */
static void step_then_restart_keeps_the_refund_hold(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    dfx_clock_set(dfx_clock_ms() + 3600 * 1000);
    advance(500);
    restart(t);
    assert_int_equal(refunds_resume(&t->f.v), VEND_OK);
    refunds_sweep(&t->f.v);
    expect_text(t, "SELECT status FROM refunds", "QUEUED");
    advance(GRACE_MS);
    refunds_sweep(&t->f.v);
    expect_text(t, "SELECT status FROM refunds", "OPERATOR");
    refunds_stop(&t->f.v);
}

/* libmosquitto acknowledged the result before vendd saw it: a busy database must not lose it. */
static void result_on_a_locked_database_is_kept_and_applied(void **state)
{
    struct t *t = *state;
    struct vend_dispense_result r = {0};
    struct db *other;

    one_unit_order(t, "O1");
    one_unit_order(t, "O2");
    trigger_ok(t, "O1", true);
    trigger_ok(t, "O2", false);
    other = hold_write_lock(t);
    snprintf(r.order_id, sizeof(r.order_id), "O1");
    r.slot = 1;
    r.success = true;
    r.drop_detected = true;
    assert_int_equal(dispense_result_submit(&t->f.v, "VM01", &r), VEND_OK);
    assert_int_equal(dispense_results_waiting(&t->f.v), 1);
    /* A duplicate that comes meanwhile waits behind it, in order. */
    assert_int_equal(dispense_result_submit(&t->f.v, "VM01", &r), VEND_OK);
    assert_int_equal(dispense_results_waiting(&t->f.v), 2);
    run_loop_for(t, 150); /* still locked: retried, still kept */
    assert_int_equal(dispense_results_waiting(&t->f.v), 2);
    release_write_lock(other);
    run_loop_for(t, 600);
    assert_int_equal(dispense_results_waiting(&t->f.v), 0);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "COMPLETED");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    /* The next unit went out once the result was in. */
    assert_int_equal(t->broker.published, 2);
    assert_int_equal(t->f.v.metrics.dispense_duplicate_results, 1);
    dispense_results_free(&t->f.v);
}

/* ---- group commit (dispense_group.h) ----------------------------------------------------- */

struct answer {
    int calls, rc;
    char status[DISPENSE_STATUS_SIZE];
    bool sent;
};

static void on_answer(void *arg, const char *order_id, int rc, const char *status, bool sent)
{
    struct answer *a = arg;

    (void)order_id;
    a->calls++;
    a->rc = rc;
    snprintf(a->status, sizeof(a->status), "%s", status);
    a->sent = sent;
}

static void group_result(struct t *t, const char *machine, const char *order)
{
    struct vend_dispense_result r = {0};

    snprintf(r.order_id, sizeof(r.order_id), "%s", order);
    r.slot = 1;
    r.success = true;
    r.drop_detected = true;
    assert_int_equal(dispense_result_submit(&t->f.v, machine, &r), VEND_OK);
}

/* Triggers and results of one loop turn: one commit, then the commands and the answers; a
 * trigger that fails fails alone. */
static void group_commits_a_loop_turn_once(void **state)
{
    struct t *t = *state;
    const struct item vm02[] = {{3, 1, 5000}};
    struct answer a1 = {0}, a2 = {0}, a3 = {0}, bad = {0};

    t->broker.db_url = t->f.url;
    one_unit_order(t, "O1");
    paid_order(t, "O2", "VM02", vm02, 1);
    one_unit_order(t, "O3");
    dispense_group_trigger(&t->f.v, "O1", on_answer, &a1);
    dispense_group_trigger(&t->f.v, "O2", on_answer, &a2);
    dispense_group_trigger(&t->f.v, "NOPE", on_answer, &bad);
    dispense_group_trigger(&t->f.v, "O3", on_answer, &a3);
    /* Nothing answered, sent or written before the group commits. */
    assert_int_equal(a1.calls + a2.calls + a3.calls + bad.calls, 0);
    assert_int_equal(t->broker.published, 0);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "PAID");
    run_loop_for(t, 10);
    assert_int_equal(dispense_group_commits(&t->f.v), 1);
    assert_int_equal(a1.calls, 1);
    assert_int_equal(a1.rc, VEND_OK);
    assert_string_equal(a1.status, "DISPENSING");
    assert_true(a1.sent);
    assert_int_equal(a2.rc, VEND_OK);
    assert_true(a2.sent);
    assert_int_equal(bad.calls, 1);
    assert_int_equal(bad.rc, VEND_ENOTFOUND);
    assert_int_equal(a3.rc, VEND_OK);
    assert_false(a3.sent); /* VM01 is busy with O1 */
    assert_int_equal(t->broker.published, 2);
    expect_join(t, "SELECT status FROM dispense_logs ORDER BY order_id", " ", "SENT SENT QUEUED");

    /* Both results in one group; VM01's next unit (O3) goes out in the same commit. */
    group_result(t, "VM01", "O1");
    group_result(t, "VM02", "O2");
    assert_int_equal(dispense_results_waiting(&t->f.v), 2);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "DISPENSING");
    run_loop_for(t, 10);
    assert_int_equal(dispense_group_commits(&t->f.v), 2);
    assert_int_equal(dispense_results_waiting(&t->f.v), 0);
    expect_join(t, "SELECT status FROM orders ORDER BY id", " ", "COMPLETED COMPLETED DISPENSING");
    expect_text(t, "SELECT status FROM dispense_logs WHERE order_id = 'O3'", "SENT");
    assert_int_equal(t->broker.published, 3);
    assert_non_null(strstr(t->broker.payload[2], "\"orderId\":\"O3\""));
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    dispense_results_free(&t->f.v);
}

/* One group holding, for VM01: a trigger of O2 (queued behind O1), O1's result twice (a
 * QoS 1 duplicate in the same loop turn), and O2 triggered a second time. The result is
 * applied once (one stock step), O2 is started once and its command goes out once, after the
 * commit; the second trigger is told O2 is DISPENSING. */
static void group_with_duplicates_applies_each_once(void **state)
{
    struct t *t = *state;
    struct answer a1 = {0}, a2 = {0};

    one_unit_order(t, "O1");
    one_unit_order(t, "O2");
    trigger_ok(t, "O1", true);
    assert_int_equal(t->broker.published, 1);
    dispense_group_trigger(&t->f.v, "O2", on_answer, &a1);
    group_result(t, "VM01", "O1");
    group_result(t, "VM01", "O1");
    dispense_group_trigger(&t->f.v, "O2", on_answer, &a2);
    assert_int_equal(t->broker.published, 1);
    run_loop_for(t, 10);
    assert_int_equal(dispense_group_commits(&t->f.v), 1);
    assert_int_equal(a1.calls, 1);
    assert_int_equal(a1.rc, VEND_OK);
    assert_false(a1.sent); /* queued behind O1; the result's pump sends it */
    assert_int_equal(a2.calls, 1);
    assert_int_equal(a2.rc, VEND_ESTATE);
    assert_string_equal(a2.status, "DISPENSING");
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "COMPLETED");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_int(t, "SELECT count(*) FROM stock_logs WHERE change_type = 'DISPENSE'", 1);
    expect_int(t, "SELECT count(*) FROM dispense_logs WHERE order_id = 'O2'", 1);
    expect_text(t, "SELECT status FROM dispense_logs WHERE order_id = 'O2'", "SENT");
    assert_int_equal(t->broker.published, 2);
    assert_non_null(strstr(t->broker.payload[1], "\"orderId\":\"O2\""));
    assert_int_equal(t->f.v.metrics.dispense_duplicate_results, 1);
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    dispense_results_free(&t->f.v);
}

/* A full group is applied before the next trigger joins a new one. */
static void full_group_is_applied_at_once(void **state)
{
    struct t *t = *state;
    struct answer a[DISPENSE_GROUP_MAX + 1];
    char id[16];

    memset(a, 0, sizeof(a));
    for (int i = 0; i <= DISPENSE_GROUP_MAX; i++) {
        snprintf(id, sizeof(id), "F%02d", i);
        one_unit_order(t, id);
    }
    for (int i = 0; i < DISPENSE_GROUP_MAX; i++) {
        snprintf(id, sizeof(id), "F%02d", i);
        dispense_group_trigger(&t->f.v, id, on_answer, &a[i]);
    }
    assert_int_equal(dispense_group_commits(&t->f.v), 0);
    dispense_group_trigger(&t->f.v, "F64", on_answer, &a[DISPENSE_GROUP_MAX]);
    assert_int_equal(dispense_group_commits(&t->f.v), 1);
    for (int i = 0; i < DISPENSE_GROUP_MAX; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].rc, VEND_OK);
    }
    assert_int_equal(a[DISPENSE_GROUP_MAX].calls, 0);
    assert_true(a[0].sent);
    assert_int_equal(t->broker.published, 1); /* VM01: one at a time */
    run_loop_for(t, 10);
    assert_int_equal(dispense_group_commits(&t->f.v), 2);
    assert_int_equal(a[DISPENSE_GROUP_MAX].calls, 1);
    assert_int_equal(a[DISPENSE_GROUP_MAX].rc, VEND_OK);
    expect_int(t, "SELECT count(*) FROM orders WHERE status = 'DISPENSING'",
               DISPENSE_GROUP_MAX + 1);
    dispense_results_free(&t->f.v);
}

/* A group the database cannot take commits nothing: its trigger is refused (the order stays
 * PAID, no command), its result waits and is applied once the database is free. */
static void group_on_a_locked_database_commits_nothing(void **state)
{
    struct t *t = *state;
    const struct item vm02[] = {{3, 1, 5000}};
    struct answer a2 = {0};
    struct db *other;

    one_unit_order(t, "O1");
    paid_order(t, "O2", "VM02", vm02, 1);
    trigger_ok(t, "O1", true);
    other = hold_write_lock(t);
    dispense_group_trigger(&t->f.v, "O2", on_answer, &a2);
    group_result(t, "VM01", "O1");
    run_loop_for(t, 50);
    assert_int_equal(a2.calls, 1);
    assert_int_equal(a2.rc, VEND_EBUSY);
    assert_false(a2.sent);
    assert_int_equal(t->broker.published, 1); /* O1's command only */
    assert_int_equal(dispense_results_waiting(&t->f.v), 1);
    release_write_lock(other);
    run_loop_for(t, 600);
    assert_int_equal(dispense_results_waiting(&t->f.v), 0);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "COMPLETED");
    expect_text(t, "SELECT status FROM orders WHERE id = 'O2'", "PAID");
    expect_int(t, "SELECT count(*) FROM dispense_logs WHERE order_id = 'O2'", 0);
    assert_int_equal(dispense_group_commits(&t->f.v), 0);
    dispense_results_free(&t->f.v);
}

/*
 * The database ends the group's transaction by itself half-way: SQLite rolls all of it back on
 * an I/O error or a full disk (here a trigger's RAISE(ROLLBACK) on O2), PostgreSQL loses the
 * connection (here a trigger that ends its own session). What the group applied before is
 * gone, so nothing of it may go out or be told done: O1's trigger is refused and its order
 * stays PAID, and O4's result waits to be applied again, not lost with the product dropped.
 * The group is all or nothing: O3, after the loss, is refused too, and goes out when asked
 * again.
 */
static void group_the_database_rolled_back_sends_nothing_of_it(void **state)
{
    struct t *t = *state;
    const struct item vm02[] = {{3, 1, 5000}}, vm03[] = {{4, 1, 5000}};
    struct answer a1 = {0}, a2 = {0}, a3 = {0};

    dfx_sql(t->f.v.db, "INSERT INTO machines (id, name, status, created_at, updated_at) VALUES "
                       "('VM03', 'VM03', 'ONLINE', 'x', 'x')");
    dfx_sql(t->f.v.db,
            "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, current_stock, "
            "motor_duration_ms, created_at, updated_at) VALUES "
            "(4, 'VM03', 1, 1, 10, 5, 1500, 'x', 'x')");
    one_unit_order(t, "O4");
    trigger_ok(t, "O4", true);
    one_unit_order(t, "O1");
    paid_order(t, "O2", "VM02", vm02, 1);
    paid_order(t, "O3", "VM03", vm03, 1);
    if (dfx_pg()) {
        dfx_sql(t->f.v.db, "CREATE FUNCTION end_session() RETURNS trigger AS 'BEGIN "
                           "IF NEW.id = ''O2'' THEN "
                           "PERFORM pg_terminate_backend(pg_backend_pid()); "
                           "PERFORM pg_sleep(5); "
                           "END IF; RETURN NEW; END' LANGUAGE plpgsql");
        dfx_sql(t->f.v.db, "CREATE TRIGGER end_session BEFORE UPDATE OF status ON orders "
                           "FOR EACH ROW EXECUTE FUNCTION end_session()");
    } else {
        dfx_sql(t->f.v.db, "CREATE TRIGGER rollback_o2 BEFORE UPDATE OF status ON orders "
                           "WHEN NEW.id = 'O2' BEGIN "
                           "SELECT RAISE(ROLLBACK, 'transaction rolled back by the test'); END");
    }
    t->broker.db_url = t->f.url; /* every command checked against what is committed */
    group_result(t, "VM01", "O4");
    dispense_group_trigger(&t->f.v, "O1", on_answer, &a1);
    dispense_group_trigger(&t->f.v, "O2", on_answer, &a2);
    dispense_group_trigger(&t->f.v, "O3", on_answer, &a3);
    run_loop_for(t, 10);
    assert_int_equal(a1.calls + a2.calls + a3.calls, 3);
    assert_true(a1.rc < 0);
    assert_false(a1.sent);
    assert_true(a2.rc < 0);
    assert_false(a2.sent);
    assert_true(a3.rc < 0);
    assert_false(a3.sent);
    assert_int_equal(t->broker.published, 1); /* O4's, before the group */
    expect_join(t, "SELECT id || ':' || status FROM orders ORDER BY id", " ",
                "O1:PAID O2:PAID O3:PAID O4:DISPENSING");
    expect_int(t, "SELECT count(*) FROM dispense_logs WHERE order_id <> 'O4'", 0);
    /* The result was not applied: it waits, and is applied once. */
    assert_int_equal(dispense_results_waiting(&t->f.v), 1);
    run_loop_for(t, 600);
    assert_int_equal(dispense_results_waiting(&t->f.v), 0);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O4'", "COMPLETED");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    /* Counted once, when it was durable, not also in the group that was rolled back. */
    assert_int_equal(t->f.v.metrics.dispense_succeeded, 1);
    /* Asked again, O3 goes out. */
    trigger_ok(t, "O3", true);
    assert_int_equal(t->broker.published, 2);
    assert_non_null(strstr(t->broker.payload[1], "\"orderId\":\"O3\""));
    expect_reservations_consistent(t);
    dispense_results_free(&t->f.v);
}

/* A machine that announces the settle extension gets commands it can refuse when late. */
static void settle_machine_gets_expires_at(void **state)
{
    struct t *t = *state;
    struct vend_status st = {.status = VEND_PRESENCE_ONLINE, .has_settle = true, .settle = true};
    struct vend_status will = {.status = VEND_PRESENCE_OFFLINE};
    const struct item it[] = {{3, 1, 5000}};
    bool changed = false;
    char want[256];

    assert_int_equal(machines_apply_status(&t->f.v, "VM02", &st, &changed), VEND_OK);
    /* The will says nothing of the extension: the machine keeps it. */
    assert_int_equal(machines_apply_status(&t->f.v, "VM02", &will, &changed), VEND_OK);
    expect_int(t, "SELECT settle FROM machines WHERE id = 'VM02'", 1);
    paid_order(t, "S1", "VM02", it, 1);
    trigger_ok(t, "S1", true);
    snprintf(want, sizeof(want),
             "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"S1\",\"timeoutMs\":1500,"
             "\"expiresAt\":%lld}",
             (long long)(T0_WALL + GRACE_MS));
    assert_string_equal(t->broker.payload[0], want);
    /* The guide's machine (no extension) gets the guide's payload. */
    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_string_equal(t->broker.payload[1],
                        "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"O1\",\"timeoutMs\":1500}");
}

/* expiresAt is checked by a machine whose clock SNTP keeps true: it is a wall-clock time. The
 * server's clock was an hour slow when vendd anchored its deadline clock, and NTP corrected it
 * since; an expiresAt on the deadline clock would be an hour in the past, and every synced
 * machine would refuse every command (EXPIRED) until the server rebooted. */
static void expires_at_follows_the_corrected_wall_clock(void **state)
{
    struct t *t = *state;
    struct vend_status st = {.status = VEND_PRESENCE_ONLINE, .has_settle = true, .settle = true};
    const struct item it[] = {{3, 1, 5000}};
    bool changed = false;
    char want[256];

    assert_int_equal(machines_apply_status(&t->f.v, "VM02", &st, &changed), VEND_OK);
    dfx_clock_set(dfx_clock_ms() + 3600 * 1000);
    advance(1000);
    restart(t); /* the same boot: the stored anchor holds, so a restart does not help */
    paid_order(t, "S1", "VM02", it, 1);
    trigger_ok(t, "S1", true);
    snprintf(want, sizeof(want),
             "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"S1\",\"timeoutMs\":1500,"
             "\"expiresAt\":%lld}",
             (long long)(dfx_clock_ms() + GRACE_MS));
    assert_string_equal(t->broker.payload[0], want);
    /* The deadline itself stays on the monotonic clock. */
    assert_int_equal(deadline_armed_for(&t->f.v), deadline_now_ms(&t->f.v) + 1500 + GRACE_MS);
}

/* A machine that restarted mid-run cannot say whether the product fell: no blind refund.
 * The unit waits for a person, who counts the slot and settles it. */
static void power_loss_waits_for_the_operator(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "POWER_LOSS"), VEND_OK);
    expect_text(t,
                "SELECT status || ' ' || error_message || ' ' || COALESCE(deadline_at, '-') "
                "FROM dispense_logs",
                "UNSETTLED POWER_LOSS -");
    expect_text(t, "SELECT status FROM orders", "DISPENSING");
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    expect_int(t, "SELECT reserved FROM slots WHERE id = 1", 1);
    expect_int(t, "SELECT needs_inspection FROM slots WHERE id = 1", 1);
    expect_int(t,
               "SELECT count(*) FROM alerts WHERE kind = 'UNIT_UNSETTLED' AND resolved_at IS "
               "NULL",
               1);
    /* Not asked about: the machine's journal cannot tell more. The repeat changes nothing. */
    advance(SETTLE_ASK_MAX_MS * 2);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    assert_int_equal(t->broker.published, 1);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "POWER_LOSS"), VEND_OK);
    expect_int(t, "SELECT count(*) FROM alerts", 1);
    /* The operator counted the slot: it fell. */
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_OK);
    expect_text(t, "SELECT status || ' ' || settled_by FROM dispense_logs", "SUCCEEDED OPERATOR");
    expect_text(t, "SELECT status FROM orders", "COMPLETED");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_int(t, "SELECT count(*) FROM refunds", 0);
}

/* ---- a settling machine: asked at the deadline, never failed blind (settle.h) ---------- */

static void make_vm01_settle(struct t *t)
{
    dfx_sql(t->f.v.db, "UPDATE machines SET settle = 1 WHERE id = 'VM01'");
}

/* O1 on a settling VM01, sent, and its deadline passed: UNSETTLED and asked once. */
static void unsettled_o1(struct t *t)
{
    make_vm01_settle(t);
    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
}

static void deadline_on_a_settling_machine_asks_instead_of_failing(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    expect_text(t, "SELECT status || ' ' || settle_asks FROM dispense_logs", "UNSETTLED 1");
    /* The product may have dropped: no refund, the order open, the stock still promised. */
    expect_text(t, "SELECT status FROM orders", "DISPENSING");
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    expect_int(t, "SELECT reserved FROM slots WHERE id = 1", 1);
    expect_int(t,
               "SELECT count(*) FROM alerts WHERE kind = 'UNIT_UNSETTLED' AND order_id = 'O1' "
               "AND resolved_at IS NULL",
               1);
    assert_int_equal(t->broker.published, 2);
    assert_string_equal(t->broker.topic[1], "vm/VM01/command");
    assert_string_equal(t->broker.payload[1], "{\"cmd\":\"settle\",\"slot\":1,\"orderId\":\"O1\"}");
    assert_int_equal(t->f.v.metrics.dispense_unsettled, 1);
    assert_int_equal(t->f.v.metrics.dispense_no_result, 0);
}

static void settle_answered_with_the_drop_completes_without_refund(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    /* The machine's journal had the result vendd lost. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status || ' ' || settled_by FROM dispense_logs", "SUCCEEDED MACHINE");
    expect_text(t, "SELECT status FROM orders", "COMPLETED");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    expect_int(t,
               "SELECT count(*) FROM alerts WHERE kind = 'UNIT_UNSETTLED' AND "
               "resolved_at IS NULL",
               0);
    /* The machine repeats its result until the next dispense: nothing changes. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_ECONFLICT);
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
}

static void settle_answered_cancelled_fails_and_refunds(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "CANCELLED"), VEND_OK);
    expect_text(t, "SELECT status || ' ' || error_message || ' ' || settled_by FROM dispense_logs",
                "FAILED CANCELLED MACHINE");
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders", "FAILED CANCELLED");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 5);
}

static void unsettled_unit_is_asked_again_with_backoff_and_when_online(void **state)
{
    struct t *t = *state;
    struct vend_status online = {
        .status = VEND_PRESENCE_ONLINE, .has_settle = true, .settle = true};
    bool changed = false;

    unsettled_o1(t);
    deadline_arm(&t->f.v); /* as the timer does after its sweep */
    assert_int_equal(deadline_armed_for(&t->f.v), deadline_now_ms(&t->f.v) + SETTLE_ASK_FIRST_MS);
    advance(SETTLE_ASK_FIRST_MS - 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    assert_int_equal(t->broker.published, 2);
    advance(2);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    assert_int_equal(t->broker.published, 3);
    expect_int(t, "SELECT settle_asks FROM dispense_logs", 2);
    /* The gap doubles. */
    deadline_arm(&t->f.v);
    assert_int_equal(deadline_armed_for(&t->f.v),
                     deadline_now_ms(&t->f.v) + 2 * SETTLE_ASK_FIRST_MS);
    /* The broker away: asks are counted and rescheduled, nothing is lost. */
    t->broker.up = false;
    advance(2 * SETTLE_ASK_FIRST_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    assert_int_equal(t->broker.published, 3);
    /* The machine comes back: asked at once. */
    t->broker.up = true;
    assert_int_equal(machines_apply_status(&t->f.v, "VM01", &online, &changed), VEND_OK);
    settle_machine_online(&t->f.v, "VM01");
    assert_int_equal(t->broker.published, 4);
    assert_string_equal(t->broker.payload[3], t->broker.payload[1]);
    expect_text(t, "SELECT status FROM dispense_logs", "UNSETTLED");
}

static void unsettled_machine_gets_no_new_dispense(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    one_unit_order(t, "O2");
    trigger_ok(t, "O2", false); /* the unit may still be running */
    dispense_pump(&t->f.v, "VM01");
    assert_int_equal(t->broker.published, 2);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "CANCELLED"), VEND_OK);
    /* Settled: O2 goes out now. */
    assert_int_equal(t->broker.published, 3);
    assert_non_null(strstr(t->broker.payload[2], "\"orderId\":\"O2\""));
}

static void order_with_an_unsettled_unit_ends_when_it_is_settled(void **state)
{
    struct t *t = *state;
    const struct item it[] = {{1, 2, 5000}};

    make_vm01_settle(t);
    paid_order(t, "O1", "VM01", it, 1);
    trigger_ok(t, "O1", true);
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_join(t, "SELECT status FROM dispense_logs ORDER BY unit", ",", "UNSETTLED,QUEUED");
    /* Unit 2 cannot go out while unit 1 is unsettled; its dispatch limit passes. */
    advance(TTL_S * 1000);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status || ' ' || error_message FROM dispense_logs WHERE unit = 2",
                "FAILED MACHINE_UNREACHABLE");
    /* Unit 1 may have dropped: the order is still open, and nothing is refunded yet. */
    expect_text(t, "SELECT status FROM orders", "DISPENSING");
    expect_int(t, "SELECT count(*) FROM refunds", 0);
    /* It did: the order fails, refunding exactly the unit that never went out. */
    assert_int_equal(result(t, "VM01", "O1", 1, 1, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders",
                "FAILED MACHINE_UNREACHABLE");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
}

static void operator_settles_an_unsettled_unit_by_hand(void **state)
{
    struct t *t = *state;
    char *before, *after;

    make_vm01_settle(t);
    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    /* Still SENT (inside its deadline): not the operator's to settle. */
    before = money_snapshot(t);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_ESTATE);
    assert_int_equal(settle_by_operator(&t->f.v, "NOPE", 1, true), VEND_ENOTFOUND);
    after = money_snapshot(t);
    assert_string_equal(before, after);
    free(before);
    free(after);
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, false), VEND_OK);
    expect_text(t, "SELECT status || ' ' || error_message || ' ' || settled_by FROM dispense_logs",
                "FAILED SETTLED_NOT_DROPPED OPERATOR");
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders",
                "FAILED SETTLED_NOT_DROPPED");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
    assert_int_equal(t->f.v.metrics.dispense_settled_by_operator, 1);
    /* The machine's answer arriving afterwards contradicts nothing it can change. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "CANCELLED"), VEND_ECONFLICT);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_ESTATE);
}

static void unsettled_unit_survives_a_restart_and_is_asked_again(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    restart(t);
    expect_text(t, "SELECT status FROM dispense_logs", "UNSETTLED");
    advance(SETTLE_ASK_FIRST_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    assert_int_equal(t->broker.published, 3);
    assert_string_equal(t->broker.payload[2], t->broker.payload[1]);
}

static void guide_machine_still_fails_no_result_at_the_deadline(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
    assert_int_equal(t->broker.published, 1); /* no settle to a machine that cannot answer */
}

/* Review D1: a unit the sweep found moved already must not leave its transaction open. */
static void sweep_of_units_already_failed_leaves_no_transaction_open(void **state)
{
    struct t *t = *state;
    const struct item it[] = {{1, 3, 5000}};

    make_vm01_settle(t);
    paid_order(t, "O1", "VM01", it, 1);
    trigger_ok(t, "O1", true);
    advance(MOTOR_MS + GRACE_MS + 1);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    /* Units 2 and 3 pass their dispatch limit together: failing 2 fails 3 as NOT_SENT. */
    advance(TTL_S * 1000);
    assert_int_equal(deadline_sweep(&t->f.v), 0);
    expect_join(t,
                "SELECT status || ' ' || error_message FROM dispense_logs WHERE unit > 1 "
                "ORDER BY unit",
                ",", "FAILED MACHINE_UNREACHABLE,FAILED NOT_SENT");
    assert_int_equal(db_begin(t->f.v.db), VEND_OK);
    db_rollback(t->f.v.db);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_OK);
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 10000");
}

/* Review D2: the machine's answer after an operator's word is not lost. */
static void machine_drop_after_operator_said_not_dropped_is_counted(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, false), VEND_OK);
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
    /* The journal had the drop: stock taken, the refund withdrawn, the order complete. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_OK);
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
    expect_text(t, "SELECT status FROM refunds", "CANCELLED");
    expect_text(t, "SELECT status FROM orders", "COMPLETED");
    expect_int(t, "SELECT late_result FROM dispense_logs", 1);
    /* Once only. */
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, true, NULL), VEND_ECONFLICT);
    expect_int(t, "SELECT current_stock FROM slots WHERE id = 1", 4);
}

static void machine_cancel_after_operator_said_dropped_alerts(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_OK);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "CANCELLED"), VEND_OK);
    expect_int(t,
               "SELECT count(*) FROM alerts WHERE kind = 'SETTLE_CONTRADICTED' AND "
               "resolved_at IS NULL",
               1);
    expect_int(t, "SELECT needs_inspection FROM slots WHERE id = 1", 1);
    /* The operator looked at the machine: the order stays as they said; a person decides. */
    expect_text(t, "SELECT status FROM orders", "COMPLETED");
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "CANCELLED"), VEND_ECONFLICT);
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'SETTLE_CONTRADICTED'", 1);
}

/* Second review: a machine repeats its last result until the next dispense (PROTOCOL.md,
 * "Acknowledging results"). After the operator counted the slot and said "dropped", the
 * repeated POWER_LOSS says nothing of the drop: no contradiction, no flag. */
static void power_loss_repeated_after_the_operator_is_no_contradiction(void **state)
{
    struct t *t = *state;

    make_vm01_settle(t);
    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    assert_int_equal(result(t, "VM01", "O1", 1, 0, false, false, "POWER_LOSS"), VEND_OK);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_OK);
    dfx_sql(t->f.v.db, "UPDATE slots SET needs_inspection = 0 WHERE id = 1"); /* looked at */
    assert_true(result(t, "VM01", "O1", 1, 0, false, false, "POWER_LOSS") < 0);
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'SETTLE_CONTRADICTED'", 0);
    expect_int(t, "SELECT needs_inspection FROM slots WHERE id = 1", 0);
    expect_text(t,
                "SELECT CAST(success AS TEXT) || CAST(drop_detected AS TEXT) || "
                "CAST(late_result AS TEXT) FROM dispense_logs",
                "110");
}

/* A late result without a drop blames the slot as a live one does (SPEC §4 rule 4). */
static void late_no_drop_flags_the_slot(void **state)
{
    struct t *t = *state;

    one_unit_order(t, "O1");
    trigger_ok(t, "O1", true);
    fail_by_deadline(t);
    expect_text(t, "SELECT status FROM dispense_logs", "NO_RESULT");
    assert_int_equal(result(t, "VM01", "O1", 1, 0, true, false, "NO_DROP"), VEND_OK);
    expect_int(t, "SELECT needs_inspection FROM slots WHERE id = 1", 1);
}

/* A unit held for the operator does not take the machine out of service: its other slots
 * serve other orders; the rest of the held unit's own order is not sent. */
static void power_loss_hold_leaves_the_machine_serving(void **state)
{
    struct t *t = *state;
    const struct item two[] = {{1, 2, 5000}};
    const struct item other[] = {{2, 1, 7000}};

    make_vm01_settle(t);
    paid_order(t, "O1", "VM01", two, 1);
    trigger_ok(t, "O1", true);
    assert_int_equal(result(t, "VM01", "O1", 1, 1, false, false, "POWER_LOSS"), VEND_OK);
    expect_text(t, "SELECT status || ' ' || error_message FROM dispense_logs WHERE unit = 2",
                "FAILED NOT_SENT");
    expect_text(t, "SELECT status FROM orders WHERE id = 'O1'", "DISPENSING");
    paid_order(t, "O2", "VM01", other, 1);
    trigger_ok(t, "O2", true); /* sent at once: the machine is idle */
    assert_int_equal(result(t, "VM01", "O2", 2, 0, true, true, NULL), VEND_OK);
    expect_text(t, "SELECT status FROM orders WHERE id = 'O2'", "COMPLETED");
    /* The operator settles the held unit: the order ends, refunding what did not drop. */
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_OK);
    expect_text(t, "SELECT status || ' ' || failure_reason FROM orders WHERE id = 'O1'",
                "FAILED NOT_SENT");
    expect_text(t, "SELECT status || ' ' || amount FROM refunds", "QUEUED 5000");
}

/* The operator said dropped; the machine reports a drop without success: no contradiction. */
static void drop_without_success_after_operator_dropped_agrees(void **state)
{
    struct t *t = *state;

    unsettled_o1(t);
    assert_int_equal(settle_by_operator(&t->f.v, "O1", 1, true), VEND_OK);
    assert_true(result(t, "VM01", "O1", 1, 0, false, true, "MOTOR_FAULT") < 0);
    expect_int(t, "SELECT count(*) FROM alerts WHERE kind = 'SETTLE_CONTRADICTED'", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(completed_takes_one_from_stock, setup, teardown),
        cmocka_unit_test_setup_teardown(repeated_trigger_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicate_and_contradicting_results_change_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(no_drop_fails_flags_and_refunds, setup, teardown),
        cmocka_unit_test_setup_teardown(drop_without_success_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(slot_faults_from_the_firmware_flag_the_slot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(out_of_range_unit_fails_invalid_unit, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_unit_fails_the_units_behind_it_not_sent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(two_item_order_refunds_exactly_the_failed_unit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(drop_from_a_slot_counted_empty_alerts_stock_mismatch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(no_result_by_the_deadline_fails_and_refunds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(queued_unit_fails_machine_unreachable_after_the_ttl, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(broker_gone_at_publish_requeues_and_sends_once_later, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(publish_that_may_have_left_is_never_resent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(wall_clock_steps_do_not_move_deadlines, setup, teardown),
        cmocka_unit_test_setup_teardown(first_sweep_after_restart_waits_one_grace_period, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sweep_on_a_locked_database_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(unusable_overdue_row_is_logged_and_backed_off, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(no_timer_for_the_deadline_stops_vendd, setup, teardown),
        cmocka_unit_test_setup_teardown(late_drop_before_the_refund_went_out_completes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(late_drop_after_the_refund_went_out_alerts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(late_drop_after_a_refund_attempt_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(late_partial_drop_after_a_try_keeps_alert_and_row_in_step,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(backoff_for_one_row_does_not_delay_the_others, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(step_back_then_restart_does_not_postpone_the_deadline,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(step_forward_then_restart_does_not_fail_a_sendable_unit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(new_boot_anchors_on_the_wall_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(new_boot_after_a_corrected_clock_keeps_the_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(new_boot_after_a_corrected_clock_keeps_the_refund_hold,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(step_forward_keeps_the_refund_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(step_back_does_not_prolong_the_refund_hold, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(step_then_restart_keeps_the_refund_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commits_a_loop_turn_once, setup, teardown),
        cmocka_unit_test_setup_teardown(full_group_is_applied_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(group_with_duplicates_applies_each_once, setup, teardown),
        cmocka_unit_test_setup_teardown(group_the_database_rolled_back_sends_nothing_of_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(group_on_a_locked_database_commits_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(result_on_a_locked_database_is_kept_and_applied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(settle_machine_gets_expires_at, setup, teardown),
        cmocka_unit_test_setup_teardown(expires_at_follows_the_corrected_wall_clock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(power_loss_waits_for_the_operator, setup, teardown),
        cmocka_unit_test_setup_teardown(late_partial_drop_shrinks_the_refund_and_its_alert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(deadline_on_a_settling_machine_asks_instead_of_failing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(settle_answered_with_the_drop_completes_without_refund,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(settle_answered_cancelled_fails_and_refunds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unsettled_unit_is_asked_again_with_backoff_and_when_online,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(unsettled_machine_gets_no_new_dispense, setup, teardown),
        cmocka_unit_test_setup_teardown(order_with_an_unsettled_unit_ends_when_it_is_settled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(operator_settles_an_unsettled_unit_by_hand, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unsettled_unit_survives_a_restart_and_is_asked_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(guide_machine_still_fails_no_result_at_the_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sweep_of_units_already_failed_leaves_no_transaction_open,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(machine_drop_after_operator_said_not_dropped_is_counted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(machine_cancel_after_operator_said_dropped_alerts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(power_loss_repeated_after_the_operator_is_no_contradiction,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(late_no_drop_flags_the_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(power_loss_hold_leaves_the_machine_serving, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(drop_without_success_after_operator_dropped_agrees, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
