/*
 * invariants.c - the database half of vend-check: one function per invariant of SPEC §4,
 * each one query or two over the snapshot the caller opened; see invariants.h.
 *
 * The rules are the daemon's own, read from the code that keeps them: a unit "dropped" is
 * UNIT_DROPPED_SQL (unit_status.h), the stock is the ledger of stock.c, the money is the
 * refund rule of refunds.h, the alerts follow offline.c, stock.c and refunds.c.
 */
#include "invariants.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "unit_status.h"
#include "vend/err.h"

/* UNIT_DROPPED_SQL names dispense_logs' columns bare: every query below uses it where
 * dispense_logs is the only table of its scope with those columns. */
#define DROPPED_L UNIT_DROPPED_SQL

#define ISO_SIZE 32

void report_violation(struct report *r, const char *name, const char *fmt, ...)
{
    va_list ap;

    fprintf(r->out, "%s ", name);
    va_start(ap, fmt);
    vfprintf(r->out, fmt, ap);
    va_end(ap);
    fputc('\n', r->out);
    r->violations++;
}

/* A text column, "-" for NULL (so a line never prints "(null)"). */
static const char *txt(const struct db_row *row, int col)
{
    const char *s = db_row_text(row, col);

    return s != NULL ? s : "-";
}

/* ---- b) no paid order is left hanging (rule 3) ------------------------------------------- */

struct ctx {
    struct report *r;
    const struct check_opts *o;
    char now[ISO_SIZE];
};

static int overdue_unit(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;

    report_violation(c->r, "paid_not_final",
                     "order %s unit %" PRId64 ": %s on %s slot %" PRId64
                     ", its limit %s has passed (now %s)",
                     txt(row, 0), db_row_int(row, 1), txt(row, 2), txt(row, 3), db_row_int(row, 4),
                     txt(row, 5), c->now);
    return 0;
}

static int stalled_order(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;

    report_violation(c->r, "paid_not_final", "order %s: %s", txt(row, 0), txt(row, 1));
    return 0;
}

static int check_paid_not_final(struct db *db, struct ctx *c)
{
    char cutoff[ISO_SIZE];
    struct db_value p[1];
    int rc;

    db_iso_time(cutoff, sizeof(cutoff), c->o->now_ms - c->o->slack_ms);
    p[0] = DB_TEXT(cutoff);
    /* A SENT unit ends at deadline_at (a result, NO_RESULT, or UNSETTLED for a settling
     * machine); a QUEUED one is sent or fails MACHINE_UNREACHABLE by dispatch_by. UNSETTLED
     * units wait for their machine or an operator by design (rule 3) and are not counted. */
    rc = db_exec(db,
                 "SELECT l.order_id, l.unit, l.status, l.machine_id, l.slot_number, "
                 "CASE WHEN l.status = 'SENT' THEN l.deadline_at ELSE l.dispatch_by END "
                 "FROM dispense_logs l WHERE (l.status = 'SENT' AND l.deadline_at < $1) "
                 "OR (l.status = 'QUEUED' AND l.dispatch_by < $1) ORDER BY l.order_id, l.unit",
                 p, 1, overdue_unit, c);
    if (rc < 0)
        return rc;
    /* An order moves with its last unit, in the same transaction: DISPENSING with none open
     * is an order nobody will end. */
    rc = db_exec(db,
                 "SELECT o.id, 'DISPENSING, but none of its units is open' FROM orders o "
                 "WHERE o.status = 'DISPENSING' AND NOT EXISTS (SELECT 1 FROM dispense_logs l "
                 "WHERE l.order_id = o.id AND l.status IN ('QUEUED', 'SENT', 'UNSETTLED')) "
                 "ORDER BY o.id",
                 NULL, 0, stalled_order, c);
    if (rc < 0)
        return rc;
    /* A customer's payment starts its dispense in the payment's transaction; only an
     * operator's manual order waits in PAID (for its trigger, rule 3). */
    return db_exec(db,
                   "SELECT o.id, 'a customer order PAID at ' || o.paid_at || ' and never "
                   "dispatched' FROM orders o WHERE o.status = 'PAID' AND o.origin = 'customer' "
                   "AND o.paid_at < $1 ORDER BY o.id",
                   p, 1, stalled_order, c);
}

/* ---- c) stock is exact (rule 5) ---------------------------------------------------------- */

/* The ledger of one slot, walked in id order: every change starts where the last ended
 * (a new slot at 0), and the count is where the last one ended. */
struct ledger {
    struct report *r;
    bool open;
    int64_t slot_id;
    char machine[40];
    int64_t number, stock, at;
    bool broken;
};

static void ledger_end(struct ledger *g)
{
    if (g->open && !g->broken && g->stock != g->at)
        report_violation(g->r, "stock",
                         "machine %s slot %" PRId64 ": current_stock %" PRId64
                         ", its stock_logs end at %" PRId64,
                         g->machine, g->number, g->stock, g->at);
    g->open = false;
}

static int ledger_row(void *arg, const struct db_row *row)
{
    struct ledger *g = arg;
    int64_t before, after;

    if (!g->open || db_row_int(row, 0) != g->slot_id) {
        ledger_end(g);
        g->open = true;
        g->broken = false;
        g->slot_id = db_row_int(row, 0);
        snprintf(g->machine, sizeof(g->machine), "%s", txt(row, 1));
        g->number = db_row_int(row, 2);
        g->stock = db_row_int(row, 3);
        g->at = 0;
    }
    if (db_row_is_null(row, 4) || g->broken)
        return 0;
    before = db_row_int(row, 6);
    after = db_row_int(row, 7);
    if (before != g->at) {
        report_violation(g->r, "stock",
                         "machine %s slot %" PRId64 ": stock_logs %" PRId64
                         " (%s) starts at %" PRId64 ", the change before it ended at %" PRId64,
                         g->machine, g->number, db_row_int(row, 4), txt(row, 5), before, g->at);
        g->broken = true;
    }
    g->at = after;
    return 0;
}

static int unit_stock_row(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;

    report_violation(c->r, "stock", "machine %s slot %" PRId64 ": order %s unit %" PRId64 " %s",
                     txt(row, 0), db_row_int(row, 1), txt(row, 2), db_row_int(row, 3), txt(row, 4));
    return 0;
}

static int reserved_row(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;

    report_violation(c->r, "stock",
                     "machine %s slot %" PRId64 ": reserved %" PRId64 ", its open orders and "
                     "units promise %" PRId64,
                     txt(row, 0), db_row_int(row, 1), db_row_int(row, 2), db_row_int(row, 3));
    return 0;
}

static int check_stock(struct db *db, struct ctx *c)
{
    struct ledger g = {.r = c->r};
    int rc;

    /* The promised units (stock.h): the units of PENDING and PAID orders, and the QUEUED,
     * SENT and UNSETTLED units; given back where each ends. A drift sells stock twice or
     * refuses stock that is there. */
    /* Aggregated once each (neither order_items nor dispense_logs has an index by slot). */
    rc = db_exec(db,
                 "SELECT s.machine_id, s.slot_number, s.reserved, "
                 "COALESCE(p.n, 0) + COALESCE(u.n, 0) FROM slots s "
                 "LEFT JOIN (SELECT i.slot_id, sum(i.quantity) AS n FROM orders o "
                 "JOIN order_items i ON i.order_id = o.id WHERE o.status IN ('PENDING', 'PAID') "
                 "GROUP BY i.slot_id) p ON p.slot_id = s.id "
                 "LEFT JOIN (SELECT slot_id, count(*) AS n FROM dispense_logs "
                 "WHERE status IN ('QUEUED', 'SENT', 'UNSETTLED') GROUP BY slot_id) u "
                 "ON u.slot_id = s.id WHERE s.reserved <> COALESCE(p.n, 0) + COALESCE(u.n, 0) "
                 "ORDER BY s.machine_id, s.slot_number",
                 NULL, 0, reserved_row, c);
    if (rc < 0)
        return rc;

    rc = db_exec(db,
                 "SELECT s.id, s.machine_id, s.slot_number, s.current_stock, g.id, g.change_type, "
                 "g.quantity_before, g.quantity_after FROM slots s "
                 "LEFT JOIN stock_logs g ON g.slot_id = s.id ORDER BY s.id, g.id",
                 NULL, 0, ledger_row, &g);
    if (rc < 0)
        return rc;
    ledger_end(&g);
    /* Every dropped unit took one from its slot, once (stock_logs DISPENSE), unless the slot
     * was counted empty: then vendd raised STOCK_MISMATCH instead (stock.c). */
    rc = db_exec(db,
                 "SELECT l.machine_id, l.slot_number, l.order_id, l.unit, "
                 "'dropped, but no DISPENSE change took it from the stock' FROM dispense_logs l "
                 "WHERE " DROPPED_L " AND NOT EXISTS (SELECT 1 FROM stock_logs g "
                 "WHERE g.change_type = 'DISPENSE' AND g.order_id = l.order_id "
                 "AND g.unit = l.unit) AND (l.order_id, l.slot_id) NOT IN (SELECT a.order_id, "
                 "a.slot_id FROM alerts a WHERE a.kind = 'STOCK_MISMATCH' "
                 "AND a.order_id IS NOT NULL AND a.slot_id IS NOT NULL) "
                 "ORDER BY l.order_id, l.unit",
                 NULL, 0, unit_stock_row, c);
    if (rc < 0)
        return rc;
    /* And nothing else did. */
    return db_exec(db,
                   "SELECT g.machine_id, s.slot_number, g.order_id, g.unit, "
                   "'taken from the stock (stock_logs ' || g.id || '), but not dropped there' "
                   "FROM stock_logs g JOIN slots s ON s.id = g.slot_id "
                   "WHERE g.change_type = 'DISPENSE' AND NOT EXISTS (SELECT 1 FROM dispense_logs l "
                   "WHERE l.order_id = g.order_id AND l.unit = g.unit AND l.slot_id = g.slot_id "
                   "AND " DROPPED_L ") ORDER BY g.id",
                   NULL, 0, unit_stock_row, c);
}

/* ---- d) COMPLETED means the product dropped (rule 4) ------------------------------------- */

static int completed_row(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;

    report_violation(c->r, "completed_without_drop", "order %s: COMPLETED, no unit of it dropped",
                     txt(row, 0));
    return 0;
}

static int check_completed(struct db *db, struct ctx *c)
{
    /* COMPLETED: every unit dropped, or part of them with the rest refunded (refunds.h);
     * either way at least one. */
    return db_exec(db,
                   "SELECT o.id FROM orders o WHERE o.status = 'COMPLETED' AND NOT EXISTS "
                   "(SELECT 1 FROM dispense_logs l WHERE l.order_id = o.id AND " DROPPED_L ") "
                   "ORDER BY o.id",
                   NULL, 0, completed_row, c);
}

/* ---- e) the money of each order (rules 6 and 9) ------------------------------------------ */

static bool final_status(const char *s)
{
    static const char *const finals[] = {"COMPLETED", "FAILED", "REFUNDED", "EXPIRED", "CANCELLED"};

    for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++)
        if (strcmp(s, finals[i]) == 0)
            return true;
    return false;
}

static int money_row(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;
    const char *status = txt(row, 1);
    int64_t paid = db_row_int(row, 2), dispensed = db_row_int(row, 3);
    int64_t refunded = db_row_int(row, 4), due = db_row_int(row, 5);
    int64_t out = dispensed + refunded + due;

    /* A late drop after the refund went out: vendd said so with REFUNDED_ORDER_DISPENSED
     * (rule 6); the customer has both, and a person settles it. */
    if (db_row_int(row, 6) != 0)
        return 0;
    if (final_status(status) ? out == paid : out <= paid)
        return 0;
    report_violation(c->r, "money",
                     "order %s: %s, paid %" PRId64 " %s dispensed %" PRId64 " + refunded %" PRId64
                     " + refund due %" PRId64,
                     txt(row, 0), status, paid, final_status(status) ? "!=" : "<", dispensed,
                     refunded, due);
    return 0;
}

static int check_money(struct db *db, struct ctx *c)
{
    /* paid: the order's SUCCESS payment; dispensed: the price of each dropped unit (the
     * refund rule of refunds.c); refunded: DONE; due: QUEUED, SENT or OPERATOR (CANCELLED was
     * withdrawn). A final order balances; an open one has not given out more than it took. */
    return db_exec(db,
                   "SELECT o.id, o.status, "
                   "(SELECT COALESCE(sum(p.amount), 0) FROM payments p WHERE p.order_id = o.id "
                   "AND p.status = 'SUCCESS'), "
                   "(SELECT COALESCE(sum(i.unit_price), 0) FROM dispense_logs l "
                   "JOIN order_items i ON i.order_id = l.order_id AND l.unit >= i.first_unit "
                   "AND l.unit < i.first_unit + i.quantity WHERE l.order_id = o.id AND " DROPPED_L
                   "), "
                   "(SELECT COALESCE(sum(r.amount), 0) FROM refunds r WHERE r.order_id = o.id "
                   "AND r.status = 'DONE'), "
                   "(SELECT COALESCE(sum(r.amount), 0) FROM refunds r WHERE r.order_id = o.id "
                   "AND r.status IN ('QUEUED', 'SENT', 'OPERATOR')), "
                   /* Not correlated: one pass over alerts, not one per order. */
                   "CASE WHEN o.id IN (SELECT a.order_id FROM alerts a "
                   "WHERE a.kind = 'REFUNDED_ORDER_DISPENSED' AND a.order_id IS NOT NULL) "
                   "THEN 1 ELSE 0 END "
                   "FROM orders o ORDER BY o.id",
                   NULL, 0, money_row, c);
}

/* ---- f) a payment event is applied once (rule 2) ----------------------------------------- */

static int twice_row(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;

    report_violation(c->r, "payment_applied_twice", "order %s: %" PRId64 " %s (%s)", txt(row, 0),
                     db_row_int(row, 1), txt(row, 2), txt(row, 3));
    return 0;
}

static int check_payments(struct db *db, struct ctx *c)
{
    int rc;

    /* The outcomes that move the order (payments.c): PENDING to PAID, EXPIRED or CANCELLED
     * happens once, and a replay is stored as REPLAY or IGNORED. */
    rc = db_exec(db,
                 "SELECT order_id, count(*), 'notifications applied as PAID, EXPIRED or "
                 "CANCELLED', 'payment_events ' || min(id) || ' and ' || max(id) "
                 "FROM payment_events WHERE order_id IS NOT NULL "
                 "AND outcome IN ('PAID', 'EXPIRED', 'CANCELLED') "
                 "GROUP BY order_id HAVING count(*) > 1 ORDER BY order_id",
                 NULL, 0, twice_row, c);
    if (rc < 0)
        return rc;
    /* A refund becomes DONE once; a second confirmation is REFUND_NOTED. */
    rc = db_exec(db,
                 "SELECT order_id, count(*), 'refund confirmations applied', "
                 "'payment_events ' || min(id) || ' and ' || max(id) FROM payment_events "
                 "WHERE order_id IS NOT NULL AND outcome = 'REFUND_CONFIRMED' "
                 "GROUP BY order_id HAVING count(*) > 1 ORDER BY order_id",
                 NULL, 0, twice_row, c);
    if (rc < 0)
        return rc;
    /* One payment row per order (orders.c). */
    return db_exec(db,
                   "SELECT order_id, count(*), 'payments SUCCESS', "
                   "'payments ' || min(id) || ' and ' || max(id) FROM payments "
                   "WHERE status = 'SUCCESS' GROUP BY order_id HAVING count(*) > 1 "
                   "ORDER BY order_id",
                   NULL, 0, twice_row, c);
}

/* ---- g) an open alert agrees with the state (SPEC §8) ------------------------------------ */

static int alert_row(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;

    report_violation(c->r, "alert", "alert %" PRId64 " (%s, %s): %s", db_row_int(row, 0),
                     txt(row, 1), txt(row, 2), txt(row, 3));
    return 0;
}

static int low_row(void *arg, const struct db_row *row)
{
    struct ctx *c = arg;
    int64_t stock = db_row_int(row, 3), capacity = db_row_int(row, 4), t;

    /* stock_low_threshold() of stock.c: the slot is low at t or fewer. */
    t = capacity <= 0 ? -1 : capacity * c->o->low_stock_percent / 100;
    if (capacity > 0 && t < 1)
        t = 1;
    if (t >= 0 && stock <= t)
        return 0;
    report_violation(c->r, "alert",
                     "alert %" PRId64 " (LOW_STOCK, machine %s slot %" PRId64 "): open, but the "
                     "slot holds %" PRId64 " of %" PRId64 " (low at %" PRId64 " or fewer)",
                     db_row_int(row, 0), txt(row, 1), db_row_int(row, 2), stock, capacity, t);
    return 0;
}

static int check_alerts(struct db *db, struct ctx *c)
{
    int rc;

    /* offline.c resolves it in the transaction that records the machine ONLINE again. */
    rc = db_exec(db,
                 "SELECT a.id, a.kind, 'machine ' || a.machine_id, "
                 "'open, but the machine is ONLINE' FROM alerts a "
                 "JOIN machines m ON m.id = a.machine_id WHERE a.resolved_at IS NULL "
                 "AND a.kind = 'MACHINE_OFFLINE' AND m.status = 'ONLINE' ORDER BY a.id",
                 NULL, 0, alert_row, c);
    if (rc < 0)
        return rc;
    /* refunds.c: the refund-due alert, and the operator's, end with the refund. */
    rc = db_exec(db,
                 "SELECT a.id, a.kind, 'order ' || a.order_id, "
                 "'open, but its refund is ' || r.status FROM alerts a "
                 "JOIN refunds r ON r.order_id = a.order_id WHERE a.resolved_at IS NULL "
                 "AND a.kind IN ('DISPENSE_FAILED', 'REFUND_FOR_OPERATOR') "
                 "AND r.status IN ('DONE', 'CANCELLED') ORDER BY a.id",
                 NULL, 0, alert_row, c);
    if (rc < 0 || c->o->low_stock_percent == 0)
        return rc;
    /* stock.c resolves it whenever the count or the capacity moves and the slot is not low. */
    return db_exec(db,
                   "SELECT a.id, s.machine_id, s.slot_number, s.current_stock, s.capacity "
                   "FROM alerts a JOIN slots s ON s.id = a.slot_id WHERE a.resolved_at IS NULL "
                   "AND a.kind = 'LOW_STOCK' ORDER BY a.id",
                   NULL, 0, low_row, c);
}

/* ---- all of them ------------------------------------------------------------------------- */

int invariants_check(struct db *db, const struct check_opts *o, struct report *r)
{
    static int (*const checks[])(struct db *, struct ctx *) = {
        check_paid_not_final, check_stock,    check_completed,
        check_money,          check_payments, check_alerts,
    };
    struct ctx c = {.r = r, .o = o};
    int rc = VEND_OK;

    db_iso_time(c.now, sizeof(c.now), o->now_ms);
    for (size_t i = 0; rc >= 0 && i < sizeof(checks) / sizeof(checks[0]); i++)
        rc = checks[i](db, &c);
    return rc < 0 ? rc : VEND_OK;
}
