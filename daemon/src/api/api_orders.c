/*
 * api_orders.c - POST /api/orders (a customer's order paid through Midtrans, or the
 * operator's manual order), GET /api/orders[/{id}], POST /api/orders/{id}/cancel.
 *
 * Order creation is public (a kiosk or a phone calls it), so a customer's order is bounded:
 * requests per client address (ORDER_RATE_PER_MIN) here, PENDING orders per machine
 * (ORDER_PENDING_MAX) in orders.c. A manual order needs the operator's credentials.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "conf.h"
#include "orders.h"
#include "order_status.h"
#include "page.h"
#include "checkout.h"
#include "ratelimit.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

/* "items": [{"slot": n, "quantity": q}, ...], or the single-item shorthand "slot"/"quantity". */
static bool read_items(const json_t *body, struct order_new *in, struct http_response *res)
{
    static const char *const item_fields[] = {"slot", "quantity", NULL};
    const json_t *items = json_object_get(body, "items"), *it;
    size_t i;

    if (items == NULL) {
        in->nitems = 1;
        in->items[0].quantity = 1;
        return api_field_int(body, "slot", true, VEND_SLOT_MIN, VEND_SLOT_MAX, &in->items[0].slot,
                             res) &&
               api_field_int(body, "quantity", false, 1, ORDER_UNITS_MAX, &in->items[0].quantity,
                             res);
    }
    if (json_object_get(body, "slot") != NULL || json_object_get(body, "quantity") != NULL) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "give 'items' or 'slot' and 'quantity', not both");
        return false;
    }
    if (!json_is_array(items) || json_array_size(items) == 0 ||
        json_array_size(items) > ORDER_ITEMS_MAX) {
        http_reply_error(res, 422, "INVALID_FIELD", "'items' must be an array of 1 to %d items",
                         ORDER_ITEMS_MAX);
        return false;
    }
    json_array_foreach(items, i, it)
    {
        if (!json_is_object(it)) {
            http_reply_error(res, 422, "INVALID_FIELD", "'items[%zu]' must be an object", i);
            return false;
        }
        in->items[i].quantity = 1;
        if (!api_fields_allowed(it, item_fields, res) ||
            !api_field_int(it, "slot", true, VEND_SLOT_MIN, VEND_SLOT_MAX, &in->items[i].slot,
                           res) ||
            !api_field_int(it, "quantity", false, 1, ORDER_UNITS_MAX, &in->items[i].quantity, res))
            return false;
    }
    in->nitems = json_array_size(items);
    return true;
}

/* The customer's answer: the order as recorded, with what to pay with. */
static void on_created(void *arg, const struct order_created *oc)
{
    struct http_deferred *d = arg;

    if (oc->err == VEND_ETIMEDOUT) {
        http_deferred_error(d, 504, "PAYMENT_GATEWAY_TIMEOUT",
                            "the payment gateway did not answer in time; order '%s' is cancelled, "
                            "nothing was charged: try again",
                            oc->order_id);
        return;
    }
    if (oc->err < 0) {
        http_deferred_error(d, 502, "PAYMENT_GATEWAY",
                            "the payment gateway failed (%s); order '%s' is cancelled, nothing "
                            "was charged",
                            oc->why, oc->order_id);
        return;
    }
    http_deferred_reply(d, 201,
                        json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s?, s:s?, s:s?}", "order_id",
                                  oc->order_id, "status", "PENDING", "payment_method",
                                  orders_payment_method_name(oc->method), "total_amount",
                                  (json_int_t)oc->total, "expires_at", oc->expires_at, "status_key",
                                  oc->status_key, "snap_token", oc->token[0] ? oc->token : NULL,
                                  "redirect_url", oc->redirect_url[0] ? oc->redirect_url : NULL,
                                  "qr_string", oc->qr_string[0] ? oc->qr_string : NULL));
}

static void create_manual(struct vendd *v, const struct http_request *req, struct order_new *in,
                          struct http_response *res)
{
    char why[256];
    json_t *order;
    int rc;

    if (!http_is_operator(req)) {
        http_reply_error(res, 403, "FORBIDDEN",
                         "a manual order needs the operator (a bearer token, or loopback in "
                         "development mode)");
        return;
    }
    rc = orders_create_manual(v, in, why, sizeof(why));
    if (rc < 0) {
        api_reply_err(res, rc, "%s", why);
        return;
    }
    if (orders_get_json(v, in->id, &order) < 0) {
        api_reply_err(res, VEND_EDB, "order '%s' was recorded but cannot be read back", in->id);
        return;
    }
    http_reply_json(res, 201, order);
}

static void create_customer(struct vendd *v, const struct http_request *req, struct order_new *in,
                            struct http_response *res)
{
    struct http_deferred *d;
    char why[256];
    int rc;

    if (in->id[0] != '\0') {
        http_reply_error(res, 422, "INVALID_FIELD", "'id' is the operator's: vendd names orders");
        return;
    }
    if (!ratelimit_take(v->order_limit, req->remote_addr, v->mono_ms())) {
        http_reply_error(res, 429, "TOO_MANY_REQUESTS",
                         "more than %u orders a minute from this address",
                         v->conf->order_rate_per_min);
        return;
    }
    d = http_defer(req);
    rc = checkout_create(v, in, why, sizeof(why), on_created, d);
    if (rc == VEND_OK)
        return;
    if (rc == VEND_ELIMIT)
        http_deferred_error(d, 429, "TOO_MANY_PENDING", "%s", why);
    else if (rc == VEND_EBUSY)
        http_deferred_error(d, 503, "BUSY", "the database is busy: try again");
    else if (rc == VEND_EUNAVAILABLE)
        http_deferred_error(d, 503, "PAYMENTS_UNAVAILABLE", "%s", why);
    else if (rc == VEND_EINVAL)
        http_deferred_error(d, 422, "INVALID_FIELD", "%s", why);
    else if (rc == VEND_ENOTFOUND)
        http_deferred_error(d, 404, "NOT_FOUND", "%s", why);
    else if (rc == VEND_ESTATE)
        http_deferred_error(d, 409, "WRONG_STATE", "%s", why);
    else
        http_deferred_error(d, 500, "INTERNAL", "cannot record the order: %s", why);
}

void api_orders_create(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    struct order_new in = {0};
    char method[16] = "";
    static const char *const fields[] = {"id",    "machine_id",     "slot", "quantity",
                                         "items", "payment_method", NULL};

    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "id", false, VEND_ORDER_ID_MAX, in.id, sizeof(in.id), res) ||
        !api_field_string(req->json, "machine_id", false, VEND_MACHINE_ID_MAX, in.machine_id,
                          sizeof(in.machine_id), res) ||
        !api_field_string(req->json, "payment_method", true, sizeof(method) - 1, method,
                          sizeof(method), res) ||
        !read_items(req->json, &in, res))
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
    if (orders_payment_method_parse(method, &in.method) < 0) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'payment_method' must be \"qris\", \"snap\" or \"manual\"");
        return;
    }
    if (in.method == PAYMENT_MANUAL)
        create_manual(v, req, &in, res);
    else
        create_customer(v, req, &in, res);
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

/* Newest first; the id breaks ties of created_at. */
static const struct page_spec s_orders_page = {
    "orders", 2, {{"created_at", PAGE_KEY_TIME}, {"id", PAGE_KEY_ORDER_ID}}};

void api_orders_list(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *machine_id = http_query(req, "machine_id"), *status = http_query(req, "status");
    enum order_status st;
    char names[ORDER_STATUS_COUNT * ORDER_STATUS_SIZE] = "";
    struct page pg;
    json_t *rows;

    if (machine_id != NULL && !vend_machine_id_valid(machine_id)) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'machine_id' must match " VEND_MACHINE_ID_PATTERN);
        return;
    }
    if (status != NULL && order_status_parse(status, &st) < 0) {
        for (int i = 0; i < ORDER_STATUS_COUNT; i++)
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                     i > 0 ? ", " : "", order_status_name((enum order_status)i));
        http_reply_error(res, 422, "INVALID_FIELD", "'status' must be one of %s", names);
        return;
    }
    if (!page_read(req, &s_orders_page, &pg, res))
        return;
    if (orders_page_json(v, machine_id, status, pg.after ? pg.key[0] : NULL,
                         pg.after ? pg.key[1] : NULL, page_rows(&pg), &rows) < 0) {
        api_reply_err(res, VEND_EDB, "cannot list orders");
        return;
    }
    page_reply(res, &s_orders_page, &pg, json_object(), "items", rows);
}

/*
 * Public: the operator cancels any order; a customer only with the order's status_key
 * (?key=), and anything else is answered as an unknown order, so an order id alone cancels
 * nothing and tells nothing, not even the status.
 */
void api_orders_cancel(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = http_param(req, "id"), *key = http_query(req, "key");
    char status[ORDER_STATUS_SIZE];
    int rc = checkout_cancel(v, id, http_is_operator(req) ? NULL : key != NULL ? key : "", status);

    switch (rc) {
    case VEND_OK:
        http_reply_json(res, 200, json_pack("{s:s, s:s}", "order_id", id, "status", status));
        break;
    case VEND_ENOTFOUND:
        http_reply_error(res, 404, "NOT_FOUND", "no order '%s'", id);
        break;
    case VEND_ESTATE:
        http_reply_json(res, 409,
                        json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "WRONG_STATE", "message",
                                  "only an order waiting for payment can be cancelled", "status",
                                  status));
        break;
    default:
        api_reply_err(res, rc, "cannot cancel order '%s'", id);
        break;
    }
}
