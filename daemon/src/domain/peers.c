/* peers.c - what the other instances of a shared group wrote, looked for on a timer. */
#include "peers.h"

#include "checkout.h"
#include "conf.h"
#include "deadline.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "offline.h"
#include "refunds.h"
#include "vendd.h"

static void on_tick(void *arg)
{
    struct vendd *v = arg;

    v->peers.timer = 0;
    /* Cheap: only marks the stream to look, and it looks only with clients attached. */
    events_emit(v);
    v->peers.ticks++;
    if (v->peers.ticks * PEERS_EVENTS_MS >= PEERS_REARM_MS) {
        v->peers.ticks = 0;
        deadline_arm(v);
        refunds_schedule(v);
        checkout_rearm(v);
        offline_arm(v);
    }
    v->peers.timer = loop_timer_add(v->loop, PEERS_EVENTS_MS, on_tick, v);
    if (v->peers.timer == 0)
        log_warnx("cannot arm the timer that looks for other instances' work: limits they "
                  "wrote wait for this instance's own timers");
}

void peers_start(struct vendd *v)
{
    if (v->conf->mqtt_shared_group[0] == '\0')
        return;
    log_info("instance '%s' of shared group '%s': other instances' limits are read every %d ms",
             v->conf->mqtt_client_id, v->conf->mqtt_shared_group, PEERS_REARM_MS);
    v->peers.timer = loop_timer_add(v->loop, PEERS_EVENTS_MS, on_tick, v);
    if (v->peers.timer == 0)
        log_warnx("cannot arm the timer that looks for other instances' work");
}

void peers_stop(struct vendd *v)
{
    if (v->peers.timer != 0)
        loop_timer_del(v->loop, v->peers.timer);
    v->peers.timer = 0;
}
