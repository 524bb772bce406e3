/*
 * orders.h - recording an order: its rows (orders, order_items, payments), its prices taken
 * from the slots (never from the request), and the stock it is promised (stock.h); and the
 * JSON view of an order with its items, units, payment events and refund (SPEC §4, §5).
 *
 * Two kinds: the operator's manual order is PAID at once and waits for a trigger (the guide's
 * test); a customer's order is PENDING until Midtrans says it is paid (payments.h).
 */
#ifndef VENDD_ORDERS_H
#define VENDD_ORDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"
#include "vend/msg.h"

struct vendd;
struct db_reads;

/* Items per order, and units per order (the schema's CHECK on orders.quantity). */
#define ORDER_ITEMS_MAX        16
#define ORDER_UNITS_MAX        100
#define ORDER_PRODUCT_NAME_MAX 100

enum payment_method {
    PAYMENT_MANUAL, /* the operator's order: cash, complimentary */
    PAYMENT_QRIS,   /* Midtrans Core API QRIS charge: a QR on the machine's screen */
    PAYMENT_SNAP,   /* Midtrans Snap: a payment page */
};

/* "manual", "qris", "snap" (the schema's names). */
const char *orders_payment_method_name(enum payment_method m);
/* VEND_EENUM for another name. */
int orders_payment_method_parse(const char *name, enum payment_method *out);

struct order_item_in {
    int64_t slot;     /* slot_number 1..255 */
    int64_t quantity; /* 1..100 */
};

/* One line of a recorded order, as priced from its slot. */
struct order_line {
    int64_t slot, quantity, unit_price;
    char product_name[ORDER_PRODUCT_NAME_MAX + 1];
};

struct order_new {
    char id[VEND_ORDER_ID_MAX + 1];           /* "" = generate one */
    char machine_id[VEND_MACHINE_ID_MAX + 1]; /* "" = MACHINE_ID */
    enum payment_method method;
    struct order_item_in items[ORDER_ITEMS_MAX];
    size_t nitems;
    /* Filled in by orders_create_locked: */
    struct order_line lines[ORDER_ITEMS_MAX];
    int64_t quantity, total;
    char expires_at[STORE_ISO_SIZE]; /* customer orders only */
};

/*
 * Inside a transaction: record in as an order. A manual order is PAID at once, whatever the
 * machine's presence (the guide's test runs with no machine online). A customer order is
 * PENDING until expires_at (ORDER_PAYMENT_TTL_S) and is refused unless the machine is ONLINE,
 * every slot is active and not under inspection, and the machine has fewer than
 * ORDER_PENDING_MAX PENDING orders. Either way each item's units are promised from the
 * slot's free stock, at the slot's price.
 * Returns VEND_OK; VEND_ENOTFOUND (machine or slot unknown); VEND_ESTATE (offline machine,
 * slot without product or under inspection, too little free stock); VEND_ELIMIT (too many
 * PENDING orders on the machine); VEND_EINVAL (a slot twice, or over ORDER_UNITS_MAX units);
 * VEND_ECONFLICT (the id exists); another VEND_E* from the database. why explains any error.
 */
int orders_create_locked(struct vendd *v, struct order_new *in, int64_t now_ms, char *why,
                         size_t why_size);

/* The manual order in its own transaction, with its log line. Returns as above. */
int orders_create_manual(struct vendd *v, struct order_new *in, char *why, size_t why_size);

/*
 * The order as JSON in *out (the caller's reference): its columns, its "items", its "units"
 * (the dispense_logs rows, oldest unit first), its "payment_events" (newest last, without
 * the raw bodies) and its "refund" (or null). Returns VEND_OK, VEND_ENOTFOUND, or VEND_EDB when
 * any part cannot be read (*out is then NULL: never a partial order).
 */
int orders_get_json(struct vendd *v, const char *id, json_t **out);
/* The same order as compact JSON text in *out (malloc'd, the caller frees): the hot read's
 * answer, written without a jansson tree. Returns as above. */
int orders_get_text(struct vendd *v, const char *id, char **out);
/* What orders_get_text() reads (for the HTTP answer cache: db_version_of()). */
extern const struct db_reads orders_get_reads;

/*
 * What a customer can buy from machine_id now (GET /api/buy/{machine_id}), as JSON in *out:
 * {"machine_id","online","products":[{"slot","product_name","price","available"}]}. A product
 * is listed when a customer order of one unit of it would be accepted now, by the rules
 * orders_create_locked() applies: the machine ONLINE and under ORDER_PENDING_MAX PENDING
 * orders, the slot active, with a product, not under inspection, with free stock (available:
 * stock not promised to open orders). payments false (no Midtrans to pay with) lists nothing.
 * Returns VEND_OK, VEND_ENOTFOUND (machine not registered) or VEND_EDB (*out NULL).
 */
int orders_menu_json(struct vendd *v, const char *machine_id, bool payments, json_t **out);

/*
 * A customer's order as its customer may see it (GET /api/buy/orders/{id}), if key is its
 * status_key (compared in constant time): {"id","machine_id","status","total_amount",
 * "payment_method","qr_string","redirect_url","expires_at","items":[{"slot","product_name",
 * "quantity","dropped","failed"}],"refund":{"status","amount"}|null}. Returns VEND_OK,
 * VEND_ENOTFOUND (no such customer order, or another key: the same answer, so a guess learns
 * nothing) or VEND_EDB (*out NULL).
 */
int orders_customer_json(struct vendd *v, const char *id, const char *key, json_t **out);

/* A customer order's status_key: 16 random bytes in hex. */
#define ORDER_STATUS_KEY_SIZE 33

/*
 * True when given (untrusted, may be NULL) is stored, a customer order's status_key (NULL for
 * an order without one: never). The lengths are public (32 hex digits); the contents are
 * compared in constant time, so a guess learns nothing from the time of a refusal.
 */
bool orders_key_equal(const char *stored, const char *given);

/*
 * A page of orders (docs/HTTP-API.md "Lists"): at most n, newest first by (created_at, id),
 * those of machine_id and in status (each NULL: any), after the order (after_time,
 * after_id) (both NULL: from the newest), as an array in *out. Each shows the order's own
 * columns, as orders_get_json() does, without its parts and its payment page. Returns
 * VEND_OK or VEND_EDB (*out NULL).
 */
int orders_page_json(struct vendd *v, const char *machine_id, const char *status,
                     const char *after_time, const char *after_id, int64_t n, json_t **out);

#endif
