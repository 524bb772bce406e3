/*
 * routes.c - every HTTP route of vendd in one table (docs/HTTP-API.md lists the same).
 * Specific literal paths come before patterns that could capture them.
 */
#include "api.h"

#include <string.h>

#include "orders.h"
#include "slots.h"

#define OP HTTP_OPERATOR

const struct http_route api_routes[] = {
    {HTTP_GET, "/health", HTTP_PUBLIC, api_health},
    {HTTP_GET, "/metrics", OP, api_metrics},
    /* Public: the description of this table (daemon/openapi/openapi.json), no data. */
    {HTTP_GET, "/api/openapi.json", HTTP_PUBLIC, api_openapi},

    {HTTP_POST, "/api/dispense/trigger", OP, api_dispense_trigger},
    {HTTP_POST, "/api/dispense/settle", OP, api_dispense_settle},
    {HTTP_GET, "/api/dispense/status/{order_id}", OP, api_dispense_status},
    {HTTP_GET, "/api/dispense/logs/{machine_id}", OP, api_dispense_logs},

    /* Public: a customer's order (the handler asks for the operator for a manual one). */
    {HTTP_POST, "/api/orders", HTTP_PUBLIC, api_orders_create},
    {HTTP_GET, "/api/orders", OP, api_orders_list},
    {HTTP_GET, "/api/orders/{id}", OP | HTTP_CACHED, api_orders_get},
    {HTTP_POST, "/api/orders/{id}/cancel", HTTP_PUBLIC | HTTP_BODY_OPTIONAL, api_orders_cancel},

    /* Public: authenticated by its signature (payments.c). */
    {HTTP_POST, "/api/payments/webhook", HTTP_PUBLIC, api_payments_webhook},
    {HTTP_GET, "/api/refunds", OP, api_refunds_list},
    {HTTP_POST, "/api/refunds/{id}/done", OP, api_refunds_done},

    {HTTP_POST, "/api/machines", OP, api_machines_create},
    {HTTP_GET, "/api/machines", OP, api_machines_list},
    {HTTP_GET, "/api/machines/{id}", OP, api_machines_get},
    {HTTP_PUT, "/api/machines/{id}/slots/{slot}", OP, api_machines_put_slot},
    {HTTP_PUT, "/api/machines/{id}/config", OP, api_machines_put_config},
    {HTTP_GET, "/api/machines/{id}/telemetry", OP, api_machines_telemetry},
    {HTTP_GET, "/api/stock/{machine_id}", OP | HTTP_CACHED, api_stock_get},

    {HTTP_GET, "/api/alerts", OP, api_alerts_list},
    {HTTP_POST, "/api/alerts/{id}/resolve", OP | HTTP_BODY_OPTIONAL, api_alerts_resolve},
    /* Server-sent events: answered with a stream that lasts (domain/events.h). */
    {HTTP_GET, "/api/events", OP, api_events},

    {HTTP_GET, "/api/sales", OP, api_sales},

    /* Public: how a browser becomes the operator (session.h); a sign-in is rate limited. */
    {HTTP_GET, "/api/session", HTTP_PUBLIC, api_session_get},
    {HTTP_POST, "/api/session", HTTP_PUBLIC, api_session_create},
    {HTTP_DELETE, "/api/session", HTTP_PUBLIC, api_session_delete},

    /* Public: the purchase page's reads. A customer's order only with its status_key. */
    {HTTP_GET, "/api/buy/orders/{id}", HTTP_PUBLIC, api_buy_order},
    {HTTP_GET, "/api/buy/{machine_id}", HTTP_PUBLIC, api_buy_menu},

    /* Public: the dashboard and the purchase page, files compiled in; they hold no data. */
    {HTTP_GET, "/", HTTP_PUBLIC, api_web_index},
    {HTTP_GET, "/assets/{name}", HTTP_PUBLIC, api_web_asset},
    {HTTP_GET, "/buy/{machine_id}", HTTP_PUBLIC, api_web_buy},
};

const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);

/* What the answers of the HTTP_CACHED routes above read. */
static const struct {
    const char *pattern;
    const struct db_reads *reads;
} s_cached_reads[] = {
    {"/api/orders/{id}", &orders_get_reads},
    {"/api/stock/{machine_id}", &slots_stock_reads},
};

const struct db_reads *api_route_reads(const char *pattern)
{
    for (size_t i = 0; i < sizeof(s_cached_reads) / sizeof(s_cached_reads[0]); i++) {
        if (strcmp(s_cached_reads[i].pattern, pattern) == 0)
            return s_cached_reads[i].reads;
    }
    return NULL;
}
