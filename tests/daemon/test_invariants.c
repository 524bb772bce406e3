/*
 * test_invariants.c - vend-check(1), the real binary ($VEND_CHECK), on a database the real
 * domain code built (SQLite, or PostgreSQL as test_invariants_pg: fixture.h): orders paid by
 * an operator and by Midtrans notifications, dispensed, partly failed with a refund due,
 * refunded, expired, one still in flight; slots created, restocked, one low; a machine
 * offline with its alert. That database passes. Then each invariant is broken by one direct
 * SQL change (or, for the drops and the deadlines, by the drop log and the clock the
 * checker is given) and the checker fails with exactly that invariant, naming the subject.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "dispense.h"
#include "dispense_result.h"
#include "fixture.h"
#include "machines.h"
#include "midtrans.h"
#include "orders.h"
#include "payments.h"
#include "refunds.h"
#include "slots.h"
#include "vend/err.h"
#include "vend/msg.h"

#define T0_WALL     1764235800000 /* 2025-11-27T09:30:00.000Z */
#define T0_ISO      "2025-11-27T09:30:00.000Z"
#define BEFORE_ISO  "2025-11-27T09:00:00.000Z" /* the simulated machines started */
#define AN_HOUR_ISO "2025-11-27T10:30:00.000Z"
#define OUT_MAX     8192
#define DROP_LINES  16

struct fake_broker {
    int published;
};

struct t {
    struct dfx f;
    struct fake_broker broker;
    char drops[DROP_LINES][160]; /* what the machines dropped, in drop-log lines */
    int ndrops;
    char out[OUT_MAX]; /* the checker's stdout */
    int64_t refund_b;  /* order B's refund row */
};

static int fake_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                        bool retain, uint32_t expiry_s)
{
    (void)topic;
    (void)payload;
    (void)len;
    (void)qos;
    (void)retain;
    (void)expiry_s;
    ((struct fake_broker *)ctx)->published++;
    return VEND_OK;
}

static bool fake_up(void *ctx)
{
    (void)ctx;
    return true;
}

/* ---- building the healthy database through the domain code ------------------------------- */

static void slot(struct t *t, const char *machine, int number, const char *name, int price,
                 int stock)
{
    struct slot_input in = {.has_name = true,
                            .has_price = true,
                            .has_capacity = true,
                            .has_stock = true,
                            .price = price,
                            .capacity = 10,
                            .stock = stock};
    struct slot_outcome out = {0};

    snprintf(in.product_name, sizeof(in.product_name), "%s", name);
    if (slots_put(&t->f.v, machine, number, &in, &out) != VEND_OK)
        fail_msg("slot %d of %s: %s", number, machine, out.why);
}

static void presence(struct t *t, const char *machine, enum vend_presence p)
{
    struct vend_status st = {.status = p, .door = VEND_DOOR_UNKNOWN};
    bool changed = false;

    assert_int_equal(machines_apply_status(&t->f.v, machine, &st, &changed), VEND_OK);
}

/* An order of the given (slot, quantity) items on machine; manual: PAID at once. */
static void order(struct t *t, const char *id, const char *machine, enum payment_method method,
                  const struct order_item_in *items, size_t n)
{
    struct order_new o = {.method = method, .nitems = n};
    char why[256] = "";

    snprintf(o.id, sizeof(o.id), "%s", id);
    snprintf(o.machine_id, sizeof(o.machine_id), "%s", machine);
    memcpy(o.items, items, n * sizeof(*items));
    if (method == PAYMENT_MANUAL) {
        if (orders_create_manual(&t->f.v, &o, why, sizeof(why)) != VEND_OK)
            fail_msg("order %s: %s", id, why);
        return;
    }
    assert_int_equal(db_begin(t->f.v.db), VEND_OK);
    if (orders_create_locked(&t->f.v, &o, dfx_clock_ms(), why, sizeof(why)) != VEND_OK)
        fail_msg("order %s: %s", id, why);
    assert_int_equal(db_commit(t->f.v.db), VEND_OK);
}

static void trigger(struct t *t, const char *id)
{
    char status[DISPENSE_STATUS_SIZE];
    bool sent = false;

    assert_int_equal(dispense_trigger(&t->f.v, id, status, &sent), VEND_OK);
}

/* The machine's result for a unit; a drop goes to the drop log as the machine saw it. */
static void result(struct t *t, const char *machine, const char *id, int slot_number, int unit,
                   bool dropped)
{
    struct vend_dispense_result r = {.slot = (uint16_t)slot_number,
                                     .unit = (uint16_t)unit,
                                     .success = dropped,
                                     .drop_detected = dropped,
                                     .has_duration = true,
                                     .duration_ms = 1200};

    snprintf(r.order_id, sizeof(r.order_id), "%s", id);
    if (!dropped) {
        r.has_error = true;
        snprintf(r.error, sizeof(r.error), "JAMMED");
    } else {
        assert_true(t->ndrops < DROP_LINES);
        snprintf(t->drops[t->ndrops++], sizeof(t->drops[0]), "drop %s %s %s %d %d", T0_ISO, machine,
                 id, unit, slot_number);
    }
    assert_int_equal(dispense_result_apply(&t->f.v, machine, &r), VEND_OK);
}

/* A Midtrans notification for id, as the webhook hands it over (raw differs per call). */
static void notify(struct t *t, const char *id, const char *status, int64_t amount,
                   const char *raw_tag, const char *want_outcome)
{
    struct midtrans_notification n = {.amount = amount};
    const char *outcome = NULL;
    int64_t total = 0;
    char raw[256];

    snprintf(n.order_id, sizeof(n.order_id), "%s", id);
    snprintf(n.transaction_id, sizeof(n.transaction_id), "tx-%s", id);
    snprintf(n.transaction_status, sizeof(n.transaction_status), "%s", status);
    snprintf(n.status_code, sizeof(n.status_code), "%s",
             strcmp(status, "settlement") == 0 ? "200" : "202");
    snprintf(n.gross_amount, sizeof(n.gross_amount), "%lld.00", (long long)amount);
    snprintf(n.fraud_status, sizeof(n.fraud_status), "accept");
    snprintf(n.payment_type, sizeof(n.payment_type), "qris");
    snprintf(raw, sizeof(raw), "{\"order_id\":\"%s\",\"transaction_status\":\"%s\",\"tag\":\"%s\"}",
             id, status, raw_tag);
    assert_int_equal(payments_apply(&t->f.v, &n, raw, strlen(raw), true, &outcome, &total),
                     VEND_OK);
    assert_string_equal(outcome, want_outcome);
}

static int setup(void **state)
{
    static const struct order_item_in one_cola[] = {{.slot = 1, .quantity = 1}};
    static const struct order_item_in cola_and_chips[] = {{.slot = 1, .quantity = 1},
                                                          {.slot = 2, .quantity = 1}};
    static const struct order_item_in one_chips[] = {{.slot = 2, .quantity = 1}};
    static const struct order_item_in two_colas[] = {{.slot = 1, .quantity = 2}};
    static const struct order_item_in one_tea[] = {{.slot = 3, .quantity = 1}};
    struct t *t = calloc(1, sizeof(*t));
    struct slot_input restock = {.has_stock = true, .has_version = true};
    struct slot_outcome out = {0};
    char status[16];

    assert_non_null(t);
    dfx_clock_set(T0_WALL);
    dfx_open(&t->f);
    t->f.conf.machine_offline_alert_s = 0; /* OFFLINE: the alert at once */
    t->f.v.boot_id = "test-boot";
    t->f.v.broker = (struct broker){.publish = fake_publish, .up = fake_up, .ctx = &t->broker};
    assert_int_equal(deadline_resume(&t->f.v), VEND_OK);

    assert_int_equal(machines_register(&t->f.v, "VM01", "Lobby", NULL), VEND_OK);
    assert_int_equal(machines_register(&t->f.v, "VM02", "Hall", NULL), VEND_OK);
    presence(t, "VM01", VEND_PRESENCE_ONLINE);
    presence(t, "VM02", VEND_PRESENCE_ONLINE);
    slot(t, "VM01", 1, "Cola", 5000, 6);
    slot(t, "VM01", 2, "Chips", 7000, 5);
    slot(t, "VM01", 3, "Tea", 4000, 2); /* low (20 % of 10): LOW_STOCK, open */
    slot(t, "VM02", 1, "Water", 3000, 4);

    /* A: one unit, dropped: COMPLETED. */
    order(t, "A", "VM01", PAYMENT_MANUAL, one_cola, 1);
    trigger(t, "A");
    result(t, "VM01", "A", 1, 1, true);
    /* B: two units, the second jams: FAILED with 7000 due (QUEUED, no gateway). */
    order(t, "B", "VM01", PAYMENT_MANUAL, cola_and_chips, 2);
    trigger(t, "B");
    result(t, "VM01", "B", 1, 1, true);
    result(t, "VM01", "B", 2, 2, false);
    /* C: jams, and the operator pays the refund: REFUNDED. */
    order(t, "C", "VM01", PAYMENT_MANUAL, one_chips, 1);
    trigger(t, "C");
    result(t, "VM01", "C", 2, 1, false);
    refunds_sweep(&t->f.v);
    assert_int_equal(refunds_mark_done(&t->f.v,
                                       dfx_int(t->f.v.db, "SELECT id FROM refunds "
                                                          "WHERE order_id = 'C'"),
                                       "cash", status),
                     VEND_OK);
    /* D: a customer's, paid by Midtrans (the notification replayed with other bytes), two
     * units dropped: COMPLETED. */
    order(t, "D", "VM01", PAYMENT_QRIS, two_colas, 1);
    notify(t, "D", "settlement", 10000, "1", "PAID");
    notify(t, "D", "settlement", 10000, "2", "REPLAY");
    result(t, "VM01", "D", 1, 1, true);
    result(t, "VM01", "D", 1, 2, true);
    /* E: a customer's that expired unpaid. */
    order(t, "E", "VM01", PAYMENT_QRIS, one_tea, 1);
    notify(t, "E", "expire", 4000, "1", "EXPIRED");
    /* F: in flight on VM02, its deadline ahead. */
    order(t, "F", "VM02", PAYMENT_MANUAL, one_cola, 1);
    trigger(t, "F");
    /* A restock of VM01 slot 1 (2 left, low: 6 - A - B - D's two), at the version shown. */
    restock.version = dfx_int(t->f.v.db, "SELECT version FROM slots WHERE machine_id = 'VM01' "
                                         "AND slot_number = 1");
    restock.stock = 8;
    assert_int_equal(slots_put(&t->f.v, "VM01", 1, &restock, &out), VEND_OK);
    /* VM02 goes away: MACHINE_OFFLINE, open. */
    presence(t, "VM02", VEND_PRESENCE_OFFLINE);

    t->refund_b = dfx_int(t->f.v.db, "SELECT id FROM refunds WHERE order_id = 'B'");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;

    deadline_stop(&t->f.v);
    refunds_stop(&t->f.v);
    dfx_close(&t->f);
    free(t);
    return 0;
}

/* ---- running the checker ------------------------------------------------------------------ */

/* Write the drop log: "start" for both machines, then the drops (skip: one left out, -1 none;
 * twice: one written again, -1 none). Returns its path in buf. */
static void drop_log(struct t *t, int skip, int twice, const char *extra, char *buf, size_t size)
{
    FILE *f;

    snprintf(buf, size, "%s/drops.log", t->f.dir);
    f = fopen(buf, "w");
    assert_non_null(f);
    fprintf(f, "start %s VM01\nstart %s VM02\n", BEFORE_ISO, BEFORE_ISO);
    for (int i = 0; i < t->ndrops; i++) {
        if (i != skip)
            fprintf(f, "%s\n", t->drops[i]);
        if (i == twice)
            fprintf(f, "%s\n", t->drops[i]);
    }
    if (extra != NULL)
        fprintf(f, "%s\n", extra);
    assert_int_equal(fclose(f), 0);
}

/* Run $VEND_CHECK on the fixture's database with args (NULL-terminated); its stdout in
 * t->out. Returns its exit status. */
static int check(struct t *t, const char *const *args)
{
    const char *bin = getenv("VEND_CHECK");
    char path[300];
    const char *argv[16];
    size_t n = 0, len;
    int status = 0;
    FILE *f;
    pid_t pid;

    if (bin == NULL)
        fail_msg("VEND_CHECK is not set (ctest sets it)");
    snprintf(path, sizeof(path), "%s/check.out", t->f.dir);
    argv[n++] = bin;
    for (; args != NULL && *args != NULL && n < 14; args++)
        argv[n++] = *args;
    argv[n++] = t->f.url;
    argv[n] = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen(path, "w", stdout) == NULL)
            _exit(99);
        execv(bin, (char *const *)argv);
        _exit(98);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    f = fopen(path, "r");
    assert_non_null(f);
    len = fread(t->out, 1, sizeof(t->out) - 1, f);
    t->out[len] = '\0';
    fclose(f);
    return WEXITSTATUS(status);
}

static void expect_pass(struct t *t, const char *const *args)
{
    int rc = check(t, args);

    if (rc != 0)
        fail_msg("vend-check exited %d on a healthy database:\n%s", rc, t->out);
}

/* Exit 1, and every line names invariant; at least one line (and exactly lines, if > 0)
 * holds subject. */
static void expect_fail(struct t *t, const char *const *args, const char *invariant,
                        const char *subject, int lines)
{
    int rc = check(t, args), n = 0;
    size_t ilen = strlen(invariant);
    bool named = false;

    if (rc != 1)
        fail_msg("vend-check exited %d, want 1 (%s):\n%s", rc, invariant, t->out);
    for (char *line = t->out, *end; *line != '\0'; line = end + 1) {
        end = strchr(line, '\n');
        assert_non_null(end);
        *end = '\0';
        if (strncmp(line, invariant, ilen) != 0 || line[ilen] != ' ')
            fail_msg("want only '%s' violations, got: %s", invariant, line);
        named = named || strstr(line, subject) != NULL;
        n++;
    }
    if (!named)
        fail_msg("no '%s' violation names '%s'", invariant, subject);
    if (lines > 0 && n != lines)
        fail_msg("%d '%s' violation(s), want %d", n, invariant, lines);
}

/* ---- the cases ---------------------------------------------------------------------------- */

static void healthy_database_passes(void **state)
{
    struct t *t = *state;
    char drops[300];
    const char *args[] = {"--now", T0_ISO, "--drops", drops, NULL};

    /* What the fixture made: the cases below break exactly this. */
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM orders WHERE status = "
                                        "'COMPLETED'"),
                     2);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM refunds WHERE order_id = 'B' "
                                        "AND status IN ('QUEUED', 'OPERATOR') AND amount = 7000"),
                     1);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM orders WHERE id = 'C' "
                                        "AND status = 'REFUNDED'"),
                     1);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM alerts WHERE resolved_at IS NULL "
                                        "AND kind IN ('LOW_STOCK', 'MACHINE_OFFLINE')"),
                     2);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM dispense_logs WHERE "
                                        "order_id = 'F' AND status = 'SENT'"),
                     1);
    drop_log(t, -1, -1, NULL, drops, sizeof(drops));
    expect_pass(t, args);
    assert_string_equal(t->out, "");
    /* Without the drop log too. */
    expect_pass(t, (const char *[]){"--now", T0_ISO, NULL});
}

/* The operator counts VM02's slot empty while F is in flight, and F drops: vendd cannot take
 * it from a count of 0 and raises STOCK_MISMATCH instead (stock.c); that is no violation. */
static void drop_from_a_slot_counted_empty_passes(void **state)
{
    struct t *t = *state;
    struct slot_input in = {.has_stock = true, .has_version = true};
    struct slot_outcome out = {0};

    in.version = dfx_int(t->f.v.db, "SELECT version FROM slots WHERE machine_id = 'VM02'");
    assert_int_equal(slots_put(&t->f.v, "VM02", 1, &in, &out), VEND_OK);
    result(t, "VM02", "F", 1, 1, true);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM alerts WHERE kind = "
                                        "'STOCK_MISMATCH' AND order_id = 'F'"),
                     1);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT current_stock FROM slots "
                                        "WHERE machine_id = 'VM02'"),
                     0);
    expect_pass(t, (const char *[]){"--now", T0_ISO, NULL});
    /* Without that alert, the drop took nothing from the stock: a violation. */
    dfx_sql(t->f.v.db, "DELETE FROM alerts WHERE kind = 'STOCK_MISMATCH'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "stock", "order F unit 1", 1);
}

static void unit_dropped_twice(void **state)
{
    struct t *t = *state;
    char drops[300];
    const char *args[] = {"--now", T0_ISO, "--drops", drops, NULL};

    drop_log(t, -1, 1, NULL, drops, sizeof(drops)); /* drops[1]: B's unit 1 */
    expect_fail(t, args, "double_drop", "order B unit 1", 1);
}

static void drop_without_a_dropped_unit(void **state)
{
    struct t *t = *state;
    char drops[300];
    const char *args[] = {"--now", T0_ISO, "--drops", drops, NULL};

    /* B's unit 2 jammed as far as vendd knows, but the product fell. */
    drop_log(t, -1, -1, "drop " T0_ISO " VM01 B 2 2", drops, sizeof(drops));
    expect_fail(t, args, "drop_without_unit", "order B unit 2", 1);
}

static void succeeded_unit_without_a_drop(void **state)
{
    struct t *t = *state;
    char drops[300];
    const char *args[] = {"--now", T0_ISO, "--drops", drops, NULL};

    drop_log(t, 0, -1, NULL, drops, sizeof(drops)); /* drops[0]: A's unit 1 */
    expect_fail(t, args, "unit_without_drop", "order A unit 1", 1);
}

static void drop_log_that_is_not_one_is_an_error(void **state)
{
    struct t *t = *state;
    char drops[300];
    const char *args[] = {"--drops", drops, NULL};

    drop_log(t, -1, -1, "drop now VM01 A 1 1", drops, sizeof(drops));
    assert_int_equal(check(t, args), 2);
    snprintf(drops, sizeof(drops), "%s/no-such-file", t->f.dir);
    assert_int_equal(check(t, args), 2);
    assert_int_equal(check(t, (const char *[]){"--now", "yesterday", NULL}), 2);
}

static void paid_order_past_its_deadline(void **state)
{
    struct t *t = *state;

    /* F's unit is SENT with its deadline ahead of T0: an hour later it should have ended. */
    expect_fail(t, (const char *[]){"--now", AN_HOUR_ISO, NULL}, "paid_not_final", "order F unit 1",
                1);
    /* And an order nobody will end: DISPENSING with every unit final. */
    dfx_sql(t->f.v.db, "UPDATE orders SET status = 'DISPENSING' WHERE id = 'A'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "paid_not_final", "order A", 1);
}

static void stock_off_its_ledger(void **state)
{
    struct t *t = *state;

    dfx_sql(t->f.v.db, "UPDATE slots SET current_stock = current_stock - 1 "
                       "WHERE machine_id = 'VM01' AND slot_number = 2");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "stock", "machine VM01 slot 2", 1);
}

static void promised_stock_off_the_open_orders(void **state)
{
    struct t *t = *state;

    /* F's unit is promised on VM02's slot (reserved 1); a second promise nothing backs. */
    dfx_sql(t->f.v.db, "UPDATE slots SET reserved = reserved + 1 WHERE machine_id = 'VM02'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "stock",
                "machine VM02 slot 1: reserved 2", 1);
}

static void dispense_change_without_its_unit(void **state)
{
    struct t *t = *state;

    /* The ledger's DISPENSE row of A's unit names another unit: A's drop took nothing from
     * the stock, and the stock lost a unit that never dropped. */
    dfx_sql(t->f.v.db, "UPDATE stock_logs SET unit = 9 WHERE order_id = 'A' "
                       "AND change_type = 'DISPENSE'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "stock", "order A unit 1", 2);
}

static void completed_order_without_a_drop(void **state)
{
    struct t *t = *state;

    dfx_sql(t->f.v.db, "UPDATE orders SET status = 'COMPLETED' WHERE id = 'C'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "completed_without_drop", "order C", 1);
}

static void money_out_of_balance(void **state)
{
    struct t *t = *state;

    dfx_sql(t->f.v.db, "UPDATE refunds SET amount = amount - 1000 WHERE order_id = 'B'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "money", "order B", 1);
}

static void payment_event_applied_twice(void **state)
{
    struct t *t = *state;

    dfx_sql(t->f.v.db,
            "INSERT INTO payment_events (order_id, transaction_id, transaction_status, "
            "status_code, signature_ok, outcome, raw, dedupe_key, received_at) "
            "SELECT order_id, transaction_id, transaction_status, status_code, signature_ok, "
            "outcome, raw || ' ', 'again-' || dedupe_key, received_at FROM payment_events "
            "WHERE order_id = 'D' AND outcome = 'PAID'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "payment_applied_twice", "order D", 1);
}

static void offline_alert_on_a_machine_online(void **state)
{
    struct t *t = *state;

    dfx_sql(t->f.v.db, "UPDATE machines SET status = 'ONLINE' WHERE id = 'VM02'");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "alert", "machine VM02", 1);
}

static void low_stock_alert_on_a_full_slot(void **state)
{
    struct t *t = *state;

    dfx_sql(t->f.v.db, "INSERT INTO alerts (machine_id, kind, message, slot_id, created_at) "
                       "SELECT 'VM01', 'LOW_STOCK', 'low', id, 'x' FROM slots "
                       "WHERE machine_id = 'VM01' AND slot_number = 1");
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "alert", "machine VM01 slot 1", 1);
    /* Not checked when told vendd raises none. */
    expect_pass(t, (const char *[]){"--now", T0_ISO, "--low-stock-percent", "0", NULL});
}

static void refund_alert_after_the_refund(void **state)
{
    struct t *t = *state;
    char sql[128];

    snprintf(sql, sizeof(sql), "UPDATE refunds SET status = 'DONE' WHERE id = %lld",
             (long long)t->refund_b);
    dfx_sql(t->f.v.db, sql);
    expect_fail(t, (const char *[]){"--now", T0_ISO, NULL}, "alert", "order B", 1);
}

/* Read-only means read-only: a database that is not there is not created, and one at
 * another schema version is refused (exit 2 both). */
static void missing_or_foreign_database_is_an_error(void **state)
{
    struct t *t = *state;
    char url[300], path[280];

    if (dfx_pg())
        skip();
    snprintf(path, sizeof(path), "%s/none.db", t->f.dir);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    snprintf(t->f.url, sizeof(t->f.url), "%s", url);
    assert_int_equal(check(t, NULL), 2);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(t->f.url, sizeof(t->f.url), "sqlite:%s/vendd.db", t->f.dir);
    /* The newest row, whatever the number: the database is then one version behind. */
    dfx_sql(t->f.v.db,
            "DELETE FROM schema_version WHERE version = (SELECT max(version) FROM schema_version)");
    assert_int_equal(check(t, NULL), 2);
}

/* The checker writes nothing: the database is the same after it ran. */
static void checker_changes_nothing(void **state)
{
    struct t *t = *state;
    char *before = dfx_snapshot(t->f.v.db), *after;

    dfx_sql(t->f.v.db, "UPDATE orders SET status = 'COMPLETED' WHERE id = 'C'");
    free(before);
    before = dfx_snapshot(t->f.v.db);
    assert_int_equal(check(t, (const char *[]){"--now", T0_ISO, NULL}), 1);
    after = dfx_snapshot(t->f.v.db);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(healthy_database_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(drop_from_a_slot_counted_empty_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(unit_dropped_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(drop_without_a_dropped_unit, setup, teardown),
        cmocka_unit_test_setup_teardown(succeeded_unit_without_a_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(drop_log_that_is_not_one_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(paid_order_past_its_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(stock_off_its_ledger, setup, teardown),
        cmocka_unit_test_setup_teardown(promised_stock_off_the_open_orders, setup, teardown),
        cmocka_unit_test_setup_teardown(dispense_change_without_its_unit, setup, teardown),
        cmocka_unit_test_setup_teardown(completed_order_without_a_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(money_out_of_balance, setup, teardown),
        cmocka_unit_test_setup_teardown(payment_event_applied_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(offline_alert_on_a_machine_online, setup, teardown),
        cmocka_unit_test_setup_teardown(low_stock_alert_on_a_full_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(refund_alert_after_the_refund, setup, teardown),
        cmocka_unit_test_setup_teardown(checker_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_or_foreign_database_is_an_error, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
