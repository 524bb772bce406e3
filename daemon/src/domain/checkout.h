/*
 * checkout.h - a customer's order around its payment (SPEC §4 rules 3 and 9 for the unpaid
 * side; payments.h applies what Midtrans says):
 *
 *   - A customer order is recorded PENDING with its stock promised (orders.h), then its
 *     Midtrans transaction is created (Snap or QRIS). If Midtrans fails or is slow, the order
 *     is cancelled at once and its stock given back: no PENDING order is left behind.
 *   - A PENDING order nobody hears about is asked for (GET status) at most every
 *     PAYMENT_CHECK_INTERVAL_S; at its expiry it is asked once more, then expired here and at
 *     Midtrans. A settlement found that way is applied exactly as a notification would be
 *     (payments_apply). After a restart this resumes from the rows. The expiry and the
 *     checks run on the deadline clock (deadline.h): ORDER_PAYMENT_TTL_S is a duration, as
 *     Midtrans counts it, so a wall-clock step neither expires an order the customer may be
 *     paying nor keeps one, and its stock, an hour longer.
 *   - Cancel before payment cancels here and at Midtrans; a payment that still comes is
 *     refunded in full.
 */
#ifndef VENDD_CHECKOUT_H
#define VENDD_CHECKOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "order_status.h"
#include "orders.h"
#include "store.h"

struct vendd;
struct checkout;

/* How often a PENDING order is asked about when no notification comes (Midtrans: >= 10 s). */
#define PAYMENT_CHECK_INTERVAL_S 10

struct order_created {
    /*
     * VEND_OK: the transaction exists and the customer can pay. Otherwise the order was
     * cancelled: VEND_ETIMEDOUT (Midtrans too slow: 504); VEND_EUNAVAILABLE, VEND_EIO,
     * VEND_EAUTH, VEND_ESTATE (down, garbage, key refused, refused: 502); why says which.
     */
    int err;
    char order_id[VEND_ORDER_ID_MAX + 1];
    enum payment_method method;
    int64_t total;
    char expires_at[STORE_ISO_SIZE];
    /* What the customer shows to read the order back (GET /api/buy/orders/{id}?key=). */
    char status_key[ORDER_STATUS_KEY_SIZE];
    char token[128];
    char redirect_url[512];
    char qr_string[1024];
    char why[200];
};

typedef void checkout_created_fn(void *arg, const struct order_created *oc);

/* Customer orders can be paid: a Midtrans (MIDTRANS_SERVER_KEY) to pay them through. */
bool checkout_available(const struct vendd *v);

/* The module's state on struct vendd. Returns VEND_OK. */
int checkout_new(struct checkout **out);
/* Drop the timer and what is in flight, without callbacks (before midtrans_free and
 * http_server_free: a waiting customer is then answered 503 by the HTTP server). */
void checkout_free(struct vendd *v);

/*
 * Record in as a customer order (PENDING), with a random status_key, and create its Midtrans
 * transaction. A refusal
 * (orders_create_locked's errors, or VEND_EUNAVAILABLE when payments are not configured)
 * returns it at once with why, and done is never called. Otherwise returns VEND_OK and
 * done(arg, ...) runs once, later, from the loop: oc is valid during the call only.
 */
int checkout_create(struct vendd *v, struct order_new *in, char *why, size_t why_size,
                    checkout_created_fn *done, void *arg);

/*
 * POST /api/orders/{id}/cancel: a PENDING order becomes CANCELLED here (its stock given back)
 * and its Midtrans transaction is cancelled. key NULL: the operator cancels, any order; else
 * the caller is a customer and key (untrusted) must be the order's status_key
 * (orders_key_equal): an operator's order, or another key, is VEND_ENOTFOUND exactly as an
 * unknown order, and status stays "" (a guess learns nothing, not even the status). status
 * receives the order's status after the call. Returns VEND_OK; VEND_ENOTFOUND; VEND_ESTATE
 * when it is not PENDING (a paid order is not cancelled: it dispenses, or is refunded if it
 * cannot).
 */
int checkout_cancel(struct vendd *v, const char *order_id, const char *key,
                    char status[ORDER_STATUS_SIZE]);

/* At start: arm the reconciliation timer from the rows. Returns VEND_OK or VEND_EDB. */
int checkout_resume(struct vendd *v);

/* Re-arm the timer from the rows (another instance wrote some: peers.c). */
void checkout_rearm(struct vendd *v);

/* Run the reconciliation now (the timer calls it; tests call it after moving the clock). */
void checkout_sweep(struct vendd *v);

#endif
