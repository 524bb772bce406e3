/* api_orders.c - POST /api/orders (the operator's manual order) and GET /api/orders/{id}. */
#include <string.h>

#include "api.h"
#include "orders.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

void api_orders_create(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    struct order_new in = {.nitems = 1, .items = {{.quantity = 1}}};
    char method[16] = "", why[256];
    static const char *const fields[] = {"id",       "machine_id",     "slot",
                                         "quantity", "payment_method", NULL};
    json_t *order;
    int rc;

    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "id", false, VEND_ORDER_ID_MAX, in.id, sizeof(in.id), res) ||
        !api_field_string(req->json, "machine_id", false, VEND_MACHINE_ID_MAX, in.machine_id,
                          sizeof(in.machine_id), res) ||
        !api_field_int(req->json, "slot", true, VEND_SLOT_MIN, VEND_SLOT_MAX, &in.items[0].slot,
                       res) ||
        !api_field_int(req->json, "quantity", false, 1, 100, &in.items[0].quantity, res) ||
        !api_field_string(req->json, "payment_method", true, sizeof(method) - 1, method,
                          sizeof(method), res))
        return;
    if (in.id[0] != '\0' && !vend_order_id_valid(in.id)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'id' must match " VEND_ORDER_ID_PATTERN);
        return;
    }
    if (in.machine_id[0] != '\0' && !vend_machine_id_valid(in.machine_id)) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'machine_id' must match " VEND_MACHINE_ID_PATTERN);
        return;
    }
    /* Customer orders (QRIS / Snap through Midtrans) come with the payment integration. */
    if (strcmp(method, "manual") != 0) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'payment_method' must be \"manual\" (got \"%s\")", method);
        return;
    }
    rc = orders_create_manual(v, &in, why, sizeof(why));
    if (rc < 0) {
        api_reply_err(res, rc, "%s", why);
        return;
    }
    if (orders_get_json(v, in.id, &order) < 0) {
        api_reply_err(res, VEND_EDB, "order '%s' was recorded but cannot be read back", in.id);
        return;
    }
    http_reply_json(res, 201, order);
}

void api_orders_get(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = http_param(req, "id");
    json_t *order = NULL;
    int rc = orders_get_json(v, id, &order);

    if (rc < 0) {
        api_reply_err(res, rc, rc == VEND_ENOTFOUND ? "no order '%s'" : "cannot read order '%s'",
                      id);
        return;
    }
    http_reply_json(res, 200, order);
}
