/* dispense_group.c - group commit of triggers and results; see dispense_group.h. */
#include "dispense_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "deadline.h"
#include "dispense.h"
#include "dispense_result.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "refunds.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"
#include "xmalloc.h"

struct group_item {
    bool is_trigger;
    /* a trigger */
    char order_id[VEND_ORDER_ID_MAX + 1];
    dispense_trigger_done_fn *done;
    void *arg;
    char status[DISPENSE_STATUS_SIZE];
    /* a result, from machine_id */
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    struct vend_dispense_result r;
    struct result_done res;
    /* the outcome: rc, and the command to publish once committed */
    int rc;
    struct dispense_send send;
};

struct dispense_group {
    uint64_t timer;
    size_t n, results;
    uint64_t commits; /* groups committed */
    bool applying;    /* items that come meanwhile (none should) wait for the next group */
    bool hooked;      /* on_turn_end() is the loop's */
    struct group_item items[DISPENSE_GROUP_MAX];
};

static void group_apply(struct vendd *v);

static void on_timer(void *arg)
{
    struct vendd *v = arg;

    v->dispense_group->timer = 0;
    group_apply(v);
}

/* The end of the loop turn that read the group's items: applied there, not behind the timers
 * due at the next turn's start (the HTTP server's, the ingest's). The timer stays armed for
 * items added outside a dispatch (a timer's callback), so that poll() does not sleep on them. */
static void on_turn_end(void *arg)
{
    struct vendd *v = arg;

    if (v->dispense_group->n > 0)
        group_apply(v);
}

/* A free item of the group, after applying a full one; the timer armed. NULL: apply this
 * one on its own, now. */
static struct group_item *group_add(struct vendd *v)
{
    struct dispense_group *g = v->dispense_group;
    struct group_item *it;

    if (g == NULL) {
        g = v->dispense_group = xcalloc(1, sizeof(*g));
        /* Without the hook (32 taken), the timer alone applies the group. */
        g->hooked = loop_turn_end_add(v->loop, on_turn_end, v) == VEND_OK;
    }
    if (g->n == DISPENSE_GROUP_MAX && !g->applying)
        group_apply(v);
    if (g->n == DISPENSE_GROUP_MAX)
        return NULL; /* only while applying, which adds nothing */
    if (g->timer == 0)
        g->timer = loop_timer_add(v->loop, 0, on_timer, v);
    if (g->timer == 0) {
        /* The loop holds 2^20 timers: nothing would apply the group, so no group. */
        log_warnx("cannot arm the dispense group's timer: applied one by one");
        return NULL;
    }
    it = &g->items[g->n++];
    memset(it, 0, sizeof(*it));
    return it;
}

void dispense_group_trigger(struct vendd *v, const char *order_id, dispense_trigger_done_fn *done,
                            void *arg)
{
    struct group_item *it = group_add(v);

    if (it == NULL) {
        char status[DISPENSE_STATUS_SIZE] = "";
        bool sent = false;
        /* Inside an open batch its effects would precede its durability: refused instead. */
        int rc = db_batch_open(v->db) ? VEND_EBUSY : dispense_trigger(v, order_id, status, &sent);

        done(arg, order_id, rc, status, sent);
        return;
    }
    it->is_trigger = true;
    snprintf(it->order_id, sizeof(it->order_id), "%s", order_id);
    it->done = done;
    it->arg = arg;
}

void dispense_group_result(struct vendd *v, const char *machine_id,
                           const struct vend_dispense_result *r)
{
    struct group_item *it = group_add(v);

    if (it == NULL) {
        /* Inside an open batch its effects would precede its durability: kept for later. */
        int rc = db_batch_open(v->db) ? VEND_EBUSY : dispense_result_apply(v, machine_id, r);

        if (dispense_result_worth_retrying(rc))
            dispense_result_keep(v, machine_id, r, rc);
        else if (rc < 0)
            metrics_reject(&v->metrics, VEND_TOPIC_DISPENSE_RESULT, rc);
        return;
    }
    snprintf(it->machine_id, sizeof(it->machine_id), "%s", machine_id);
    it->r = *r;
    v->dispense_group->results++;
}

size_t dispense_group_results(const struct vendd *v)
{
    return v->dispense_group != NULL ? v->dispense_group->results : 0;
}

/* A trigger in its own savepoint of the group. */
static void apply_trigger(struct vendd *v, struct group_item *it)
{
    int rc = db_begin(v->db);

    if (rc >= 0)
        rc = dispense_trigger_locked(v, it->order_id, it->status, &it->send);
    if (rc >= 0)
        rc = db_commit(v->db);
    if (rc < 0) {
        if (rc != VEND_ENOTFOUND && rc != VEND_ESTATE && rc != VEND_EUNAVAILABLE)
            log_warnx("cannot trigger order '%s': %s (%s)", it->order_id, vend_strerror(rc),
                      db_errmsg(v->db));
        db_rollback(v->db);
        it->send.ready = false;
    }
    it->rc = rc;
}

/* A result in its own savepoint, then its machine's next unit in another. */
static void apply_result(struct vendd *v, struct group_item *it)
{
    int rc;

    it->rc = dispense_result_apply_locked(v, it->machine_id, &it->r, &it->res);
    if (!it->res.applied)
        return;
    rc = db_begin(v->db);
    if (rc >= 0)
        rc = dispense_pump_locked(v, it->res.machine_id, &it->send);
    if (rc >= 0)
        rc = db_commit(v->db);
    if (rc < 0) {
        /* The result stands; the unit behind it goes at the next pump or fails at its
         * dispatch limit, as when dispense_pump() fails. */
        log_warnx("cannot send the next dispense to '%s': %s (%s)", it->res.machine_id,
                  vend_strerror(rc), db_errmsg(v->db));
        db_rollback(v->db);
        it->send.ready = false;
    }
}

/* Nothing of the group committed: triggers answered with why, results kept to retry. */
static void group_failed(struct vendd *v, struct group_item *items, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++) {
        struct group_item *it = &items[i];

        if (it->is_trigger) {
            it->done(it->arg, it->order_id, it->rc < 0 ? it->rc : rc, it->status, false);
        } else if (it->rc < 0 && !dispense_result_worth_retrying(it->rc)) {
            metrics_reject(&v->metrics, VEND_TOPIC_DISPENSE_RESULT, it->rc);
        } else {
            dispense_result_keep(v, it->machine_id, &it->r, it->rc < 0 ? it->rc : rc);
        }
    }
}

static void group_apply(struct vendd *v)
{
    struct dispense_group *g = v->dispense_group;
    size_t n = g->n;
    int rc;

    if (g->timer != 0) {
        loop_timer_del(v->loop, g->timer);
        g->timer = 0;
    }
    if (n == 0 || g->applying)
        return;
    g->applying = true;
    /* Another's batch open (never between loop callbacks): commit it with ours would hide
     * whether ours is durable, so not a group but one transaction each. */
    rc = db_batch_open(v->db) ? VEND_EBUSY : db_batch_begin(v->db);
    if (rc < 0) {
        log_warnx("cannot open the group commit of %zu trigger(s) and result(s): %s (%s)", n,
                  vend_strerror(rc), db_errmsg(v->db));
        group_failed(v, g->items, n, rc);
        goto out;
    }
    for (size_t i = 0; i < n && rc >= 0; i++) {
        if (g->items[i].is_trigger)
            apply_trigger(v, &g->items[i]);
        else
            apply_result(v, &g->items[i]);
        /* The database ended the group's transaction by itself (an I/O error, a full disk, a
         * lost connection): what it applied is gone, and an item after it would be committed
         * on its own. All or nothing: its commands rest on every item's commit. */
        if (db_batch_gone(v->db)) {
            log_warnx("the database rolled back the group commit of %zu trigger(s) and "
                      "result(s) by itself: %s; none of it is done",
                      n, db_errmsg(v->db));
            db_batch_abort(v->db);
            rc = VEND_EDB;
        }
    }
    if (rc < 0) {
        group_failed(v, g->items, n, rc);
        goto out;
    }
    rc = db_batch_commit(v->db);
    if (rc < 0) {
        log_warnx("group commit of %zu trigger(s) and result(s) failed: %s (%s)", n,
                  vend_strerror(rc), db_errmsg(v->db));
        for (size_t i = 0; i < n; i++)
            g->items[i].send.ready = false;
        group_failed(v, g->items, n, rc);
        goto out;
    }
    /* Durable: now what depends on it. */
    g->commits++;
    events_emit(v);
    for (size_t i = 0; i < n; i++) {
        struct group_item *it = &g->items[i];
        bool sent;

        if (it->is_trigger && it->rc == VEND_OK)
            crashpoint(&v->crash, CRASH_TRIGGER_COMMITTED);
        else if (!it->is_trigger && it->res.applied)
            crashpoint(&v->crash, CRASH_RESULT_COMMITTED);
        sent = it->send.ready && dispense_publish(v, &it->send);

        if (it->is_trigger) {
            it->done(it->arg, it->order_id, it->rc, it->status, sent);
            continue;
        }
        if (it->res.applied)
            dispense_result_log(v, &it->r, &it->res);
        else if (dispense_result_worth_retrying(it->rc))
            dispense_result_keep(v, it->machine_id, &it->r, it->rc);
        else if (it->rc < 0)
            metrics_reject(&v->metrics, VEND_TOPIC_DISPENSE_RESULT, it->rc);
    }
    deadline_arm(v);
    refunds_schedule(v);
out:
    g->n = 0;
    g->results = 0;
    g->applying = false;
}

uint64_t dispense_group_commits(const struct vendd *v)
{
    return v->dispense_group != NULL ? v->dispense_group->commits : 0;
}

void dispense_group_flush(struct vendd *v)
{
    if (v->dispense_group != NULL)
        group_apply(v);
}

void dispense_group_free(struct vendd *v)
{
    struct dispense_group *g = v->dispense_group;

    if (g == NULL)
        return;
    if (g->timer != 0)
        loop_timer_del(v->loop, g->timer);
    if (g->hooked)
        loop_turn_end_del(v->loop, on_turn_end, v);
    /* dispense_group_flush() emptied it; only a start that failed half-way gets here with
     * items, and then nothing was read. */
    if (g->n > 0)
        log_warnx("%zu dispense trigger(s) and result(s) not applied at shutdown", g->n);
    free(g);
    v->dispense_group = NULL;
}
