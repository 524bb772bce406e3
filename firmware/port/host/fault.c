/*
 * fault.c - vmsim's fault modes on the MQTT side: waking a silent machine, cutting the
 * broker connection on schedule (fault.h).
 */
#include "fault.h"

#include <stdio.h>

void fault_service(struct fault *f, const struct fault_opts *o, struct link *l, bool wake,
                   uint64_t now_ms)
{
    if (l->silent) {
        if (o->silent_ms != 0 && f->wake_at_ms == 0)
            f->wake_at_ms = now_ms + o->silent_ms;
        if (wake || (f->wake_at_ms != 0 && now_ms >= f->wake_at_ms)) {
            f->wake_at_ms = 0;
            link_wake(l);
        }
    }
    if (o->lose_every_ms == 0)
        return;
    /* Counted from each (re)connect, so every connection lasts lose_every_ms. */
    if (!l->connected) {
        f->lose_at_ms = 0;
    } else if (f->lose_at_ms == 0) {
        f->lose_at_ms = now_ms + o->lose_every_ms;
    } else if (now_ms >= f->lose_at_ms) {
        fprintf(stderr, "vmsim: '%s' loses the broker for %u ms (--lose-broker-every)\n", l->id,
                (unsigned)o->lose_for_ms);
        link_drop(l, now_ms + o->lose_for_ms);
        f->lose_at_ms = 0;
    }
}
