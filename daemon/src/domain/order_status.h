/*
 * order_status.h - the order state machine of SPEC §4, as code. Every change of
 * orders.status goes through order_transition_locked(): one compare-and-set from the
 * status the caller read to the next one, inside the caller's transaction, so a replayed
 * or out-of-order event finds the row already moved and changes nothing (rule 2).
 *
 *   PENDING ──paid──> PAID ──trigger──> DISPENSING ──every unit dropped──> COMPLETED
 *      │                                    └──a unit failed / no result──> FAILED
 *      ├──expired──> EXPIRED                  FAILED ──refund done──> REFUNDED
 *      └──cancelled─> CANCELLED               FAILED ──late drop, refund not out──> COMPLETED
 *
 * The table in order_status.c is the diagram; docs/DESIGN.md draws it from there.
 */
#ifndef VENDD_ORDER_STATUS_H
#define VENDD_ORDER_STATUS_H

#include <stdbool.h>

struct vendd;

/* The schema's CHECK set on orders.status, in diagram order. */
enum order_status {
    ORDER_PENDING,
    ORDER_PAID,
    ORDER_DISPENSING,
    ORDER_COMPLETED,
    ORDER_FAILED,
    ORDER_REFUNDED,
    ORDER_EXPIRED,
    ORDER_CANCELLED,
};
#define ORDER_STATUS_COUNT 8
/* Big enough for every name, NUL included. */
#define ORDER_STATUS_SIZE 16

/* "PENDING", ...; "?" for a value outside the enum. */
const char *order_status_name(enum order_status s);
/* The status named by a database row. VEND_ECORRUPT for a name the schema does not allow. */
int order_status_parse(const char *name, enum order_status *out);
/* True if from -> to is an edge of the diagram. */
bool order_transition_allowed(enum order_status from, enum order_status to);

/*
 * Inside a transaction: move order_id from `from` to `to` if it is still `from`.
 * reason is the failure_reason of a move to FAILED (required there, ignored elsewhere);
 * a move to COMPLETED stamps dispensed_at, one back from FAILED clears failure_reason.
 * Returns VEND_OK when the row moved, VEND_ESTATE when no row was `from` (an unknown order
 * or one that has moved on), VEND_EINVAL for an edge not in the diagram (a bug, logged),
 * or another VEND_E* from the database.
 */
int order_transition_locked(struct vendd *v, const char *order_id, enum order_status from,
                            enum order_status to, const char *reason, const char *now_iso);

#endif
