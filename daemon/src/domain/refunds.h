/*
 * refunds.h - SPEC §4 rule 9, failed paid orders are refunded, and rule 6's other half:
 * a refund that has not gone out is withdrawn when the product dropped after all.
 *
 * What is refunded: the order's total minus the value of the units that physically left
 * the machine (SUCCEEDED, or dropped late). When: in the transaction that fails the order,
 * as one `refunds` row (status QUEUED, idempotent refund_key "<order>-refund"). Its alert
 * (DISPENSE_FAILED, "refund of N due") follows the row: the amount it names is the row's,
 * and it is resolved when the refund is withdrawn or done, so an operator acting on it never
 * pays what is not owed.
 *
 * Sending: a QUEUED refund of a Midtrans order goes out by itself once its hold has passed
 * (one DISPENSE_RESULT_GRACE_MS, so a late drop can still withdraw it; the hold and the
 * retries' backoff run on the deadline clock of deadline.h, so a wall-clock step neither
 * sends a refund while its unit's result may still come nor holds it an hour), through
 * POST /v2/{order}/refund with its refund_key. No answer or a 5xx is retried with backoff and
 * the same key, so Midtrans never pays it twice; a refusal, a manual order, or no configured
 * gateway puts it in the operator's queue (OPERATOR), where a person pays it and marks it
 * done. A refund that was ever sent is never withdrawn: a late drop then raises an alert.
 * Done, a FAILED order ends REFUNDED, or COMPLETED when part of it was dispensed.
 *
 *   QUEUED ──call──> SENT ──accepted──> DONE
 *     │  ^            └──no answer / 5xx (backoff)──> QUEUED
 *     │  └────────────────refused──> OPERATOR ──marked done──> DONE
 *     ├──no gateway──> OPERATOR
 *     └──late drop, never sent──> CANCELLED
 */
#ifndef VENDD_REFUNDS_H
#define VENDD_REFUNDS_H

#include <stdint.h>

#include <jansson.h>

#include "order_status.h"

struct vendd;

/* Backoff of a refund whose call got no answer: REFUND_RETRY_S doubling to an hour. */
#define REFUND_RETRY_MAX_S 3600
/* A SENT refund whose call got no answer this long past MIDTRANS_TIMEOUT_MS is taken back into
 * the queue by any instance of a shared group (its sender died). */
#define REFUND_LEASE_SLACK_MS 10000

/* Inside a transaction: what has physically left the machine for order_id, in rupiah. */
int refunds_dispensed_value_locked(struct vendd *v, const char *order_id, int64_t *value);

/*
 * Inside a transaction, right after order_id moved to FAILED for reason (or was paid after
 * it expired or was cancelled: reason PAID_AFTER_EXPIRY / PAID_AFTER_CANCEL): queue the
 * refund of what was not dispensed and raise its alert. Returns VEND_OK, VEND_ECONFLICT
 * when the order has a refund already (refund_key is unique), or another VEND_E*.
 */
int refunds_queue_locked(struct vendd *v, const char *order_id, const char *machine_id,
                         const char *reason, const char *now_iso);

/*
 * Inside a transaction, after a late drop of one of order_id's units was recorded (the
 * order was in order_status when the result came). If the refund has not gone out: when
 * every unit has now dropped, the order becomes COMPLETED and the refund CANCELLED (its
 * alert resolved); otherwise the refund shrinks to what still did not drop (its alert
 * says the new amount). If the refund went out, or the order was not FAILED, an alert
 * REFUNDED_ORDER_DISPENSED says so. Returns VEND_OK or a VEND_E*.
 */
int refunds_on_late_drop_locked(struct vendd *v, const char *order_id, const char *machine_id,
                                enum order_status order_status, const char *now_iso);

/*
 * Inside a transaction: Midtrans says order_id was refunded (a refund notification, or its
 * refund call's answer). A refund waiting for that is DONE. Returns 1 if one became DONE,
 * 0 if none was waiting, or a VEND_E*.
 */
int refunds_confirmed_locked(struct vendd *v, const char *order_id, const char *now_iso);

/* At start: refunds that were in flight go back to the queue (their key makes a resend
 * safe), and the timer is armed. Returns VEND_OK or VEND_EDB. */
int refunds_resume(struct vendd *v);

/* A transaction that may have queued a refund has committed: (re)arm the timer for the
 * earliest refund due. */
void refunds_schedule(struct vendd *v);

/* Send the refunds that are due now (the timer calls it; tests after moving the clock). */
void refunds_sweep(struct vendd *v);

/* Drop the timer (shutdown); calls in flight are abandoned with the Midtrans client. */
void refunds_stop(struct vendd *v);

/*
 * A page of refunds for GET /api/refunds, newest (highest id) first, with their order's
 * machine_id and payment_method: at most n after refund after_id (0: from the newest), of
 * status (NULL: the operator's queue, OPERATOR and QUEUED; "all": every one), as an array in
 * *out. Returns VEND_OK, VEND_EINVAL for an unknown status, or VEND_EDB (*out NULL).
 */
int refunds_page_json(struct vendd *v, const char *status, int64_t after_id, int64_t n,
                      json_t **out);

/*
 * POST /api/refunds/{id}/done: a person paid refund id back (note says how). Only a refund
 * that is not in Midtrans's hands can be marked: OPERATOR or QUEUED. Returns VEND_OK,
 * VEND_ENOTFOUND, or VEND_ESTATE (status then holds the refund's status).
 */
int refunds_mark_done(struct vendd *v, int64_t id, const char *note, char status[16]);

#endif
