/*
 * alerts.h - operator alerts (SPEC §8: offline machine, low stock, stuck or failed dispense,
 * refund due, sensor/count mismatch). A row in `alerts` until an operator resolves it.
 */
#ifndef VENDD_ALERTS_H
#define VENDD_ALERTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct vendd;

struct alert {
    const char *machine_id; /* NULL if not about one machine */
    const char *kind;       /* e.g. "DISPENSE_FAILED", "STOCK_MISMATCH" */
    const char *message;    /* for people; names the subject */
    const char *order_id;   /* NULL if none */
    int64_t slot_id;        /* slots.id, 0 if none */
};

/*
 * Insert the alert inside the caller's transaction, so it commits or rolls back with the
 * change that caused it; the caller logs it once committed. A slot has at most one open
 * alert of a kind, and a machine one open MACHINE_OFFLINE (unique indexes): a repeat is
 * skipped, never an error, so an alert can never undo the money or stock change that raised
 * it.
 * Returns 1 if inserted, 0 if an open one already existed, or a negative VEND_E*.
 */
int alerts_raise_locked(struct vendd *v, const struct alert *a, const char *now_iso);

/*
 * Inside a transaction: the open alerts of kind about order_id now say message (the fact
 * behind them changed, e.g. the refund amount). Returns the number changed or a VEND_E*.
 */
int alerts_restate_order_locked(struct vendd *v, const char *order_id, const char *kind,
                                const char *message);

/* Inside a transaction: resolve the open alerts of kind about order_id (what they asked
 * for is no longer due). Returns the number resolved or a VEND_E*. */
int alerts_resolve_order_locked(struct vendd *v, const char *order_id, const char *kind,
                                const char *now_iso);

/*
 * An operator resolves alert id (has seen it, acted). Its own transaction; the event stream
 * hears of it. Returns VEND_OK, VEND_ENOTFOUND for no such alert, VEND_ESTATE when it is
 * resolved already (*resolved_at then holds when), or VEND_EDB.
 */
int alerts_resolve(struct vendd *v, int64_t id, char resolved_at[32]);

/*
 * A page of alerts (docs/HTTP-API.md "Lists"): at most n, newest first by (created_at, id),
 * the open ones (open) or the resolved ones (!open), of machine_id (NULL: every one), after
 * the alert (after_time, after_id) (after_time NULL: from the newest), as an array in *out:
 * id, machine_id, kind, message, order_id, slot_number (null if about no slot), created_at,
 * resolved_at. Returns VEND_OK or VEND_EDB (*out NULL).
 */
int alerts_page_json(struct vendd *v, bool open, const char *machine_id, const char *after_time,
                     int64_t after_id, int64_t n, json_t **out);

#endif
