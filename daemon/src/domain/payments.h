/*
 * payments.h - SPEC §4 rules 7 and 8: payment notifications are verified, and a paid order
 * dispenses on its own. (The customer's side around them, creating the transaction, cancel,
 * expiry and reconciliation, is checkout.h.)
 *
 *   - A notification counts only with a good signature (or, with no MIDTRANS_SERVER_KEY, from
 *     loopback in development mode) and a gross_amount equal to the order's total. Every one
 *     that counts is stored raw in payment_events (a byte-identical replay is one row), and is
 *     applied by compare-and-set: a replayed or out-of-order one changes nothing.
 *   - Paid (settlement, or capture with fraud_status accept) moves PENDING -> PAID and the
 *     order is triggered in-process right after the commit. A payment for an order that
 *     expired or was cancelled is refunded in full (refunds.h).
 *   - A status found by reconciliation (checkout.h) is applied exactly the same way.
 */
#ifndef VENDD_PAYMENTS_H
#define VENDD_PAYMENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "order_status.h"
#include "orders.h"
#include "store.h"

struct vendd;
struct midtrans_notification;

/* An order as the payment rules read it. */
struct order_row {
    bool found;
    enum order_status status;
    int64_t total;
    int64_t quantity;
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    char origin[16];
    int err;
};

/* What the webhook answers Midtrans. */
struct webhook_answer {
    int status;       /* 200, 400, 401, 403, 404, 503 */
    const char *code; /* "OK", "BAD_SIGNATURE", ... */
    char message[200];
};

/*
 * POST /api/payments/webhook: verify, store and apply one notification body. from_loopback
 * says whether the client is on loopback (unsigned notifications are taken from there
 * only, and only in development mode without a server key).
 */
void payments_notification(struct vendd *v, const char *body, size_t len, bool from_loopback,
                           struct webhook_answer *ans);

/* The order's row (VEND_ENOTFOUND, VEND_ECORRUPT for a damaged one, or a VEND_E*). */
int payments_read_order(struct vendd *v, const char *order_id, struct order_row *o);

/* Inside a transaction: the order's Midtrans payment row says status ("SUCCESS", "FAILED",
 * "EXPIRED"), with the transaction id and type of n when given. */
int payments_row_locked(struct vendd *v, const char *order_id, const char *status,
                        const struct midtrans_notification *n, const char *now_iso);

/*
 * Apply what n says, in one transaction with the raw body stored (raw, len: a dedupe key makes
 * a byte-identical one a no-op); after the commit, send what became PAID. Returns VEND_OK with
 * *outcome; VEND_ECONFLICT (seen before); VEND_ENOTFOUND or VEND_ERANGE (unknown order,
 * another amount: stored and alerted); or a VEND_E* (nothing stored). *total gets the order's.
 */
int payments_apply(struct vendd *v, const struct midtrans_notification *n, const char *raw,
                   size_t len, bool signed_ok, const char **outcome, int64_t *total);

#endif
