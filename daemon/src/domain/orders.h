/*
 * orders.h - orders: the operator's manual order, and the JSON view of an
 * order with its items and dispensed units (SPEC §4, §5).
 */
#ifndef VENDD_ORDERS_H
#define VENDD_ORDERS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct vendd;

/* An operator's manual (cash or complimentary) order for one slot. */
struct order_manual {
    char id[65];         /* "" = generate one */
    char machine_id[33]; /* "" = MACHINE_ID */
    int64_t slot;        /* slot_number 1..255 */
    int64_t quantity;    /* 1..100 */
};

/*
 * Record a manual order as PAID, with its item and a payment row saying "manual", whatever
 * the machine's presence (the guide's test runs with no machine online). It waits in PAID
 * for POST /api/dispense/trigger.
 * Returns VEND_OK with out->id filled; VEND_ENOTFOUND (machine or slot unknown; why names
 * which); VEND_ESTATE (slot has no product or too little free stock); VEND_ECONFLICT (the id
 * exists); another VEND_E* on a database failure. why (>= 128 bytes) explains any error.
 */
int orders_create_manual(struct vendd *v, struct order_manual *in, char *why, size_t why_size);

/*
 * Units of slot_id promised to PAID or DISPENSING orders and not dispensed yet: they are
 * not for sale, and the slot's product must not change under them.
 */
int orders_reserved_units(struct vendd *v, int64_t slot_id, int64_t *units);

/*
 * The order as JSON in *out (the caller's reference): its columns, its "items" and its
 * "units" (the dispense_logs rows, oldest unit first). Returns VEND_OK, VEND_ENOTFOUND, or
 * VEND_EDB when any part cannot be read (*out is then NULL: never a partial order).
 */
int orders_get_json(struct vendd *v, const char *id, json_t **out);

#endif
