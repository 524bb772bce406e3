/*
 * stock.h - SPEC §4 rule 5, stock is exact: the only writer of slots.current_stock and
 * stock_logs. Every change is a compare-and-set on the count the caller read, with its
 * stock_logs row (type, before, after), inside the caller's transaction; a change to a
 * count also bumps the slot's version, so an operator's stale edit conflicts.
 *
 * Callers: the dispense path (one unit left the slot) and the slot rules (an operator's
 * restock, audit or adjustment). Telemetry never changes the count; it only reports the
 * sensor level beside it.
 *
 * Promised stock: slots.reserved counts the units promised to open orders and not yet ended,
 * so "can this be sold?" reads one row however many orders are open. A new order reserves
 * its units if current_stock - reserved covers them; a unit gives its promise back when it
 * ends (dropped, failed, no result), and an order that ends unpaid (expired, cancelled)
 * gives back all of its units. The transitions in order_status.c and unit_status.c call the
 * release functions, so no path can end a unit without it.
 */
#ifndef VENDD_STOCK_H
#define VENDD_STOCK_H

#include <stdint.h>

struct vendd;

/* stock_logs.change_type; the names are the schema's CHECK set. */
enum stock_change {
    STOCK_RESTOCK,
    STOCK_DISPENSE,
    STOCK_MANUAL_ADJUST,
    STOCK_AUDIT,
};

/* The schema's name of a change type ("RESTOCK", ...). */
const char *stock_change_name(enum stock_change type);

/*
 * Inside a transaction: one unit of order_id left slot_id (a SUCCEEDED unit, or a late drop).
 * current_stock drops by one with a DISPENSE stock_logs row; the partial unique index on
 * stock_logs (order_id, unit) makes a second decrement for the same unit impossible. A drop
 * from a slot counted empty never goes below zero: it raises a STOCK_MISMATCH alert instead.
 * Returns VEND_OK, VEND_ENOTFOUND for an unknown slot, VEND_ECONFLICT if the count changed
 * under us, or another VEND_E* from the database.
 */
int stock_take_unit_locked(struct vendd *v, int64_t slot_id, const char *machine_id,
                           const char *order_id, int64_t unit, const char *now_iso);

/*
 * Inside a transaction: the operator set slot_id's count from before to after (restock,
 * audit or manual adjustment), with reason. Compare-and-set on current_stock = before;
 * bumps the slot's version by one. after == before writes nothing.
 * Returns VEND_OK, VEND_ECONFLICT if the count is no longer before, VEND_ECONSTRAINT if after
 * is out of the slot's range, or another VEND_E* from the database.
 */
int stock_set_locked(struct vendd *v, int64_t slot_id, const char *machine_id,
                     enum stock_change type, int64_t before, int64_t after, const char *reason,
                     const char *now_iso);

/*
 * Inside a transaction: promise quantity units of slot_id to a new order, if that many are
 * free (current_stock - reserved). Returns VEND_OK, VEND_ESTATE when fewer are free (*free
 * then tells how many), VEND_ENOTFOUND for an unknown slot, or a VEND_E* from the database.
 */
int stock_reserve_locked(struct vendd *v, int64_t slot_id, int64_t quantity, int64_t *free);

/* Inside a transaction: the unit row log_id has ended; its promise is given back. */
int stock_release_unit_locked(struct vendd *v, int64_t log_id);

/* Inside a transaction: every QUEUED unit of order_id is about to end unsent. */
int stock_release_queued_locked(struct vendd *v, const char *order_id);

/* Inside a transaction: order_id ends before any unit was made (expired, cancelled). */
int stock_release_order_locked(struct vendd *v, const char *order_id);

/*
 * LOW_STOCK (SPEC §8): a slot is low when its count is at or below LOW_STOCK_PERCENT of its
 * capacity, rounded down, at least 1 unit; with LOW_STOCK_PERCENT 0, or a capacity of 0,
 * never. One open alert per slot (alerts_open_slot). It is raised in the transaction of the
 * change that makes the slot low (a sale, an adjustment, a smaller capacity), not again at
 * every unit after, so an alert an operator resolved by hand stays resolved until the slot
 * was refilled; it is resolved in the transaction of the change that makes the slot no longer
 * low (a restock or audit above it, a capacity it no longer falls under).
 */

/* The count at or below which a slot of capacity is low, or -1 if it never is. */
int64_t stock_low_threshold(const struct vendd *v, int64_t capacity);

/* was_capacity of stock_low_locked when the capacity did not change. */
#define STOCK_SAME_CAPACITY (-1)

/*
 * Inside a transaction: slot_id of machine_id holds was_stock of was_capacity no longer (its
 * count or its capacity changed); raise or resolve its LOW_STOCK alert by what it holds now.
 * stock.c calls it with every count it writes; slots.c when a capacity changes or a slot is
 * new (was_capacity 0: it was not low). Returns VEND_OK, VEND_ENOTFOUND, or a VEND_E*.
 */
int stock_low_locked(struct vendd *v, int64_t slot_id, const char *machine_id, int64_t was_stock,
                     int64_t was_capacity, const char *now_iso);

/* The units of slot_id promised to open orders. Returns VEND_OK or a VEND_E*. */
int stock_reserved(struct vendd *v, int64_t slot_id, int64_t *reserved);

#endif
