/* peers.c - what the other instances of a shared group wrote: told by NOTIFY, looked for on a
 * timer as well; see peers.h. */
#include "peers.h"

#include <stdio.h>
#include <string.h>

#include "checkout.h"
#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "offline.h"
#include "pg_listen.h"
#include "refunds.h"
#include "vendd.h"

/* "vendd:" + the group: one channel per installation sharing a database server. */
static void channel(const struct vendd *v, char *buf, size_t size)
{
    snprintf(buf, size, "vendd:%s", v->conf->mqtt_shared_group);
}

/* The timers armed from the rows, armed again from them. */
static void rearm(struct vendd *v)
{
    deadline_arm(v);
    refunds_schedule(v);
    checkout_rearm(v);
    offline_arm(v);
}

static void on_rearm(void *arg)
{
    struct vendd *v = arg;

    v->peers.rearm_timer = 0;
    rearm(v);
}

/* Another instance committed: its events now, the timers within PEERS_NOTIFY_MS (a burst of
 * its commits costs one re-arm). Its own notifications (payload: its client id) are not news. */
static void on_notify(void *arg, const char *payload)
{
    struct vendd *v = arg;
    bool mine = v->peers.notify;

    if (strcmp(payload, v->conf->mqtt_client_id) == 0)
        return;
    events_emit(v);
    v->peers.notify = mine; /* what others committed is not ours to announce */
    if (v->peers.rearm_timer == 0)
        v->peers.rearm_timer = loop_timer_add(v->loop, PEERS_NOTIFY_MS, on_rearm, v);
}

/* Before the loop sleeps: tell the others once for whatever this turn committed. Not inside
 * a group commit (its rows are not committed yet: the next turn tells). */
static void on_prepare(void *arg)
{
    struct vendd *v = arg;
    char chan[80];
    struct db_value p[2];

    if (!v->peers.notify || db_batch_open(v->db))
        return;
    v->peers.notify = false;
    channel(v, chan, sizeof(chan));
    p[0] = DB_TEXT(chan);
    p[1] = DB_TEXT(v->conf->mqtt_client_id);
    if (db_exec(v->db, "SELECT pg_notify($1, $2)", p, 2, NULL, NULL) < 0) {
        /* Once until it works again: the database may be away for a while. */
        if (!v->peers.notify_failed)
            log_warnx("cannot NOTIFY the other instances: %s; they see it within %d ms",
                      db_errmsg(v->db), PEERS_REARM_MS);
        v->peers.notify_failed = true;
        return;
    }
    v->peers.notify_failed = false;
}

static void on_tick(void *arg)
{
    struct vendd *v = arg;

    v->peers.timer = 0;
    /* Cheap: only marks the stream to look, and it looks only with clients attached. */
    if (v->peers.listen == NULL || pg_listen_check(v->peers.listen) < 0) {
        bool mine = v->peers.notify;

        events_emit(v);
        v->peers.notify = mine;
    }
    v->peers.ticks++;
    if (v->peers.ticks * PEERS_EVENTS_MS >= PEERS_REARM_MS) {
        v->peers.ticks = 0;
        rearm(v);
    }
    v->peers.timer = loop_timer_add(v->loop, PEERS_EVENTS_MS, on_tick, v);
    if (v->peers.timer == 0)
        log_warnx("cannot arm the timer that looks for other instances' work: limits they "
                  "wrote wait for this instance's own timers");
}

void peers_committed(struct vendd *v)
{
    v->peers.notify = true;
}

void peers_start(struct vendd *v)
{
    char chan[80];

    if (v->conf->mqtt_shared_group[0] == '\0')
        return;
    v->peers.active = true;
    channel(v, chan, sizeof(chan));
    log_info("instance '%s' of shared group '%s': other instances' work is told on channel "
             "'%s' and read every %d ms",
             v->conf->mqtt_client_id, v->conf->mqtt_shared_group, chan, PEERS_REARM_MS);
    /* Failing to connect is logged there, and retried by the tick. */
    pg_listen_open(&v->peers.listen, v->loop, v->conf->database_url, chan, on_notify, v);
    if (loop_prepare_add(v->loop, on_prepare, v) < 0)
        log_warnx("cannot hook the NOTIFY of this instance's changes into the loop");
    v->peers.timer = loop_timer_add(v->loop, PEERS_EVENTS_MS, on_tick, v);
    if (v->peers.timer == 0)
        log_warnx("cannot arm the timer that looks for other instances' work");
}

void peers_stop(struct vendd *v)
{
    if (!v->peers.active)
        return;
    v->peers.active = false;
    loop_prepare_del(v->loop, on_prepare, v);
    if (v->peers.timer != 0)
        loop_timer_del(v->loop, v->peers.timer);
    if (v->peers.rearm_timer != 0)
        loop_timer_del(v->loop, v->peers.rearm_timer);
    v->peers.timer = 0;
    v->peers.rearm_timer = 0;
    pg_listen_free(v->peers.listen);
    v->peers.listen = NULL;
}
