/*
 * dispense.h - SPEC §4 rules 1, 4 and 10: at most one physical dispense per ordered unit,
 * COMPLETED means the product dropped, one dispense at a time per machine. PAID orders
 * become commands to a machine; results become COMPLETED or FAILED orders and exact stock.
 *
 * State lives in the database, not in memory: one dispense_logs row per ordered unit
 * (unit_status.h), every change a compare-and-set in one transaction with its effects, so
 * a replayed trigger or result changes nothing. A command is published only after the
 * commit that marked its unit SENT (a crash in between leaves a SENT unit the machine
 * never got; its deadline fails and refunds it), and only through the broker seam, which
 * hands it over at most once. At most one unit per machine is SENT (a unique index); the
 * next goes out when the previous ends. Results: dispense_result.h. Deadlines: deadline.h.
 * Refunds: refunds.h. Stock: stock.h.
 */
#ifndef VENDD_DISPENSE_H
#define VENDD_DISPENSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "order_status.h"
#include "vend/msg.h"

struct vendd;

/* Big enough for every orders.status value. */
#define DISPENSE_STATUS_SIZE ORDER_STATUS_SIZE

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

/* A command prepared inside a transaction, to publish once it has committed. */
struct dispense_send {
    bool ready; /* false: nothing to send (the machine is busy, or the broker away) */
    int64_t log_id;
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    struct vend_command cmd;
};

/*
 * Inside a transaction: PAID order_id starts dispensing (the trigger, or a payment that just
 * arrived): DISPENSING, one QUEUED unit per ordered unit, and the first marked SENT if the
 * machine is idle and the broker up (*send). With the broker away the units wait for it, at
 * most DISPENSE_DISPATCH_TTL_S. After the commit, call dispense_send_after_commit().
 * Returns VEND_OK, VEND_ESTATE if the order is not PAID, or another VEND_E*.
 */
int dispense_start_locked(struct vendd *v, const char *order_id, const char *machine_id,
                          int64_t quantity, struct dispense_send *send);

/* After the commit: publish what dispense_start_locked prepared (if anything) and re-arm the
 * deadlines. Returns whether a command went out. */
bool dispense_send_after_commit(struct vendd *v, const struct dispense_send *send);

/* dispense_trigger() inside the caller's transaction (a group commit: dispense_group.h):
 * status is the order's status as read, DISPENSING once started; *send is published after
 * the commit with dispense_publish(), then deadline_arm() and refunds_schedule(). Returns as
 * dispense_trigger(). */
int dispense_trigger_locked(struct vendd *v, const char *order_id,
                            char status[DISPENSE_STATUS_SIZE], struct dispense_send *send);

/* dispense_pump() inside the caller's transaction: *send as above. */
int dispense_pump_locked(struct vendd *v, const char *machine_id, struct dispense_send *send);

/* After the commit: publish one prepared command (nothing else). Returns whether it went. */
bool dispense_publish(struct vendd *v, const struct dispense_send *send);

/*
 * Inside a transaction: order_id fails for reason (DISPENSING -> FAILED); its units not yet
 * sent fail NOT_SENT and the refund of what did not drop is queued (refunds.h). An order
 * already final is left as it is. While a unit of it is UNSETTLED (settle.h) only its unsent
 * units fail: the order fails, and its refund is reckoned, when that unit is settled.
 * Returns VEND_OK or a VEND_E*.
 */
int dispense_fail_order_locked(struct vendd *v, const char *order_id, const char *machine_id,
                               const char *reason, const char *now_iso);

/* Send machine_id's next queued unit if the machine is idle and the broker is up. */
void dispense_pump(struct vendd *v, const char *machine_id);

/* The broker came back: send the next queued unit of every idle machine. */
void dispense_pump_all(struct vendd *v);

#endif
