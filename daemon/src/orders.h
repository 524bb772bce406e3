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

/* The order as JSON (items, units, payment), or NULL when there is no such order. */
json_t *orders_get_json(struct vendd *v, const char *id);

/* The dispense_logs rows of an order, oldest unit first, as a JSON array. */
json_t *orders_units_json(struct vendd *v, const char *id);

#endif
