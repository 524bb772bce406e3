/*
 * stock.c - the counted stock of a slot and its ledger, stock_logs (SPEC §4 rule 5).
 * Nothing else in vendd writes slots.current_stock or stock_logs; see stock.h.
 */
#include "stock.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "alerts.h"
#include "conf.h"
#include "db.h"
#include "log.h"
#include "store.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"

static const char *const change_names[] = {
    [STOCK_RESTOCK] = "RESTOCK",
    [STOCK_DISPENSE] = "DISPENSE",
    [STOCK_MANUAL_ADJUST] = "MANUAL_ADJUST",
    [STOCK_AUDIT] = "AUDIT",
};

const char *stock_change_name(enum stock_change type)
{
    return (unsigned)type < sizeof(change_names) / sizeof(change_names[0]) ? change_names[type]
                                                                           : "?";
}

/* ---- LOW_STOCK ---------------------------------------------------------------------------- */

#define LOW_KIND "LOW_STOCK"

int64_t stock_low_threshold(const struct vendd *v, int64_t capacity)
{
    int64_t t;

    if (v->conf->low_stock_percent == 0 || capacity <= 0)
        return -1;
    t = capacity * (int64_t)v->conf->low_stock_percent / 100;
    return t < 1 ? 1 : t;
}

struct slot_now {
    bool found;
    int64_t number, capacity, stock;
};

static int take_slot(void *arg, const struct db_row *row)
{
    struct slot_now *s = arg;

    s->found = true;
    s->number = db_row_int(row, 0);
    s->capacity = db_row_int(row, 1);
    s->stock = db_row_int(row, 2);
    return 1;
}

int stock_low_locked(struct vendd *v, int64_t slot_id, const char *machine_id, int64_t was_stock,
                     int64_t was_capacity, const char *now_iso)
{
    struct db_value p[2] = {DB_INT(slot_id), DB_TEXT(now_iso)};
    struct slot_now s = {0};
    char msg[VEND_MACHINE_ID_MAX + 160];
    int64_t was_t, t;
    bool was_low;
    int rc;

    if (v->conf->low_stock_percent == 0)
        return VEND_OK;
    rc = db_exec(v->db, "SELECT slot_number, capacity, current_stock FROM slots WHERE id = $1", p,
                 1, take_slot, &s);
    if (rc < 0 || !s.found)
        return rc < 0 ? rc : VEND_ENOTFOUND;
    if (was_capacity == STOCK_SAME_CAPACITY)
        was_capacity = s.capacity;
    was_t = stock_low_threshold(v, was_capacity);
    was_low = was_t >= 0 && was_stock <= was_t;
    t = stock_low_threshold(v, s.capacity);
    if (t >= 0 && s.stock <= t) {
        /* Raised when the slot becomes low, not at every unit after: an alert the operator
         * resolved by hand stays resolved until the slot has been refilled. */
        if (was_low)
            return VEND_OK;
        snprintf(msg, sizeof(msg),
                 "slot %" PRId64 " of '%s' is low: %" PRId64 " of %" PRId64 " left (low at %" PRId64
                 " or fewer)",
                 s.number, machine_id, s.stock, s.capacity, t);
        rc = alerts_raise_locked(
            v,
            &(struct alert){
                .machine_id = machine_id, .kind = LOW_KIND, .message = msg, .slot_id = slot_id},
            now_iso);
        if (rc == 1)
            log_warnx("alert " LOW_KIND ": %s", msg);
        return rc < 0 ? rc : VEND_OK;
    }
    /* A plain sale from a slot that was not low cannot have an alert to resolve: skip the
     * statement on the dispense path. */
    if (!was_low && s.stock < was_stock && s.capacity == was_capacity)
        return VEND_OK;
    /* Through alerts_open_slot: the slot's open alert of the kind, if any. */
    rc = db_exec(v->db,
                 "UPDATE alerts SET resolved_at = $2 WHERE slot_id = $1 AND kind = '" LOW_KIND
                 "' AND resolved_at IS NULL",
                 p, 2, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

/* ---- the count ------------------------------------------------------------------------------ */

/* The count moves from before to after, compare-and-set on before; the version moves too. */
static int set_count_locked(struct vendd *v, int64_t slot_id, int64_t before, int64_t after,
                            const char *now_iso)
{
    struct db_value p[4] = {DB_INT(slot_id), DB_INT(after), DB_TEXT(now_iso), DB_INT(before)};
    int rc = db_exec(v->db,
                     "UPDATE slots SET current_stock = $2, version = version + 1, updated_at = $3 "
                     "WHERE id = $1 AND current_stock = $4",
                     p, 4, NULL, NULL);

    return rc < 0 ? rc : rc == 1 ? VEND_OK : VEND_ECONFLICT;
}

int stock_take_unit_locked(struct vendd *v, int64_t slot_id, const char *machine_id,
                           const char *order_id, int64_t unit, const char *now_iso)
{
    struct db_value p[8];
    int64_t before = 0;
    char reason[VEND_ORDER_ID_MAX + 48];
    int rc;

    p[0] = DB_INT(slot_id);
    rc = store_query_int(v->db, "SELECT current_stock FROM slots WHERE id = $1", p, 1, &before);
    if (rc <= 0)
        return rc < 0 ? rc : VEND_ENOTFOUND;
    if (before <= 0) {
        /* Stock never goes below zero; the count was wrong, so say so (alert + log). */
        log_warnx("order '%s' unit %" PRId64 " dropped from slot id %" PRId64
                  " of '%s', which was counted empty",
                  order_id, unit, slot_id, machine_id);
        snprintf(reason, sizeof(reason), "order '%s' dispensed from a slot counted empty",
                 order_id);
        rc = alerts_raise_locked(v,
                                 &(struct alert){.machine_id = machine_id,
                                                 .kind = "STOCK_MISMATCH",
                                                 .message = reason,
                                                 .order_id = order_id,
                                                 .slot_id = slot_id},
                                 now_iso);
        return rc < 0 ? rc : VEND_OK;
    }
    rc = set_count_locked(v, slot_id, before, before - 1, now_iso);
    if (rc >= 0)
        rc = stock_low_locked(v, slot_id, machine_id, before, STOCK_SAME_CAPACITY, now_iso);
    if (rc < 0)
        return rc;
    snprintf(reason, sizeof(reason), "order %s unit %" PRId64, order_id, unit);
    p[0] = DB_TEXT(machine_id);
    p[1] = DB_INT(slot_id);
    p[2] = DB_INT(before);
    p[3] = DB_INT(before - 1);
    p[4] = DB_TEXT(reason);
    p[5] = DB_TEXT(order_id);
    p[6] = DB_INT(unit);
    p[7] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO stock_logs (machine_id, slot_id, change_type, quantity_before, "
                 "quantity_after, quantity_change, reason, performed_by, order_id, unit, "
                 "created_at) VALUES ($1, $2, 'DISPENSE', $3, $4, -1, $5, 'machine', $6, $7, $8)",
                 p, 8, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

int stock_set_locked(struct vendd *v, int64_t slot_id, const char *machine_id,
                     enum stock_change type, int64_t before, int64_t after, const char *reason,
                     const char *now_iso)
{
    struct db_value p[8] = {DB_TEXT(machine_id), DB_INT(slot_id), DB_TEXT(stock_change_name(type)),
                            DB_INT(before),      DB_INT(after),   DB_INT(after - before),
                            DB_TEXT(reason),     DB_TEXT(now_iso)};
    int rc;

    if (after == before)
        return VEND_OK;
    rc = set_count_locked(v, slot_id, before, after, now_iso);
    if (rc >= 0)
        rc = stock_low_locked(v, slot_id, machine_id, before, STOCK_SAME_CAPACITY, now_iso);
    if (rc < 0)
        return rc;
    rc = db_exec(v->db,
                 "INSERT INTO stock_logs (machine_id, slot_id, change_type, quantity_before, "
                 "quantity_after, quantity_change, reason, performed_by, created_at) "
                 "VALUES ($1, $2, $3, $4, $5, $6, $7, 'operator', $8)",
                 p, 8, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

int stock_reserve_locked(struct vendd *v, int64_t slot_id, int64_t quantity, int64_t *free)
{
    struct db_value p[2] = {DB_INT(slot_id), DB_INT(quantity)};
    int rc;

    *free = 0;
    rc = db_exec(v->db,
                 "UPDATE slots SET reserved = reserved + $2 "
                 "WHERE id = $1 AND current_stock - reserved >= $2",
                 p, 2, NULL, NULL);
    if (rc != 0)
        return rc < 0 ? rc : VEND_OK;
    rc = store_query_int(v->db, "SELECT current_stock - reserved FROM slots WHERE id = $1", p, 1,
                         free);
    return rc < 0 ? rc : rc == 0 ? VEND_ENOTFOUND : VEND_ESTATE;
}

/* Give back never drives the count below zero: a count that drifted must not block the
 * money path behind it (a CHECK failure would roll back a dispense result); the invariant
 * checker reports a drift instead. */
int stock_release_unit_locked(struct vendd *v, int64_t log_id)
{
    struct db_value p[1] = {DB_INT(log_id)};
    int rc = db_exec(v->db,
                     "UPDATE slots SET reserved = CASE WHEN reserved > 0 THEN reserved - 1 "
                     "ELSE 0 END WHERE id = (SELECT slot_id FROM dispense_logs WHERE id = $1)",
                     p, 1, NULL, NULL);

    return rc < 0 ? rc : VEND_OK;
}

int stock_release_queued_locked(struct vendd *v, const char *order_id)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int rc = db_exec(
        v->db,
        "UPDATE slots SET reserved = CASE WHEN reserved > q.n THEN reserved - q.n ELSE 0 END "
        "FROM (SELECT slot_id, count(*) AS n FROM dispense_logs WHERE order_id = $1 "
        "AND status = 'QUEUED' GROUP BY slot_id) AS q WHERE slots.id = q.slot_id",
        p, 1, NULL, NULL);

    return rc < 0 ? rc : VEND_OK;
}

int stock_release_order_locked(struct vendd *v, const char *order_id)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int rc = db_exec(
        v->db,
        "UPDATE slots SET reserved = CASE WHEN reserved > q.n THEN reserved - q.n ELSE 0 END "
        "FROM (SELECT slot_id, sum(quantity) AS n FROM order_items WHERE order_id = $1 "
        "GROUP BY slot_id) AS q WHERE slots.id = q.slot_id",
        p, 1, NULL, NULL);

    return rc < 0 ? rc : VEND_OK;
}

int stock_reserved(struct vendd *v, int64_t slot_id, int64_t *reserved)
{
    struct db_value p[1] = {DB_INT(slot_id)};
    int rc = store_query_int(v->db, "SELECT reserved FROM slots WHERE id = $1", p, 1, reserved);

    return rc < 0 ? rc : rc == 0 ? VEND_ENOTFOUND : VEND_OK;
}
