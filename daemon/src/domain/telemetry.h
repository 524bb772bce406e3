/*
 * telemetry.h - what a machine's telemetry readings (SPEC §3, vm/{id}/telemetry) leave in the
 * database, and how long the raw rows stay.
 *
 * One reading, stored in one transaction or not at all:
 *   - the machine row takes the latest temperature and door (what the reading leaves out
 *     keeps its last value) and last_seen;
 *   - the raw reading becomes a `telemetry` row;
 *   - each reported slot that vendd knows takes the sensor level and the time it was read;
 *     a reading that names every slot the machine has moves one time on the machine row
 *     (slots_seen_at) instead of each unchanged slot's sensor_at, so read a slot's time
 *     through TELEMETRY_SENSOR_AT_SQL. The level is a reading,
 *     never a count: slots.current_stock is not touched (SPEC §4 rule 5). A level that
 *     contradicts the count raises STOCK_SENSOR_MISMATCH, at most one open per slot; the
 *     operator's audit resolves it, and the next mismatch alerts again. Slots vendd does not
 *     know (not configured yet) are skipped: normal during setup, never an error;
 *   - the machine's row of that hour in `telemetry_hourly` takes the reading: samples,
 *     temperature min/max/sum, door openings, level changes (schema 0008 defines each).
 *     Added as the reading is stored, so the history is exact however far pruning lags.
 *
 * Retention: raw rows received more than TELEMETRY_RETENTION_DAYS ago are deleted by a loop
 * timer, at most TELEMETRY_PRUNE_BATCH rows per transaction, yielding to the loop between
 * batches (the next batch is a timer at 0 ms), then every 10 minutes. A batch that fails
 * (database busy) is retried after 1 s, doubling to 10 minutes. The hourly rows, the machine
 * row and the slots are never pruned: they keep the latest reading and the history.
 */
#ifndef VENDD_TELEMETRY_H
#define VENDD_TELEMETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "vend/msg.h"

struct vendd;

/* The alert a level raises when it contradicts the count. */
#define TELEMETRY_MISMATCH_KIND "STOCK_SENSOR_MISMATCH"

/*
 * A slot's sensor time as the API shows it, in a statement that names the slot "s" and its
 * machine "m": the later of the slot's own sensor_at and the machine's slots_seen_at, the
 * latter only for a slot that existed when that reading came (one created since was not in
 * it). Times are vendd's fixed-width ISO text, so they compare as text. After the wall clock
 * steps back the later time is not the latest reading's: telemetry.c then writes each slot's
 * own (struct slot_state's ahead).
 */
/* What telemetry.c counts a change of machines.slots_seen_at as (db_touch()): a cached read
 * of the sensor times names it, not the whole machines table, which every status message
 * rewrites (slots_stock_reads). No table has this name. */
#define TELEMETRY_SLOTS_SEEN "machines.slots_seen_at"

#define TELEMETRY_SENSOR_AT_SQL                                                                    \
    "CASE WHEN m.slots_seen_at >= s.created_at AND "                                               \
    "(s.sensor_at IS NULL OR m.slots_seen_at > s.sensor_at) "                                      \
    "THEN m.slots_seen_at ELSE s.sensor_at END"

/* Raw rows deleted per transaction: small enough that a batch never holds the loop long. */
#define TELEMETRY_PRUNE_BATCH 500

/* What a stored reading did beyond storing, for the caller to log once committed. */
struct telemetry_outcome {
    unsigned unknown_slots;      /* reported slots vendd does not know: skipped */
    bool raised[VEND_SLOTS_MAX]; /* t->slots[i] raised TELEMETRY_MISMATCH_KIND */
};

/* The prune timer's state, in struct vendd. Zeroed means "not armed". */
struct telemetry_prune_state {
    uint64_t timer;      /* loop timer id, 0 when none */
    uint64_t delay_ms;   /* what it was last armed with (tests read it) */
    int64_t retry_ms;    /* backoff after a failed batch, 0 when the last one worked */
    uint64_t pruned_run; /* rows deleted by the batches of this run so far (for the log) */
};

/*
 * Store the decoded reading t of registered machine machine_id, with data its JSON text
 * (NUL-terminated), as described above, in one transaction. Publishes nothing. Fills *out.
 * Returns VEND_OK, VEND_ENOTFOUND for an unknown machine, or another VEND_E* from the
 * database (rolled back; db_errmsg() tells the detail).
 */
int telemetry_store(struct vendd *v, const char *machine_id, const struct vend_telemetry *t,
                    const char *data, struct telemetry_outcome *out);

/*
 * One prune batch in one transaction: delete the oldest raw rows received before now minus
 * TELEMETRY_RETENTION_DAYS (v->conf), at most TELEMETRY_PRUNE_BATCH. Counted in metrics.
 * Returns the number deleted (fewer than a batch: none is left), or a VEND_E*.
 */
int telemetry_prune(struct vendd *v);

/* What the timer does: one batch, then arm the timer again (0 ms while there is more, the
 * period when done, the backoff after a failure). Tests call it directly. */
void telemetry_prune_run(struct vendd *v);

/* Arm the timer for the first run, a minute after the start. */
void telemetry_prune_start(struct vendd *v);

/* Drop the timer (shutdown). */
void telemetry_prune_stop(struct vendd *v);

#endif
