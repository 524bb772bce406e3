/*
 * slots.h - the slots of a machine and the products they sell, as the operator sets them
 * through PUT /api/machines/{id}/slots/{slot} (SPEC §4 rule 5; docs/HTTP-API.md "Slots and
 * stock").
 *
 * The rules this module keeps:
 *   - Optimistic concurrency: a PUT that changes the slot's own fields moves its version by
 *     exactly one, however many fields change, and a PUT stating another version is
 *     refused. A stock change must state the version the operator saw, or a dispense in
 *     between would be silently overwritten.
 *   - A price belongs to the product, so a price change moves the version of every slot
 *     that shows the product by one more: an operator holding a stale price must not win.
 *   - A product is found by name, or created (with a price) on first use.
 *   - A slot's product cannot change while paid orders wait for units of it.
 *   - The count changes only through stock.c (stock_set_locked): a new slot starts empty and
 *     is restocked, an operator's change is a MANUAL_ADJUST, each with its stock_logs row.
 *   - The operator's word answers the alerts it settles: a stated count resolves the slot's
 *     stock mismatch alerts, needs_inspection false its DROP_WITHOUT_SUCCESS alerts.
 */
#ifndef VENDD_SLOTS_H
#define VENDD_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

struct vendd;
struct db_reads;

/* Bounds of the operator's fields (schema CHECKs). */
#define SLOT_PRODUCT_NAME_MAX 100
#define SLOT_PRICE_MAX        100000000 /* rupiah */
#define SLOT_CAPACITY_MAX     1000

/* What the operator asks for; has_* says which fields were given. */
struct slot_input {
    bool has_name, has_price, has_capacity, has_stock, has_motor, has_version, has_inspection;
    char product_name[SLOT_PRODUCT_NAME_MAX + 1];
    int64_t price, capacity, stock, motor_ms, version;
    bool needs_inspection;
};

struct slot_outcome {
    bool created;
    bool has_version;   /* for a conflict: the slot exists and has this version */
    bool price_changed; /* every slot showing the product changed with it */
    int64_t version;    /* the slot's version now (or at the conflict) */
    char why[160];      /* the rule broken, for VEND_EINVAL and VEND_ESTATE */
};

/*
 * Create or update slot_number of machine_id from in, in one transaction. Returns VEND_OK
 * (out->created tells which); VEND_ENOTFOUND for an unknown machine; VEND_ECONFLICT when
 * in->version is not the slot's version (out->has_version, out->version tell it);
 * VEND_EINVAL with out->why when the fields do not make a valid slot; VEND_ESTATE with
 * out->why when paid orders wait for the slot's product; another VEND_E* from the database.
 * Nothing is changed on an error.
 */
int slots_put(struct vendd *v, const char *machine_id, int64_t slot_number,
              const struct slot_input *in, struct slot_outcome *out);

/*
 * One slot as the API shows it (price is the effective price: the slot's override, else
 * the product's), in *out. Returns VEND_OK, VEND_ENOTFOUND or VEND_EDB (*out NULL).
 */
int slots_get_json(struct vendd *v, const char *machine_id, int64_t slot_number, json_t **out);

/* Every slot of machine_id, by number, as an array in *out. VEND_OK or VEND_EDB (logged). */
int slots_list_json(struct vendd *v, const char *machine_id, json_t **out);

/* The stock view {"machine_id", "slots"} (the slots as slots_list_json() shows them) of a
 * machine that may not exist, in one statement, as compact JSON text in *out (malloc'd, the
 * caller frees). VEND_OK, VEND_ENOTFOUND or VEND_EDB (logged); *out is NULL on an error. */
int slots_stock_text(struct vendd *v, const char *machine_id, char **out);
/* What slots_stock_text() reads (for the HTTP answer cache: db_version_of()): the slots, their
 * products and their machines' rows (slots_seen_at, moved by telemetry, schema 0017). */
extern const struct db_reads slots_stock_reads;

#endif
