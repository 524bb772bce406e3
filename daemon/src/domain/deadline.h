/*
 * deadline.h - SPEC §4 rule 3, no paid order is left hanging.
 *
 * Every SENT unit has a deadline_at (command sent + timeoutMs + DISPENSE_RESULT_GRACE_MS)
 * and every QUEUED unit a dispatch_by (DISPENSE_DISPATCH_TTL_S past the dispense ahead of
 * it). One loop timer is armed for the earliest of all of them; when it fires, the sweep
 * fails each overdue unit and its order (NO_RESULT, MACHINE_UNREACHABLE), which queues the
 * refund, and sends what waits behind it. The limits live in the database, so after a
 * restart deadline_resume() re-arms the timer from the rows; its first sweep waits one grace
 * period so that results the broker held for us are applied first.
 *
 * The clock: deadlines run on the monotonic clock, so a wall-clock step neither postpones
 * nor hastens them. The deadline clock is the monotonic clock plus an offset fixed when it is
 * anchored: the wall clock at the first start on this boot. A vendd restarted on the same
 * boot (the kernel's boot id, in clock_anchor) takes the stored offset, so a step between
 * two processes changes nothing either; only a new boot, whose monotonic clock starts over,
 * anchors afresh on the wall clock. Every stored limit is written and compared in it: the
 * units' deadlines here, and the other durations stored as times (a refund's hold and
 * backoff, a PENDING order's expiry and checks, a machine's offline grace). The last boot's
 * clock kept any wall-clock error NTP corrected during it, so a fresh anchor brings every
 * limit further ahead than its longest duration back to that duration.
 *
 * A sweep that cannot finish (database busy, an unusable row) is retried with backoff
 * (1 s doubling to 30 s), logged each time; the timer never spins, and the rows it could not
 * finish do not hold back the limits of the others.
 */
#ifndef VENDD_DEADLINE_H
#define VENDD_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

struct vendd;

/* The timer's state, in struct vendd. Zeroed means "not anchored, nothing armed". */
struct deadline_state {
    bool anchored;
    int64_t anchor_wall_ms, anchor_mono_ms; /* the deadline clock's origin */
    uint64_t timer;                         /* loop timer id, 0 when none */
    int64_t due_ms;                         /* deadline-clock time it fires at */
    int64_t not_before_ms;                  /* no sweep before this (after a restart) */
    int64_t retry_ms, retry_at_ms;          /* backoff after a sweep that could not finish */
    int64_t stuck_through_ms;               /* its limits up to here are the stuck rows' */
};

/* Now on the deadline clock, in epoch milliseconds (anchors it on first use). */
int64_t deadline_now_ms(struct vendd *v);

/* The deadline_at of a unit sent at now (deadline clock) with timeout_ms. */
int64_t deadline_of_unit(const struct vendd *v, int64_t now, int64_t timeout_ms);

/*
 * When a unit queued for machine_id at now must have been sent: DISPENSE_DISPATCH_TTL_S
 * after the machine's current dispense ends (its deadline), or after now if it is idle.
 * Writes the ISO time into limit (STORE_ISO_SIZE bytes). Returns VEND_OK or a VEND_E*.
 */
int deadline_dispatch_limit(struct vendd *v, const char *machine_id, int64_t now, char *limit);

/* (Re)arm the timer for the earliest limit in the database; disarm when there is none. */
void deadline_arm(struct vendd *v);

/*
 * Fail every overdue unit now. Returns the number of overdue rows it could not use (each
 * logged), or a negative VEND_E* when the database stopped it. The timer calls this; tests
 * call it directly after moving the clocks.
 */
int deadline_sweep(struct vendd *v);

/* At start: anchor the clock (v->boot_id), log what is in flight, and arm the timer (first
 * sweep after one grace period). Returns VEND_OK or VEND_EDB. */
int deadline_resume(struct vendd *v);

/* The deadline-clock time the timer is armed for, or -1 when none is (for tests). */
int64_t deadline_armed_for(const struct vendd *v);

/* Drop the timer (shutdown). */
void deadline_stop(struct vendd *v);

#endif
