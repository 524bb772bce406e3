/*
 * deadline.c - the sweep that fails units past their limits, its timer and its clock;
 * see deadline.h for the rule and the reasons.
 */
#include "deadline.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checkout.h"
#include "conf.h"
#include "db.h"
#include "dispense.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "refunds.h"
#include "settle.h"
#include "store.h"
#include "unit_status.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"
#include "xmalloc.h"

/* Units failed per query of the sweep; it queries again until none is left. */
#define SWEEP_BATCH 64
/* Backoff of a sweep that could not finish. */
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS   30000

int64_t deadline_now_ms(struct vendd *v)
{
    struct deadline_state *d = &v->deadline;

    if (!d->anchored) {
        d->anchor_wall_ms = v->now_ms();
        d->anchor_mono_ms = v->mono_ms();
        d->anchored = true;
    }
    return d->anchor_wall_ms + (v->mono_ms() - d->anchor_mono_ms);
}

int64_t deadline_of_unit(const struct vendd *v, int64_t now, int64_t timeout_ms)
{
    return now + timeout_ms + (int64_t)v->conf->dispense_result_grace_ms;
}

int deadline_dispatch_limit(struct vendd *v, const char *machine_id, int64_t now, char *limit)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    char busy_until[STORE_ISO_SIZE];
    int64_t base = now, until = 0;
    int rc;

    rc = store_query_text(v->db,
                          "SELECT max(deadline_at) FROM dispense_logs "
                          "WHERE machine_id = $1 AND status = 'SENT'",
                          p, 1, busy_until, sizeof(busy_until));
    if (rc < 0)
        return rc;
    if (rc == 1 && store_iso_parse(busy_until, &until) == VEND_OK && until > base)
        base = until;
    db_iso_time(limit, STORE_ISO_SIZE, base + (int64_t)v->conf->dispense_dispatch_ttl_s * 1000);
    return VEND_OK;
}

/* ---- the timer ----------------------------------------------------------------------- */

static void on_timer(void *arg);

static void disarm(struct vendd *v)
{
    if (v->deadline.timer != 0)
        loop_timer_del(v->loop, v->deadline.timer);
    v->deadline.timer = 0;
    v->deadline.due_ms = -1;
}

static void arm_at(struct vendd *v, int64_t due, int64_t now)
{
    if (v->deadline.timer != 0 && v->deadline.due_ms == due)
        return;
    disarm(v);
    /* +1 ms: the sweep compares limit < now, so fire strictly after it. */
    v->deadline.timer =
        loop_timer_add(v->loop, due >= now ? (uint64_t)(due - now) + 1 : 0, on_timer, v);
    if (v->deadline.timer == 0) {
        /* Without the timer no unit would ever fail for want of a result: stop, and let the
         * service manager restart us; the next start resumes the deadlines from the rows. */
        log_warnx("cannot arm the dispense deadline timer: stopping, deadlines would lapse");
        v->failed = true;
        loop_stop(v->loop);
        return;
    }
    v->deadline.due_ms = due;
}

void deadline_arm(struct vendd *v)
{
    char next[STORE_ISO_SIZE];
    int64_t due = 0, now = deadline_now_ms(v);
    int rc;

    char stuck[STORE_ISO_SIZE] = "";
    struct db_value p[1];

    /* Rows the last sweep could not finish wait for their retry (retry_at_ms); the others
     * keep their own limits, so one bad row never delays the rest. */
    if (v->deadline.retry_at_ms > 0)
        db_iso_time(stuck, sizeof(stuck), v->deadline.stuck_through_ms);
    p[0] = DB_TEXT(stuck);
    rc = store_query_text(v->db,
                          "SELECT min(t) FROM (SELECT min(deadline_at) AS t FROM dispense_logs "
                          "WHERE status = 'SENT' AND deadline_at > $1 UNION ALL "
                          "SELECT min(deadline_at) AS t FROM dispense_logs "
                          "WHERE status = 'UNSETTLED' AND deadline_at > $1 UNION ALL "
                          "SELECT min(dispatch_by) AS t FROM dispense_logs "
                          "WHERE status = 'QUEUED' AND dispatch_by > $1) AS limits",
                          p, 1, next, sizeof(next));
    if (rc == 0 && v->deadline.retry_at_ms == 0) {
        disarm(v);
        return;
    }
    if (rc == 0) {
        due = v->deadline.retry_at_ms; /* only the stuck rows are left */
    } else if (rc < 0) {
        /* Check again shortly rather than let deadlines lapse unnoticed. */
        log_warnx("cannot read dispense deadlines: %s; checking again in 1 s", db_errmsg(v->db));
        due = now + RETRY_FIRST_MS;
    } else if (store_iso_parse(next, &due) < 0) {
        log_warnx("dispense deadline '%s' is not a timestamp; checking again in 1 s", next);
        due = now + RETRY_FIRST_MS;
    }
    if (due < v->deadline.not_before_ms)
        due = v->deadline.not_before_ms;
    if (v->deadline.retry_at_ms > 0 && v->deadline.retry_at_ms < due)
        due = v->deadline.retry_at_ms;
    arm_at(v, due, now);
}

int64_t deadline_armed_for(const struct vendd *v)
{
    return v->deadline.timer != 0 ? v->deadline.due_ms : -1;
}

void deadline_stop(struct vendd *v)
{
    disarm(v);
}

/* ---- the sweep ------------------------------------------------------------------------ */

struct overdue {
    size_t n;
    int unusable; /* rows that could not be read: logged, counted, retried with backoff */
    struct overdue_row {
        int64_t log_id;
        int64_t unit;
        int64_t timeout_ms;
        char order_id[VEND_ORDER_ID_MAX + 1];
        char machine_id[VEND_MACHINE_ID_MAX + 1];
        bool settle;            /* the machine takes settle commands (settle.h) */
        struct settle_unit ask; /* if settle: what to ask it */
    } rows[SWEEP_BATCH];
};

/* Every select of overdue_kinds returns these columns, in this order. LEFT JOIN: a damaged
 * row with no machine or order row must still reach its limit (and the person it needs). */
#define OVERDUE_COLUMNS                                                                            \
    "SELECT l.id, l.order_id, l.machine_id, l.unit, l.timeout_ms, m.settle, l.slot_id, "           \
    "l.slot_number, o.quantity, l.settle_asks FROM dispense_logs l "                               \
    "LEFT JOIN machines m ON m.id = l.machine_id LEFT JOIN orders o ON o.id = l.order_id "

static int take_overdue(void *arg, const struct db_row *row)
{
    struct overdue *od = arg;
    struct overdue_row *r = &od->rows[od->n];

    if (od->n == SWEEP_BATCH)
        return 1;
    memset(r, 0, sizeof(*r));
    r->log_id = db_row_int(row, 0);
    r->unit = db_row_int(row, 3);
    r->timeout_ms = db_row_int(row, 4);
    r->settle = db_row_int(row, 5) == 1;
    r->ask.log_id = r->log_id;
    r->ask.slot_id = db_row_int(row, 6);
    r->ask.asks = db_row_int(row, 9);
    if (store_copy_text(r->order_id, sizeof(r->order_id), db_row_text(row, 1)) < 0 ||
        store_copy_text(r->machine_id, sizeof(r->machine_id), db_row_text(row, 2)) < 0) {
        log_warnx("dispense_logs row %" PRId64 " is past its limit but unusable (order or "
                  "machine id out of range); it needs a person",
                  r->log_id);
        od->unusable++;
        return 0;
    }
    memcpy(r->ask.order_id, r->order_id, sizeof(r->order_id));
    memcpy(r->ask.machine_id, r->machine_id, sizeof(r->machine_id));
    /* A row the settle command cannot carry is failed as for a guide machine (NO_RESULT):
     * it could not have been sent as a dispense either (dispense.c checks the same). */
    r->ask.sendable =
        settle_unit_command(&r->ask, db_row_int(row, 7), r->unit, db_row_int(row, 8)) == VEND_OK;
    r->settle = r->settle && r->ask.sendable;
    od->n++;
    return 0;
}

/* What the sweep does with a unit past one of its limits. */
enum overdue_action {
    FAIL,           /* fail the unit and its order */
    SETTLE_OR_FAIL, /* a settling machine's unit becomes UNSETTLED; another fails */
    ASK_AGAIN,      /* ask the machine again about an UNSETTLED unit */
};

static const struct overdue_kind {
    const char *select; /* $1 = now; rows ordered by limit, at most SWEEP_BATCH usable */
    enum overdue_action action;
    enum unit_status from, to; /* of FAIL and the fail side of SETTLE_OR_FAIL */
    const char *reason;
} overdue_kinds[] = {
    {OVERDUE_COLUMNS "WHERE l.status = 'SENT' AND l.deadline_at < $1 "
                     "ORDER BY l.deadline_at, l.id",
     SETTLE_OR_FAIL, UNIT_SENT, UNIT_NO_RESULT, "NO_RESULT"},
    {OVERDUE_COLUMNS "WHERE l.status = 'QUEUED' AND l.dispatch_by < $1 "
                     "ORDER BY l.dispatch_by, l.id",
     FAIL, UNIT_QUEUED, UNIT_FAILED, "MACHINE_UNREACHABLE"},
    {OVERDUE_COLUMNS "WHERE l.status = 'UNSETTLED' AND l.deadline_at < $1 "
                     "ORDER BY l.deadline_at, l.id",
     ASK_AGAIN, UNIT_UNSETTLED, UNIT_UNSETTLED, NULL},
};

/* Fail one overdue unit and its order in one transaction. */
static int expire_unit(struct vendd *v, const struct overdue_kind *k, int64_t log_id,
                       const char *order_id, const char *machine_id, const char *now_iso)
{
    struct unit_change c = {.at = now_iso, .error = k->reason};
    int rc;

    rc = db_begin(v->db);
    if (rc < 0)
        return rc;
    rc = unit_transition_locked(v, log_id, k->from, k->to, &c);
    if (rc == VEND_ESTATE) {
        rc = VEND_OK; /* a result moved it first */
        goto out;
    }
    if (rc == VEND_OK)
        rc = dispense_fail_order_locked(v, order_id, machine_id, k->reason, now_iso);
    if (rc >= 0)
        rc = db_commit(v->db) < 0 ? VEND_EDB : 1;
    events_emit(v);
out:
    /* 1 is committed; 0 (a result moved it first) still holds the transaction open. */
    if (rc <= 0)
        db_rollback(v->db);
    return rc;
}

static void log_expired(struct vendd *v, const struct overdue_kind *k, const struct overdue *od,
                        size_t i)
{
    if (k->to == UNIT_NO_RESULT) {
        v->metrics.dispense_no_result++;
        log_warnx("order '%s' unit %" PRId64 " FAILED: no result from '%s' within %" PRId64
                  " ms + %u ms grace",
                  od->rows[i].order_id, od->rows[i].unit, od->rows[i].machine_id,
                  od->rows[i].timeout_ms, v->conf->dispense_result_grace_ms);
    } else {
        v->metrics.dispense_unreachable++;
        log_warnx("order '%s' unit %" PRId64 " FAILED: could not be sent to '%s' within %u s",
                  od->rows[i].order_id, od->rows[i].unit, od->rows[i].machine_id,
                  v->conf->dispense_dispatch_ttl_s);
    }
}

static int act_on(struct vendd *v, const struct overdue_kind *k, struct overdue *od, size_t i,
                  int64_t now, const char *now_iso)
{
    struct overdue_row *r = &od->rows[i];
    int rc;

    /* Whatever the machine says of itself now: an UNSETTLED unit was sent to one that
     * settles, and its journal is what can answer. */
    if (k->action == ASK_AGAIN)
        return settle_ask_again(v, &r->ask, now);
    if (k->action == SETTLE_OR_FAIL && r->settle)
        return settle_overdue_unit(v, &r->ask, now);
    rc = expire_unit(v, k, r->log_id, r->order_id, r->machine_id, now_iso);
    if (rc > 0) {
        crashpoint(&v->crash, CRASH_UNIT_EXPIRED);
        log_expired(v, k, od, i);
        dispense_pump(v, r->machine_id);
    }
    return rc;
}

int deadline_sweep(struct vendd *v)
{
    char now_iso[STORE_ISO_SIZE];
    struct db_value p[1];
    struct overdue *od = xcalloc(1, sizeof(*od));
    int64_t now = deadline_now_ms(v);
    int rc = 0, unusable = 0;

    if (now < v->deadline.not_before_ms)
        goto out;
    db_iso_time(now_iso, sizeof(now_iso), now);
    p[0] = DB_TEXT(now_iso);
    for (size_t k = 0; k < sizeof(overdue_kinds) / sizeof(overdue_kinds[0]) && rc >= 0; k++) {
        /* Each pass fails what it read, so the next one reads what is left. */
        do {
            od->n = 0;
            od->unusable = 0;
            rc = db_exec(v->db, overdue_kinds[k].select, p, 1, take_overdue, od);
            unusable += od->unusable;
            for (size_t i = 0; rc >= 0 && i < od->n; i++)
                rc = act_on(v, &overdue_kinds[k], od, i, now, now_iso);
        } while (rc >= 0 && od->n == SWEEP_BATCH);
    }
    if (rc < 0)
        log_warnx("dispense deadline sweep stopped: %s (%s)", vend_strerror(rc), db_errmsg(v->db));
out:
    free(od);
    return rc < 0 ? rc : unusable;
}

static void on_timer(void *arg)
{
    struct vendd *v = arg;
    struct deadline_state *d = &v->deadline;
    int rc;

    d->timer = 0;
    d->due_ms = -1;
    rc = deadline_sweep(v);
    if (rc != 0) {
        /* Busy database or rows that need a person: try again, ever more slowly, rather
         * than fire again at once for the same overdue rows. */
        d->retry_ms = d->retry_ms == 0                 ? RETRY_FIRST_MS
                      : d->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
                                                       : d->retry_ms * 2;
        d->stuck_through_ms = deadline_now_ms(v);
        d->retry_at_ms = d->stuck_through_ms + d->retry_ms;
        v->metrics.dispense_sweep_retries++;
        log_warnx("dispense deadline sweep %s; next try in %" PRId64 " ms",
                  rc < 0 ? "failed" : "left unusable rows", d->retry_ms);
    } else {
        d->retry_ms = 0;
        d->retry_at_ms = 0;
        d->stuck_through_ms = 0;
    }
    deadline_arm(v);
    refunds_schedule(v); /* the units it failed queued refunds */
}

/*
 * The limits a boot stored on its deadline clock carry whatever wall-clock error NTP corrected
 * during that boot; a new boot anchors afresh on the wall clock, so they may lie ahead by that
 * error (an hour, a year). None can be further ahead than its own longest duration: bring those
 * back to it, so a paid order does not hang, a refund wait or a PENDING order keep its stock
 * for the error. (Limits too early cannot be told from a long stop: they fire, after the grace
 * deadline_resume() gives the results the broker kept.) $1 = now + the span.
 */
enum bound_span {
    SPAN_SENT,
    SPAN_ASK,
    SPAN_QUEUED,
    SPAN_HOLD,
    SPAN_BACKOFF,
    SPAN_PAY,
    SPAN_CHECK,
    SPAN_NOW
};

static const struct bound {
    enum bound_span span;
    const char *sql;
} bounds[] = {
    {SPAN_SENT, "UPDATE dispense_logs SET deadline_at = $1 WHERE status = 'SENT' "
                "AND deadline_at > $1"},
    {SPAN_ASK, "UPDATE dispense_logs SET deadline_at = $1 WHERE status = 'UNSETTLED' "
               "AND deadline_at > $1"},
    {SPAN_QUEUED, "UPDATE dispense_logs SET dispatch_by = $1 WHERE status = 'QUEUED' "
                  "AND dispatch_by > $1"},
    {SPAN_HOLD, "UPDATE refunds SET next_attempt_at = $1 WHERE status = 'QUEUED' "
                "AND attempts = 0 AND next_attempt_at > $1"},
    {SPAN_BACKOFF, "UPDATE refunds SET next_attempt_at = $1 WHERE status = 'QUEUED' "
                   "AND next_attempt_at > $1"},
    {SPAN_PAY, "UPDATE orders SET expires_at = $1 WHERE status = 'PENDING' AND expires_at > $1"},
    /* Each on a partial index's own terms (orders_pending, orders_unconfirmed). */
    {SPAN_CHECK, "UPDATE orders SET next_check_at = $1 WHERE status = 'PENDING' "
                 "AND next_check_at > $1"},
    {SPAN_CHECK, "UPDATE orders SET next_check_at = $1 WHERE next_check_at IS NOT NULL "
                 "AND status <> 'PENDING' AND next_check_at > $1"},
    {SPAN_NOW, "UPDATE machines SET offline_alert_since = $1 WHERE offline_alert_since > $1"},
};

static int64_t span_ms(const struct vendd *v, enum bound_span span)
{
    int64_t grace = (int64_t)v->conf->dispense_result_grace_ms;
    int64_t ask = SETTLE_ASK_MAX_MS > VEND_TIMEOUT_MS_MAX + grace ? SETTLE_ASK_MAX_MS
                                                                  : VEND_TIMEOUT_MS_MAX + grace;

    switch (span) {
    case SPAN_SENT:
        return VEND_TIMEOUT_MS_MAX + grace;
    case SPAN_ASK:
        return ask;
    case SPAN_QUEUED:
        return VEND_TIMEOUT_MS_MAX + grace + (int64_t)v->conf->dispense_dispatch_ttl_s * 1000;
    case SPAN_HOLD:
        return grace;
    case SPAN_BACKOFF:
        return REFUND_RETRY_MAX_S * 1000LL;
    case SPAN_PAY:
        return (int64_t)v->conf->order_payment_ttl_s * 1000;
    case SPAN_CHECK:
        return (int64_t)v->conf->midtrans_timeout_ms + PAYMENT_CHECK_INTERVAL_S * 1000;
    case SPAN_NOW:
        break;
    }
    return 0;
}

static int bound_limits(struct vendd *v, int64_t now)
{
    char at[STORE_ISO_SIZE];
    struct db_value p[1];
    int rc = db_begin(v->db);

    for (size_t i = 0; rc >= 0 && i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        db_iso_time(at, sizeof(at), now + span_ms(v, bounds[i].span));
        p[0] = DB_TEXT(at);
        rc = db_exec(v->db, bounds[i].sql, p, 1, NULL, NULL);
    }
    if (rc >= 0)
        rc = db_commit(v->db);
    if (rc < 0) {
        log_warnx("cannot bound the last boot's limits: %s", db_errmsg(v->db));
        db_rollback(v->db);
        return VEND_EDB;
    }
    return VEND_OK;
}

/*
 * The deadline clock of this process: on the boot the database last saw, the same clock as
 * the process before (the stored offset); on a new boot (the monotonic clock restarted), or
 * with no boot id, anchored afresh on the wall clock, and remembered.
 */
static int anchor_clock(struct vendd *v)
{
    struct deadline_state *d = &v->deadline;
    struct db_value p[4] = {DB_TEXT(v->boot_id)};
    char now_iso[STORE_ISO_SIZE];
    int64_t offset = 0, mono = v->mono_ms();
    int rc;

    if (v->boot_id == NULL || v->boot_id[0] == '\0') {
        /* Anchored afresh on every start, as on a new boot. */
        return bound_limits(v, deadline_now_ms(v));
    }
    rc = store_query_int(v->db, "SELECT offset_ms FROM clock_anchor WHERE id = 1 AND boot_id = $1",
                         p, 1, &offset);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        d->anchor_mono_ms = mono;
        d->anchor_wall_ms = mono + offset;
        d->anchored = true;
        return VEND_OK;
    }
    d->anchor_wall_ms = v->now_ms();
    d->anchor_mono_ms = mono;
    d->anchored = true;
    /* Bounded before the anchor is stored: a crash between the two bounds them again. */
    rc = bound_limits(v, d->anchor_wall_ms);
    if (rc < 0)
        return rc;
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    p[1] = DB_INT(d->anchor_wall_ms - d->anchor_mono_ms);
    p[2] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO clock_anchor (id, boot_id, offset_ms, updated_at) VALUES (1, $1, $2, "
                 "$3) ON CONFLICT (id) DO UPDATE SET boot_id = $1, offset_ms = $2, updated_at = $3",
                 p, 3, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

int deadline_resume(struct vendd *v)
{
    int64_t sent = 0, queued = 0, unsettled = 0;

    if (anchor_clock(v) < 0)
        return VEND_EDB;
    if (store_query_int(v->db, "SELECT count(*) FROM dispense_logs WHERE status = 'SENT'", NULL, 0,
                        &sent) < 0 ||
        store_query_int(v->db, "SELECT count(*) FROM dispense_logs WHERE status = 'QUEUED'", NULL,
                        0, &queued) < 0 ||
        store_query_int(v->db, "SELECT count(*) FROM dispense_logs WHERE status = 'UNSETTLED'",
                        NULL, 0, &unsettled) < 0)
        return VEND_EDB;
    if (sent > 0 || queued > 0 || unsettled > 0)
        log_info("resuming %" PRId64 " dispense(s) in flight, %" PRId64 " queued and %" PRId64
                 " unsettled",
                 sent, queued, unsettled);
    /* Results the machines published while we were down wait in our broker session; give
     * them one grace period to arrive before anything is failed for want of one. */
    v->deadline.not_before_ms = deadline_now_ms(v) + (int64_t)v->conf->dispense_result_grace_ms;
    deadline_arm(v);
    return VEND_OK;
}
