/*
 * payments.c - what Midtrans says about an order, verified, stored and applied; see
 * payments.h for the rules. The customer's side around it (creating the transaction, cancel,
 * expiry, reconciliation) is checkout.c.
 */
#include "payments.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "alerts.h"
#include "conf.h"
#include "db.h"
#include "dispense.h"
#include "events.h"
#include "log.h"
#include "midtrans.h"
#include "refunds.h"
#include "store.h"
#include "vend/err.h"
#include "vendd.h"
#include "xmalloc.h"

/* ---- applying what Midtrans says -------------------------------------------------------- */

static int take_order_row(void *arg, const struct db_row *row)
{
    struct order_row *o = arg;

    o->found = true;
    o->err = order_status_parse(db_row_text(row, 0), &o->status);
    o->total = db_row_int(row, 1);
    o->quantity = db_row_int(row, 2);
    if (o->err == VEND_OK)
        o->err = store_copy_text(o->machine_id, sizeof(o->machine_id), db_row_text(row, 3));
    if (o->err == VEND_OK)
        o->err = store_copy_text(o->origin, sizeof(o->origin), db_row_text(row, 4));
    return 1;
}

int payments_read_order(struct vendd *v, const char *order_id, struct order_row *o)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int rc;

    memset(o, 0, sizeof(*o));
    rc = db_exec(v->db,
                 "SELECT status, total_amount, quantity, machine_id, origin FROM orders "
                 "WHERE id = $1",
                 p, 1, take_order_row, o);
    if (rc < 0)
        return rc;
    if (!o->found)
        return VEND_ENOTFOUND;
    return o->err < 0 ? VEND_ECORRUPT : VEND_OK;
}

/* The order's payment row follows what Midtrans said. */
int payments_row_locked(struct vendd *v, const char *order_id, const char *status,
                        const struct midtrans_notification *n, const char *now_iso)
{
    struct db_value p[5] = {
        DB_TEXT(order_id),
        DB_TEXT(status),
        DB_TEXT(n != NULL && n->transaction_id[0] != '\0' ? n->transaction_id : NULL),
        DB_TEXT(n != NULL && n->payment_type[0] != '\0' ? n->payment_type : NULL),
        DB_TEXT(now_iso),
    };
    int rc = db_exec(v->db,
                     "UPDATE payments SET status = $2, "
                     "gateway_transaction_id = COALESCE($3, gateway_transaction_id), "
                     "payment_type = COALESCE($4, payment_type), "
                     "processed_at = CASE WHEN $2 = 'SUCCESS' THEN $5 ELSE processed_at END, "
                     "updated_at = $5 WHERE order_id = $1 AND gateway_name = 'midtrans'",
                     p, 5, NULL, NULL);

    return rc < 0 ? rc : VEND_OK;
}

/*
 * Inside a transaction: apply what n says about order o. *send gets the first command of
 * an order that became PAID (published after the commit). Returns VEND_OK with outcome
 * naming what happened (stored with the event), or a VEND_E*.
 */
static int apply_locked(struct vendd *v, const struct order_row *o,
                        const struct midtrans_notification *n, const char *now_iso,
                        struct dispense_send *send, const char **outcome)
{
    enum midtrans_outcome what = midtrans_outcome_of(n);
    int rc;

    *outcome = "IGNORED";
    switch (what) {
    case MIDTRANS_PAID:
        if (o->status == ORDER_PENDING) {
            rc = order_transition_locked(v, n->order_id, ORDER_PENDING, ORDER_PAID, NULL, now_iso);
            if (rc == VEND_OK)
                rc = payments_row_locked(v, n->order_id, "SUCCESS", n, now_iso);
            if (rc == VEND_OK)
                rc = dispense_start_locked(v, n->order_id, o->machine_id, o->quantity, send);
            *outcome = "PAID";
            return rc;
        }
        if (o->status == ORDER_EXPIRED || o->status == ORDER_CANCELLED) {
            /* The customer paid for an order that can no longer be served: give it back. */
            *outcome = o->status == ORDER_EXPIRED ? "PAID_AFTER_EXPIRY" : "PAID_AFTER_CANCEL";
            rc = payments_row_locked(v, n->order_id, "SUCCESS", n, now_iso);
            if (rc == VEND_OK)
                rc = refunds_queue_locked(v, n->order_id, o->machine_id, *outcome, now_iso);
            if (rc == VEND_ECONFLICT)
                rc = VEND_OK; /* its refund is queued already */
            if (rc == VEND_OK)
                log_warnx("order '%s' was paid after it ended %s: refund queued", n->order_id,
                          order_status_name(o->status));
            return rc;
        }
        *outcome = "REPLAY";
        return VEND_OK;
    case MIDTRANS_CANCELLED:
    case MIDTRANS_EXPIRED:
        if (o->status != ORDER_PENDING) {
            char msg[200];

            if (o->status == ORDER_EXPIRED || o->status == ORDER_CANCELLED)
                return VEND_OK;
            /* Paid and (being) served, and now Midtrans takes it back: a person decides. */
            snprintf(msg, sizeof(msg), "order '%s' is %s but Midtrans now says '%s'", n->order_id,
                     order_status_name(o->status), n->transaction_status);
            log_warnx("alert PAYMENT_REVERSED: %s", msg);
            *outcome = "REVERSED";
            rc = alerts_raise_locked(v,
                                     &(struct alert){.machine_id = o->machine_id,
                                                     .kind = "PAYMENT_REVERSED",
                                                     .message = msg,
                                                     .order_id = n->order_id},
                                     now_iso);
            return rc < 0 ? rc : VEND_OK;
        }
        if (what == MIDTRANS_EXPIRED)
            v->metrics.orders_expired++;
        rc = order_transition_locked(v, n->order_id, ORDER_PENDING,
                                     what == MIDTRANS_EXPIRED ? ORDER_EXPIRED : ORDER_CANCELLED,
                                     NULL, now_iso);
        if (rc == VEND_OK)
            rc = payments_row_locked(v, n->order_id,
                                     what == MIDTRANS_EXPIRED ? "EXPIRED" : "FAILED", n, now_iso);
        *outcome = what == MIDTRANS_EXPIRED ? "EXPIRED" : "CANCELLED";
        return rc;
    case MIDTRANS_REFUNDED:
        rc = refunds_confirmed_locked(v, n->order_id, now_iso);
        *outcome = rc > 0 ? "REFUND_CONFIRMED" : "REFUND_NOTED";
        return rc < 0 ? rc : VEND_OK;
    case MIDTRANS_PENDING:
        *outcome = "PENDING";
        return VEND_OK;
    case MIDTRANS_OTHER:
        return VEND_OK;
    }
    return VEND_OK;
}

/* SHA-256 of the raw body, hex: the key that makes a byte-identical replay one row. */
static void dedupe_key(const char *body, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    out[0] = '\0';
    if (EVP_Digest(body, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return;
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[64] = '\0';
}

static int store_event_locked(struct vendd *v, const struct midtrans_notification *n,
                              const char *body, size_t len, const char *key, bool signed_ok,
                              const char *outcome, const char *now_iso)
{
    char *raw = xmalloc(len + 1);
    struct db_value p[9] = {DB_TEXT(n->order_id),
                            DB_TEXT(n->transaction_id[0] ? n->transaction_id : NULL),
                            DB_TEXT(n->transaction_status),
                            DB_TEXT(n->status_code),
                            DB_INT(signed_ok),
                            DB_TEXT(outcome),
                            DB_TEXT(raw),
                            DB_TEXT(key),
                            DB_TEXT(now_iso)};
    int rc;

    memcpy(raw, body, len);
    raw[len] = '\0';
    rc = db_exec(v->db,
                 "INSERT INTO payment_events (order_id, transaction_id, transaction_status, "
                 "status_code, signature_ok, outcome, raw, dedupe_key, received_at) "
                 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                 p, 9, NULL, NULL);
    free(raw);
    return rc < 0 ? rc : VEND_OK;
}

/*
 * One transaction: check the amount, apply, store the event; then, after the commit, send
 * what became PAID. raw (len) is what is stored; key its dedupe key. Returns VEND_OK with
 * *outcome, VEND_ENOTFOUND (unknown order), VEND_ERANGE (amount differs), VEND_ECONFLICT
 * (this exact body was applied before), or a VEND_E* from the database.
 */
/*
 * A genuine notification that cannot be applied (no such order, another amount): it is
 * stored all the same, for the audit, and an operator is told, since money may have moved.
 */
static int record_anomaly_locked(struct vendd *v, const struct midtrans_notification *n,
                                 const char *raw, size_t len, const char *key, bool signed_ok,
                                 const char *machine_id, const char *outcome, int64_t total,
                                 const char *now_iso)
{
    char msg[256];
    int rc = store_event_locked(v, n, raw, len, key, signed_ok, outcome, now_iso);

    if (rc < 0)
        return rc;
    if (machine_id == NULL)
        snprintf(msg, sizeof(msg),
                 "Midtrans says order '%s' is '%s' for %s, but vendd has no such order",
                 n->order_id, n->transaction_status, n->gross_amount);
    else
        snprintf(msg, sizeof(msg),
                 "Midtrans says order '%s' is '%s' for %s, but it totals %" PRId64, n->order_id,
                 n->transaction_status, n->gross_amount, total);
    log_warnx("alert PAYMENT_MISMATCH: %s", msg);
    rc = alerts_raise_locked(v,
                             &(struct alert){.machine_id = machine_id,
                                             .kind = "PAYMENT_MISMATCH",
                                             .message = msg,
                                             .order_id = n->order_id},
                             now_iso);
    return rc < 0 ? rc : VEND_OK;
}

/*
 * One transaction: apply, store the event; then, after the commit, send what became PAID.
 * raw (len) is what is stored, under its dedupe key. Returns VEND_OK with *outcome;
 * VEND_ECONFLICT (this exact body was seen before: nothing done); VEND_ENOTFOUND (unknown
 * order) or VEND_ERANGE (another amount), both stored and alerted; or a VEND_E* from the
 * database (nothing stored: Midtrans retries).
 */
int payments_apply(struct vendd *v, const struct midtrans_notification *n, const char *raw,
                   size_t len, bool signed_ok, const char **outcome, int64_t *total)
{
    struct dispense_send send = {0};
    struct order_row o;
    char key[65], now_iso[STORE_ISO_SIZE];
    struct db_value p[1];
    int64_t seen = 0;
    int rc, anomaly = VEND_OK;

    *outcome = NULL;
    *total = 0;
    dedupe_key(raw, len, key);
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    p[0] = DB_TEXT(key);
    rc = store_query_int(v->db, "SELECT count(*) FROM payment_events WHERE dedupe_key = $1", p, 1,
                         &seen);
    if (rc < 0)
        goto out;
    if (seen > 0) {
        rc = VEND_ECONFLICT;
        goto out;
    }
    rc = payments_read_order(v, n->order_id, &o);
    if (rc == VEND_ENOTFOUND || (rc == VEND_OK && n->amount != o.total)) {
        anomaly = rc == VEND_OK ? VEND_ERANGE : VEND_ENOTFOUND;
        *total = rc == VEND_OK ? o.total : 0;
        *outcome = anomaly == VEND_ERANGE ? "AMOUNT_MISMATCH" : "UNKNOWN_ORDER";
        rc = record_anomaly_locked(v, n, raw, len, key, signed_ok,
                                   anomaly == VEND_ERANGE ? o.machine_id : NULL, *outcome, *total,
                                   now_iso);
        if (rc == VEND_OK)
            rc = db_commit(v->db);
        if (rc < 0)
            goto out;
        events_emit(v);
        return anomaly; /* committed: the event and its alert are kept */
    }
    if (rc < 0)
        goto out;
    *total = o.total;
    rc = apply_locked(v, &o, n, now_iso, &send, outcome);
    if (rc < 0)
        goto out;
    rc = store_event_locked(v, n, raw, len, key, signed_ok, *outcome, now_iso);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    refunds_schedule(v); /* a payment after expiry queues one */
    if (strcmp(*outcome, "PAID") == 0) {
        crashpoint(&v->crash, CRASH_PAYMENT_COMMITTED);
        log_info("order '%s' PAID (%s): dispensing", n->order_id,
                 n->payment_type[0] ? n->payment_type : "midtrans");
        dispense_send_after_commit(v, &send);
    }
out:
    if (rc < 0)
        db_rollback(v->db);
    return rc;
}

void payments_notification(struct vendd *v, const char *body, size_t len, bool from_loopback,
                           struct webhook_answer *ans)
{
    const char *key = v->conf->midtrans_server_key, *outcome = NULL;
    struct midtrans_notification n;
    char why[160];
    bool signed_ok = false;
    int64_t total = 0;
    int rc;

    ans->status = 200;
    ans->code = "OK";
    ans->message[0] = '\0';
    rc = midtrans_parse_notification(body, len, &n, why, sizeof(why));
    if (rc < 0) {
        v->metrics.payment_notifications_rejected++;
        log_warnx("rejected payment notification: %s", why);
        ans->status = 400;
        ans->code = "BAD_NOTIFICATION";
        snprintf(ans->message, sizeof(ans->message), "%s", why);
        return;
    }
    if (key[0] != '\0') {
        signed_ok = midtrans_signature_ok(&n, key);
        if (!signed_ok) {
            v->metrics.payment_notifications_rejected++;
            log_warnx("rejected payment notification for order '%s': bad signature_key",
                      n.order_id);
            ans->status = 401;
            ans->code = "BAD_SIGNATURE";
            snprintf(ans->message, sizeof(ans->message), "signature_key does not verify");
            return;
        }
    } else if (!v->conf->dev_mode || !from_loopback) {
        /* Nothing to verify with: only a developer on this host may pay by hand. */
        v->metrics.payment_notifications_rejected++;
        log_warnx("rejected unsigned payment notification for order '%s': MIDTRANS_SERVER_KEY "
                  "is not set, so only loopback clients in development mode are trusted",
                  n.order_id);
        ans->status = 403;
        ans->code = "FORBIDDEN";
        snprintf(ans->message, sizeof(ans->message),
                 "MIDTRANS_SERVER_KEY is not set: unsigned notifications only from loopback in "
                 "development mode");
        return;
    }
    /* Not at the "pending" that follows every QRIS charge: at the one that pays. */
    if (midtrans_outcome_of(&n) == MIDTRANS_PAID)
        crashpoint(&v->crash, CRASH_PAYMENT_RECEIVED);
    rc = payments_apply(v, &n, body, len, signed_ok, &outcome, &total);
    switch (rc) {
    case VEND_OK:
        v->metrics.payment_notifications_applied++;
        log_info("payment notification for order '%s': %s -> %s", n.order_id, n.transaction_status,
                 outcome);
        snprintf(ans->message, sizeof(ans->message), "%s", outcome);
        return;
    case VEND_ECONFLICT:
        v->metrics.payment_notifications_duplicate++;
        snprintf(ans->message, sizeof(ans->message), "duplicate: already applied");
        return;
    case VEND_ENOTFOUND:
        v->metrics.payment_notifications_rejected++;
        log_warnx("rejected payment notification: unknown order '%s'", n.order_id);
        ans->status = 404;
        ans->code = "NOT_FOUND";
        snprintf(ans->message, sizeof(ans->message), "no order '%s'", n.order_id);
        return;
    case VEND_ERANGE:
        v->metrics.payment_notifications_rejected++;
        log_warnx("rejected payment notification for order '%s': gross_amount %s, but the order "
                  "totals %" PRId64,
                  n.order_id, n.gross_amount, total);
        ans->status = 400;
        ans->code = "AMOUNT_MISMATCH";
        snprintf(ans->message, sizeof(ans->message),
                 "gross_amount %s does not match the order total %" PRId64, n.gross_amount, total);
        return;
    default:
        /* 503: Midtrans retries it (up to 4 times) once the database answers again. */
        log_warnx("payment notification for order '%s' not applied: %s (%s)", n.order_id,
                  vend_strerror(rc), db_errmsg(v->db));
        ans->status = 503;
        ans->code = "UNAVAILABLE";
        snprintf(ans->message, sizeof(ans->message), "not applied: try again");
        return;
    }
}
