/*
 * api_buy.c - what the purchase page reads (docs/HTTP-API.md, "Purchase page"):
 * GET /api/buy/{machine_id}, the products a customer order would be accepted for now, and
 * GET /api/buy/orders/{id}?key=K, the customer's own order while it is paid and dropped.
 *
 * Both are public. The menu holds nothing the machine's front does not show; an order is read
 * only with the status_key its creation answered (POST /api/orders), and a wrong key is
 * answered exactly as an unknown order.
 */
#include "api.h"
#include "checkout.h"
#include "orders.h"
#include "vend/err.h"
#include "vendd.h"

void api_buy_menu(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = http_param(req, "machine_id");
    char url[API_ORIGIN_SIZE + 16], origin[API_ORIGIN_SIZE];
    json_t *menu = NULL;
    int rc;

    rc = orders_menu_json(v, id, checkout_available(v), &menu);
    if (rc < 0) {
        api_reply_err(res, rc,
                      rc == VEND_ENOTFOUND ? "no machine '%s'" : "cannot read machine '%s'", id);
        return;
    }
    if (api_simulated_payments(v, url, sizeof(url), origin, sizeof(origin)))
        json_object_set_new(menu, "simulated_payments", json_string(url));
    http_reply_json(res, 200, menu);
}

void api_buy_order(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id = http_param(req, "id");
    json_t *order = NULL;
    int rc = orders_customer_json(v, id, http_query(req, "key"), &order);

    if (rc < 0) {
        api_reply_err(res, rc, rc == VEND_ENOTFOUND ? "no order '%s'" : "cannot read order '%s'",
                      id);
        return;
    }
    http_reply_json(res, 200, order);
}
