/*
 * dispense_group.h - group commit of the dispense path. Triggers (HTTP) and machines' results
 * (MQTT) that arrive in one turn of the loop are applied in one transaction, one fsync, each
 * in a savepoint of its own so that one that fails rolls back alone; what depends on them
 * follows that commit: the commands published (the triggered units, the machines' next
 * units), the triggers' answers, the log lines. SPEC §4 is unchanged: every transition is
 * still a compare-and-set with its effects (a savepoint of the group's transaction), a
 * command is published only after its unit's SENT has committed, and a result is durable
 * before anything acts on it. A group the database cannot take (busy, failing) commits
 * nothing: its triggers are answered with the error (the orders stay PAID) and its results
 * wait in dispense_result.c's queue, in arrival order, to be applied again.
 *
 * The group is applied at the end of the loop turn that read its items, once every ready fd
 * was handled (a turn-end hook of the loop), so everything that came in the same turn shares
 * it; by a timer of 0 ms when an item came from a timer's callback; or at once when it holds
 * DISPENSE_GROUP_MAX.
 */
#ifndef VENDD_DISPENSE_GROUP_H
#define VENDD_DISPENSE_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vendd;
struct vend_dispense_result;

#define DISPENSE_GROUP_MAX 64

/*
 * The trigger's outcome, once the group has committed (or failed): rc as dispense_trigger()
 * returns it, status as it fills it, sent as it sets it. Called from the loop once the group
 * is applied (a full group is applied before a new trigger joins the next one); only when no
 * group can be formed (the loop's timers exhausted) before dispense_group_trigger() returns.
 */
typedef void dispense_trigger_done_fn(void *arg, const char *order_id, int rc, const char *status,
                                      bool sent);

/* POST /api/dispense/trigger for order_id, in the next group; done(arg, ...) tells how it
 * went. */
void dispense_group_trigger(struct vendd *v, const char *order_id, dispense_trigger_done_fn *done,
                            void *arg);

/* A machine's result (dispense_result_submit() with no older result waiting), in the next
 * group. A rejected one is counted in the metrics as the ingest counts one. */
void dispense_group_result(struct vendd *v, const char *machine_id,
                           const struct vend_dispense_result *r);

/* Results in the next group (they count as waiting for the database). */
size_t dispense_group_results(const struct vendd *v);

/* Groups committed so far (tests: how many commits a loop turn took). */
uint64_t dispense_group_commits(const struct vendd *v);

/* Apply the group now: at shutdown, once loop_run() has returned (the 0 ms timer will not
 * fire) and before the HTTP server and the MQTT clients go, so that what was read in the last
 * loop turn is committed, its commands published and its triggers answered. A machine's
 * result is PUBACKed as it is read: dropped here, it would be gone for good. */
void dispense_group_flush(struct vendd *v);

/* Shutdown, after dispense_group_flush(): frees the group (anything still in it, which
 * should be nothing, is logged and dropped). */
void dispense_group_free(struct vendd *v);

#endif
