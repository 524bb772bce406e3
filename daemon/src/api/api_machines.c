/*
 * api_machines.c - machines, slots, stock and the config push (SPEC §3, §5;
 * docs/HTTP-API.md "Machines", "Slots and stock", "Config").
 *
 * Stock changes here only through PUT .../slots/{slot}: one transaction with its
 * stock_logs row and a compare-and-set on slots.version, the version the operator
 * last saw (optimistic concurrency, SPEC §4 rule 5). Dispensing changes stock in
 * dispense.c; telemetry never does.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "db.h"
#include "log.h"
#include "orders.h"
#include "mqtt.h"
#include "store.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

#define MACHINE_NAME_MAX     100
#define MACHINE_LOCATION_MAX 200
#define PRODUCT_NAME_MAX     100
#define PRICE_MAX            100000000 /* rupiah */
#define CAPACITY_MAX         1000
#define MOTOR_MS_DEFAULT     1500

/* What the API shows of a machine: never a secret, not even mqtt_username. */
#define MACHINE_SELECT                                                                             \
    "SELECT id, name, location, status, door, rssi, fw, temperature, last_seen, config, "          \
    "created_at, updated_at FROM machines"

/* One slot as the API shows it; price is the effective price (override, else product). */
#define SLOT_SELECT                                                                                \
    "SELECT s.slot_number, s.product_id, p.name AS product_name, "                                 \
    "COALESCE(s.price_override, p.price) AS price, s.capacity, s.current_stock, "                  \
    "s.motor_duration_ms, s.sensor_level, s.sensor_at, s.needs_inspection, s.version, "            \
    "s.is_active, s.updated_at FROM slots s LEFT JOIN products p ON p.id = s.product_id"

/* ---- helpers ---------------------------------------------------------------------------- */

/* The {id} or {machine_id} capture if it is a valid machine id; else answers 404. */
static const char *path_machine_id(const struct http_request *req, const char *name,
                                   struct http_response *res)
{
    const char *id = http_param(req, name);

    if (!vend_machine_id_valid(id)) {
        http_reply_error(res, 404, "NOT_FOUND", "no machine '%s'", id != NULL ? id : "");
        return NULL;
    }
    return id;
}

static int machine_exists(struct vendd *v, const char *id)
{
    struct db_value p[1] = {DB_TEXT(id)};
    int64_t n = 0;
    int rc = store_query_int(v->db, "SELECT count(*) FROM machines WHERE id = $1", p, 1, &n);

    return rc < 0 ? rc : n > 0;
}

/* machines.config is stored as JSON text: show it as the object it is. */
static void config_as_object(json_t *machine)
{
    const json_t *text = json_object_get(machine, "config");
    json_t *obj;

    if (!json_is_string(text))
        return;
    obj = json_loads(json_string_value(text), JSON_REJECT_DUPLICATES, NULL);
    /* A damaged value shows as null rather than failing the whole listing. */
    json_object_set_new(machine, "config", obj != NULL ? obj : json_null());
}

/* The machine's row as an object; NULL with *rc = VEND_ENOTFOUND or VEND_EDB. */
static json_t *machine_json(struct vendd *v, const char *id, int *rc)
{
    struct db_value p[1] = {DB_TEXT(id)};
    json_t *rows = store_query_json(v->db, MACHINE_SELECT " WHERE id = $1", p, 1);
    json_t *machine = NULL;

    *rc = VEND_OK;
    if (rows == NULL) {
        log_warnx("cannot read machine '%s': %s", id, db_errmsg(v->db));
        *rc = VEND_EDB;
        goto out;
    }
    if (json_array_size(rows) == 0) {
        *rc = VEND_ENOTFOUND;
        goto out;
    }
    machine = json_incref(json_array_get(rows, 0));
    config_as_object(machine);
out:
    json_decref(rows);
    return machine;
}

static json_t *slots_json(struct vendd *v, const char *machine_id)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    json_t *slots = store_query_json(
        v->db, SLOT_SELECT " WHERE s.machine_id = $1 ORDER BY s.slot_number", p, 1);

    if (slots == NULL)
        log_warnx("cannot read the slots of machine '%s': %s", machine_id, db_errmsg(v->db));
    return slots;
}

static json_t *slot_json(struct vendd *v, const char *machine_id, int64_t slot_number)
{
    struct db_value p[2] = {DB_TEXT(machine_id), DB_INT(slot_number)};
    json_t *rows = store_query_json(
        v->db, SLOT_SELECT " WHERE s.machine_id = $1 AND s.slot_number = $2", p, 2);
    json_t *slot = NULL;

    if (rows != NULL && json_array_size(rows) == 1)
        slot = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return slot;
}

static bool has_field(const json_t *body, const char *key)
{
    const json_t *val = json_object_get(body, key);

    return val != NULL && !json_is_null(val);
}

/* ---- POST /api/machines, GET /api/machines[/{id}] ----------------------------------------- */

void api_machines_create(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    char id[VEND_MACHINE_ID_MAX + 1], name[MACHINE_NAME_MAX + 1];
    char location[MACHINE_LOCATION_MAX + 1], now_iso[STORE_ISO_SIZE];
    bool has_location = has_field(req->json, "location");
    struct db_value p[4];
    static const char *const fields[] = {"id", "name", "location", NULL};
    json_t *machine;
    int rc;

    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "id", true, VEND_MACHINE_ID_MAX, id, sizeof(id), res))
        return;
    if (!vend_machine_id_valid(id)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'id' must match [A-Za-z0-9_-]{1,32}");
        return;
    }
    /* The name defaults to the id, as for the machine registered at first start. */
    memcpy(name, id, sizeof(id));
    if (!api_field_string(req->json, "name", false, MACHINE_NAME_MAX, name, sizeof(name), res))
        return;
    if (!api_field_string(req->json, "location", false, MACHINE_LOCATION_MAX, location,
                          sizeof(location), res))
        return;
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    p[0] = DB_TEXT(id);
    p[1] = DB_TEXT(name);
    p[2] = has_location ? DB_TEXT(location) : DB_NULL;
    p[3] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO machines (id, name, location, status, created_at, updated_at) "
                 "VALUES ($1, $2, $3, 'OFFLINE', $4, $4)",
                 p, 4, NULL, NULL);
    if (rc == VEND_ECONFLICT) {
        http_reply_error(res, 409, "CONFLICT", "machine '%s' already exists", id);
        return;
    }
    if (rc < 0) {
        log_warnx("cannot register machine '%s': %s", id, db_errmsg(v->db));
        api_reply_err(res, rc, "cannot register machine '%s'", id);
        return;
    }
    log_info("registered machine '%s'", id);
    machine = machine_json(v, id, &rc);
    if (machine == NULL) {
        api_reply_err(res, rc, "cannot read machine '%s'", id);
        return;
    }
    http_reply_json(res, 201, machine);
}

void api_machines_list(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    json_t *machines = store_query_json(v->db, MACHINE_SELECT " ORDER BY id", NULL, 0);
    size_t i;

    (void)req;
    if (machines == NULL) {
        log_warnx("cannot list machines: %s", db_errmsg(v->db));
        api_reply_err(res, VEND_EDB, "cannot list machines");
        return;
    }
    for (i = 0; i < json_array_size(machines); i++)
        config_as_object(json_array_get(machines, i));
    http_reply_json(res, 200, json_pack("{s:o}", "machines", machines));
}

void api_machines_get(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "id", res);
    json_t *machine, *slots;
    int rc;

    if (id == NULL)
        return;
    machine = machine_json(v, id, &rc);
    if (machine == NULL) {
        api_reply_err(res, rc, "no machine '%s'", id);
        return;
    }
    slots = slots_json(v, id);
    if (slots == NULL) {
        json_decref(machine);
        api_reply_err(res, VEND_EDB, "cannot read the slots of machine '%s'", id);
        return;
    }
    json_object_set_new(machine, "slots", slots);
    http_reply_json(res, 200, machine);
}

void api_stock_get(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "machine_id", res);
    json_t *slots;
    int rc;

    if (id == NULL)
        return;
    rc = machine_exists(v, id);
    if (rc <= 0) {
        api_reply_err(res, rc < 0 ? rc : VEND_ENOTFOUND, "no machine '%s'", id);
        return;
    }
    slots = slots_json(v, id);
    if (slots == NULL) {
        api_reply_err(res, VEND_EDB, "cannot read the stock of machine '%s'", id);
        return;
    }
    http_reply_json(res, 200, json_pack("{s:s, s:o}", "machine_id", id, "slots", slots));
}

/* ---- PUT /api/machines/{id}/slots/{slot} -------------------------------------------------- */

/* The body; has_* says which fields were given. */
struct slot_input {
    bool has_name, has_price, has_capacity, has_stock, has_motor, has_version, has_inspection;
    char product_name[PRODUCT_NAME_MAX + 1];
    int64_t price, capacity, stock, motor_ms, version;
    bool needs_inspection;
};

struct slot_outcome {
    bool created;
    bool has_version;   /* for a conflict: the slot exists and has this version */
    bool price_changed; /* every slot showing the product changes with it */
    int64_t version;
    char why[160]; /* the rule broken, for VEND_EINVAL and VEND_ESTATE */
};

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

static bool read_slot_input(const json_t *body, struct slot_input *in, struct http_response *res)
{
    static const char *const fields[] = {"product_name",      "price",   "capacity",
                                         "current_stock",     "version", "needs_inspection",
                                         "motor_duration_ms", NULL};

    memset(in, 0, sizeof(*in));
    if (!api_fields_allowed(body, fields, res))
        return false;
    in->has_name = has_field(body, "product_name");
    in->has_price = has_field(body, "price");
    in->has_capacity = has_field(body, "capacity");
    in->has_stock = has_field(body, "current_stock");
    in->has_motor = has_field(body, "motor_duration_ms");
    in->has_version = has_field(body, "version");
    in->has_inspection = has_field(body, "needs_inspection");
    if (in->has_inspection && !json_is_boolean(json_object_get(body, "needs_inspection"))) {
        http_reply_error(res, 422, "INVALID_FIELD", "'needs_inspection' must be true or false");
        return false;
    }
    in->needs_inspection = json_is_true(json_object_get(body, "needs_inspection"));
    return api_field_string(body, "product_name", false, PRODUCT_NAME_MAX, in->product_name,
                            sizeof(in->product_name), res) &&
           api_field_int(body, "price", false, 0, PRICE_MAX, &in->price, res) &&
           api_field_int(body, "capacity", false, 0, CAPACITY_MAX, &in->capacity, res) &&
           api_field_int(body, "current_stock", false, 0, CAPACITY_MAX, &in->stock, res) &&
           api_field_int(body, "motor_duration_ms", false, VEND_TIMEOUT_MS_MIN, VEND_TIMEOUT_MS_MAX,
                         &in->motor_ms, res) &&
           api_field_int(body, "version", false, 1, INT64_MAX, &in->version, res);
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

static int stock_log_locked(struct vendd *v, const char *machine_id, int64_t slot_id,
                            const char *type, int64_t before, int64_t after, const char *reason,
                            const char *now_iso)
{
    struct db_value p[8] = {DB_TEXT(machine_id), DB_INT(slot_id), DB_TEXT(type),
                            DB_INT(before),      DB_INT(after),   DB_INT(after - before),
                            DB_TEXT(reason),     DB_TEXT(now_iso)};

    return db_exec(v->db,
                   "INSERT INTO stock_logs (machine_id, slot_id, change_type, quantity_before, "
                   "quantity_after, quantity_change, reason, performed_by, created_at) "
                   "VALUES ($1, $2, $3, $4, $5, $6, $7, 'operator', $8)",
                   p, 8, NULL, NULL);
}

static int slot_insert_locked(struct vendd *v, const char *machine_id, int64_t slot_number,
                              int64_t product_id, int64_t capacity, int64_t stock, int64_t motor_ms,
                              const char *now_iso)
{
    struct db_value p[7] = {DB_TEXT(machine_id), DB_INT(slot_number), DB_INT(product_id),
                            DB_INT(capacity),    DB_INT(stock),       DB_INT(motor_ms),
                            DB_TEXT(now_iso)};
    int64_t slot_id = 0;
    int rc;

    rc = store_query_int(v->db,
                         "INSERT INTO slots (machine_id, slot_number, product_id, capacity, "
                         "current_stock, motor_duration_ms, version, created_at, updated_at) "
                         "VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) RETURNING id",
                         p, 7, &slot_id);
    if (rc != 1)
        return rc < 0 ? rc : VEND_EINTERNAL;
    if (stock == 0)
        return VEND_OK;
    return stock_log_locked(v, machine_id, slot_id, "RESTOCK", 0, stock, "new slot", now_iso);
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

/*
 * Create or update slot_number of machine_id from in, in one transaction. Returns
 * VEND_OK; VEND_ENOTFOUND for an unknown machine; VEND_ECONFLICT when in->version is
 * not the slot's version (out->version tells it); VEND_EINVAL with out->why when the
 * fields do not make a valid slot; another VEND_E* from the database.
 */
static int slot_put(struct vendd *v, const char *machine_id, int64_t slot_number,
                    const struct slot_input *in, struct slot_outcome *out)
{
    struct db_value p[7] = {DB_TEXT(machine_id), DB_INT(slot_number)};
    struct slot_row cur = {0};
    char now_iso[STORE_ISO_SIZE];
    int64_t product_id, capacity, stock, motor_ms, reserved = 0;
    bool inspect;
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        return rc;
    rc = machine_exists(v, machine_id);
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
    capacity = in->has_capacity ? in->capacity : cur.capacity;
    stock = in->has_stock ? in->stock : cur.stock; /* 0 for a new slot */
    motor_ms = in->has_motor ? in->motor_ms : cur.found ? cur.motor_ms : MOTOR_MS_DEFAULT;
    inspect = in->has_inspection ? in->needs_inspection : cur.needs_inspection;
    if (stock > capacity) {
        snprintf(out->why, sizeof(out->why),
                 "'current_stock' %" PRId64 " exceeds the slot's 'capacity' %" PRId64, stock,
                 capacity);
        rc = VEND_EINVAL;
        goto out;
    }

    product_id = cur.product_id;
    if (in->has_name) {
        rc = product_upsert_locked(v, in, now_iso, &product_id, out);
    } else if (in->has_price && product_id == 0) {
        snprintf(out->why, sizeof(out->why),
                 "'product_name' is required: slot %" PRId64 " has no product", slot_number);
        rc = VEND_EINVAL;
    } else if (in->has_price) {
        p[0] = DB_INT(product_id);
        p[1] = DB_INT(in->price);
        p[2] = DB_TEXT(now_iso);
        rc = db_exec(v->db,
                     "UPDATE products SET price = $2, updated_at = $3 "
                     "WHERE id = $1 AND price <> $2",
                     p, 3, NULL, NULL);
        out->price_changed = rc == 1;
    }
    if (rc < 0)
        goto out;
    if (cur.found && product_id != cur.product_id) {
        rc = orders_reserved_units(v, cur.id, &reserved);
        if (rc < 0)
            goto out;
        if (reserved > 0) {
            snprintf(out->why, sizeof(out->why),
                     "slot %" PRId64 " has %" PRId64 " unit(s) promised to paid orders: its "
                     "product cannot change until they are dispensed",
                     slot_number, reserved);
            rc = VEND_ESTATE;
            goto out;
        }
    }

    if (!cur.found) {
        rc = slot_insert_locked(v, machine_id, slot_number, product_id, capacity, stock, motor_ms,
                                now_iso);
        if (rc < 0)
            goto out;
        out->version = 1;
    } else if (product_id != cur.product_id || capacity != cur.capacity || stock != cur.stock ||
               motor_ms != cur.motor_ms || inspect != cur.needs_inspection) {
        struct db_value q[8] = {DB_INT(cur.id),      DB_INT(product_id), DB_INT(capacity),
                                DB_INT(stock),       DB_INT(motor_ms),   DB_TEXT(now_iso),
                                DB_INT(cur.version), DB_INT(inspect)};

        rc = db_exec(v->db,
                     "UPDATE slots SET product_id = $2, capacity = $3, current_stock = $4, "
                     "motor_duration_ms = $5, needs_inspection = $8, version = version + 1, "
                     "updated_at = $6 WHERE id = $1 AND version = $7",
                     q, 8, NULL, NULL);
        if (rc != 1) {
            rc = rc < 0 ? rc : VEND_ECONFLICT;
            goto out;
        }
        out->version = cur.version + 1;
        if (stock != cur.stock) {
            rc = stock_log_locked(v, machine_id, cur.id, "MANUAL_ADJUST", cur.stock, stock,
                                  "slot update", now_iso);
            if (rc < 0)
                goto out;
        }
    }
    if (cur.found) {
        rc = resolve_alerts_locked(v, cur.id, in, now_iso);
        if (rc < 0)
            goto out;
    }
    if (out->price_changed) {
        /* The price shows on every slot of the product: a stale version must not win. */
        p[0] = DB_INT(product_id);
        p[1] = DB_TEXT(now_iso);
        rc = db_exec(v->db,
                     "UPDATE slots SET version = version + 1, updated_at = $2 "
                     "WHERE product_id = $1",
                     p, 2, NULL, NULL);
        if (rc < 0)
            goto out;
        p[0] = DB_TEXT(machine_id);
        p[1] = DB_INT(slot_number);
        rc = store_query_int(v->db,
                             "SELECT version FROM slots WHERE machine_id = $1 AND slot_number = $2",
                             p, 2, &out->version);
        if (rc < 0)
            goto out;
    }
    rc = db_commit(v->db);
out:
    if (rc < 0)
        db_rollback(v->db);
    return rc < 0 ? rc : VEND_OK;
}

void api_machines_put_slot(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "id", res);
    const char *slot_arg = http_param(req, "slot");
    struct slot_input in;
    struct slot_outcome out = {0};
    char *end = NULL;
    long slot;
    json_t *body;
    int rc;

    if (id == NULL)
        return;
    slot = slot_arg != NULL ? strtol(slot_arg, &end, 10) : 0;
    if (slot_arg == NULL || end == slot_arg || *end != '\0' || slot < VEND_SLOT_MIN ||
        slot > VEND_SLOT_MAX) {
        http_reply_error(res, 422, "INVALID_FIELD", "'slot' in the path must be %d to %d",
                         VEND_SLOT_MIN, VEND_SLOT_MAX);
        return;
    }
    if (!read_slot_input(req->json, &in, res))
        return;
    rc = slot_put(v, id, slot, &in, &out);
    switch (rc) {
    case VEND_OK:
        body = slot_json(v, id, slot);
        if (body == NULL) {
            api_reply_err(res, VEND_EDB, "cannot read slot %ld of machine '%s'", slot, id);
            return;
        }
        http_reply_json(res, out.created ? 201 : 200, body);
        break;
    case VEND_ENOTFOUND:
        http_reply_error(res, 404, "NOT_FOUND", "no machine '%s'", id);
        break;
    case VEND_ECONFLICT:
        /* Tell the current version so the operator can reload and retry. */
        http_reply_json(res, 409,
                        json_pack("{s:{s:s, s:s, s:o}}", "error", "code", "CONFLICT", "message",
                                  out.has_version ? "slot was changed since 'version'"
                                                  : "slot does not exist yet: omit 'version'",
                                  "version",
                                  out.has_version ? json_integer(out.version) : json_null()));
        break;
    case VEND_EINVAL:
        http_reply_error(res, 422, "INVALID_FIELD", "%s", out.why);
        break;
    case VEND_ESTATE:
        http_reply_error(res, 409, "WRONG_STATE", "%s", out.why);
        break;
    default:
        log_warnx("cannot update slot %ld of machine '%s': %s (%s)", slot, id, vend_strerror(rc),
                  db_errmsg(v->db));
        api_reply_err(res, rc, "cannot update slot %ld of machine '%s'", slot, id);
        break;
    }
}

/* ---- PUT /api/machines/{id}/config -------------------------------------------------------- */

void api_machines_put_config(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "id", res);
    struct vend_config cfg;
    int64_t motor = 0, drop = 0, interval = 0;
    char topic[VEND_TOPIC_MAX + 1], payload[VEND_PAYLOAD_MAX + 1], now_iso[STORE_ISO_SIZE];
    struct db_value p[3];
    static const char *const fields[] = {"motorTimeout", "dropSensorDelay", "telemetryInterval",
                                         NULL};
    int len, rc;

    if (id == NULL)
        return;
    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_int(req->json, "motorTimeout", true, VEND_MOTOR_TIMEOUT_MS_MIN,
                       VEND_MOTOR_TIMEOUT_MS_MAX, &motor, res) ||
        !api_field_int(req->json, "dropSensorDelay", true, 0, VEND_DROP_DELAY_MS_MAX, &drop, res) ||
        !api_field_int(req->json, "telemetryInterval", true, VEND_TELEMETRY_INTERVAL_MIN,
                       VEND_TELEMETRY_INTERVAL_MAX, &interval, res))
        return;
    cfg.motor_timeout_ms = (uint32_t)motor;
    cfg.drop_sensor_delay_ms = (uint32_t)drop;
    cfg.telemetry_interval_ms = (uint32_t)interval;
    /* The codec is the contract: what it will not encode, the machine would not accept. */
    len = vend_encode_config(payload, sizeof(payload), &cfg);
    rc = vend_topic_format(topic, sizeof(topic), id, VEND_TOPIC_CONFIG);
    if (len < 0 || rc < 0) {
        http_reply_error(res, 422, "INVALID_FIELD", "config for '%s' rejected by the codec: %s", id,
                         vend_strerror(len < 0 ? len : rc));
        return;
    }
    rc = machine_exists(v, id);
    if (rc <= 0) {
        api_reply_err(res, rc < 0 ? rc : VEND_ENOTFOUND, "no machine '%s'", id);
        return;
    }
    /* A NULL client is a vendd without a broker (tests, tools): unavailable too. */
    if (v->mqtt == NULL || !mqtt_client_connected(v->mqtt)) {
        http_reply_error(res, 503, "BROKER_UNAVAILABLE",
                         "the MQTT broker is not connected; config of '%s' not changed", id);
        return;
    }

    /*
     * Publish inside the transaction, so a publish that fails leaves the stored config
     * as it was. The publish only hands the message to libmosquitto (it never blocks),
     * and a retained config can always be pushed again if the COMMIT were to fail.
     */
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    p[0] = DB_TEXT(id);
    p[1] = DB_TEXT(payload);
    p[2] = DB_TEXT(now_iso);
    rc = db_exec(v->db, "UPDATE machines SET config = $2, updated_at = $3 WHERE id = $1", p, 3,
                 NULL, NULL);
    if (rc != 1) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    rc = mqtt_client_publish(v->mqtt, topic, payload, (size_t)len, 1, true, 0);
    if (rc == VEND_EIO) {
        /* The broker may hold it already (retained): keep the stored copy in step with what
         * machines may receive, and have the operator repeat the idempotent PUT. */
        if (db_commit(v->db) < 0)
            db_rollback(v->db);
        log_warnx("config of '%s' stored, but its publish to %s may have failed", id, topic);
        http_reply_error(res, 503, "BROKER_UNAVAILABLE",
                         "config of '%s' stored, but the broker may not have it: PUT it again", id);
        return;
    }
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0) {
        log_warnx("config of '%s' published to %s but not stored: %s", id, topic, db_errmsg(v->db));
        goto out;
    }
    log_info("config of '%s' published to %s: %s", id, topic, payload);
out:
    if (rc < 0) {
        db_rollback(v->db);
        if (rc != VEND_EUNAVAILABLE && rc != VEND_ENOTFOUND)
            log_warnx("cannot push the config of '%s': %s (%s)", id, vend_strerror(rc),
                      db_errmsg(v->db));
        api_reply_err(res, rc, "cannot push the config of '%s': %s", id, vend_strerror(rc));
        return;
    }
    http_reply_json(res, 200,
                    json_pack("{s:s, s:s, s:{s:I, s:I, s:I}}", "machine_id", id, "topic", topic,
                              "config", "motorTimeout", (json_int_t)motor, "dropSensorDelay",
                              (json_int_t)drop, "telemetryInterval", (json_int_t)interval));
}
