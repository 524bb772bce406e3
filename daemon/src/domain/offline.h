/*
 * offline.h - SPEC §8, the alert of an offline machine: MACHINE_OFFLINE.
 *
 * The rule: a machine whose presence turned OFFLINE (its status or its will,
 * machines_apply_status) and has stayed so MACHINE_OFFLINE_ALERT_S seconds raises one alert;
 * 0 raises it in the transaction of the status. Turning ONLINE within the grace raises
 * nothing; turning ONLINE after it resolves the open alert, in the transaction of the status.
 * A machine registered and never seen raises nothing.
 *
 * machines.offline_alert_since (schema 0014) holds when the machine went OFFLINE while its
 * alert is not raised yet, on the deadline clock (deadline.h: monotonic, so a wall-clock step
 * neither postpones nor hastens the alert, and the same clock after a restart on one boot);
 * raising it clears the column, so an alert an operator resolved by hand stays resolved until the
 * machine has been back ONLINE and gone again. A unique index keeps one open MACHINE_OFFLINE alert
 * per machine.
 *
 * The sweep: one loop timer, armed for the earliest machine due; it raises the alerts of at
 * most OFFLINE_SWEEP_BATCH machines per transaction and loop turn (a whole site dropping at
 * once must not stall the loop), then arms again. The column lives in the database, so after
 * a restart offline_start() arms it from the rows, not before OFFLINE_START_SETTLE_MS (at most
 * the grace) so that the statuses the broker retained for machines back meanwhile come first.
 */
#ifndef VENDD_OFFLINE_H
#define VENDD_OFFLINE_H

#include <stdbool.h>
#include <stdint.h>

struct vendd;

/* Machines whose alert one sweep transaction raises at most. */
#define OFFLINE_SWEEP_BATCH 256

/* After a start, the first sweep waits this long (at most one grace) for the statuses the
 * broker retained: a machine back while vendd was down is not alerted as gone. */
#define OFFLINE_START_SETTLE_MS 10000

/* The timer's state, in struct vendd. Zeroed means nothing armed. */
struct offline_state {
    uint64_t timer;        /* loop timer id, 0 when none */
    int64_t due_ms;        /* deadline-clock time it fires at */
    int64_t retry_ms;      /* backoff after a sweep the database stopped */
    int64_t not_before_ms; /* no sweep before this (after a start) */
};

/*
 * Inside the transaction of machines_apply_status: machine id's presence moved to online
 * (ONLINE, or not OFFLINE) or to OFFLINE at now_iso. Online resolves its open MACHINE_OFFLINE
 * alert and forgets when it went OFFLINE; OFFLINE notes when (with a grace of 0, raises the
 * alert at once). Returns 1 if it raised the alert, 0 if not, or a VEND_E*; the caller logs
 * a raised alert once committed.
 */
int offline_presence_locked(struct vendd *v, const char *id, bool offline, const char *now_iso);

/*
 * Raise the alerts of the machines OFFLINE for the grace or longer, at most
 * OFFLINE_SWEEP_BATCH of them in one transaction. Returns how many machines it alerted, or a
 * VEND_E*. The timer calls this; tests call it directly after moving the clock.
 */
int offline_sweep(struct vendd *v);

/* (Re)arm the timer for the earliest machine due; disarm when none is. After a status moved
 * a machine to OFFLINE, and at start (offline_start). */
void offline_arm(struct vendd *v);

/* The deadline-clock time the timer is armed for, or -1 when none is (for tests). */
int64_t offline_armed_for(const struct vendd *v);

/* At start: arm the timer from the rows. */
void offline_start(struct vendd *v);

/* Drop the timer (shutdown). */
void offline_stop(struct vendd *v);

#endif
