/*
 * refunds.c - what a failed order owes the customer, and its withdrawal when the product
 * dropped after all; see refunds.h.
 */
#include "refunds.h"

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "alerts.h"
#include "conf.h"
#include "deadline.h"
#include "events.h"
#include "loop.h"
#include "midtrans.h"
#include "db.h"
#include "log.h"
#include "store.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"
#include "xmalloc.h"

/* The alert that tells the operator a refund is due; it follows the refund row. */
#define REFUND_ALERT "DISPENSE_FAILED"

int refunds_dispensed_value_locked(struct vendd *v, const char *order_id, int64_t *value)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int rc;

    *value = 0;
    rc = store_query_int(
        v->db,
        "SELECT COALESCE(sum(i.unit_price), 0) FROM dispense_logs l JOIN order_items i "
        "ON i.order_id = l.order_id AND l.unit >= i.first_unit "
        "AND l.unit < i.first_unit + i.quantity "
        "WHERE l.order_id = $1 AND (l.status = 'SUCCEEDED' OR "
        "(l.late_result = 1 AND l.success = 1 AND l.drop_detected = 1))",
        p, 1, value);
    return rc < 0 ? rc : VEND_OK;
}

/* What is still owed: the total less what dropped, never negative. */
static int amount_due_locked(struct vendd *v, const char *order_id, int64_t *due)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int64_t total = 0, dispensed = 0;
    int rc;

    rc = store_query_int(v->db, "SELECT total_amount FROM orders WHERE id = $1", p, 1, &total);
    if (rc <= 0)
        return rc < 0 ? rc : VEND_ENOTFOUND;
    rc = refunds_dispensed_value_locked(v, order_id, &dispensed);
    if (rc < 0)
        return rc;
    *due = total - dispensed > 0 ? total - dispensed : 0;
    return VEND_OK;
}

static void refund_alert_text(char *buf, size_t size, const char *order_id, const char *reason,
                              int64_t due)
{
    if (strncmp(reason, "PAID_AFTER_", 11) == 0)
        snprintf(buf, size, "order '%s' was paid after it ended (%s): refund of %" PRId64 " due",
                 order_id, reason, due);
    else
        snprintf(buf, size, "order '%s' failed (%s): refund of %" PRId64 " due", order_id, reason,
                 due);
}

int refunds_queue_locked(struct vendd *v, const char *order_id, const char *machine_id,
                         const char *reason, const char *now_iso)
{
    struct db_value p[6];
    char key[VEND_ORDER_ID_MAX + 16], msg[200], hold[STORE_ISO_SIZE];
    int64_t due = 0;
    int rc;

    rc = amount_due_locked(v, order_id, &due);
    if (rc < 0)
        return rc;
    snprintf(key, sizeof(key), "%s-refund", order_id);
    p[0] = DB_TEXT(order_id);
    p[1] = DB_TEXT(key);
    p[2] = DB_INT(due);
    p[3] = DB_TEXT(reason);
    p[4] = DB_TEXT(now_iso);
    /* Held one grace period, so a late drop can still withdraw it before it goes out; on the
     * deadline clock, so a wall-clock step neither sends it early nor holds it an hour. */
    db_iso_time(hold, sizeof(hold),
                deadline_now_ms(v) + (int64_t)v->conf->dispense_result_grace_ms);
    p[5] = DB_TEXT(hold);
    rc = db_exec(v->db,
                 "INSERT INTO refunds (order_id, refund_key, amount, reason, status, created_at, "
                 "updated_at, next_attempt_at) VALUES ($1, $2, $3, $4, 'QUEUED', $5, $5, $6)",
                 p, 6, NULL, NULL);
    if (rc < 0)
        return rc;
    refund_alert_text(msg, sizeof(msg), order_id, reason, due);
    rc = alerts_raise_locked(
        v,
        &(struct alert){
            .machine_id = machine_id, .kind = REFUND_ALERT, .message = msg, .order_id = order_id},
        now_iso);
    return rc < 0 ? rc : VEND_OK;
}

struct refund_row {
    bool found;
    char status[16];
    char reason[64];
    int64_t attempts;
};

static int take_refund(void *arg, const struct db_row *row)
{
    struct refund_row *r = arg;
    const char *status = db_row_text(row, 0), *reason = db_row_text(row, 1);

    r->found = true;
    snprintf(r->status, sizeof(r->status), "%s", status != NULL ? status : "?");
    snprintf(r->reason, sizeof(r->reason), "%s", reason != NULL ? reason : "?");
    r->attempts = db_row_int(row, 2);
    return 1;
}

int refunds_on_late_drop_locked(struct vendd *v, const char *order_id, const char *machine_id,
                                enum order_status order_status, const char *now_iso)
{
    struct db_value p[3] = {DB_TEXT(order_id)};
    struct refund_row refund = {0};
    int64_t undispensed = 0, due = 0;
    char msg[200];
    int rc;

    rc = db_exec(v->db, "SELECT status, reason, attempts FROM refunds WHERE order_id = $1", p, 1,
                 take_refund, &refund);
    if (rc < 0)
        return rc;
    /* A refund ever handed to Midtrans may have been paid: never withdrawn silently. */
    if (order_status != ORDER_FAILED ||
        (refund.found && (strcmp(refund.status, "QUEUED") != 0 || refund.attempts > 0))) {
        snprintf(msg, sizeof(msg), "order '%s' (%s, refund %s) dispensed after all", order_id,
                 order_status_name(order_status), refund.found ? refund.status : "none");
        log_warnx("alert REFUNDED_ORDER_DISPENSED: %s", msg);
        rc = alerts_raise_locked(v,
                                 &(struct alert){.machine_id = machine_id,
                                                 .kind = "REFUNDED_ORDER_DISPENSED",
                                                 .message = msg,
                                                 .order_id = order_id},
                                 now_iso);
        return rc < 0 ? rc : VEND_OK;
    }
    rc = store_query_int(v->db,
                         "SELECT count(*) FROM dispense_logs WHERE order_id = $1 AND NOT "
                         "(status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND "
                         "drop_detected = 1))",
                         p, 1, &undispensed);
    if (rc < 0)
        return rc;
    p[1] = DB_TEXT(now_iso);
    if (undispensed == 0) {
        /* Everything dropped and no money went back: the customer got what they paid for. */
        rc = order_transition_locked(v, order_id, ORDER_FAILED, ORDER_COMPLETED, NULL, now_iso);
        if (rc < 0)
            return rc;
        rc = db_exec(v->db,
                     "UPDATE refunds SET status = 'CANCELLED', updated_at = $2 "
                     "WHERE order_id = $1 AND status = 'QUEUED' AND attempts = 0",
                     p, 2, NULL, NULL);
        if (rc < 0)
            return rc;
        rc = alerts_resolve_order_locked(v, order_id, REFUND_ALERT, now_iso);
        return rc < 0 ? rc : VEND_OK;
    }
    /* Part of the order dropped late: refund only what did not. */
    rc = amount_due_locked(v, order_id, &due);
    if (rc < 0)
        return rc;
    p[2] = DB_INT(due);
    rc = db_exec(v->db,
                 "UPDATE refunds SET amount = $3, updated_at = $2 "
                 "WHERE order_id = $1 AND status = 'QUEUED' AND attempts = 0",
                 p, 3, NULL, NULL);
    if (rc < 0)
        return rc;
    refund_alert_text(msg, sizeof(msg), order_id, refund.reason, due);
    rc = alerts_restate_order_locked(v, order_id, REFUND_ALERT, msg);
    return rc < 0 ? rc : VEND_OK;
}

/* ---- done, sent, and the operator's queue ------------------------------------------------ */

/*
 * Inside a transaction: refund row id of order_id is DONE. The order it belongs to ends:
 * REFUNDED when nothing of it dropped, COMPLETED with the refund recorded when part did
 * (an order that expired or was cancelled before it was paid stays as it is).
 */
static int done_locked(struct vendd *v, int64_t id, const char *order_id, const char *note,
                       const char *now_iso)
{
    struct db_value p[3] = {DB_INT(id), DB_TEXT(now_iso), DB_TEXT(note)};
    int64_t dispensed = 0;
    int rc;

    rc = db_exec(v->db,
                 "UPDATE refunds SET status = 'DONE', done_at = $2, updated_at = $2, "
                 "note = COALESCE($3, note) WHERE id = $1 AND status IN ('QUEUED', 'SENT', "
                 "'OPERATOR')",
                 p, 3, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_ESTATE;
    rc = alerts_resolve_order_locked(v, order_id, REFUND_ALERT, now_iso);
    if (rc >= 0)
        rc = alerts_resolve_order_locked(v, order_id, "REFUND_FOR_OPERATOR", now_iso);
    if (rc < 0)
        return rc;
    rc = refunds_dispensed_value_locked(v, order_id, &dispensed);
    if (rc < 0)
        return rc;
    rc = order_transition_locked(v, order_id, ORDER_FAILED,
                                 dispensed > 0 ? ORDER_COMPLETED : ORDER_REFUNDED, NULL, now_iso);
    return rc == VEND_ESTATE ? VEND_OK : rc;
}

int refunds_confirmed_locked(struct vendd *v, const char *order_id, const char *now_iso)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int64_t id = 0;
    int rc;

    /* Midtrans's signed word ends any refund it was ever asked for: in flight, back in the
     * queue after a call without an answer, or refused on a retry and waiting for a person
     * (who must not pay it again). */
    rc = store_query_int(v->db,
                         "SELECT id FROM refunds WHERE order_id = $1 AND attempts > 0 "
                         "AND status IN ('SENT', 'QUEUED', 'OPERATOR')",
                         p, 1, &id);
    if (rc <= 0)
        return rc;
    rc = done_locked(v, id, order_id, "confirmed by Midtrans", now_iso);
    return rc < 0 ? rc : 1;
}

#define REFUND_LIST_SELECT                                                                         \
    "SELECT r.id, r.order_id, o.machine_id, o.payment_method, r.amount, r.reason, r.status, "      \
    "r.attempts, r.last_error, r.note, r.done_at, r.created_at, r.updated_at "                     \
    "FROM refunds r JOIN orders o ON o.id = r.order_id"
#define REFUND_LIST_ORDER " ORDER BY r.id DESC LIMIT $1"
/* The operator's queue: refunds that need a person, and those held or retrying. */
#define REFUND_QUEUE "r.status IN ('OPERATOR', 'QUEUED')"

static const char *const s_refund_statuses[] = {"QUEUED", "SENT", "DONE", "OPERATOR", "CANCELLED"};

/* [which: 0 the queue, 1 every one, 2 one status][after: a cursor given]. */
static const char *const s_refund_pages[3][2] = {
    {REFUND_LIST_SELECT " WHERE " REFUND_QUEUE REFUND_LIST_ORDER,
     REFUND_LIST_SELECT " WHERE " REFUND_QUEUE " AND r.id < $2" REFUND_LIST_ORDER},
    {REFUND_LIST_SELECT REFUND_LIST_ORDER, REFUND_LIST_SELECT " WHERE r.id < $2" REFUND_LIST_ORDER},
    {REFUND_LIST_SELECT " WHERE r.status = $2" REFUND_LIST_ORDER,
     REFUND_LIST_SELECT " WHERE r.status = $2 AND r.id < $3" REFUND_LIST_ORDER},
};

int refunds_page_json(struct vendd *v, const char *status, int64_t after_id, int64_t n,
                      json_t **out)
{
    struct db_value p[3];
    size_t np = 0, which = 2;
    bool known = false;

    *out = NULL;
    if (status == NULL) {
        which = 0;
    } else if (strcmp(status, "all") == 0) {
        which = 1;
    } else {
        for (size_t i = 0; !known && i < sizeof(s_refund_statuses) / sizeof(s_refund_statuses[0]);
             i++)
            known = strcmp(status, s_refund_statuses[i]) == 0;
        if (!known)
            return VEND_EINVAL;
    }
    p[np++] = DB_INT(n);
    if (which == 2)
        p[np++] = DB_TEXT(status);
    if (after_id > 0)
        p[np++] = DB_INT(after_id);
    *out = store_query_json(v->db, s_refund_pages[which][after_id > 0], p, np);
    if (*out == NULL) {
        log_warnx("cannot list refunds: %s", db_errmsg(v->db));
        return VEND_EDB;
    }
    return VEND_OK;
}

struct refund_head {
    bool found;
    int64_t attempts;
    char status[16];
    char order_id[VEND_ORDER_ID_MAX + 1];
};

static int take_head(void *arg, const struct db_row *row)
{
    struct refund_head *h = arg;

    h->found = true;
    snprintf(h->status, sizeof(h->status), "%s",
             db_row_text(row, 0) != NULL ? db_row_text(row, 0) : "?");
    if (store_copy_text(h->order_id, sizeof(h->order_id), db_row_text(row, 1)) < 0)
        h->order_id[0] = '\0';
    h->attempts = db_row_int(row, 2);
    return 1;
}

int refunds_mark_done(struct vendd *v, int64_t id, const char *note, char status[16])
{
    struct db_value p[1] = {DB_INT(id)};
    struct refund_head h = {0};
    char now_iso[STORE_ISO_SIZE];
    int rc;

    status[0] = '\0';
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = db_exec(v->db, "SELECT status, order_id, attempts FROM refunds WHERE id = $1", p, 1,
                 take_head, &h);
    if (rc < 0)
        goto out;
    if (!h.found || h.order_id[0] == '\0') {
        rc = VEND_ENOTFOUND;
        goto out;
    }
    snprintf(status, 16, "%s", h.status);
    /* SENT is in Midtrans's hands, and a QUEUED one that was sent before may have been paid
     * there already: a person paying it too would pay it twice. */
    if (strcmp(h.status, "OPERATOR") != 0 &&
        !(strcmp(h.status, "QUEUED") == 0 && h.attempts == 0)) {
        rc = VEND_ESTATE;
        goto out;
    }
    rc = done_locked(v, id, h.order_id, note, now_iso);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    snprintf(status, 16, "DONE");
    log_info("refund %" PRId64 " of order '%s' marked done by the operator: %s", id, h.order_id,
             note);
out:
    if (rc < 0)
        db_rollback(v->db);
    return rc;
}

/* ---- sending ------------------------------------------------------------------------------ */

/* Refunds handed to Midtrans per sweep. */
#define SEND_BATCH 16
void refunds_schedule(struct vendd *v);

struct refund_send {
    struct refund_send *next;
    uint64_t call_id;
    struct vendd *v;
    int64_t id;
    char order_id[VEND_ORDER_ID_MAX + 1];
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    int64_t attempts;
};

/* Unanswered calls after which a person is told (the retries go on, with the same key). */
#define STUCK_ATTEMPTS 5

/* Inside a transaction: refund id waits for a person now, and an alert says why. */
static int to_operator_locked(struct vendd *v, int64_t id, const char *order_id,
                              const char *machine_id, const char *why, const char *now_iso)
{
    struct db_value p[3] = {DB_INT(id), DB_TEXT(why), DB_TEXT(now_iso)};
    char msg[512];
    int rc = db_exec(v->db,
                     "UPDATE refunds SET status = 'OPERATOR', last_error = $2, updated_at = $3 "
                     "WHERE id = $1 AND status IN ('QUEUED', 'SENT')",
                     p, 3, NULL, NULL);

    if (rc != 1)
        return rc < 0 ? rc : VEND_ESTATE;
    snprintf(msg, sizeof(msg), "refund %" PRId64 " of order '%s' needs a person: %s", id, order_id,
             why);
    log_warnx("alert REFUND_FOR_OPERATOR: %s", msg);
    rc = alerts_raise_locked(v,
                             &(struct alert){.machine_id = machine_id,
                                             .kind = "REFUND_FOR_OPERATOR",
                                             .message = msg,
                                             .order_id = order_id},
                             now_iso);
    return rc < 0 ? rc : VEND_OK;
}

static void send_unlink(struct vendd *v, struct refund_send *s)
{
    for (struct refund_send **pp = &v->refund_sends; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

static void on_refund_answer(void *arg, const struct midtrans_result *res)
{
    struct refund_send *s = arg;
    struct vendd *v = s->v;
    struct db_value p[4];
    char now_iso[STORE_ISO_SIZE], next[STORE_ISO_SIZE], why[240];
    int64_t backoff = v->conf->refund_retry_s;
    bool retry =
        res->err == VEND_ETIMEDOUT || res->err == VEND_EUNAVAILABLE || res->err == VEND_EIO;
    int rc;

    /* Midtrans has answered (a refund may have been paid); nothing of it is stored yet. */
    crashpoint(&v->crash, CRASH_REFUND_ANSWERED);
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    for (int64_t i = 1; i < s->attempts && backoff < REFUND_RETRY_MAX_S; i++)
        backoff *= 2;
    if (backoff > REFUND_RETRY_MAX_S)
        backoff = REFUND_RETRY_MAX_S;
    db_iso_time(next, sizeof(next), deadline_now_ms(v) + backoff * 1000);
    snprintf(why, sizeof(why), "Midtrans: %s",
             res->detail[0] ? res->detail : vend_strerror(res->err));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    if (res->err == VEND_OK) {
        rc = done_locked(v, s->id, s->order_id, NULL, now_iso);
    } else if (retry) {
        p[0] = DB_INT(s->id);
        p[1] = DB_TEXT(next);
        p[2] = DB_TEXT(why);
        p[3] = DB_TEXT(now_iso);
        rc = db_exec(v->db,
                     "UPDATE refunds SET status = 'QUEUED', next_attempt_at = $2, last_error = $3, "
                     "updated_at = $4 WHERE id = $1 AND status = 'SENT'",
                     p, 4, NULL, NULL);
        if (rc >= 0 && s->attempts == STUCK_ATTEMPTS) {
            char msg[480];

            snprintf(msg, sizeof(msg),
                     "refund %" PRId64 " of order '%s' still not through after %d tries (%s); "
                     "vendd keeps trying with the same key",
                     s->id, s->order_id, STUCK_ATTEMPTS, why);
            log_warnx("alert REFUND_STUCK: %s", msg);
            rc = alerts_raise_locked(v,
                                     &(struct alert){.machine_id = s->machine_id,
                                                     .kind = "REFUND_STUCK",
                                                     .message = msg,
                                                     .order_id = s->order_id},
                                     now_iso);
        }
    } else {
        char said[400];

        /* Refused after an earlier call that got no answer: that one may have gone through. */
        snprintf(said, sizeof(said), "%s%s", why,
                 s->attempts > 1 ? "; an earlier call got no answer and may have paid it: check "
                                   "the Midtrans dashboard before paying by hand"
                                 : "");
        rc = to_operator_locked(v, s->id, s->order_id, s->machine_id, said, now_iso);
    }
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    events_emit(v);
out:
    if (rc < 0) {
        db_rollback(v->db);
        /* It stays SENT: the next start puts it back in the queue (same key: safe). */
        log_warnx("refund %" PRId64 " of order '%s': answer not recorded: %s (%s)", s->id,
                  s->order_id, vend_strerror(rc), db_errmsg(v->db));
    } else if (res->err == VEND_OK) {
        v->metrics.refunds_done++;
        log_info("refund %" PRId64 " of order '%s' done by Midtrans", s->id, s->order_id);
    } else if (retry) {
        log_warnx("refund %" PRId64 " of order '%s' not sent (%s); retrying in %" PRId64 " s",
                  s->id, s->order_id, why, backoff);
    }
    send_unlink(v, s);
    free(s);
    refunds_schedule(v);
}

struct due_refund {
    int64_t id, amount;
    char order_id[VEND_ORDER_ID_MAX + 1];
    char key[VEND_ORDER_ID_MAX + 16];
    char reason[64];
    char method[16];
    char machine_id[VEND_MACHINE_ID_MAX + 1];
};

struct due_refunds {
    size_t n;
    struct due_refund rows[SEND_BATCH];
};

static int take_due(void *arg, const struct db_row *row)
{
    struct due_refunds *d = arg;
    struct due_refund *r;

    if (d->n == SEND_BATCH)
        return 1;
    r = &d->rows[d->n];
    r->id = db_row_int(row, 0);
    r->amount = db_row_int(row, 3);
    if (store_copy_text(r->order_id, sizeof(r->order_id), db_row_text(row, 1)) < 0 ||
        store_copy_text(r->key, sizeof(r->key), db_row_text(row, 2)) < 0 ||
        store_copy_text(r->method, sizeof(r->method), db_row_text(row, 5)) < 0 ||
        store_copy_text(r->machine_id, sizeof(r->machine_id), db_row_text(row, 6)) < 0) {
        log_warnx("refund %" PRId64 " has a damaged row: left for a person", r->id);
        return 0;
    }
    snprintf(r->reason, sizeof(r->reason), "%s",
             db_row_text(row, 4) != NULL ? db_row_text(row, 4) : "");
    d->n++;
    return 0;
}

/* How long a SENT refund's call can take, and then some (a loaded loop, a slow commit). */
static int64_t sent_lease_ms(const struct vendd *v)
{
    return (int64_t)v->conf->midtrans_timeout_ms + REFUND_LEASE_SLACK_MS;
}

static bool shared(const struct vendd *v)
{
    return v->conf->mqtt_shared_group[0] != '\0';
}

/* One due refund: to Midtrans (SENT), to the operator, or done when there is nothing to pay. */
static void send_one(struct vendd *v, const struct due_refund *r, const char *now_iso)
{
    struct midtrans_request req = {.call = MIDTRANS_REFUND,
                                   .order_id = r->order_id,
                                   .amount = r->amount,
                                   .refund_key = r->key,
                                   .reason = r->reason};
    char lease[STORE_ISO_SIZE];
    struct db_value p[3] = {DB_INT(r->id), DB_TEXT(now_iso), DB_TEXT(lease)};
    bool gateway = strcmp(r->method, "qris") == 0 || strcmp(r->method, "snap") == 0;
    struct refund_send *s;
    int rc;

    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    if (r->amount == 0) {
        rc = done_locked(v, r->id, r->order_id, "nothing to refund", now_iso);
    } else if (!gateway || v->midtrans == NULL) {
        rc = to_operator_locked(v, r->id, r->order_id, r->machine_id,
                                gateway ? "MIDTRANS_SERVER_KEY is not set: pay it back by hand"
                                        : "a manual order: pay it back by hand",
                                now_iso);
    } else {
        /* A SENT refund's next_attempt_at is its lease: past it, the call's answer can no
         * longer come (the instance that made it died), and another instance of a shared
         * group puts it back in the queue (refunds_sweep()); the key keeps a resend safe. */
        db_iso_time(lease, sizeof(lease), deadline_now_ms(v) + sent_lease_ms(v));
        rc = db_exec(v->db,
                     "UPDATE refunds SET status = 'SENT', attempts = attempts + 1, "
                     "updated_at = $2, next_attempt_at = $3 WHERE id = $1 AND status = 'QUEUED'",
                     p, 3, NULL, NULL);
        rc = rc < 0 ? rc : rc == 1 ? VEND_OK : VEND_ESTATE;
    }
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    if (r->amount == 0 || !gateway || v->midtrans == NULL)
        return;
    crashpoint(&v->crash, CRASH_REFUND_COMMITTED);
    /* After the commit that says SENT: a crash now leaves it SENT, and the next start sends
     * it again with the same key. */
    s = xcalloc(1, sizeof(*s));
    s->v = v;
    s->id = r->id;
    snprintf(s->order_id, sizeof(s->order_id), "%s", r->order_id);
    snprintf(s->machine_id, sizeof(s->machine_id), "%s", r->machine_id);
    s->attempts = 1;
    store_query_int(v->db, "SELECT attempts FROM refunds WHERE id = $1", p, 1, &s->attempts);
    s->next = v->refund_sends;
    v->refund_sends = s;
    rc = midtrans_start(v->midtrans, &req, on_refund_answer, s, &s->call_id);
    if (rc < 0) {
        struct midtrans_result res = {.err = VEND_EIO};

        snprintf(res.detail, sizeof(res.detail), "cannot call Midtrans: %s", vend_strerror(rc));
        on_refund_answer(s, &res);
    }
    return;
out:
    db_rollback(v->db);
    if (rc != VEND_ESTATE)
        log_warnx("cannot send refund %" PRId64 " of order '%s': %s (%s)", r->id, r->order_id,
                  vend_strerror(rc), db_errmsg(v->db));
}

void refunds_sweep(struct vendd *v)
{
    struct due_refunds *due = xcalloc(1, sizeof(*due));
    char now_iso[STORE_ISO_SIZE], due_iso[STORE_ISO_SIZE];
    struct db_value p[1];

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    /* next_attempt_at is on the deadline clock; updated_at and the rest on the wall clock. */
    db_iso_time(due_iso, sizeof(due_iso), deadline_now_ms(v));
    p[0] = DB_TEXT(due_iso);
    /* A shared group's instance that died with a call in flight: its refund back in the
     * queue once the lease is past (alone, vendd's own start does it, refunds_resume()). */
    if (shared(v)) {
        int n = db_exec(v->db,
                        "UPDATE refunds SET status = 'QUEUED' WHERE status = 'SENT' "
                        "AND next_attempt_at <= $1",
                        p, 1, NULL, NULL);

        if (n > 0)
            log_warnx("%d refund(s) sent by an instance that gave no answer within %" PRId64
                      " ms go out again (same refund_key)",
                      n, sent_lease_ms(v));
    }
    if (db_exec(v->db,
                "SELECT r.id, r.order_id, r.refund_key, r.amount, r.reason, o.payment_method, "
                "o.machine_id FROM refunds r JOIN orders o ON o.id = r.order_id "
                "WHERE r.status = 'QUEUED' AND r.next_attempt_at <= $1 ORDER BY r.next_attempt_at",
                p, 1, take_due, due) < 0)
        log_warnx("cannot read the refunds due: %s", db_errmsg(v->db));
    for (size_t i = 0; i < due->n; i++)
        send_one(v, &due->rows[i], now_iso);
    free(due);
}

static void on_timer(void *arg)
{
    struct vendd *v = arg;

    v->refunds_timer = 0;
    refunds_sweep(v);
    refunds_schedule(v);
}

void refunds_schedule(struct vendd *v)
{
    char next[STORE_ISO_SIZE];
    int64_t at = 0, now = deadline_now_ms(v);
    int rc;

    if (v->refunds_timer != 0)
        loop_timer_del(v->loop, v->refunds_timer);
    v->refunds_timer = 0;
    rc = store_query_text(v->db,
                          shared(v) ? "SELECT min(next_attempt_at) FROM refunds WHERE status IN "
                                      "('QUEUED', 'SENT')"
                                    : "SELECT min(next_attempt_at) FROM refunds WHERE status = "
                                      "'QUEUED'",
                          NULL, 0, next, sizeof(next));
    if (rc == 0)
        return;
    if (rc < 0 || store_iso_parse(next, &at) < 0)
        at = now + 1000;
    v->refunds_timer = loop_timer_add(v->loop, at > now ? (uint64_t)(at - now) : 0, on_timer, v);
    if (v->refunds_timer == 0)
        log_warnx("cannot arm the refund timer; queued refunds go out at the next start");
}

int refunds_resume(struct vendd *v)
{
    char now[STORE_ISO_SIZE];
    struct db_value p[1];
    int rc;

    /* Due now, on the deadline clock (updated_at is a wall-clock time). */
    db_iso_time(now, sizeof(now), deadline_now_ms(v));
    p[0] = DB_TEXT(now);
    /* In a shared group the other instances' calls may be in flight: only leases past are
     * taken back, and by the sweep. */
    rc = shared(v) ? 0
                   : db_exec(v->db,
                             "UPDATE refunds SET status = 'QUEUED', next_attempt_at = $1 WHERE "
                             "status = 'SENT'",
                             p, 1, NULL, NULL);

    if (rc < 0)
        return VEND_EDB;
    if (rc > 0)
        log_info("%d refund(s) in flight when vendd stopped go out again (same refund_key)", rc);
    /* A refund never sent is held one more grace period from the start: the results the
     * machines published while vendd was down wait in its broker session, and a late drop
     * among them must withdraw it first (as deadline_resume() waits for them too). */
    db_iso_time(now, sizeof(now), deadline_now_ms(v) + (int64_t)v->conf->dispense_result_grace_ms);
    rc = db_exec(v->db,
                 "UPDATE refunds SET next_attempt_at = $1 WHERE status = 'QUEUED' AND attempts = 0 "
                 "AND (next_attempt_at IS NULL OR next_attempt_at < $1)",
                 p, 1, NULL, NULL);
    if (rc < 0)
        return VEND_EDB;
    refunds_schedule(v);
    return VEND_OK;
}

void refunds_stop(struct vendd *v)
{
    if (v->refunds_timer != 0)
        loop_timer_del(v->loop, v->refunds_timer);
    v->refunds_timer = 0;
    /* Abandoned calls stay SENT in the database: the next start sends them again. */
    while (v->refund_sends != NULL) {
        struct refund_send *s = v->refund_sends;

        v->refund_sends = s->next;
        if (v->midtrans != NULL)
            midtrans_cancel(v->midtrans, s->call_id);
        free(s);
    }
}
