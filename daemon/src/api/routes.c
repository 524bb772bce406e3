/*
 * routes.c - every HTTP route of vendd in one table (docs/HTTP-API.md lists the same).
 * Specific literal paths come before patterns that could capture them.
 */
#include "api.h"

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

/*
 * What the kept answers of the HTTP_CACHED routes share, for their deflated copies
 * (http_cache.h): a stock answer, then an order's (the larger and more often kept), with
 * their keys in the order the handlers write them. Only a better ratio if it matches: any
 * text is a correct dictionary.
 */
const char api_cache_dictionary[] =
    "{\"machine_id\":\"\",\"slots\":[{\"slot_number\":1,\"product_id\":1,\"product_name\":"
    "\"\",\"price\":5000,\"capacity\":10,\"current_stock\":10,\"motor_duration_ms\":null,"
    "\"sensor_level\":null,\"sensor_at\":null,\"needs_inspection\":0,\"version\":1,"
    "\"is_active\":1,\"updated_at\":\"2026-01-01T00:00:00.000Z\"}]}"
    "{\"id\":\"ORD\",\"machine_id\":\"\",\"status\":\"COMPLETED\",\"origin\":\"manual\","
    "\"payment_method\":\"manual\",\"quantity\":1,\"total_amount\":5000,\"failure_reason\":null,"
    "\"payment_url\":null,\"payment_token\":null,\"payment_qr\":null,\"paid_at\":\"2026-01-01T"
    "00:00:00.000Z\",\"dispensed_at\":\"2026-01-01T00:00:00.000Z\",\"expires_at\":null,"
    "\"created_at\":\"2026-01-01T00:00:00.000Z\",\"updated_at\":\"2026-01-01T00:00:00.000Z\","
    "\"items\":[{\"position\":1,\"slot\":1,\"product_name\":\"\",\"quantity\":1,\"unit_price\":"
    "5000,\"total\":5000}],\"units\":[{\"unit\":1,\"machine_id\":\"\",\"slot_number\":1,"
    "\"status\":\"SUCCESS\",\"timeout_ms\":30000,\"command_sent_at\":\"2026-01-01T00:00:00.000Z\","
    "\"deadline_at\":\"2026-01-01T00:00:00.000Z\",\"completed_at\":\"2026-01-01T00:00:00.000Z\","
    "\"duration_ms\":1000,\"success\":1,\"drop_detected\":1,\"error_message\":null,"
    "\"late_result\":0}],\"payment_events\":[],\"refund\":null}";
