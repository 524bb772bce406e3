/*
 * fault.h - vmsim's fault modes on the MQTT side, each machine on its own:
 *
 * Silence (--silent-after N): a machine handles its first N commands, then goes silent at the
 * next one. It stays connected (its retained status stays ONLINE) but drops every message
 * the broker delivers, that command included, as if its task were stuck and its queue had
 * overflowed, and publishes nothing: its core is told it is disconnected, so a unit already
 * running ends and is journaled, but its result waits. SIGUSR1 (every silent machine), or
 * --silent-ms after going silent, wakes it: the core is told it is connected again, so it
 * re-publishes its ONLINE status and every unacknowledged result, and handles commands
 * again. Silence comes once per machine and run of vmsim.
 *
 * A lost broker (--lose-broker-every MS, --lose-broker-for MS): after a machine has been
 * connected for MS, its TCP connection is cut without a DISCONNECT, so the broker publishes
 * its retained will {"status":"OFFLINE"}. It reconnects --lose-broker-for later (clean
 * start, like every reconnect: mqtt_link.h), and its core re-announces ONLINE and
 * re-publishes unacknowledged results; commands sent while it was away are lost. A silent
 * machine that loses the broker reconnects silent: its status reads OFFLINE until it wakes.
 *
 * The door (--door-open-rate) and the crash (--crash-after-start) belong to the simulated
 * hardware (sim_hal.h).
 */
#ifndef VMSIM_FAULT_H
#define VMSIM_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "mqtt_link.h"

#define FAULT_NEVER UINT64_MAX

/* The knobs, from the command line; the same for every machine. */
struct fault_opts {
    uint64_t silent_after;  /* commands handled before silence; FAULT_NEVER: never */
    uint32_t silent_ms;     /* 0: silent until SIGUSR1 */
    uint32_t lose_every_ms; /* 0: never */
    uint32_t lose_for_ms;
};

/* One machine's schedule; all zero to begin with. */
struct fault {
    uint64_t wake_at_ms; /* 0: not set (the monotonic clock is past 0 when vmsim runs) */
    uint64_t lose_at_ms; /* 0: not set */
};

/*
 * Once per pass of the loop, after link_service(): wakes a silent link when wake (SIGUSR1
 * arrived) or its time has come, and cuts the connection when due.
 */
void fault_service(struct fault *f, const struct fault_opts *o, struct link *l, bool wake,
                   uint64_t now_ms);

#endif
