/*
 * checkout.c - a customer's order around its payment: the Midtrans transaction the customer
 * pays, cancel, expiry, and reconciliation of orders nobody heard about; see checkout.h.
 * Every Midtrans call is asynchronous (midtrans.h on httpc): its context lives in a list here
 * until the answer comes, so shutdown can abandon what is in flight.
 */
#include "checkout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "midtrans.h"
#include "payments.h"
#include "store.h"
#include "vend/err.h"
#include "vendd.h"
#include "xmalloc.h"

/* PENDING orders asked about per sweep, and status calls in flight at once. */
#define CHECK_BATCH    16
#define CHECKS_MAX     32
#define SWEEP_RETRY_MS 1000
/* Beyond MIDTRANS_TIMEOUT_MS: what a creation takes besides its call (two transactions). */
#define CREATION_SLACK_MS 10000

/* What a Midtrans call in flight is for. */
enum call_kind {
    CALL_CREATE, /* a new order's transaction: the customer waits for it */
    CALL_CHECK,  /* GET status of a PENDING order */
    CALL_EXPIRE, /* the order expired here: expire it at Midtrans too */
    CALL_CANCEL, /* cancelled here (by the customer, or a failed creation): cancel there too */
};

struct call {
    struct call *next;
    struct vendd *v;
    enum call_kind kind;
    uint64_t id;
    char order_id[VEND_ORDER_ID_MAX + 1];
    enum payment_method method;
    int64_t total;
    char expires_at[STORE_ISO_SIZE];
    char status_key[ORDER_STATUS_KEY_SIZE];
    checkout_created_fn *done; /* CALL_CREATE; NULL once abandoned */
    void *arg;
};

struct checkout {
    struct call *calls;
    size_t checks; /* CALL_CHECK in flight */
    uint64_t timer;
};

bool checkout_available(const struct vendd *v)
{
    return v->midtrans != NULL;
}

int checkout_new(struct checkout **out)
{
    *out = xcalloc(1, sizeof(**out));
    return VEND_OK;
}

static struct call *call_new(struct vendd *v, enum call_kind kind, const char *order_id)
{
    struct call *c = xcalloc(1, sizeof(*c));

    c->v = v;
    c->kind = kind;
    snprintf(c->order_id, sizeof(c->order_id), "%s", order_id);
    return c;
}

static void call_unlink(struct checkout *p, struct call *c)
{
    for (struct call **pp = &p->calls; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            if (c->kind == CALL_CHECK)
                p->checks--;
            return;
        }
    }
}

static midtrans_done_fn on_answer;

/* Start a Midtrans call for c; c is owned by the list until its answer (or freed here). */
static int call_start(struct vendd *v, struct call *c, const struct midtrans_request *req)
{
    int rc;

    if (v->midtrans == NULL) {
        free(c);
        return VEND_EUNAVAILABLE;
    }
    rc = midtrans_start(v->midtrans, req, on_answer, c, &c->id);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->next = v->checkout->calls;
    v->checkout->calls = c;
    if (c->kind == CALL_CHECK)
        v->checkout->checks++;
    return VEND_OK;
}

/* Fire a call whose answer is only logged (and, if Midtrans says it is too late, checked). */
static void call_simple(struct vendd *v, enum call_kind kind, const char *order_id)
{
    struct midtrans_request req = {
        .call = kind == CALL_EXPIRE ? MIDTRANS_EXPIRE : MIDTRANS_CANCEL,
        .order_id = order_id,
    };

    if (v->midtrans != NULL)
        call_start(v, call_new(v, kind, order_id), &req);
}

/*
 * An order that ended here (CANCELLED, EXPIRED) is open at Midtrans until Midtrans confirms the
 * cancel or expire: the customer can still pay there, and if that notification were lost the
 * payment would never be refunded. Such an order keeps next_check_at (schema 0015), when the
 * call is made again; at_ms < 0 clears it (confirmed). Inside the caller's transaction, if any.
 */
static int end_unconfirmed(struct vendd *v, const char *order_id, int64_t at_ms)
{
    char at[STORE_ISO_SIZE];
    struct db_value p[2] = {DB_TEXT(order_id), DB_TEXT(NULL)};
    int rc;

    if (at_ms >= 0) {
        db_iso_time(at, sizeof(at), at_ms);
        p[1] = DB_TEXT(at);
    }
    /* Set only on an end; cleared on anything but a PENDING order's own schedule. */
    rc = db_exec(v->db,
                 at_ms >= 0 ? "UPDATE orders SET next_check_at = $2 WHERE id = $1 AND status IN "
                              "('CANCELLED', 'EXPIRED')"
                            : "UPDATE orders SET next_check_at = $2 WHERE id = $1 AND status <> "
                              "'PENDING'",
                 p, 2, NULL, NULL);
    if (rc < 0)
        log_warnx("order '%s': cannot schedule its %s at Midtrans: %s", order_id,
                  at_ms >= 0 ? "end again" : "end as confirmed", db_errmsg(v->db));
    return rc < 0 ? rc : VEND_OK;
}

/* While a cancel or expire call (and the status check it may need) is in flight. On the
 * deadline clock, as every next_check_at is compared (checkout_sweep()). */
static int64_t end_in_flight(struct vendd *v)
{
    return deadline_now_ms(v) + (int64_t)v->conf->midtrans_timeout_ms +
           PAYMENT_CHECK_INTERVAL_S * 1000;
}

/*
 * Take order_id's due call for this process: next_check_at moves on to until_iso only if the
 * row is still due (status_sql, next_check_at <= now_iso). Several instances (MQTT_SHARED_GROUP)
 * read the same due rows; the one whose UPDATE moves it makes the call, the others find it
 * moved, so no two ask Midtrans to cancel or expire one order at once. 1 taken, 0 not, < 0.
 */
static int claim_call(struct vendd *v, const char *order_id, bool pending, const char *now_iso,
                      const char *until_iso)
{
    struct db_value p[3] = {DB_TEXT(order_id), DB_TEXT(until_iso), DB_TEXT(now_iso)};

    return db_exec(v->db,
                   pending ? "UPDATE orders SET next_check_at = $2 WHERE id = $1 AND status = "
                             "'PENDING' AND next_check_at <= $3"
                           : "UPDATE orders SET next_check_at = $2 WHERE id = $1 AND status IN "
                             "('CANCELLED', 'EXPIRED') AND next_check_at <= $3",
                   p, 3, NULL, NULL);
}

void checkout_free(struct vendd *v)
{
    struct checkout *p = v->checkout;

    if (p == NULL)
        return;
    v->checkout = NULL;
    if (p->timer != 0)
        loop_timer_del(v->loop, p->timer);
    /* Calls in flight are abandoned without their callbacks; midtrans_free() drops them. */
    while (p->calls != NULL) {
        struct call *c = p->calls;

        p->calls = c->next;
        free(c);
    }
    free(p);
}

/* ---- creating a customer order ------------------------------------------------------------ */

/* Cut name to at most max bytes without splitting a UTF-8 sequence. */
static void utf8_cut(char *dst, size_t size, const char *src, size_t max)
{
    size_t n = strlen(src);

    if (n > max)
        n = max;
    while (n > 0 && n < strlen(src) && ((unsigned char)src[n] & 0xc0) == 0x80)
        n--;
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* order_id will not be paid here; give its stock back. With call_midtrans, cancel it at
 * Midtrans too (it may exist there) until Midtrans confirms. */
static int cancel_locally(struct vendd *v, const char *order_id, const char *why,
                          bool call_midtrans)
{
    char now_iso[STORE_ISO_SIZE];
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = order_transition_locked(v, order_id, ORDER_PENDING, ORDER_CANCELLED, NULL, now_iso);
    if (rc == VEND_OK)
        rc = payments_row_locked(v, order_id, "FAILED", NULL, now_iso);
    if (rc == VEND_OK && call_midtrans && v->midtrans != NULL)
        rc = end_unconfirmed(v, order_id, end_in_flight(v));
    if (rc == VEND_ESTATE)
        rc = VEND_OK; /* a notification moved it first */
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    events_emit(v);
out:
    if (rc < 0) {
        db_rollback(v->db);
        log_warnx("cannot cancel order '%s' (%s): %s (%s); it expires at its time", order_id, why,
                  vend_strerror(rc), db_errmsg(v->db));
    } else {
        log_warnx("order '%s' CANCELLED: %s", order_id, why);
        if (call_midtrans)
            call_simple(v, CALL_CANCEL, order_id);
    }
    return rc;
}

static void created(struct call *c, const struct midtrans_result *res)
{
    struct vendd *v = c->v;
    struct order_created oc = {.err = res->err, .method = c->method, .total = c->total};
    struct db_value p[5];
    char now_iso[STORE_ISO_SIZE], next[STORE_ISO_SIZE];
    int rc;

    snprintf(oc.order_id, sizeof(oc.order_id), "%s", c->order_id);
    snprintf(oc.expires_at, sizeof(oc.expires_at), "%s", c->expires_at);
    snprintf(oc.status_key, sizeof(oc.status_key), "%s", c->status_key);
    if (res->err == VEND_OK) {
        snprintf(oc.token, sizeof(oc.token), "%s", res->token);
        snprintf(oc.redirect_url, sizeof(oc.redirect_url), "%s", res->redirect_url);
        snprintf(oc.qr_string, sizeof(oc.qr_string), "%s", res->qr_string);
        vendd_now_iso(v, now_iso, sizeof(now_iso));
        db_iso_time(next, sizeof(next), deadline_now_ms(v) + PAYMENT_CHECK_INTERVAL_S * 1000);
        p[0] = DB_TEXT(c->order_id);
        p[1] = DB_TEXT(res->token[0] ? res->token : NULL);
        p[2] = DB_TEXT(res->redirect_url[0] ? res->redirect_url : NULL);
        p[3] = DB_TEXT(res->qr_string[0] ? res->qr_string : NULL);
        p[4] = DB_TEXT(next);
        rc = db_exec(v->db,
                     "UPDATE orders SET payment_token = $2, payment_url = $3, payment_qr = $4, "
                     "next_check_at = CASE WHEN $5 < expires_at THEN $5 ELSE expires_at END "
                     "WHERE id = $1",
                     p, 5, NULL, NULL);
        if (rc < 0)
            log_warnx("order '%s': cannot store its payment details: %s", c->order_id,
                      db_errmsg(v->db));
        log_info("order '%s' waits for payment: %s, %" PRId64 " rupiah", c->order_id,
                 orders_payment_method_name(c->method), c->total);
    } else {
        snprintf(oc.why, sizeof(oc.why), "Midtrans %s: %.150s",
                 res->err == VEND_ETIMEDOUT ? "did not answer in time" : "refused or failed",
                 res->detail);
        /* A transaction may exist there all the same (a late answer): cancel it too; if it
         * gets paid anyway, the payment is refunded. */
        cancel_locally(v, c->order_id, oc.why, res->err == VEND_ETIMEDOUT || res->err == VEND_EIO);
    }
    if (c->done != NULL)
        c->done(c->arg, &oc);
}

int checkout_create(struct vendd *v, struct order_new *in, char *why, size_t why_size,
                    checkout_created_fn *done, void *arg)
{
    struct midtrans_item items[ORDER_ITEMS_MAX];
    struct midtrans_request req = {0};
    struct db_value p[3];
    char next[STORE_ISO_SIZE], key[ORDER_STATUS_KEY_SIZE];
    unsigned char raw[(ORDER_STATUS_KEY_SIZE - 1) / 2];
    struct call *c;
    int64_t now = deadline_now_ms(v);
    int rc;

    why[0] = '\0';
    if (!checkout_available(v)) {
        snprintf(why, why_size, "payments are not configured (MIDTRANS_SERVER_KEY)");
        return VEND_EUNAVAILABLE;
    }
    /* Whoever holds the key reads the order's status, so it cannot be guessed: 128 bits from
     * OpenSSL's generator, never the order id's counter. */
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        snprintf(why, why_size, "the random generator failed: no status key for the order");
        log_warnx("cannot record order: %s", why);
        return VEND_EINTERNAL;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(key + 2 * i, sizeof(key) - 2 * i, "%02x", raw[i]);
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = orders_create_locked(v, in, v->now_ms(), why, why_size);
    if (rc < 0)
        goto out;
    /* Not asked about before the creation is over (it has its own timeout). */
    db_iso_time(next, sizeof(next),
                now + (int64_t)v->conf->midtrans_timeout_ms + PAYMENT_CHECK_INTERVAL_S * 1000);
    p[0] = DB_TEXT(in->id);
    p[1] = DB_TEXT(next);
    p[2] = DB_TEXT(key);
    rc = db_exec(v->db, "UPDATE orders SET next_check_at = $2, status_key = $3 WHERE id = $1", p, 3,
                 NULL, NULL);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);

    for (size_t i = 0; i < in->nitems; i++) {
        snprintf(items[i].id, sizeof(items[i].id), "slot-%" PRId64, in->lines[i].slot);
        utf8_cut(items[i].name, sizeof(items[i].name), in->lines[i].product_name, 50);
        if (items[i].name[0] == '\0')
            snprintf(items[i].name, sizeof(items[i].name), "slot %" PRId64, in->lines[i].slot);
        items[i].price = in->lines[i].unit_price;
        items[i].quantity = in->lines[i].quantity;
    }
    req.call = in->method == PAYMENT_SNAP ? MIDTRANS_CREATE_SNAP : MIDTRANS_CREATE_QRIS;
    req.order_id = in->id;
    req.amount = in->total;
    req.items = items;
    req.nitems = in->nitems;
    /* The payment ends with the order, in whole minutes (rounded down: Midtrans's end does
     * not outlast ours by more than the call). Midtrans asks for no QRIS expiry under
     * 15 minutes and no payment page under 5; shorter orders rely on the expire call. */
    req.expiry_minutes = v->conf->order_payment_ttl_s / 60;
    if (req.expiry_minutes < (in->method == PAYMENT_QRIS ? 15u : 5u))
        req.expiry_minutes = 0;
    c = call_new(v, CALL_CREATE, in->id);
    c->method = in->method;
    c->total = in->total;
    snprintf(c->expires_at, sizeof(c->expires_at), "%s", in->expires_at);
    snprintf(c->status_key, sizeof(c->status_key), "%s", key);
    c->done = done;
    c->arg = arg;
    rc = call_start(v, c, &req);
    if (rc < 0) {
        snprintf(why, why_size, "cannot call Midtrans: %s", vend_strerror(rc));
        cancel_locally(v, in->id, why, false);
        return VEND_EUNAVAILABLE;
    }
    v->metrics.orders_created++;
    return VEND_OK;
out:
    db_rollback(v->db);
    if (why[0] == '\0')
        snprintf(why, why_size, "%s", vend_strerror(rc));
    if (rc == VEND_EDB || rc == VEND_ECORRUPT || rc == VEND_EINTERNAL)
        log_warnx("cannot record order: %s (%s)", vend_strerror(rc), db_errmsg(v->db));
    return rc;
}

/* ---- cancel, expiry and reconciliation -------------------------------------------------- */

/* Inside the cancel's transaction: key is customer order order_id's status_key. VEND_OK, or
 * VEND_ENOTFOUND (an operator's order, no key stored, another key) or VEND_EDB. */
static int customer_key_ok(struct vendd *v, const char *order_id, const char *key)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    char stored[ORDER_STATUS_KEY_SIZE] = "";
    int rc = store_query_text(v->db,
                              "SELECT status_key FROM orders WHERE id = $1 AND origin = 'customer'",
                              p, 1, stored, sizeof(stored));

    if (rc < 0 && rc != VEND_ERANGE) {
        log_warnx("cannot read order '%s': %s", order_id, db_errmsg(v->db));
        return VEND_EDB;
    }
    return rc == 1 && orders_key_equal(stored, key) ? VEND_OK : VEND_ENOTFOUND;
}

int checkout_cancel(struct vendd *v, const char *order_id, const char *key,
                    char status[ORDER_STATUS_SIZE])
{
    struct order_row o;
    char now_iso[STORE_ISO_SIZE];
    int rc;

    status[0] = '\0';
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = payments_read_order(v, order_id, &o);
    if (rc == VEND_OK && key != NULL)
        rc = customer_key_ok(v, order_id, key);
    if (rc < 0)
        goto out;
    snprintf(status, ORDER_STATUS_SIZE, "%s", order_status_name(o.status));
    if (o.status != ORDER_PENDING) {
        rc = VEND_ESTATE;
        goto out;
    }
    rc = order_transition_locked(v, order_id, ORDER_PENDING, ORDER_CANCELLED, NULL, now_iso);
    if (rc == VEND_OK)
        rc = payments_row_locked(v, order_id, "FAILED", NULL, now_iso);
    if (rc == VEND_OK && v->midtrans != NULL)
        rc = end_unconfirmed(v, order_id, end_in_flight(v));
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    snprintf(status, ORDER_STATUS_SIZE, "%s", order_status_name(ORDER_CANCELLED));
    log_info("order '%s' CANCELLED before payment", order_id);
    /* A payment that still arrives is refunded (apply_locked). */
    call_simple(v, CALL_CANCEL, order_id);
out:
    if (rc < 0)
        db_rollback(v->db);
    return rc;
}

/* PENDING order_id reached its expiry: it ends here, and at Midtrans. */
static void expire_order(struct vendd *v, const char *order_id)
{
    char now_iso[STORE_ISO_SIZE];
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = order_transition_locked(v, order_id, ORDER_PENDING, ORDER_EXPIRED, NULL, now_iso);
    if (rc == VEND_OK)
        rc = payments_row_locked(v, order_id, "EXPIRED", NULL, now_iso);
    if (rc == VEND_OK && v->midtrans != NULL)
        rc = end_unconfirmed(v, order_id, end_in_flight(v));
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    v->metrics.orders_expired++;
    log_info("order '%s' EXPIRED: not paid in %u s", order_id, v->conf->order_payment_ttl_s);
    call_simple(v, CALL_EXPIRE, order_id);
out:
    if (rc < 0) {
        db_rollback(v->db);
        if (rc != VEND_ESTATE)
            log_warnx("cannot expire order '%s': %s (%s)", order_id, vend_strerror(rc),
                      db_errmsg(v->db));
    }
}

static void checkout_arm(struct vendd *v);

/* A status answer for a PENDING order: applied like a notification, then expiry. */
static void checked(struct call *c, const struct midtrans_result *res)
{
    struct vendd *v = c->v;
    char expires[STORE_ISO_SIZE], next[STORE_ISO_SIZE], *raw;
    struct db_value p[1] = {DB_TEXT(c->order_id)}, q[2];
    const char *outcome = NULL;
    int64_t total = 0, at = 0;
    bool expired;
    int rc;

    if (res->err == VEND_OK && strcmp(res->status.order_id, c->order_id) == 0) {
        /* The answer came over our own authenticated call; its signature, when present,
         * is checked all the same. */
        if (res->status.signature_key[0] != '\0' &&
            !midtrans_signature_ok(&res->status, v->conf->midtrans_server_key)) {
            log_warnx("status of order '%s' from Midtrans has a bad signature_key: ignored",
                      c->order_id);
        } else if (midtrans_outcome_of(&res->status) != MIDTRANS_PENDING) {
            /* Stored as an event, keyed on what it says (not on the varying answer text). */
            raw = xmalloc(512);
            snprintf(raw, 512,
                     "{\"source\":\"status\",\"order_id\":\"%s\",\"transaction_status\":\"%s\","
                     "\"status_code\":\"%s\",\"gross_amount\":\"%s\",\"fraud_status\":\"%s\"}",
                     res->status.order_id, res->status.transaction_status, res->status.status_code,
                     res->status.gross_amount, res->status.fraud_status);
            rc = payments_apply(v, &res->status, raw, strlen(raw),
                                res->status.signature_key[0] != '\0', &outcome, &total);
            free(raw);
            /* Final there: an order that ended here needs no more calls. */
            if (rc == VEND_OK || rc == VEND_ECONFLICT)
                end_unconfirmed(v, c->order_id, -1);
            if (rc == VEND_OK)
                log_info("order '%s': Midtrans status '%s' found by reconciliation -> %s",
                         c->order_id, res->status.transaction_status, outcome);
            else if (rc != VEND_ECONFLICT)
                log_warnx("order '%s': status '%s' from Midtrans not applied: %s", c->order_id,
                          res->status.transaction_status, vend_strerror(rc));
        }
    } else if (res->err != VEND_OK && res->err != VEND_ENOTFOUND) {
        log_warnx("cannot check order '%s' with Midtrans: %s", c->order_id, res->detail);
    }
    /* Still PENDING here and past its time: it expires. */
    rc = store_query_text(v->db,
                          "SELECT expires_at FROM orders WHERE id = $1 AND status = "
                          "'PENDING'",
                          p, 1, expires, sizeof(expires));
    expired = rc == 1 && (store_iso_parse(expires, &at) < 0 || at <= deadline_now_ms(v));
    if (expired) {
        expire_order(v, c->order_id);
        return;
    }
    if (rc != 1)
        return;
    /* Asked again after the interval, or at its expiry if that comes first. */
    db_iso_time(next, sizeof(next), deadline_now_ms(v) + PAYMENT_CHECK_INTERVAL_S * 1000);
    q[0] = DB_TEXT(c->order_id);
    q[1] = DB_TEXT(next);
    if (db_exec(v->db,
                "UPDATE orders SET next_check_at = CASE WHEN $2 < expires_at THEN $2 "
                "ELSE expires_at END WHERE id = $1 AND status = 'PENDING'",
                q, 2, NULL, NULL) < 0)
        log_warnx("order '%s': cannot schedule its next check: %s", c->order_id, db_errmsg(v->db));
}

static void on_answer(void *arg, const struct midtrans_result *res)
{
    struct call *c = arg;
    struct vendd *v = c->v;

    call_unlink(v->checkout, c);
    switch (c->kind) {
    case CALL_CREATE:
        created(c, res);
        break;
    case CALL_CHECK:
        checked(c, res);
        break;
    case CALL_EXPIRE:
    case CALL_CANCEL:
        if (res->err == VEND_ESTATE) {
            /* Too late to stop it there: it may have been paid. Ask, and refund if so; the
             * answer confirms the end (checked()), and if none comes the call is made again. */
            log_warnx("Midtrans refused to %s order '%s' (%s): checking whether it was paid",
                      c->kind == CALL_EXPIRE ? "expire" : "cancel", c->order_id, res->detail);
            end_unconfirmed(v, c->order_id, end_in_flight(v));
            struct midtrans_request req = {.call = MIDTRANS_STATUS, .order_id = c->order_id};
            call_start(v, call_new(v, CALL_CHECK, c->order_id), &req);
        } else if (res->err < 0 && res->err != VEND_ENOTFOUND) {
            /* No word from Midtrans (down, garbled, too slow): it may still take a payment. */
            log_warnx("cannot %s order '%s' at Midtrans: %s; trying again in %d s",
                      c->kind == CALL_EXPIRE ? "expire" : "cancel", c->order_id, res->detail,
                      PAYMENT_CHECK_INTERVAL_S);
            end_unconfirmed(v, c->order_id, deadline_now_ms(v) + PAYMENT_CHECK_INTERVAL_S * 1000);
        } else {
            end_unconfirmed(v, c->order_id, -1);
        }
        break;
    }
    free(c);
    checkout_arm(v);
}

struct due_list {
    size_t n;
    char ids[CHECK_BATCH][VEND_ORDER_ID_MAX + 1];
};

static int take_due(void *arg, const struct db_row *row)
{
    struct due_list *d = arg;

    if (d->n == CHECK_BATCH)
        return 1;
    if (store_copy_text(d->ids[d->n], sizeof(d->ids[0]), db_row_text(row, 0)) == VEND_OK)
        d->n++;
    return 0;
}

/* Ends Midtrans has not confirmed (end_unconfirmed()) and that are due: call again. */
struct due_ends {
    size_t n;
    char ids[CHECK_BATCH][VEND_ORDER_ID_MAX + 1];
    enum call_kind kinds[CHECK_BATCH];
};

static int take_due_end(void *arg, const struct db_row *row)
{
    struct due_ends *d = arg;
    const char *status = db_row_text(row, 1);

    if (d->n == CHECK_BATCH)
        return 1;
    if (status == NULL ||
        store_copy_text(d->ids[d->n], sizeof(d->ids[0]), db_row_text(row, 0)) != VEND_OK)
        return 0;
    /* CALL_CHECK: not an end (no call to make), only a schedule to clear. */
    d->kinds[d->n] = strcmp(status, "EXPIRED") == 0     ? CALL_EXPIRE
                     : strcmp(status, "CANCELLED") == 0 ? CALL_CANCEL
                                                        : CALL_CHECK;
    d->n++;
    return 0;
}

static void sweep_unconfirmed(struct vendd *v, const char *now_iso)
{
    char until[STORE_ISO_SIZE];
    struct due_ends due = {0};
    struct db_value p[1] = {DB_TEXT(now_iso)};

    /* The partial index's own terms (orders_unconfirmed), so SQLite uses it. */
    if (db_exec(v->db,
                "SELECT id, status FROM orders WHERE next_check_at IS NOT NULL AND status <> "
                "'PENDING' AND next_check_at <= $1 ORDER BY next_check_at",
                p, 1, take_due_end, &due) < 0) {
        log_warnx("cannot read the orders whose end Midtrans has to confirm: %s", db_errmsg(v->db));
        return;
    }
    db_iso_time(until, sizeof(until), end_in_flight(v));
    for (size_t i = 0; i < due.n; i++) {
        if (due.kinds[i] == CALL_CHECK)
            end_unconfirmed(v, due.ids[i], -1);
        else if (claim_call(v, due.ids[i], false, now_iso, until) == 1)
            call_simple(v, due.kinds[i], due.ids[i]);
    }
}

void checkout_sweep(struct vendd *v)
{
    struct due_list due = {0};
    struct db_value p[2];
    char now_iso[STORE_ISO_SIZE], later[STORE_ISO_SIZE];
    int64_t now = deadline_now_ms(v);
    int rc;

    db_iso_time(now_iso, sizeof(now_iso), now);
    /* While a check is in flight, the row says "not before its answer can have come". */
    db_iso_time(later, sizeof(later),
                now + (int64_t)v->conf->midtrans_timeout_ms + PAYMENT_CHECK_INTERVAL_S * 1000);
    p[0] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "SELECT id FROM orders WHERE status = 'PENDING' AND next_check_at <= $1 "
                 "ORDER BY next_check_at",
                 p, 1, take_due, &due);
    if (rc < 0) {
        log_warnx("cannot read the orders waiting for payment: %s", db_errmsg(v->db));
        return;
    }
    for (size_t i = 0; i < due.n && v->checkout->checks < CHECKS_MAX; i++) {
        struct midtrans_request req = {.call = MIDTRANS_STATUS, .order_id = due.ids[i]};

        if (claim_call(v, due.ids[i], true, now_iso, later) != 1)
            continue; /* another instance asks, or a payment ended it */
        if (call_start(v, call_new(v, CALL_CHECK, due.ids[i]), &req) < 0) {
            /* No gateway to ask: the order can only wait for its time. */
            struct call c = {.v = v, .kind = CALL_CHECK};
            struct midtrans_result res = {.err = VEND_EUNAVAILABLE};

            snprintf(c.order_id, sizeof(c.order_id), "%s", due.ids[i]);
            snprintf(res.detail, sizeof(res.detail), "payments are not configured");
            checked(&c, &res);
        }
    }
    if (v->midtrans != NULL)
        sweep_unconfirmed(v, now_iso);
}

static void on_timer(void *arg)
{
    struct vendd *v = arg;

    v->checkout->timer = 0;
    checkout_sweep(v);
    checkout_arm(v);
}

/* Arm the timer for the next PENDING order due a check (or its expiry). */
static void checkout_arm(struct vendd *v)
{
    char next[STORE_ISO_SIZE];
    int64_t at = 0, now = deadline_now_ms(v), delay;
    int rc;

    if (v->checkout->timer != 0)
        loop_timer_del(v->loop, v->checkout->timer);
    v->checkout->timer = 0;
    /* Without a gateway, an unconfirmed end cannot be called again: not a reason to wake. */
    rc = store_query_text(v->db,
                          v->midtrans == NULL
                              ? "SELECT min(next_check_at) FROM orders WHERE status = 'PENDING'"
                              : "SELECT min(at) FROM (SELECT min(next_check_at) AS at FROM orders "
                                "WHERE status = 'PENDING' UNION ALL SELECT min(next_check_at) AS "
                                "at FROM orders WHERE next_check_at IS NOT NULL AND status <> "
                                "'PENDING') AS due",
                          NULL, 0, next, sizeof(next));
    if (rc == 0)
        return;
    if (rc < 0 || store_iso_parse(next, &at) < 0)
        at = now + SWEEP_RETRY_MS;
    /* At most CHECKS_MAX in flight: the next sweep waits for answers, not for the clock. */
    if (v->checkout->checks >= CHECKS_MAX && at < now + SWEEP_RETRY_MS)
        at = now + SWEEP_RETRY_MS;
    delay = at > now ? at - now : 0;
    v->checkout->timer = loop_timer_add(v->loop, (uint64_t)delay, on_timer, v);
    if (v->checkout->timer == 0)
        log_warnx("cannot arm the payment check timer; orders waiting for payment are checked "
                  "when the next one is created");
}

void checkout_rearm(struct vendd *v)
{
    if (v->checkout != NULL)
        checkout_arm(v);
}

int checkout_resume(struct vendd *v)
{
    struct due_list unfinished = {0};
    struct db_value p[1];
    char now[STORE_ISO_SIZE];
    int64_t pending = 0;

    if (store_query_int(v->db, "SELECT count(*) FROM orders WHERE status = 'PENDING'", NULL, 0,
                        &pending) < 0)
        return VEND_EDB;
    if (pending > 0)
        log_info("resuming %" PRId64 " order(s) waiting for payment", pending);
    /* Orders whose creation was in flight when we stopped: the customer never got a QR or a
     * payment page, so nobody can pay them. They end now (here and at Midtrans) instead of
     * holding their stock until they expire; a payment that still comes is refunded. */
    /* In a shared group another instance may be creating one right now: only those older
     * than a creation can take are cut short (created_at is on the wall clock, as the other
     * instance's; the rest expire at their time). Alone, every one of them. */
    db_iso_time(now, sizeof(now),
                v->now_ms() - (int64_t)v->conf->midtrans_timeout_ms - CREATION_SLACK_MS);
    p[0] = DB_TEXT(now);
    do {
        unfinished.n = 0;
        if (db_exec(v->db,
                    v->conf->mqtt_shared_group[0] != '\0'
                        ? "SELECT id FROM orders WHERE status = 'PENDING' AND origin = 'customer' "
                          "AND payment_qr IS NULL AND payment_token IS NULL AND created_at < $1"
                        : "SELECT id FROM orders WHERE status = 'PENDING' AND origin = 'customer' "
                          "AND payment_qr IS NULL AND payment_token IS NULL",
                    p, v->conf->mqtt_shared_group[0] != '\0' ? 1 : 0, take_due, &unfinished) < 0)
            return VEND_EDB;
        for (size_t i = 0; i < unfinished.n; i++) {
            if (cancel_locally(v, unfinished.ids[i], "its creation was cut short by a restart",
                               true) < 0)
                return VEND_EDB;
        }
    } while (unfinished.n == CHECK_BATCH);
    /* Whatever else was in flight when we stopped is asked about now (on the deadline
     * clock: created_at is a wall-clock time). */
    db_iso_time(now, sizeof(now), deadline_now_ms(v));
    p[0] = DB_TEXT(now);
    if (db_exec(v->db,
                "UPDATE orders SET next_check_at = $1 WHERE status = 'PENDING' "
                "AND (next_check_at IS NULL OR next_check_at > expires_at)",
                p, 1, NULL, NULL) < 0)
        return VEND_EDB;
    checkout_arm(v);
    return VEND_OK;
}
