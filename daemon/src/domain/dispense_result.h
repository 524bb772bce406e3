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

#include <stddef.h>

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
 * order, and is applied again 100 ms later, then at 200 ms, ... up to 5 s; results that come
 * meanwhile queue behind it. Only a full queue (DISPENSE_RESULTS_WAITING_MAX) drops one, loudly.
 * Returns what dispense_result_apply() returned, or VEND_OK when r was queued.
 */
#define DISPENSE_RESULTS_WAITING_MAX 256
int dispense_result_submit(struct vendd *v, const char *machine_id,
                           const struct vend_dispense_result *r);

/* Results waiting to be applied again (for /metrics and tests). */
size_t dispense_results_waiting(const struct vendd *v);

/* Drop the queue and its timer (shutdown). */
void dispense_results_free(struct vendd *v);

#endif
