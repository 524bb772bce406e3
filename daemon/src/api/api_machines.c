/*
 * api_machines.c - the machine, slot, stock and config routes (SPEC §3, §5;
 * docs/HTTP-API.md "Machines", "Slots and stock", "Config"). Each handler reads the
 * request, calls machines.c or slots.c, where the rules and the SQL are, and answers.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "machines.h"
#include "page.h"
#include "slots.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

/* Room for every message machines.c and slots.c answer with. */
#define WHY_SIZE 256

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

static bool has_field(const json_t *body, const char *key)
{
    const json_t *val = json_object_get(body, key);

    return val != NULL && !json_is_null(val);
}

/* ---- POST /api/machines, GET /api/machines[/{id}], GET /api/stock/{machine_id} ----------- */

void api_machines_create(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    char id[VEND_MACHINE_ID_MAX + 1], name[MACHINE_NAME_MAX + 1];
    char location[MACHINE_LOCATION_MAX + 1], why[WHY_SIZE];
    bool has_location = has_field(req->json, "location");
    static const char *const fields[] = {"id", "name", "location", NULL};
    json_t *machine;
    int rc;

    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "id", true, VEND_MACHINE_ID_MAX, id, sizeof(id), res))
        return;
    if (!vend_machine_id_valid(id)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'id' must match " VEND_MACHINE_ID_PATTERN);
        return;
    }
    if (strcmp(id, MACHINE_ID_RESERVED) == 0) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'id' '" MACHINE_ID_RESERVED "' is the backend's broker user, not a "
                         "machine's");
        return;
    }
    /* The name defaults to the id, as for the machine registered at first start. */
    memcpy(name, id, sizeof(id));
    if (!api_field_string(req->json, "name", false, MACHINE_NAME_MAX, name, sizeof(name), res))
        return;
    if (!api_field_string(req->json, "location", false, MACHINE_LOCATION_MAX, location,
                          sizeof(location), res))
        return;
    rc = machines_register(v, id, name, has_location ? location : NULL);
    if (rc == VEND_ECONFLICT) {
        http_reply_error(res, 409, "CONFLICT", "machine '%s' already exists", id);
        return;
    }
    if (rc < 0) {
        api_reply_err(res, rc, "cannot register machine '%s'", id);
        return;
    }
    rc = machines_get_json(v, id, false, &machine, why, sizeof(why));
    if (rc < 0) {
        api_reply_err(res, rc, "cannot read machine '%s'", id);
        return;
    }
    http_reply_json(res, 201, machine);
}

/* Machines by id; the array keeps its name from before lists had pages. */
static const struct page_spec s_machines_page = {"machines", 1, {{"id", PAGE_KEY_MACHINE_ID}}};

void api_machines_list(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    struct page pg;
    json_t *machines;

    if (!page_read(req, &s_machines_page, &pg, res))
        return;
    if (machines_page_json(v, pg.after ? pg.key[0] : NULL, page_rows(&pg), &machines) < 0) {
        api_reply_err(res, VEND_EDB, "cannot list machines");
        return;
    }
    page_reply(res, &s_machines_page, &pg, json_object(), "machines", machines);
}

void api_machines_get(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "id", res);
    char why[WHY_SIZE];
    json_t *machine;
    int rc;

    if (id == NULL)
        return;
    rc = machines_get_json(v, id, true, &machine, why, sizeof(why));
    if (rc < 0) {
        api_reply_err(res, rc, "%s", why);
        return;
    }
    http_reply_json(res, 200, machine);
}

void api_stock_get(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "machine_id", res);
    char *stock = NULL;
    int rc;

    if (id == NULL)
        return;
    rc = slots_stock_text(v, id, &stock);
    if (rc < 0) {
        api_reply_err(
            res, rc,
            rc == VEND_ENOTFOUND ? "no machine '%s'" : "cannot read the stock of machine '%s'", id);
        return;
    }
    res->status = 200;
    res->body = stock;
}

/* ---- GET /api/machines/{id}/telemetry ---------------------------------------------------- */

static const struct page_spec s_telemetry_page = {
    "telemetry", 2, {{"received_at", PAGE_KEY_TIME}, {"id", PAGE_KEY_ROWID}}};

void api_machines_telemetry(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "id", res);
    char why[WHY_SIZE];
    struct page pg;
    json_t *rows;
    int rc;

    if (id == NULL || !page_read(req, &s_telemetry_page, &pg, res))
        return;
    rc = machines_telemetry_json(v, id, pg.after ? pg.key[0] : NULL, pg.key_int[1], page_rows(&pg),
                                 &rows, why, sizeof(why));
    if (rc < 0) {
        api_reply_err(res, rc, "%s", why);
        return;
    }
    page_reply(res, &s_telemetry_page, &pg, json_pack("{s:s}", "machine_id", id), "items", rows);
}

/* ---- PUT /api/machines/{id}/slots/{slot} -------------------------------------------------- */

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
    return api_field_string(body, "product_name", false, SLOT_PRODUCT_NAME_MAX, in->product_name,
                            sizeof(in->product_name), res) &&
           api_field_int(body, "price", false, 0, SLOT_PRICE_MAX, &in->price, res) &&
           api_field_int(body, "capacity", false, 0, SLOT_CAPACITY_MAX, &in->capacity, res) &&
           api_field_int(body, "current_stock", false, 0, SLOT_CAPACITY_MAX, &in->stock, res) &&
           api_field_int(body, "motor_duration_ms", false, VEND_TIMEOUT_MS_MIN, VEND_TIMEOUT_MS_MAX,
                         &in->motor_ms, res) &&
           api_field_int(body, "version", false, 1, INT64_MAX, &in->version, res);
}

void api_machines_put_slot(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = path_machine_id(req, "id", res);
    struct slot_input in;
    struct slot_outcome out = {0};
    int64_t slot;
    json_t *body;
    int rc;

    if (id == NULL)
        return;
    if (!api_parse_decimal(http_param(req, "slot"), VEND_SLOT_MIN, VEND_SLOT_MAX, &slot)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'slot' in the path must be %d to %d",
                         VEND_SLOT_MIN, VEND_SLOT_MAX);
        return;
    }
    if (!read_slot_input(req->json, &in, res))
        return;
    rc = slots_put(v, id, slot, &in, &out);
    switch (rc) {
    case VEND_OK:
        if (slots_get_json(v, id, slot, &body) < 0) {
            api_reply_err(res, VEND_EDB, "cannot read slot %lld of machine '%s'", (long long)slot,
                          id);
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
        api_reply_err(res, rc, "cannot update slot %lld of machine '%s'", (long long)slot, id);
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
    static const char *const fields[] = {"motorTimeout", "dropSensorDelay", "telemetryInterval",
                                         NULL};
    char why[WHY_SIZE];
    json_t *pushed;
    int rc;

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
    rc = machines_push_config(v, id, &cfg, &pushed, why, sizeof(why));
    if (rc == VEND_EIO) {
        /* The broker failed, not vendd: 503 as for a broker that is down, though stored. */
        http_reply_error(res, 503, "BROKER_UNAVAILABLE", "%s", why);
        return;
    }
    if (rc < 0) {
        api_reply_err(res, rc, "%s", why);
        return;
    }
    http_reply_json(res, 200, pushed);
}
