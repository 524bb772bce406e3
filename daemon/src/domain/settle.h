/*
 * settle.h - SPEC §4 rules 1, 4 and 6 with a machine that keeps a journal: a unit whose
 * result did not come in time is asked about, never failed blind (docs/PROTOCOL.md,
 * "Settling a unit with the machine").
 *
 * A settling machine (machines.settle = 1, from its status) may have run the unit and had its
 * result lost (PUBACKed by libmosquitto, then vendd died before the commit), or may still get
 * the command late (a stalled broker). So at the deadline the unit becomes UNSETTLED
 * (unit_status.h): its stock stays promised, its order stays DISPENSING, an UNIT_UNSETTLED
 * alert is raised, and vendd publishes {"cmd":"settle",...}. The machine answers on
 * dispense_result from its journal: the stored result if the unit ran, or CANCELLED after
 * journaling that it must never run. That answer settles the unit like any result
 * (dispense_result.h). Until it comes, vendd asks again: at once when the machine's status
 * turns ONLINE, and otherwise after SETTLE_ASK_FIRST_MS, doubling up to SETTLE_ASK_MAX_MS.
 * An operator who has looked at the machine can settle the unit by hand.
 *
 * While a machine has an UNSETTLED unit, it gets no new dispense (the unit may still be
 * running, and a new dispense acknowledges the machine's stored results): its queued units
 * wait at most DISPENSE_DISPATCH_TTL_S, as behind any dispense in flight.
 */
#ifndef VENDD_SETTLE_H
#define VENDD_SETTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "order_status.h"
#include "unit_status.h"
#include "vend/msg.h"

struct vendd;

#define SETTLE_ASK_FIRST_MS 5000
#define SETTLE_ASK_MAX_MS   300000
/* The alert an UNSETTLED unit raises; resolved when it is settled. */
#define SETTLE_ALERT "UNIT_UNSETTLED"
/* The failure code of a unit an operator settled as not dropped. */
#define SETTLE_NOT_DROPPED "SETTLED_NOT_DROPPED"
/* The code of a unit whose outcome only a person can tell. */
#define SETTLE_POWER_LOSS "POWER_LOSS"
/* The alert of a machine's answer that contradicts an operator's settle. */
#define SETTLE_CONTRADICTED "SETTLE_CONTRADICTED"

/* A unit to settle, as read by the deadline sweep. */
struct settle_unit {
    int64_t log_id;
    int64_t slot_id;
    int64_t asks; /* settle commands sent before this one */
    char order_id[VEND_ORDER_ID_MAX + 1];
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    struct vend_command cmd; /* the settle command, as the machine must receive it */
    bool sendable;           /* cmd is valid (settle_unit_command() said so) */
};

/*
 * Fill u->cmd for the unit's order, slot, unit number and quantity (the wire "unit" follows
 * the dispense command: absent for a one-unit order). Returns VEND_OK, or VEND_EINVAL for a
 * row the codec would refuse.
 */
int settle_unit_command(struct settle_unit *u, int64_t slot_number, int64_t unit, int64_t quantity);

/*
 * The deadline of SENT unit u passed on a settling machine: UNSETTLED, the alert, the
 * first ask (published after the commit). now is on the deadline clock. Returns 1 when the
 * unit moved, 0 when a result moved it first, or a negative VEND_E*.
 */
int settle_overdue_unit(struct vendd *v, struct settle_unit *u, int64_t now);

/* UNSETTLED unit u is due to be asked again: count the ask, schedule the next, publish (a
 * row the command cannot carry is only rescheduled: it waits for an operator). Returns 1
 * when asked, 0 when it was settled meanwhile, or a negative VEND_E*. */
int settle_ask_again(struct vendd *v, struct settle_unit *u, int64_t now);

/* machine_id said ONLINE: ask it at once about each of its UNSETTLED units. */
void settle_machine_online(struct vendd *v, const char *machine_id);

/* A unit row as settle.c needs it, read by dispense_result.c. */
struct settle_row {
    int64_t log_id;
    int64_t slot_id;
    int64_t unit;
    const char *order_id;
    const char *machine_id;
    enum unit_status status;
    enum order_status order_status;
};

/*
 * Inside a transaction: the machine answered POWER_LOSS for SENT or UNSETTLED unit u: it
 * restarted mid-run, the motor ran for an unknown time, and only a person can tell whether
 * the product fell (docs/PROTOCOL.md). The unit waits UNSETTLED for an operator, no longer
 * asked about and no longer in flight (the machine serves other orders); the rest of its
 * order is not sent; the slot is flagged for inspection and the UNIT_UNSETTLED alert says
 * so. Nothing is refunded blind. Returns VEND_OK or a VEND_E*.
 */
int settle_hold_for_operator_locked(struct vendd *v, const struct settle_row *u,
                                    const char *now_iso);

/*
 * Inside a transaction: after an operator settled unit u, its machine answers the opposite
 * (dropped is what the machine says). Recorded once on the row. The machine dropped it after
 * all: the stock is taken and the refund withdrawn, shrunk or alerted as for a late result
 * (refunds.h). The machine says it did not drop what the operator said did: the slot is
 * flagged and an alert SETTLE_CONTRADICTED asks a person to count it (the customer may be
 * owed the unit). Returns VEND_OK, VEND_ECONFLICT when an answer is recorded already, or a
 * VEND_E*.
 */
int settle_machine_contradicts_operator_locked(struct vendd *v, const struct settle_row *u,
                                               bool dropped, const char *code, const char *now_iso);

/*
 * An operator's word on UNSETTLED unit `unit` of order_id, after looking at the machine:
 * dropped or not. It settles the unit as the machine's answer would (stock, order, refund),
 * with settled_by OPERATOR. Returns VEND_OK; VEND_ENOTFOUND for no such unit; VEND_ESTATE
 * when the unit is not UNSETTLED; another VEND_E*.
 */
int settle_by_operator(struct vendd *v, const char *order_id, int64_t unit, bool dropped);

#endif
