/* api_dispense.c - POST /api/dispense/trigger and the dispense views (SPEC §4 rule 8). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "db.h"
#include "dispense.h"
#include "dispense_group.h"
#include "log.h"
#include "machines.h"
#include "orders.h"
#include "page.h"
#include "settle.h"
#include "store.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

/* Newest command first, then the units never sent (machines.h); the array keeps its name
 * from before lists had pages. */
static const struct page_spec s_logs_page = {
    "logs", 2, {{"command_sent_at", PAGE_KEY_TIME_NULL}, {"id", PAGE_KEY_ROWID}}};

/* The trigger's answer, once its group has committed (dispense_group.h). */
static void trigger_answer(void *arg, const char *order_id, int rc, const char *status, bool sent)
{
    struct http_deferred *d = arg;
    char msg[128];

    switch (rc) {
    case VEND_OK:
        http_deferred_reply(d, 200,
                            json_pack("{s:s, s:s, s:b}", "order_id", order_id, "status", status,
                                      "command_sent", sent));
        break;
    case VEND_ESTATE:
        snprintf(msg, sizeof(msg), "order '%s' is %s, not PAID", order_id, status);
        http_deferred_reply(d, 409,
                            json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "WRONG_STATE",
                                      "message", msg, "status", status));
        break;
    case VEND_ENOTFOUND:
        http_deferred_error(d, 404, "NOT_FOUND", "no order '%s'", order_id);
        break;
    case VEND_EUNAVAILABLE:
        http_deferred_error(d, 503, "BROKER_UNAVAILABLE",
                            "the MQTT broker is not connected; order '%s' stays PAID", order_id);
        break;
    default:
        api_deferred_err(d, rc, "cannot trigger order '%s'", order_id);
        break;
    }
}

/* Answered once the trigger has committed with the others of this loop turn (one fsync for
 * them all): dispense_group.h. */
void api_dispense_trigger(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    char order_id[VEND_ORDER_ID_MAX + 1];
    static const char *const fields[] = {"order_id", NULL};

    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "order_id", true, VEND_ORDER_ID_MAX, order_id,
                          sizeof(order_id), res))
        return;
    if (!vend_order_id_valid(order_id)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'order_id' must match " VEND_ORDER_ID_PATTERN);
        return;
    }
    dispense_group_trigger(v, order_id, trigger_answer, http_defer(req));
}

/* An operator's word on an UNSETTLED unit, after looking at the machine (settle.h). */
void api_dispense_settle(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    static const char *const fields[] = {"order_id", "unit", "dropped", NULL};
    char order_id[VEND_ORDER_ID_MAX + 1];
    const json_t *dropped = json_object_get(req->json, "dropped");
    int64_t unit = 1;
    json_t *order = NULL;
    int rc;

    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "order_id", true, VEND_ORDER_ID_MAX, order_id,
                          sizeof(order_id), res) ||
        !api_field_int(req->json, "unit", false, VEND_UNIT_MIN, VEND_UNIT_MAX, &unit, res))
        return;
    if (!vend_order_id_valid(order_id)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'order_id' must match " VEND_ORDER_ID_PATTERN);
        return;
    }
    if (!json_is_boolean(dropped)) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'dropped' is required: true if the product fell, false if not");
        return;
    }
    rc = settle_by_operator(v, order_id, unit, json_is_true(dropped));
    switch (rc) {
    case VEND_OK:
        if (orders_get_json(v, order_id, &order) < 0) {
            api_reply_err(res, VEND_EDB, "order '%s' settled, but cannot be read back", order_id);
            return;
        }
        http_reply_json(res, 200,
                        json_pack("{s:s, s:O, s:O}", "order_id", order_id, "status",
                                  json_object_get(order, "status"), "units",
                                  json_object_get(order, "units")));
        json_decref(order);
        break;
    case VEND_ESTATE:
        http_reply_error(res, 409, "WRONG_STATE",
                         "order '%s' unit %lld is not UNSETTLED: only a unit waiting for its "
                         "machine's word can be settled by hand",
                         order_id, (long long)unit);
        break;
    case VEND_ENOTFOUND:
        http_reply_error(res, 404, "NOT_FOUND", "no unit %lld of order '%s'", (long long)unit,
                         order_id);
        break;
    default:
        api_reply_err(res, rc, "cannot settle order '%s' unit %lld", order_id, (long long)unit);
        break;
    }
}

void api_dispense_status(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = http_param(req, "order_id");
    json_t *order = NULL;
    int rc = orders_get_json(v, id, &order);

    if (rc < 0) {
        api_reply_err(res, rc, rc == VEND_ENOTFOUND ? "no order '%s'" : "cannot read order '%s'",
                      id);
        return;
    }
    http_reply_json(res, 200,
                    json_pack("{s:s, s:O, s:O}", "order_id", id, "status",
                              json_object_get(order, "status"), "units",
                              json_object_get(order, "units")));
    json_decref(order);
}

void api_dispense_logs(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *machine_id = http_param(req, "machine_id");
    char why[256];
    struct page pg;
    json_t *logs;
    int rc;

    if (!page_read(req, &s_logs_page, &pg, res))
        return;
    rc = machines_dispense_logs_json(v, machine_id, pg.key[0][0] != '\0' ? pg.key[0] : NULL,
                                     pg.key_int[1], page_rows(&pg), &logs, why, sizeof(why));
    if (rc < 0) {
        api_reply_err(res, rc, "%s", why);
        return;
    }
    page_reply(res, &s_logs_page, &pg, json_pack("{s:s}", "machine_id", machine_id), "logs", logs);
}
