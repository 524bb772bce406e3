/*
 * dispense_result.h - what a machine says about a unit (vm/{id}/dispense_result), applied
 * to its dispense_logs row in one transaction: SPEC §4 rules 2, 4, 5 and 6.
 *
 * Only success && dropDetected makes a unit SUCCEEDED and takes one from the stock; a motor
 * cycle without a drop is NO_DROP and a drop without success raises DROP_WITHOUT_SUCCESS,
 * both flag the slot for inspection; a failed unit fails its order (dispense.h). A result
 * for a unit that already timed out is recorded as late and still takes the stock; the
 * refund rules decide the money (refunds.h). A repeated result changes nothing.
 */
#ifndef VENDD_DISPENSE_RESULT_H
#define VENDD_DISPENSE_RESULT_H

#include <stdbool.h>
#include <stddef.h>

#include "vend/msg.h"

struct vendd;
struct vend_dispense_result;

/*
 * Apply a decoded dispense_result from machine_id.
 * Returns VEND_OK when it was applied (also a late result); VEND_ENOTFOUND for an unknown
 * order/unit or one that belongs to another machine; VEND_ECONFLICT for a repeated result;
 * VEND_ESTATE for a result that contradicts the recorded one or for a unit never sent.
 * Every rejection is logged with its reason here; nothing is changed by one.
 */
int dispense_result_apply(struct vendd *v, const char *machine_id,
                          const struct vend_dispense_result *r);

/*
 * What an applied result is counted as in the metrics, once it is durable: a group rolled
 * back applies it again later, and it must not count twice. One case counts it nowhere: a
 * PostgreSQL COMMIT whose answer never came (the connection lost during it) that did commit;
 * the result kept and applied again then finds its own row and counts as a duplicate.
 */
enum result_count { RESULT_COUNT_NONE, RESULT_SUCCEEDED, RESULT_FAILED, RESULT_LATE };

/* A result applied and committed (a savepoint released, inside a group commit), and what
 * follows once it is durable. */
struct result_done {
    bool applied; /* committed: its effects are due */
    bool was_unsettled, order_done, by_operator;
    enum result_count count;
    char machine_id[VEND_MACHINE_ID_MAX + 1]; /* the unit's machine: pump it next */
};

/*
 * dispense_result_apply() without what follows the commit (dispense_group.h does it once the
 * group is durable): events, the metrics and log lines (dispense_result_log()), the machine's
 * next unit, deadlines and refunds. Returns as dispense_result_apply().
 */
int dispense_result_apply_locked(struct vendd *v, const char *machine_id,
                                 const struct vend_dispense_result *r, struct result_done *done);
/* What an applied result tells once it is durable: its metrics and log lines. */
void dispense_result_log(struct vendd *v, const struct vend_dispense_result *r,
                         const struct result_done *done);

/*
 * An operator's word on an UNSETTLED unit (settle.h): r->order_id, r->unit, and success and
 * drop_detected both true (it dropped) or false (with r->error). The unit's machine and slot
 * are taken from its row. Returns as dispense_result_apply(); VEND_ESTATE when the unit is
 * not UNSETTLED.
 */
int dispense_result_apply_operator(struct vendd *v, const struct vend_dispense_result *r);

/*
 * What the MQTT ingest calls. The broker has acknowledged r already (libmosquitto sends the
 * PUBACK before vendd sees the message), so a result that cannot be committed now (the
 * database busy or failing) must not be dropped: it waits in a bounded queue, in arrival
 * order, kept in a file as well (result_spool.h) so that a stop does not lose it, and is
 * applied again 100 ms later, then at 200 ms, ... up to 5 s; results that come meanwhile
 * queue behind it. Only a full queue (DISPENSE_RESULTS_WAITING_MAX) drops one, loudly.
 * Otherwise r is applied with the rest of this loop turn's group (dispense_group.h), which
 * counts a rejected one in the metrics. Returns VEND_OK (r is kept either way).
 */
#define DISPENSE_RESULTS_WAITING_MAX 256
int dispense_result_submit(struct vendd *v, const char *machine_id,
                           const struct vend_dispense_result *r);

/* A result that could not be committed (rc: why): into the queue above, behind those
 * already waiting. worth_retrying: rc is an error the queue is for (busy, failing). */
void dispense_result_keep(struct vendd *v, const char *machine_id,
                          const struct vend_dispense_result *r, int rc);
bool dispense_result_worth_retrying(int rc);

/* Results waiting to be applied (again), with those in the next group (for /metrics and
 * tests). */
size_t dispense_results_waiting(const struct vendd *v);

/* At start, before the database is opened: the lock of the queue's file (FILE.lock, held
 * until exit), so that one vendd only runs on a database (on PostgreSQL: from one working
 * directory). VEND_OK, or VEND_EBUSY (logged) when another vendd holds it. */
int dispense_results_lock(struct vendd *v);

/* At start, once the deadlines are resumed: the results the queue held at the last stop
 * (kept in a local file, result_spool.h) applied, in order; those the database still cannot
 * take wait on in the queue. Returns VEND_OK, or VEND_EIO when the file cannot be read
 * (logged; it is left as it is). */
int dispense_results_resume(struct vendd *v);

/* Drop the queue and its timer (shutdown); what it still holds stays in its file. */
void dispense_results_free(struct vendd *v);

#endif
