/*
 * dispense.h - the dispense path: PAID orders become commands to a machine,
 * results become COMPLETED or FAILED orders and exact stock (SPEC §4).
 *
 * State lives in the database, not in memory: one dispense_logs row per
 * ordered unit, QUEUED -> SENT -> SUCCEEDED | FAILED | NO_RESULT. Every
 * transition is a compare-and-set in one transaction with its effects, so a
 * replayed trigger or result changes nothing, and a restart resumes from the
 * rows (dispense_resume). At most one unit per machine is SENT at a time (a
 * unique index enforces it); the next one goes out when the previous ends.
 *
 * A SENT unit with no result by its deadline_at (timeoutMs +
 * DISPENSE_RESULT_GRACE_MS after the command) fails with NO_RESULT; a QUEUED
 * unit not sent by its dispatch_by fails with MACHINE_UNREACHABLE. One loop
 * timer, armed for the earliest of these limits, does that for all of them.
 */
#ifndef VENDD_DISPENSE_H
#define VENDD_DISPENSE_H

#include <stdbool.h>
#include <stddef.h>

struct vendd;
struct vend_dispense_result;

/* Big enough for every orders.status value. */
#define DISPENSE_STATUS_SIZE 16

/*
 * Move a PAID order to DISPENSING with its dispense_logs rows and send the first unit, or
 * queue it behind the machine's current dispense (*sent tells which). A queued unit must go
 * out within DISPENSE_DISPATCH_TTL_S after the dispense ahead of it ends, or it fails with
 * MACHINE_UNREACHABLE and the order is refunded; the same happens if the broker drops
 * between the check here and the publish.
 * Returns VEND_OK; VEND_ENOTFOUND for an unknown order; VEND_ESTATE when the order is not
 * PAID (status then holds its current status); VEND_EUNAVAILABLE when the broker is not
 * connected (nothing changed: the order stays PAID); another VEND_E* on a database failure.
 */
int dispense_trigger(struct vendd *v, const char *order_id, char status[DISPENSE_STATUS_SIZE],
                     bool *sent);

/*
 * Apply a decoded dispense_result from machine_id (SPEC §4 rules 2, 4, 5, 6).
 * Returns VEND_OK when it was applied (also a late result); VEND_ENOTFOUND for an unknown
 * order/unit or one that belongs to another machine; VEND_ECONFLICT for a repeated result;
 * VEND_ESTATE for a result that contradicts the recorded one or for a unit never sent.
 * Every rejection is logged with its reason here; nothing is changed by one.
 */
int dispense_handle_result(struct vendd *v, const char *machine_id,
                           const struct vend_dispense_result *r);

/* At start: fail overdue units, arm the deadline timer, send what is queued. */
int dispense_resume(struct vendd *v);

/* The broker came back: send the next queued unit of every idle machine. */
void dispense_pump_all(struct vendd *v);

#endif
