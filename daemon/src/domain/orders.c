/*
 * orders.c - recording orders and reading them back; see orders.h. Prices come from the
 * slots at the moment of the order and are copied onto its items, so a later price change
 * never changes what a customer was charged or is refunded.
 */
#include "orders.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "events.h"
#include "jsonw.h"
#include "log.h"
#include "machines.h"
#include "stock.h"
#include "store.h"
#include "unit_status.h"
#include "vend/err.h"
#include "vend/topic.h"
#include "vendd.h"

static const char *const method_names[] = {
    [PAYMENT_MANUAL] = "manual",
    [PAYMENT_QRIS] = "qris",
    [PAYMENT_SNAP] = "snap",
};

const char *orders_payment_method_name(enum payment_method m)
{
    return (unsigned)m < sizeof(method_names) / sizeof(method_names[0]) ? method_names[m] : "?";
}

int orders_payment_method_parse(const char *name, enum payment_method *out)
{
    for (unsigned i = 0; name != NULL && i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (strcmp(name, method_names[i]) == 0) {
            *out = (enum payment_method)i;
            return VEND_OK;
        }
    }
    return VEND_EENUM;
}

/*
 * ORD + epoch ms + 8 hex digits: readable by people, and unique across daemons through the
 * random part. Should the kernel's generator fail, a per-daemon sequence keeps ids made in
 * the same millisecond apart (the INSERT's primary key still refuses any clash).
 */
static void generate_order_id(struct vendd *v, char *buf, size_t size)
{
    uint32_t tail;

    if (getrandom(&tail, sizeof(tail), GRND_NONBLOCK) != (ssize_t)sizeof(tail))
        tail = ++v->order_seq;
    snprintf(buf, size, "ORD%" PRId64 "%08" PRIX32, v->now_ms(), tail);
}

/* What a slot offers: its row, its product, its price. */
struct slot_offer {
    bool found;
    int64_t slot_id;
    int64_t stock;
    bool has_product;
    bool inspect;
    int64_t product_id;
    int64_t price;
    char product_name[ORDER_PRODUCT_NAME_MAX + 1];
    int64_t slot_number;
    int64_t reserved;
};

/* The active slots of machine $1, read into struct slot_offer (take_slot_offer); an order reads
 * one of them (AND slot_number = $2), the menu all of them. */
#define SLOT_OFFER_SELECT                                                                          \
    "SELECT s.id, s.current_stock, p.id, COALESCE(s.price_override, p.price), p.name, "            \
    "s.needs_inspection, s.slot_number, s.reserved FROM slots s "                                  \
    "LEFT JOIN products p ON p.id = s.product_id WHERE s.machine_id = $1 AND s.is_active = 1"

static void read_slot_offer(struct slot_offer *s, const struct db_row *row)
{
    s->found = true;
    s->slot_id = db_row_int(row, 0);
    s->stock = db_row_int(row, 1);
    s->has_product = !db_row_is_null(row, 2) && !db_row_is_null(row, 3);
    s->product_id = db_row_int(row, 2);
    s->price = db_row_int(row, 3);
    if (store_copy_text(s->product_name, sizeof(s->product_name), db_row_text(row, 4)) < 0)
        s->product_name[0] = '\0';
    s->inspect = db_row_int(row, 5) != 0;
    s->slot_number = db_row_int(row, 6);
    s->reserved = db_row_int(row, 7);
}

static int take_slot_offer(void *arg, const struct db_row *row)
{
    read_slot_offer(arg, row);
    return 1;
}

/*
 * Whether slot s sells to an order paid by method: it has a product, and a customer's order
 * needs it not to be under inspection. (The free stock is stock.h's to promise.) VEND_OK, or
 * VEND_ESTATE with why.
 */
static int slot_sells(const struct slot_offer *s, const char *machine_id,
                      enum payment_method method, char *why, size_t why_size)
{
    if (!s->has_product) {
        snprintf(why, why_size, "slot %" PRId64 " of '%s' has no product", s->slot_number,
                 machine_id);
        return VEND_ESTATE;
    }
    if (s->inspect && method != PAYMENT_MANUAL) {
        snprintf(why, why_size, "slot %" PRId64 " of '%s' is waiting for an inspection",
                 s->slot_number, machine_id);
        return VEND_ESTATE;
    }
    return VEND_OK;
}

/* A customer may buy only from a machine that is there to drop it (SPEC §4 rule 10). */
static int check_customer_machine(struct vendd *v, const char *machine_id, char *why,
                                  size_t why_size)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    char presence[16] = "";
    int64_t pending = 0;
    int rc;

    rc = store_query_text(v->db, "SELECT status FROM machines WHERE id = $1", p, 1, presence,
                          sizeof(presence));
    if (rc < 0)
        return rc;
    if (strcmp(presence, "ONLINE") != 0) {
        snprintf(why, why_size, "machine '%s' is %s: it takes no orders now", machine_id, presence);
        return VEND_ESTATE;
    }
    rc = store_query_int(v->db,
                         "SELECT count(*) FROM orders WHERE machine_id = $1 AND status = 'PENDING'",
                         p, 1, &pending);
    if (rc < 0)
        return rc;
    if (pending >= (int64_t)v->conf->order_pending_max) {
        snprintf(why, why_size,
                 "machine '%s' has %" PRId64 " orders waiting for payment; try "
                 "again when one is paid or expires",
                 machine_id, pending);
        return VEND_ELIMIT;
    }
    return VEND_OK;
}

/* Inside the transaction: price item i from its slot, promise its units, insert its row. */
static int add_item_locked(struct vendd *v, struct order_new *in, size_t i, int64_t first_unit,
                           char *why, size_t why_size)
{
    const struct order_item_in *it = &in->items[i];
    struct db_value p[9] = {DB_TEXT(in->machine_id), DB_INT(it->slot)};
    struct slot_offer s = {0};
    int64_t free_units = 0;
    int rc;

    rc = db_exec(v->db, SLOT_OFFER_SELECT " AND s.slot_number = $2", p, 2, take_slot_offer, &s);
    if (rc < 0)
        return rc;
    if (!s.found) {
        snprintf(why, why_size, "machine '%s' has no slot %" PRId64, in->machine_id, it->slot);
        return VEND_ENOTFOUND;
    }
    rc = slot_sells(&s, in->machine_id, in->method, why, why_size);
    if (rc < 0)
        return rc;
    /* Units already promised to open orders are not for sale (stock.h). */
    rc = stock_reserve_locked(v, s.slot_id, it->quantity, &free_units);
    if (rc == VEND_ESTATE)
        snprintf(why, why_size,
                 "slot %" PRId64 " of '%s' has %" PRId64 " unit(s) free (stock %" PRId64
                 ", %" PRId64 " promised), %" PRId64 " ordered",
                 it->slot, in->machine_id, free_units, s.stock, s.stock - free_units, it->quantity);
    if (rc < 0)
        return rc;

    p[0] = DB_TEXT(in->id);
    p[1] = DB_INT(i + 1);
    p[2] = DB_INT(s.slot_id);
    p[3] = DB_INT(s.product_id);
    p[4] = DB_TEXT(s.product_name);
    p[5] = DB_INT(it->quantity);
    p[6] = DB_INT(s.price);
    p[7] = DB_INT(s.price * it->quantity);
    p[8] = DB_INT(first_unit);
    rc = db_exec(v->db,
                 "INSERT INTO order_items (order_id, position, slot_id, product_id, product_name, "
                 "quantity, unit_price, total, first_unit) "
                 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                 p, 9, NULL, NULL);
    if (rc < 0)
        return rc;
    in->lines[i].slot = it->slot;
    in->lines[i].quantity = it->quantity;
    in->lines[i].unit_price = s.price;
    memcpy(in->lines[i].product_name, s.product_name, sizeof(s.product_name));
    in->total += s.price * it->quantity;
    return VEND_OK;
}

/* The items must name each slot once and add up to at most ORDER_UNITS_MAX units. */
static int check_items(const struct order_new *in, char *why, size_t why_size)
{
    int64_t units = 0;

    if (in->nitems == 0 || in->nitems > ORDER_ITEMS_MAX) {
        snprintf(why, why_size, "an order has 1 to %d items", ORDER_ITEMS_MAX);
        return VEND_EINVAL;
    }
    for (size_t i = 0; i < in->nitems; i++) {
        units += in->items[i].quantity;
        for (size_t j = 0; j < i; j++) {
            if (in->items[j].slot == in->items[i].slot) {
                snprintf(why, why_size, "slot %" PRId64 " is named twice: give its quantity once",
                         in->items[i].slot);
                return VEND_EINVAL;
            }
        }
    }
    if (units > ORDER_UNITS_MAX) {
        snprintf(why, why_size, "an order has at most %d units (%" PRId64 " asked)",
                 ORDER_UNITS_MAX, units);
        return VEND_EINVAL;
    }
    return VEND_OK;
}

int orders_create_locked(struct vendd *v, struct order_new *in, int64_t now_ms, char *why,
                         size_t why_size)
{
    bool manual = in->method == PAYMENT_MANUAL;
    char now_iso[STORE_ISO_SIZE];
    struct db_value p[10];
    int64_t first_unit = 1;
    int rc;

    why[0] = '\0';
    in->total = 0;
    in->quantity = 0;
    in->expires_at[0] = '\0';
    if (in->machine_id[0] == '\0')
        snprintf(in->machine_id, sizeof(in->machine_id), "%s", v->conf->machine_id);
    if (in->id[0] == '\0')
        generate_order_id(v, in->id, sizeof(in->id));
    db_iso_time(now_iso, sizeof(now_iso), now_ms);
    rc = check_items(in, why, why_size);
    if (rc < 0)
        return rc;
    rc = machines_exists(v, in->machine_id);
    if (rc <= 0) {
        snprintf(why, why_size, "machine '%s' is not registered", in->machine_id);
        return rc < 0 ? rc : VEND_ENOTFOUND;
    }
    if (!manual) {
        rc = check_customer_machine(v, in->machine_id, why, why_size);
        if (rc < 0)
            return rc;
        /* A duration, as Midtrans counts it too: on the deadline clock, so a wall-clock
         * step neither ends the customer's time early nor keeps the order an hour more. */
        db_iso_time(in->expires_at, sizeof(in->expires_at),
                    deadline_now_ms(v) + (int64_t)v->conf->order_payment_ttl_s * 1000);
    }
    for (size_t i = 0; i < in->nitems; i++)
        in->quantity += in->items[i].quantity;

    /* The order row first: its items refer to it. slot_id and product_id are the first
     * item's, as the guide's single-item order has them. */
    p[0] = DB_TEXT(in->id);
    p[1] = DB_TEXT(in->machine_id);
    p[2] = DB_INT(in->quantity);
    p[3] = DB_TEXT(manual ? "PAID" : "PENDING");
    p[4] = DB_TEXT(manual ? "operator" : "customer");
    p[5] = DB_TEXT(orders_payment_method_name(in->method));
    p[6] = manual ? DB_TEXT(now_iso) : DB_NULL;
    p[7] = DB_TEXT(now_iso);
    p[8] = manual ? DB_NULL : DB_TEXT(in->expires_at);
    rc = db_exec(v->db,
                 "INSERT INTO orders (id, machine_id, quantity, total_amount, status, origin, "
                 "payment_method, paid_at, expires_at, created_at, updated_at) "
                 "VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $9, $8, $8)",
                 p, 9, NULL, NULL);
    if (rc == VEND_ECONFLICT)
        snprintf(why, why_size, "order '%s' already exists", in->id);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < in->nitems; i++) {
        rc = add_item_locked(v, in, i, first_unit, why, why_size);
        if (rc < 0)
            return rc;
        first_unit += in->items[i].quantity;
    }
    p[0] = DB_TEXT(in->id);
    p[1] = DB_INT(in->total);
    p[2] = DB_TEXT(now_iso);
    rc =
        db_exec(v->db,
                "UPDATE orders SET total_amount = $2, updated_at = $3, "
                "slot_id = (SELECT slot_id FROM order_items WHERE order_id = $1 AND position = 1), "
                "product_id = (SELECT product_id FROM order_items WHERE order_id = $1 "
                "AND position = 1) WHERE id = $1",
                p, 3, NULL, NULL);
    if (rc < 0)
        return rc;
    /* One payment row per order: SUCCESS at once for the operator's, PENDING for Midtrans. */
    p[3] = DB_TEXT(manual ? "manual" : "midtrans");
    p[4] = DB_TEXT(manual ? "SUCCESS" : "PENDING");
    p[5] = DB_TEXT(orders_payment_method_name(in->method));
    p[6] = manual ? DB_TEXT(now_iso) : DB_NULL;
    rc = db_exec(v->db,
                 "INSERT INTO payments (order_id, gateway_name, amount, status, payment_type, "
                 "processed_at, created_at, updated_at) VALUES ($1, $4, $2, $5, $6, $7, $3, $3)",
                 p, 7, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

int orders_create_manual(struct vendd *v, struct order_new *in, char *why, size_t why_size)
{
    int rc;

    /* Empty until a step says why: a failed begin says nothing, and the caller sends it. */
    why[0] = '\0';
    in->method = PAYMENT_MANUAL;
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = orders_create_locked(v, in, v->now_ms(), why, why_size);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    log_info("manual order '%s' recorded PAID: machine '%s' slot %" PRId64 " x%" PRId64 "%s",
             in->id, in->machine_id, in->items[0].slot, in->items[0].quantity,
             in->nitems > 1 ? " and more" : "");
out:
    if (rc < 0) {
        db_rollback(v->db);
        if (why[0] == '\0')
            snprintf(why, why_size, "%s", vend_strerror(rc));
        if (rc != VEND_ENOTFOUND && rc != VEND_ESTATE && rc != VEND_ECONFLICT && rc != VEND_EINVAL)
            log_warnx("cannot record manual order '%s': %s (%s)", in->id, vend_strerror(rc),
                      db_errmsg(v->db));
    }
    return rc;
}

/* ---- JSON views ------------------------------------------------------------------------ */

/* One statement's rows, written as JSON objects into the order's text. */
struct order_part {
    struct jsonw *w;
    bool found;
    bool fields; /* the order's own row: its columns, its object left open */
};

static int write_part_row(void *arg, const struct db_row *row)
{
    struct order_part *part = arg;

    part->found = true;
    if (part->fields) {
        jw_row_fields(part->w, row);
        return 1; /* the primary key: one row */
    }
    jw_row(part->w, row);
    return 0;
}

/* Writes key: [the rows of sql]; VEND_EDB if it cannot be read. */
static int write_part(struct vendd *v, struct jsonw *w, const char *key, const char *sql,
                      const struct db_value *p)
{
    struct order_part part = {.w = w};
    int rc;

    jw_key(w, key);
    jw_arr_begin(w);
    rc = db_exec(v->db, sql, p, 1, write_part_row, &part);
    if (rc < 0)
        return rc;
    jw_arr_end(w);
    return VEND_OK;
}

/*
 * Written as text, not built as a jansson tree and then serialised: this is the hot read of
 * an order (a kiosk or a payment page polls it), and the tree was four fifths of its cost.
 * The bytes are those json_dumps() wrote for the tree (test_jsonw, it_read_cache).
 */
/* The five statements below. */
const struct db_reads orders_get_reads = {.changed = {"orders", "order_items", "slots",
                                                      "dispense_logs", "payment_events", "refunds",
                                                      NULL},
                                          .members = {NULL}};

int orders_get_text(struct vendd *v, const char *id, char **out)
{
    struct db_value p[1] = {DB_TEXT(id)};
    struct jsonw w = JSONW_INIT;
    struct order_part order = {.w = &w, .fields = true}, refund = {.w = &w};
    int rc;
    /* One read transaction for the five statements: one snapshot of the order and its parts,
     * and one read lock taken instead of five (a sixth of the read, callgrind). Inside a
     * transaction already (never from the API), the statements join it. */
    bool snapshot = db_exec(v->db, "BEGIN", NULL, 0, NULL, NULL) >= 0;

    *out = NULL;
    jw_obj_begin(&w);
    /* A failed statement's code is the answer's: a busy database is 503, not 500. */
    rc = db_exec(v->db,
                 "SELECT id, machine_id, status, origin, payment_method, quantity, total_amount, "
                 "failure_reason, payment_url, payment_token, payment_qr, paid_at, dispensed_at, "
                 "expires_at, created_at, updated_at FROM orders WHERE id = $1",
                 p, 1, write_part_row, &order);
    if (rc < 0)
        goto out;
    if (!order.found) {
        rc = VEND_ENOTFOUND;
        goto out;
    }
    if ((rc = write_part(v, &w, "items",
                         "SELECT i.position, s.slot_number AS slot, i.product_name, i.quantity, "
                         "i.unit_price, i.total FROM order_items i JOIN slots s ON s.id = "
                         "i.slot_id WHERE i.order_id = $1 ORDER BY i.position",
                         p)) < 0 ||
        (rc = write_part(v, &w, "units",
                         "SELECT unit, machine_id, slot_number, status, timeout_ms, "
                         "command_sent_at, deadline_at, completed_at, duration_ms, success, "
                         "drop_detected, error_message, late_result FROM dispense_logs WHERE "
                         "order_id = $1 ORDER BY unit",
                         p)) < 0 ||
        (rc = write_part(v, &w, "payment_events",
                         "SELECT transaction_status, status_code, signature_ok, outcome, "
                         "received_at FROM payment_events WHERE order_id = $1 ORDER BY id",
                         p)) < 0)
        goto out;
    /* "refund": the first refund row (an order has at most one today), or null. */
    jw_key(&w, "refund");
    refund.fields = true;
    jw_obj_begin(&w);
    rc = db_exec(v->db,
                 "SELECT id, amount, reason, status, attempts, last_error, note, done_at, "
                 "created_at FROM refunds WHERE order_id = $1",
                 p, 1, write_part_row, &refund);
    if (rc < 0)
        goto out;
    if (refund.found) {
        jw_obj_end(&w);
    } else {
        w.len--; /* the '{' just opened: no refund */
        w.comma = false;
        jw_null(&w);
    }
    jw_obj_end(&w);
    *out = jw_take(&w);
    rc = VEND_OK;
out:
    if (rc < 0 && rc != VEND_ENOTFOUND)
        log_warnx("cannot read order '%s': %s", id, db_errmsg(v->db));
    /* Nothing was written: the end of the snapshot cannot lose anything. */
    if (snapshot && db_exec(v->db, "COMMIT", NULL, 0, NULL, NULL) < 0)
        log_warnx("cannot end the read of order '%s': %s", id, db_errmsg(v->db));
    jw_free(&w);
    return rc;
}

int orders_get_json(struct vendd *v, const char *id, json_t **out)
{
    char *text = NULL;
    json_error_t err;
    int rc = orders_get_text(v, id, &text);

    *out = NULL;
    if (rc < 0)
        return rc;
    *out = json_loads(text, 0, &err);
    if (*out == NULL) {
        log_warnx("cannot read back order '%s' as JSON: %s", id, err.text);
        rc = VEND_EINTERNAL;
    }
    free(text);
    return rc;
}

/* ---- what a customer sees ---------------------------------------------------------------- */

struct menu {
    const char *machine_id;
    json_t *products;
};

static int take_menu_slot(void *arg, const struct db_row *row)
{
    struct menu *m = arg;
    struct slot_offer s = {0};
    char why[160];

    read_slot_offer(&s, row);
    /* What an order of one unit would be told: add_item_locked()'s rules, and the free stock
     * that stock_reserve_locked() promises from (current_stock - reserved). */
    if (slot_sells(&s, m->machine_id, PAYMENT_QRIS, why, sizeof(why)) < 0 ||
        s.stock - s.reserved < 1)
        return 0;
    json_array_append_new(m->products,
                          json_pack("{s:I, s:s, s:I, s:I}", "slot", (json_int_t)s.slot_number,
                                    "product_name", s.product_name, "price", (json_int_t)s.price,
                                    "available", (json_int_t)(s.stock - s.reserved)));
    return 0;
}

int orders_menu_json(struct vendd *v, const char *machine_id, bool payments, json_t **out)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    struct menu m = {.machine_id = machine_id};
    char presence[16] = "", why[256];
    int rc;

    *out = NULL;
    rc = store_query_text(v->db, "SELECT status FROM machines WHERE id = $1", p, 1, presence,
                          sizeof(presence));
    if (rc == 0)
        return VEND_ENOTFOUND;
    if (rc < 0)
        goto fail;
    m.products = json_array();
    rc = payments ? check_customer_machine(v, machine_id, why, sizeof(why)) : VEND_EUNAVAILABLE;
    if (rc == VEND_OK)
        rc = db_exec(v->db, SLOT_OFFER_SELECT " ORDER BY s.slot_number", p, 1, take_menu_slot, &m);
    else if (rc == VEND_ESTATE || rc == VEND_ELIMIT || rc == VEND_EUNAVAILABLE)
        rc = VEND_OK; /* no order would be taken now: nothing to buy */
    if (rc < 0) {
        json_decref(m.products);
        goto fail;
    }
    *out = json_pack("{s:s, s:b, s:o}", "machine_id", machine_id, "online",
                     strcmp(presence, "ONLINE") == 0, "products", m.products);
    return *out != NULL ? VEND_OK : VEND_EINTERNAL;
fail:
    log_warnx("cannot read what machine '%s' sells: %s", machine_id, db_errmsg(v->db));
    return VEND_EDB;
}

/* A unit of item i (units first_unit .. first_unit + quantity - 1) of the same order. */
#define ITEM_UNITS                                                                                 \
    "SELECT count(*) FROM dispense_logs WHERE order_id = i.order_id AND unit >= i.first_unit "     \
    "AND unit < i.first_unit + i.quantity AND "

bool orders_key_equal(const char *stored, const char *given)
{
    return stored != NULL && given != NULL && strlen(stored) == ORDER_STATUS_KEY_SIZE - 1 &&
           strnlen(given, ORDER_STATUS_KEY_SIZE) == ORDER_STATUS_KEY_SIZE - 1 &&
           CRYPTO_memcmp(stored, given, ORDER_STATUS_KEY_SIZE - 1) == 0;
}

int orders_customer_json(struct vendd *v, const char *id, const char *key, json_t **out)
{
    struct db_value p[1] = {DB_TEXT(id)};
    json_t *rows = NULL, *items = NULL, *refunds = NULL, *o;
    const char *stored;
    int rc = VEND_EDB;

    *out = NULL;
    rows = store_query_json(v->db,
                            "SELECT id, machine_id, status, total_amount, payment_method, "
                            "payment_qr AS qr_string, payment_url AS redirect_url, expires_at, "
                            "status_key FROM orders WHERE id = $1 AND origin = 'customer'",
                            p, 1);
    if (rows == NULL)
        goto out;
    o = json_array_get(rows, 0);
    stored = json_string_value(json_object_get(o, "status_key"));
    if (o == NULL || !orders_key_equal(stored, key)) {
        rc = VEND_ENOTFOUND;
        goto out;
    }
    items = store_query_json(
        v->db,
        "SELECT s.slot_number AS slot, i.product_name, i.quantity, "
        "(" ITEM_UNITS UNIT_DROPPED_SQL ") AS dropped, "
        "(" ITEM_UNITS "status IN ('FAILED', 'NO_RESULT') AND NOT " UNIT_DROPPED_SQL ") AS failed "
        "FROM order_items i JOIN slots s ON s.id = i.slot_id "
        "WHERE i.order_id = $1 ORDER BY i.position",
        p, 1);
    refunds =
        store_query_json(v->db, "SELECT status, amount FROM refunds WHERE order_id = $1", p, 1);
    if (items == NULL || refunds == NULL)
        goto out;
    *out = json_incref(o);
    json_object_del(*out, "status_key");
    json_object_set(*out, "items", items);
    json_object_set_new(*out, "refund",
                        json_array_size(refunds) > 0 ? json_incref(json_array_get(refunds, 0))
                                                     : json_null());
    rc = VEND_OK;
out:
    if (rc == VEND_EDB)
        log_warnx("cannot read order '%s': %s", id, db_errmsg(v->db));
    json_decref(rows);
    json_decref(items);
    json_decref(refunds);
    return rc;
}

/* ---- lists, a page at a time (docs/HTTP-API.md "Lists") --------------------------------- */

/* What a list shows of an order: its own columns, not its parts nor its payment page. */
#define ORDER_LIST                                                                                 \
    "SELECT id, machine_id, status, origin, payment_method, quantity, total_amount, "              \
    "failure_reason, paid_at, dispensed_at, expires_at, created_at, updated_at FROM orders"
#define ORDER_AFTER(a, b) "(created_at, id) < ($" #a ", $" #b ")"
/* Newest first. id breaks ties, so the key is unique and a page boundary cuts nowhere. */
#define ORDER_ORDER " ORDER BY created_at DESC, id DESC LIMIT $1"

/*
 * One statement per combination of filters, [machine][status][after], each its own prepared
 * statement: a filter written as "($2 IS NULL OR status = $2)" would keep the planner from
 * the index that serves it. Parameters in the order orders_page_json() binds them.
 */
static const char *const s_order_pages[2][2][2] = {
    {{ORDER_LIST ORDER_ORDER, ORDER_LIST " WHERE " ORDER_AFTER(2, 3) ORDER_ORDER},
     {ORDER_LIST " WHERE status = $2" ORDER_ORDER,
      ORDER_LIST " WHERE status = $2 AND " ORDER_AFTER(3, 4) ORDER_ORDER}},
    {{ORDER_LIST " WHERE machine_id = $2" ORDER_ORDER,
      ORDER_LIST " WHERE machine_id = $2 AND " ORDER_AFTER(3, 4) ORDER_ORDER},
     {ORDER_LIST " WHERE machine_id = $2 AND status = $3" ORDER_ORDER,
      ORDER_LIST " WHERE machine_id = $2 AND status = $3 AND " ORDER_AFTER(4, 5) ORDER_ORDER}},
};

int orders_page_json(struct vendd *v, const char *machine_id, const char *status,
                     const char *after_time, const char *after_id, int64_t n, json_t **out)
{
    struct db_value p[5];
    size_t np = 0;

    assert((after_time == NULL) == (after_id == NULL));
    p[np++] = DB_INT(n);
    if (machine_id != NULL)
        p[np++] = DB_TEXT(machine_id);
    if (status != NULL)
        p[np++] = DB_TEXT(status);
    if (after_time != NULL) {
        p[np++] = DB_TEXT(after_time);
        p[np++] = DB_TEXT(after_id);
    }
    *out = store_query_json(
        v->db, s_order_pages[machine_id != NULL][status != NULL][after_time != NULL], p, np);
    if (*out == NULL) {
        log_warnx("cannot list orders: %s", db_errmsg(v->db));
        return VEND_EDB;
    }
    return VEND_OK;
}
