/*
 * slots.c - the slot rules behind PUT /api/machines/{id}/slots/{slot} and the slot views;
 * the rules themselves are listed in slots.h. The count is stock.c's to write.
 */
#include "slots.h"

#include <inttypes.h>
#include <stdio.h>

#include "db.h"
#include "events.h"
#include "jsonw.h"
#include "log.h"
#include "machines.h"
#include "orders.h"
#include "stock.h"
#include "store.h"
#include "telemetry.h"
#include "vend/err.h"
#include "vendd.h"

/* What a slot runs its motor for unless the operator says otherwise (schema default). */
#define MOTOR_MS_DEFAULT 1500

/* One slot as the API shows it; price is the effective price (override, else product), the
 * sensor's time the slot's or its machine's ("m", TELEMETRY_SENSOR_AT_SQL). */
#define SLOT_COLUMNS                                                                               \
    "s.slot_number, s.product_id, p.name AS product_name, "                                        \
    "COALESCE(s.price_override, p.price) AS price, s.capacity, s.current_stock, "                  \
    "s.motor_duration_ms, s.sensor_level, " TELEMETRY_SENSOR_AT_SQL " AS sensor_at, "              \
    "s.needs_inspection, s.version, s.is_active, s.updated_at"
#define SLOT_SELECT                                                                                \
    "SELECT " SLOT_COLUMNS " FROM slots s JOIN machines m ON m.id = s.machine_id "                 \
    "LEFT JOIN products p ON p.id = s.product_id"

/* The slot as stored (found false: there is none yet), or as the operator wants it. */
struct slot_row {
    bool found;
    int64_t id, product_id, capacity, stock, motor_ms, version;
    bool needs_inspection;
};

static int take_slot_row(void *arg, const struct db_row *row)
{
    struct slot_row *s = arg;

    s->found = true;
    s->id = db_row_int(row, 0);
    s->product_id = db_row_is_null(row, 1) ? 0 : db_row_int(row, 1);
    s->capacity = db_row_int(row, 2);
    s->stock = db_row_int(row, 3);
    s->motor_ms = db_row_int(row, 4);
    s->version = db_row_int(row, 5);
    s->needs_inspection = db_row_int(row, 6) != 0;
    return 1;
}

/* Inside the transaction: find or create the product named in the body, set its price. */
static int product_upsert_locked(struct vendd *v, const struct slot_input *in, const char *now_iso,
                                 int64_t *product_id, struct slot_outcome *out)
{
    struct db_value p[3] = {DB_TEXT(in->product_name)};
    int64_t price = 0;
    int rc;

    rc = store_query_int(v->db, "SELECT id FROM products WHERE name = $1", p, 1, product_id);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (!in->has_price) {
            snprintf(out->why, sizeof(out->why), "'price' is required for the new product '%s'",
                     in->product_name);
            return VEND_EINVAL;
        }
        p[1] = DB_INT(in->price);
        p[2] = DB_TEXT(now_iso);
        rc = store_query_int(v->db,
                             "INSERT INTO products (name, price, created_at, updated_at) "
                             "VALUES ($1, $2, $3, $3) RETURNING id",
                             p, 3, product_id);
        return rc < 0 ? rc : rc == 1 ? VEND_OK : VEND_EINTERNAL;
    }
    if (!in->has_price)
        return VEND_OK;
    p[0] = DB_INT(*product_id);
    rc = store_query_int(v->db, "SELECT price FROM products WHERE id = $1", p, 1, &price);
    if (rc < 0 || price == in->price)
        return rc < 0 ? rc : VEND_OK;
    p[1] = DB_INT(in->price);
    p[2] = DB_TEXT(now_iso);
    rc = db_exec(v->db, "UPDATE products SET price = $2, updated_at = $3 WHERE id = $1", p, 3, NULL,
                 NULL);
    out->price_changed = rc == 1;
    return rc < 0 ? rc : VEND_OK;
}

/*
 * Inside the transaction: a new slot, empty. Its first stock is a restock like any other
 * (stock.c), and that restock moves the version: so a slot with stock is inserted one below
 * the version 1 every new slot shows, a value no other transaction ever sees.
 */
static int slot_insert_locked(struct vendd *v, const char *machine_id, int64_t slot_number,
                              const struct slot_row *want, const char *now_iso)
{
    struct db_value p[7] = {DB_TEXT(machine_id),
                            DB_INT(slot_number),
                            DB_INT(want->product_id),
                            DB_INT(want->capacity),
                            DB_INT(want->motor_ms),
                            DB_TEXT(now_iso),
                            DB_INT(want->stock > 0 ? 0 : 1)};
    int64_t slot_id = 0;
    int rc;

    rc = store_query_int(v->db,
                         "INSERT INTO slots (machine_id, slot_number, product_id, capacity, "
                         "current_stock, motor_duration_ms, version, created_at, updated_at) "
                         "VALUES ($1, $2, $3, $4, 0, $5, $7, $6, $6) RETURNING id",
                         p, 7, &slot_id);
    if (rc != 1)
        return rc < 0 ? rc : VEND_EINTERNAL;
    rc = stock_set_locked(v, slot_id, machine_id, STOCK_RESTOCK, 0, want->stock, "new slot",
                          now_iso);
    /* A slot that was not there was not low: one made low (or empty) says so. */
    return rc < 0 ? rc : stock_low_locked(v, slot_id, machine_id, 0, 0, now_iso);
}

/* Inside the transaction: every field but the count, compare-and-set on the version. */
static int slot_set_fields_locked(struct vendd *v, const struct slot_row *cur,
                                  const struct slot_row *want, int64_t version, bool bump,
                                  const char *now_iso)
{
    struct db_value p[8] = {DB_INT(cur->id),
                            DB_INT(want->product_id),
                            DB_INT(want->capacity),
                            DB_INT(want->motor_ms),
                            DB_INT(want->needs_inspection),
                            DB_INT(bump ? 1 : 0),
                            DB_TEXT(now_iso),
                            DB_INT(version)};
    int rc = db_exec(v->db,
                     "UPDATE slots SET product_id = $2, capacity = $3, motor_duration_ms = $4, "
                     "needs_inspection = $5, version = version + $6, updated_at = $7 "
                     "WHERE id = $1 AND version = $8",
                     p, 8, NULL, NULL);

    return rc < 0 ? rc : rc == 1 ? VEND_OK : VEND_ECONFLICT;
}

/*
 * Inside the transaction: make the existing slot cur what the operator wants, moving its
 * version by exactly one whatever changes. A new count goes through stock.c, which moves
 * the version itself; the other fields then leave it. The count must fit the capacity
 * after every statement (a CHECK), so a lower count is written before the other fields
 * and a higher one after them.
 */
static int slot_update_locked(struct vendd *v, const char *machine_id, const struct slot_row *cur,
                              const struct slot_row *want, const char *now_iso, int64_t *version)
{
    bool fields = want->product_id != cur->product_id || want->capacity != cur->capacity ||
                  want->motor_ms != cur->motor_ms ||
                  want->needs_inspection != cur->needs_inspection;
    int64_t at = cur->version;
    int rc = VEND_OK;

    if (want->stock < cur->stock) {
        rc = stock_set_locked(v, cur->id, machine_id, STOCK_MANUAL_ADJUST, cur->stock, want->stock,
                              "slot update", now_iso);
        at++;
    }
    if (rc >= 0 && fields)
        rc = slot_set_fields_locked(v, cur, want, at, want->stock == cur->stock, now_iso);
    if (rc >= 0 && want->stock > cur->stock)
        rc = stock_set_locked(v, cur->id, machine_id, STOCK_MANUAL_ADJUST, cur->stock, want->stock,
                              "slot update", now_iso);
    /* A new capacity moves the slot's LOW_STOCK line (stock.h). */
    if (rc >= 0 && want->capacity != cur->capacity)
        rc = stock_low_locked(v, cur->id, machine_id, cur->stock, cur->capacity, now_iso);
    if (rc < 0)
        return rc;
    *version = fields || want->stock != cur->stock ? cur->version + 1 : cur->version;
    return VEND_OK;
}

/*
 * Inside the transaction: the operator's word on an existing slot settles what it answers.
 * A stated count (an audit or restock) resolves the open stock mismatch alerts; clearing
 * needs_inspection resolves the alerts that asked for the inspection.
 */
static int resolve_alerts_locked(struct vendd *v, int64_t slot_id, const struct slot_input *in,
                                 const char *now_iso)
{
    struct db_value p[2] = {DB_INT(slot_id), DB_TEXT(now_iso)};
    int rc = 0;

    if (in->has_stock)
        rc = db_exec(v->db,
                     "UPDATE alerts SET resolved_at = $2 WHERE slot_id = $1 AND resolved_at IS "
                     "NULL AND kind IN ('STOCK_SENSOR_MISMATCH', 'STOCK_MISMATCH')",
                     p, 2, NULL, NULL);
    if (rc >= 0 && in->has_inspection && !in->needs_inspection)
        rc = db_exec(v->db,
                     "UPDATE alerts SET resolved_at = $2 WHERE slot_id = $1 AND resolved_at IS "
                     "NULL AND kind = 'DROP_WITHOUT_SUCCESS'",
                     p, 2, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

/* Inside the transaction: the slot's new product and price, within the slot rules. */
static int product_locked(struct vendd *v, int64_t slot_number, const struct slot_input *in,
                          const struct slot_row *cur, const char *now_iso, int64_t *product_id,
                          struct slot_outcome *out)
{
    struct db_value p[3];
    int64_t reserved = 0;
    int rc = VEND_OK;

    *product_id = cur->product_id;
    if (in->has_name) {
        rc = product_upsert_locked(v, in, now_iso, product_id, out);
    } else if (in->has_price && *product_id == 0) {
        snprintf(out->why, sizeof(out->why),
                 "'product_name' is required: slot %" PRId64 " has no product", slot_number);
        rc = VEND_EINVAL;
    } else if (in->has_price) {
        p[0] = DB_INT(*product_id);
        p[1] = DB_INT(in->price);
        p[2] = DB_TEXT(now_iso);
        rc = db_exec(v->db,
                     "UPDATE products SET price = $2, updated_at = $3 "
                     "WHERE id = $1 AND price <> $2",
                     p, 3, NULL, NULL);
        out->price_changed = rc == 1;
    }
    if (rc < 0 || !cur->found || *product_id == cur->product_id)
        return rc < 0 ? rc : VEND_OK;
    rc = stock_reserved(v, cur->id, &reserved);
    if (rc < 0)
        return rc;
    if (reserved > 0) {
        snprintf(out->why, sizeof(out->why),
                 "slot %" PRId64 " has %" PRId64 " unit(s) promised to open orders: its "
                 "product cannot change until they are dispensed",
                 slot_number, reserved);
        return VEND_ESTATE;
    }
    return VEND_OK;
}

/* Inside the transaction: the price shows on every slot of the product, so they all move. */
static int bump_product_slots_locked(struct vendd *v, const char *machine_id, int64_t slot_number,
                                     int64_t product_id, const char *now_iso, int64_t *version)
{
    struct db_value p[2] = {DB_INT(product_id), DB_TEXT(now_iso)};
    int rc;

    rc = db_exec(v->db,
                 "UPDATE slots SET version = version + 1, updated_at = $2 WHERE product_id = $1", p,
                 2, NULL, NULL);
    if (rc < 0)
        return rc;
    p[0] = DB_TEXT(machine_id);
    p[1] = DB_INT(slot_number);
    rc = store_query_int(v->db,
                         "SELECT version FROM slots WHERE machine_id = $1 AND slot_number = $2", p,
                         2, version);
    return rc < 0 ? rc : VEND_OK;
}

int slots_put(struct vendd *v, const char *machine_id, int64_t slot_number,
              const struct slot_input *in, struct slot_outcome *out)
{
    struct db_value p[2] = {DB_TEXT(machine_id), DB_INT(slot_number)};
    struct slot_row cur = {0}, want = {0};
    char now_iso[STORE_ISO_SIZE];
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = machines_exists(v, machine_id);
    if (rc <= 0) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    rc = db_exec(v->db,
                 "SELECT id, product_id, capacity, current_stock, motor_duration_ms, version, "
                 "needs_inspection FROM slots WHERE machine_id = $1 AND slot_number = $2",
                 p, 2, take_slot_row, &cur);
    if (rc < 0)
        goto out;
    out->created = !cur.found;
    out->has_version = cur.found;
    out->version = cur.version;
    if (in->has_version && (!cur.found || cur.version != in->version)) {
        rc = VEND_ECONFLICT;
        goto out;
    }
    /* SPEC §4 rule 5: restocks and audits use optimistic concurrency. Without the version
     * the operator saw, a dispense in between would be silently overwritten. */
    if (cur.found && in->has_stock && in->stock != cur.stock && !in->has_version) {
        snprintf(out->why, sizeof(out->why),
                 "'version' is required to change the stock of slot %" PRId64
                 " (its version is %" PRId64 ")",
                 slot_number, cur.version);
        rc = VEND_EINVAL;
        goto out;
    }
    if (!cur.found && (!in->has_name || !in->has_price || !in->has_capacity)) {
        snprintf(out->why, sizeof(out->why), "'%s' is required for a new slot",
                 !in->has_name    ? "product_name"
                 : !in->has_price ? "price"
                                  : "capacity");
        rc = VEND_EINVAL;
        goto out;
    }
    want.capacity = in->has_capacity ? in->capacity : cur.capacity;
    want.stock = in->has_stock ? in->stock : cur.stock; /* 0 for a new slot */
    want.motor_ms = in->has_motor ? in->motor_ms : cur.found ? cur.motor_ms : MOTOR_MS_DEFAULT;
    want.needs_inspection = in->has_inspection ? in->needs_inspection : cur.needs_inspection;
    if (want.stock > want.capacity) {
        snprintf(out->why, sizeof(out->why),
                 "'current_stock' %" PRId64 " exceeds the slot's 'capacity' %" PRId64, want.stock,
                 want.capacity);
        rc = VEND_EINVAL;
        goto out;
    }
    rc = product_locked(v, slot_number, in, &cur, now_iso, &want.product_id, out);
    if (rc < 0)
        goto out;

    if (!cur.found) {
        rc = slot_insert_locked(v, machine_id, slot_number, &want, now_iso);
        out->version = 1;
    } else {
        rc = slot_update_locked(v, machine_id, &cur, &want, now_iso, &out->version);
        if (rc >= 0)
            rc = resolve_alerts_locked(v, cur.id, in, now_iso);
    }
    if (rc >= 0 && out->price_changed)
        rc = bump_product_slots_locked(v, machine_id, slot_number, want.product_id, now_iso,
                                       &out->version);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    events_emit(v);
out:
    if (rc < 0) {
        db_rollback(v->db);
        /* The operator's mistakes are answered, not logged. */
        if (rc != VEND_ENOTFOUND && rc != VEND_ECONFLICT && rc != VEND_EINVAL && rc != VEND_ESTATE)
            log_warnx("cannot update slot %" PRId64 " of machine '%s': %s (%s)", slot_number,
                      machine_id, vend_strerror(rc), db_errmsg(v->db));
    }
    return rc < 0 ? rc : VEND_OK;
}

int slots_get_json(struct vendd *v, const char *machine_id, int64_t slot_number, json_t **out)
{
    struct db_value p[2] = {DB_TEXT(machine_id), DB_INT(slot_number)};
    json_t *rows = store_query_json(
        v->db, SLOT_SELECT " WHERE s.machine_id = $1 AND s.slot_number = $2", p, 2);
    int rc = VEND_OK;

    *out = NULL;
    if (rows == NULL) {
        log_warnx("cannot read slot %" PRId64 " of machine '%s': %s", slot_number, machine_id,
                  db_errmsg(v->db));
        rc = VEND_EDB;
    } else if (json_array_size(rows) != 1) {
        rc = VEND_ENOTFOUND;
    } else {
        *out = json_incref(json_array_get(rows, 0));
    }
    json_decref(rows);
    return rc;
}

int slots_list_json(struct vendd *v, const char *machine_id, json_t **out)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};

    *out = store_query_json(v->db, SLOT_SELECT " WHERE s.machine_id = $1 ORDER BY s.slot_number", p,
                            1);
    if (*out == NULL) {
        log_warnx("cannot read the slots of machine '%s': %s", machine_id, db_errmsg(v->db));
        return VEND_EDB;
    }
    return VEND_OK;
}

struct stock_rows {
    struct jsonw *w;
    bool machine;
};

static int write_stock_row(void *arg, const struct db_row *row)
{
    struct stock_rows *sr = arg;

    sr->machine = true;
    /* A machine without slots: the LEFT JOIN's one row of NULLs. */
    if (!db_row_is_null(row, 0))
        jw_row(sr->w, row);
    return 0;
}

/* The statement below: its machine row for whether it exists (members: a status message,
 * which rewrites the row all the time, moves nothing) and for the slots' sensor time
 * (slots_seen_at), which telemetry.c counts apart when it moves it (TELEMETRY_SLOTS_SEEN). */
const struct db_reads slots_stock_reads = {
    .changed = {"slots", "products", TELEMETRY_SLOTS_SEEN, NULL},
    .members = {"machines", NULL},
};

int slots_stock_text(struct vendd *v, const char *machine_id, char **out)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    struct jsonw w = JSONW_INIT;
    struct stock_rows sr = {.w = &w};
    int rc;

    /*
     * The machine and its slots in one statement, not an existence check and then the
     * slots: this is a hot read (a kiosk's stock screen), and each statement outside a
     * transaction takes and drops SQLite's read lock. The LEFT JOIN gives an unknown machine
     * no row and a machine without slots one row of NULLs. Written as text, not as a jansson
     * tree then serialised, which was four fifths of the cost of the read.
     */
    *out = NULL;
    jw_obj_begin(&w);
    jw_key(&w, "machine_id");
    jw_str(&w, machine_id);
    jw_key(&w, "slots");
    jw_arr_begin(&w);
    rc = db_exec(v->db,
                 "SELECT " SLOT_COLUMNS " FROM machines m "
                 "LEFT JOIN slots s ON s.machine_id = m.id "
                 "LEFT JOIN products p ON p.id = s.product_id "
                 "WHERE m.id = $1 ORDER BY s.slot_number",
                 p, 1, write_stock_row, &sr);
    if (rc < 0) {
        log_warnx("cannot read the stock of machine '%s': %s", machine_id, db_errmsg(v->db));
        rc = VEND_EDB;
    } else if (!sr.machine) {
        rc = VEND_ENOTFOUND;
    } else {
        jw_arr_end(&w);
        jw_obj_end(&w);
        *out = jw_take(&w);
        rc = VEND_OK;
    }
    jw_free(&w);
    return rc;
}
