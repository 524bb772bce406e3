#include "orders.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "conf.h"
#include "db.h"
#include "log.h"
#include "store.h"
#include "vend/err.h"
#include "vend/topic.h"
#include "vendd.h"

/* ---- manual orders --------------------------------------------------------------------- */

struct slot_offer {
    bool found;
    int64_t slot_id;
    int64_t stock;
    bool has_product;
    int64_t product_id;
    int64_t price;
    char product_name[101];
};

static int take_slot_offer(void *arg, const struct db_row *row)
{
    struct slot_offer *s = arg;
    const char *name = db_row_text(row, 4);

    s->found = true;
    s->slot_id = db_row_int(row, 0);
    s->stock = db_row_int(row, 1);
    s->has_product = !db_row_is_null(row, 2) && !db_row_is_null(row, 3);
    s->product_id = db_row_int(row, 2);
    s->price = db_row_int(row, 3);
    if (name != NULL && strlen(name) < sizeof(s->product_name))
        memcpy(s->product_name, name, strlen(name) + 1);
    return 1;
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

int orders_reserved_units(struct vendd *v, int64_t slot_id, int64_t *units)
{
    struct db_value p[1] = {DB_INT(slot_id)};
    int rc;

    *units = 0;
    rc = store_query_int(
        v->db,
        "SELECT COALESCE(sum(i.quantity), 0) - (SELECT count(*) FROM dispense_logs l "
        "JOIN orders o2 ON o2.id = l.order_id WHERE l.slot_id = $1 AND l.status = 'SUCCEEDED' "
        "AND o2.status IN ('PAID', 'DISPENSING')) "
        "FROM order_items i JOIN orders o ON o.id = i.order_id "
        "WHERE i.slot_id = $1 AND o.status IN ('PAID', 'DISPENSING')",
        p, 1, units);
    return rc < 0 ? rc : VEND_OK;
}

int orders_create_manual(struct vendd *v, struct order_manual *in, char *why, size_t why_size)
{
    struct db_value p[10];
    struct slot_offer s = {0};
    char now_iso[STORE_ISO_SIZE];
    int64_t reserved = 0, exists = 0;
    int rc;

    why[0] = '\0';
    if (in->machine_id[0] == '\0')
        snprintf(in->machine_id, sizeof(in->machine_id), "%s", v->conf->machine_id);
    if (in->id[0] == '\0')
        generate_order_id(v, in->id, sizeof(in->id));
    vendd_now_iso(v, now_iso, sizeof(now_iso));

    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    p[0] = DB_TEXT(in->machine_id);
    rc = store_query_int(v->db, "SELECT count(*) FROM machines WHERE id = $1", p, 1, &exists);
    if (rc < 0)
        goto out;
    if (exists == 0) {
        snprintf(why, why_size, "machine '%s' is not registered", in->machine_id);
        rc = VEND_ENOTFOUND;
        goto out;
    }
    p[1] = DB_INT(in->slot);
    rc = db_exec(v->db,
                 "SELECT s.id, s.current_stock, p.id, COALESCE(s.price_override, p.price), p.name "
                 "FROM slots s LEFT JOIN products p ON p.id = s.product_id "
                 "WHERE s.machine_id = $1 AND s.slot_number = $2 AND s.is_active = 1",
                 p, 2, take_slot_offer, &s);
    if (rc < 0)
        goto out;
    if (!s.found) {
        snprintf(why, why_size, "machine '%s' has no slot %" PRId64, in->machine_id, in->slot);
        rc = VEND_ENOTFOUND;
        goto out;
    }
    if (!s.has_product) {
        snprintf(why, why_size, "slot %" PRId64 " of '%s' has no product", in->slot,
                 in->machine_id);
        rc = VEND_ESTATE;
        goto out;
    }
    /* Units already promised to paid orders but not yet dispensed are not for sale. */
    rc = orders_reserved_units(v, s.slot_id, &reserved);
    if (rc < 0)
        goto out;
    if (s.stock - reserved < in->quantity) {
        snprintf(why, why_size,
                 "slot %" PRId64 " of '%s' has %" PRId64 " unit(s) free (stock %" PRId64
                 ", %" PRId64 " promised), %" PRId64 " ordered",
                 in->slot, in->machine_id, s.stock - reserved, s.stock, reserved, in->quantity);
        rc = VEND_ESTATE;
        goto out;
    }

    p[0] = DB_TEXT(in->id);
    p[1] = DB_TEXT(in->machine_id);
    p[2] = DB_INT(s.slot_id);
    p[3] = DB_INT(s.product_id);
    p[4] = DB_INT(in->quantity);
    p[5] = DB_INT(s.price * in->quantity);
    p[6] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO orders (id, machine_id, slot_id, product_id, quantity, total_amount, "
                 "status, origin, payment_method, paid_at, created_at, updated_at) "
                 "VALUES ($1, $2, $3, $4, $5, $6, 'PAID', 'operator', 'manual', $7, $7, $7)",
                 p, 7, NULL, NULL);
    if (rc == VEND_ECONFLICT)
        snprintf(why, why_size, "order '%s' already exists", in->id);
    if (rc < 0)
        goto out;
    p[1] = DB_INT(s.slot_id);
    p[2] = DB_INT(s.product_id);
    p[3] = DB_TEXT(s.product_name);
    p[4] = DB_INT(in->quantity);
    p[5] = DB_INT(s.price);
    p[6] = DB_INT(s.price * in->quantity);
    rc = db_exec(
        v->db,
        "INSERT INTO order_items (order_id, position, slot_id, product_id, product_name, "
        "quantity, unit_price, total, first_unit) VALUES ($1, 1, $2, $3, $4, $5, $6, $7, 1)",
        p, 7, NULL, NULL);
    if (rc < 0)
        goto out;
    p[1] = DB_INT(s.price * in->quantity);
    p[2] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO payments (order_id, gateway_name, amount, status, payment_type, "
                 "processed_at, created_at, updated_at) "
                 "VALUES ($1, 'manual', $2, 'SUCCESS', 'manual', $3, $3, $3)",
                 p, 3, NULL, NULL);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    log_info("manual order '%s' recorded PAID: machine '%s' slot %" PRId64 " x%" PRId64, in->id,
             in->machine_id, in->slot, in->quantity);
out:
    if (rc < 0) {
        db_rollback(v->db);
        if (why[0] == '\0')
            snprintf(why, why_size, "%s", vend_strerror(rc));
        if (rc != VEND_ENOTFOUND && rc != VEND_ESTATE && rc != VEND_ECONFLICT)
            log_warnx("cannot record manual order '%s': %s (%s)", in->id, vend_strerror(rc),
                      db_errmsg(v->db));
    }
    return rc;
}

/* ---- JSON views ------------------------------------------------------------------------ */

/*
 * The order as JSON: the row, its items and its units, or the reason there is none.
 * A failure to read any part is a failure of the whole: never a partial order.
 */
int orders_get_json(struct vendd *v, const char *id, json_t **out)
{
    struct db_value p[1] = {DB_TEXT(id)};
    json_t *rows, *items = NULL, *units = NULL;
    int rc = VEND_EDB;

    *out = NULL;
    rows = store_query_json(
        v->db,
        "SELECT id, machine_id, status, origin, payment_method, quantity, total_amount, "
        "failure_reason, paid_at, dispensed_at, expires_at, created_at, updated_at "
        "FROM orders WHERE id = $1",
        p, 1);
    if (rows == NULL)
        goto out;
    if (json_array_size(rows) == 0) {
        rc = VEND_ENOTFOUND;
        goto out;
    }
    items = store_query_json(
        v->db,
        "SELECT i.position, s.slot_number AS slot, i.product_name, i.quantity, i.unit_price, "
        "i.total FROM order_items i JOIN slots s ON s.id = i.slot_id "
        "WHERE i.order_id = $1 ORDER BY i.position",
        p, 1);
    units = store_query_json(
        v->db,
        "SELECT unit, machine_id, slot_number, status, timeout_ms, command_sent_at, "
        "deadline_at, completed_at, duration_ms, success, drop_detected, "
        "error_message, late_result FROM dispense_logs WHERE order_id = $1 ORDER BY unit",
        p, 1);
    if (items == NULL || units == NULL)
        goto out;
    *out = json_incref(json_array_get(rows, 0));
    json_object_set(*out, "items", items);
    json_object_set(*out, "units", units);
    rc = VEND_OK;
out:
    if (rc == VEND_EDB)
        log_warnx("cannot read order '%s': %s", id, db_errmsg(v->db));
    json_decref(rows);
    json_decref(items);
    json_decref(units);
    return rc;
}
