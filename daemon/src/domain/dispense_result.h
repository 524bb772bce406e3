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

#endif
