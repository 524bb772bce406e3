/*
 * offline.c - the MACHINE_OFFLINE alert: noted with the presence, raised by a sweep after the
 * grace, resolved with the presence; see offline.h for the rule.
 */
#include "offline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "alerts.h"
#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "store.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"
#include "xmalloc.h"

#define OFFLINE_KIND "MACHINE_OFFLINE"
/* Backoff of a sweep the database stopped. */
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS   60000

/* Inside a transaction: the alert of machine id, OFFLINE since since_iso. Returns 1 if
 * raised, 0 if one was open already, or a VEND_E*. */
static int raise_locked(struct vendd *v, const char *id, const char *since_iso, const char *now_iso)
{
    char msg[VEND_MACHINE_ID_MAX + 96];
    struct db_value p[1] = {DB_TEXT(id)};
    int raised, rc;

    snprintf(msg, sizeof(msg), "machine '%s' has been OFFLINE since %s", id, since_iso);
    raised = alerts_raise_locked(
        v, &(struct alert){.machine_id = id, .kind = OFFLINE_KIND, .message = msg}, now_iso);
    if (raised < 0)
        return raised;
    rc = db_exec(v->db, "UPDATE machines SET offline_alert_since = NULL WHERE id = $1", p, 1, NULL,
                 NULL);
    return rc < 0 ? rc : raised;
}

int offline_presence_locked(struct vendd *v, const char *id, bool offline, const char *now_iso)
{
    struct db_value p[2] = {DB_TEXT(id), DB_TEXT(now_iso)};
    char since[STORE_ISO_SIZE];
    int rc;

    if (offline) {
        if (v->conf->machine_offline_alert_s == 0)
            return raise_locked(v, id, now_iso, now_iso);
        /* The grace runs on the deadline clock (monotonic, deadline.h): a wall-clock step
         * neither holds the alert back nor raises it early. */
        db_iso_time(since, sizeof(since), deadline_now_ms(v));
        p[1] = DB_TEXT(since);
        rc = db_exec(v->db, "UPDATE machines SET offline_alert_since = $2 WHERE id = $1", p, 2,
                     NULL, NULL);
        return rc < 0 ? rc : VEND_OK;
    }
    rc = db_exec(v->db,
                 "UPDATE machines SET offline_alert_since = NULL WHERE id = $1 "
                 "AND offline_alert_since IS NOT NULL",
                 p, 1, NULL, NULL);
    /* Spelled as alerts_open_machine's WHERE, so SQLite may read that partial index. */
    if (rc >= 0)
        rc = db_exec(v->db,
                     "UPDATE alerts SET resolved_at = $2 WHERE machine_id = $1 "
                     "AND resolved_at IS NULL AND kind = '" OFFLINE_KIND "'",
                     p, 2, NULL, NULL);
    if (rc > 0)
        log_info("alert " OFFLINE_KIND " of machine '%s' resolved: it is back", id);
    return rc < 0 ? rc : VEND_OK;
}

/* ---- the sweep --------------------------------------------------------------------------- */

struct due {
    size_t n;
    struct due_row {
        char id[VEND_MACHINE_ID_MAX + 1];
        char since[STORE_ISO_SIZE];
        bool raised;
    } rows[OFFLINE_SWEEP_BATCH];
};

static int take_due(void *arg, const struct db_row *row)
{
    struct due *d = arg;
    struct due_row *r = &d->rows[d->n];

    if (d->n == OFFLINE_SWEEP_BATCH)
        return 1;
    /* Ids are bounded by the schema (1..32); a longer one is skipped, not truncated. */
    if (store_copy_text(r->id, sizeof(r->id), db_row_text(row, 0)) < 0 ||
        store_copy_text(r->since, sizeof(r->since), db_row_text(row, 1)) < 0)
        return 0;
    d->n++;
    return 0;
}

int offline_sweep(struct vendd *v)
{
    char cutoff[STORE_ISO_SIZE], now_iso[STORE_ISO_SIZE];
    struct due *d = xcalloc(1, sizeof(*d));
    struct db_value p[2];
    int64_t now = deadline_now_ms(v);
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    db_iso_time(cutoff, sizeof(cutoff), now - (int64_t)v->conf->machine_offline_alert_s * 1000);
    p[0] = DB_TEXT(cutoff);
    p[1] = DB_INT(OFFLINE_SWEEP_BATCH);
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    /* Through machines_offline_alert (schema 0014): the due machines only, oldest first. */
    rc = db_exec(v->db,
                 "SELECT id, offline_alert_since FROM machines WHERE offline_alert_since IS NOT "
                 "NULL AND offline_alert_since <= $1 ORDER BY offline_alert_since LIMIT $2",
                 p, 2, take_due, d);
    for (size_t i = 0; rc >= 0 && i < d->n; i++) {
        rc = raise_locked(v, d->rows[i].id, d->rows[i].since, now_iso);
        d->rows[i].raised = rc == 1;
    }
    if (rc >= 0)
        rc = db_commit(v->db);
out:
    if (rc < 0) {
        log_warnx("cannot raise the offline machine alerts: %s (%s)", vend_strerror(rc),
                  db_errmsg(v->db));
        db_rollback(v->db);
    } else {
        rc = (int)d->n;
        for (size_t i = 0; i < d->n; i++)
            if (d->rows[i].raised)
                log_warnx("alert " OFFLINE_KIND ": machine '%s' has been OFFLINE since %s",
                          d->rows[i].id, d->rows[i].since);
        if (d->n > 0)
            events_emit(v);
    }
    free(d);
    return rc;
}

/* ---- the timer --------------------------------------------------------------------------- */

static void on_timer(void *arg);

static void disarm(struct vendd *v)
{
    if (v->offline.timer != 0)
        loop_timer_del(v->loop, v->offline.timer);
    v->offline.timer = 0;
    v->offline.due_ms = -1;
}

static void arm_at(struct vendd *v, int64_t due)
{
    int64_t now = deadline_now_ms(v);

    if (v->offline.timer != 0 && v->offline.due_ms == due)
        return;
    disarm(v);
    v->offline.timer = loop_timer_add(v->loop, due > now ? (uint64_t)(due - now) : 0, on_timer, v);
    if (v->offline.timer == 0) {
        log_warnx("cannot arm the offline machine timer; their alerts wait for the next status");
        return;
    }
    v->offline.due_ms = due;
}

/* Arm for the earliest machine due, not before not_before. */
static void arm_from_rows(struct vendd *v, int64_t not_before)
{
    char first[STORE_ISO_SIZE];
    int64_t since = 0, due;
    int rc;

    if (v->offline.retry_ms > 0 && v->offline.timer != 0)
        return; /* the backoff decides when the database is asked again */
    rc = store_query_text(v->db,
                          "SELECT min(offline_alert_since) FROM machines "
                          "WHERE offline_alert_since IS NOT NULL",
                          NULL, 0, first, sizeof(first));
    if (rc == 0) {
        disarm(v);
        return;
    }
    if (rc < 0 || store_iso_parse(first, &since) < 0) {
        log_warnx("cannot read when machines went OFFLINE; checking again in %d ms",
                  RETRY_FIRST_MS);
        arm_at(v, deadline_now_ms(v) + RETRY_FIRST_MS);
        return;
    }
    due = since + (int64_t)v->conf->machine_offline_alert_s * 1000;
    if (not_before < v->offline.not_before_ms)
        not_before = v->offline.not_before_ms;
    arm_at(v, due > not_before ? due : not_before);
}

void offline_arm(struct vendd *v)
{
    arm_from_rows(v, 0);
}

int64_t offline_armed_for(const struct vendd *v)
{
    return v->offline.timer != 0 ? v->offline.due_ms : -1;
}

static void on_timer(void *arg)
{
    struct vendd *v = arg;
    struct offline_state *s = &v->offline;
    int rc;

    s->timer = 0;
    s->due_ms = -1;
    rc = offline_sweep(v);
    if (rc < 0) {
        /* Busy database or worse: again, ever more slowly, never in a tight loop. */
        s->retry_ms = s->retry_ms == 0                 ? RETRY_FIRST_MS
                      : s->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
                                                       : s->retry_ms * 2;
        arm_at(v, deadline_now_ms(v) + s->retry_ms);
        return;
    }
    s->retry_ms = 0;
    if (rc == OFFLINE_SWEEP_BATCH) {
        /* More are due: the next batch after whatever else the loop has waiting. */
        arm_at(v, deadline_now_ms(v));
        return;
    }
    /* A sweep that found nothing due (a row from a process before a reboot, whose deadline
     * clock differed) must not fire again at once for the same row. */
    arm_from_rows(v, rc == 0 ? deadline_now_ms(v) + RETRY_FIRST_MS : 0);
}

void offline_start(struct vendd *v)
{
    int64_t settle = (int64_t)v->conf->machine_offline_alert_s * 1000;

    /* A machine back while vendd was down says so in its retained status, which comes once
     * the broker session is up: sweeping at once would alert it as gone. */
    if (settle > OFFLINE_START_SETTLE_MS)
        settle = OFFLINE_START_SETTLE_MS;
    v->offline.due_ms = -1;
    v->offline.not_before_ms = deadline_now_ms(v) + settle;
    offline_arm(v);
}

void offline_stop(struct vendd *v)
{
    disarm(v);
}
