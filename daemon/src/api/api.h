/*
 * api.h - the HTTP API handlers (SPEC §5; docs/HTTP-API.md) and the helpers
 * they share. The route table is in routes.c; each api_*.c file serves one
 * resource. Handlers get the struct vendd as ctx.
 */
#ifndef VENDD_API_H
#define VENDD_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "http.h"

struct db_reads;

struct vendd;

/* The route table, for app.c. */
extern const struct http_route api_routes[];
extern const size_t api_nroutes;
/* What the answer of the HTTP_CACHED route with this pattern reads (db_version_of()); NULL
 * for any other route: everything. */
const struct db_reads *api_route_reads(const char *pattern);

/*
 * Body field readers. On a missing (when required), mistyped or out-of-range field they
 * answer 422 INVALID_FIELD naming the field and the rule, and return false; the handler
 * then just returns. An absent optional field leaves *out untouched and returns true.
 * A string is 1..max_len bytes without NUL or any control character (C0, DEL, C1).
 */
bool api_field_string(const json_t *body, const char *key, bool required, size_t max_len, char *out,
                      size_t size, struct http_response *res);
bool api_field_int(const json_t *body, const char *key, bool required, int64_t min, int64_t max,
                   int64_t *out, struct http_response *res);

/*
 * Every key of body must be in allowed (NULL-terminated): a typo such as "stock" for
 * "current_stock" is answered 422 naming the key, never a silent 200. Returns false then.
 */
bool api_fields_allowed(const json_t *body, const char *const *allowed, struct http_response *res);

/*
 * The one way vendd reads a number from a path or a query string: decimal digits only, no
 * sign, space, leading zero ("0" itself aside), exponent or hex, from min to max (min >= 0).
 * strtol() would take " 5", "+5", "05" and "5 ", and wrap on overflow: "01" would be slot 1
 * behind a proxy or a log that sees another string. True with *out set; false otherwise,
 * *out untouched. NULL is false.
 */
bool api_parse_decimal(const char *s, int64_t min, int64_t max, int64_t *out);

/* Answer a VEND_E* error with its HTTP status and code (404, 409, 503, 422, else 500). */
void api_reply_err(struct http_response *res, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, for an answer given later (http_defer()). */
void api_deferred_err(struct http_deferred *d, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* api.c: GET /health, GET /metrics and GET /api/openapi.json */
void api_health(void *ctx, const struct http_request *req, struct http_response *res);
void api_metrics(void *ctx, const struct http_request *req, struct http_response *res);
void api_openapi(void *ctx, const struct http_request *req, struct http_response *res);

/* The OpenAPI description of the route table (daemon/openapi/openapi.json, compiled in by
 * daemon/openapi/embed.cmake): api_openapi_json_len bytes, NUL-terminated. */
extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;

/* api_dispense.c */
void api_dispense_trigger(void *ctx, const struct http_request *req, struct http_response *res);
void api_dispense_settle(void *ctx, const struct http_request *req, struct http_response *res);
void api_dispense_status(void *ctx, const struct http_request *req, struct http_response *res);
void api_dispense_logs(void *ctx, const struct http_request *req, struct http_response *res);

/* api_orders.c */
void api_orders_create(void *ctx, const struct http_request *req, struct http_response *res);
void api_orders_get(void *ctx, const struct http_request *req, struct http_response *res);
void api_orders_list(void *ctx, const struct http_request *req, struct http_response *res);
void api_orders_cancel(void *ctx, const struct http_request *req, struct http_response *res);

/* api_payments.c */
void api_payments_webhook(void *ctx, const struct http_request *req, struct http_response *res);
void api_refunds_list(void *ctx, const struct http_request *req, struct http_response *res);
void api_refunds_done(void *ctx, const struct http_request *req, struct http_response *res);

/* api_machines.c */
void api_machines_create(void *ctx, const struct http_request *req, struct http_response *res);
void api_machines_list(void *ctx, const struct http_request *req, struct http_response *res);
void api_machines_get(void *ctx, const struct http_request *req, struct http_response *res);
void api_machines_put_slot(void *ctx, const struct http_request *req, struct http_response *res);
void api_machines_put_config(void *ctx, const struct http_request *req, struct http_response *res);
void api_machines_telemetry(void *ctx, const struct http_request *req, struct http_response *res);
void api_stock_get(void *ctx, const struct http_request *req, struct http_response *res);

/* api_alerts.c */
void api_alerts_list(void *ctx, const struct http_request *req, struct http_response *res);
void api_alerts_resolve(void *ctx, const struct http_request *req, struct http_response *res);

/* api_events.c */
void api_events(void *ctx, const struct http_request *req, struct http_response *res);

/* api_web.c: the dashboard, its assets and the purchase page (web_assets.h) */
void api_web_index(void *ctx, const struct http_request *req, struct http_response *res);
void api_web_asset(void *ctx, const struct http_request *req, struct http_response *res);
void api_web_buy(void *ctx, const struct http_request *req, struct http_response *res);

/* An origin ("http://127.0.0.1:8080") fits in this, a URL of MIDTRANS_API_BASE's size too. */
#define API_ORIGIN_SIZE 520
/*
 * With payments through a Midtrans on loopback (the project's fake, as `make run` starts it),
 * its "simulate payment" URL ("<origin>/_fake/pay/", the order id appended) in url and its
 * origin in origin, and true; false with the real Midtrans (or none). The purchase page may
 * then call it (GET /api/buy/{machine_id} says "simulated_payments", its CSP allows it).
 */
bool api_simulated_payments(const struct vendd *v, char *url, size_t url_size, char *origin,
                            size_t origin_size);

/* api_session.c: the operator's sign-in (session.h). Sign-ins per client address a minute. */
#define API_SIGNIN_PER_MIN 10
void api_session_get(void *ctx, const struct http_request *req, struct http_response *res);
void api_session_create(void *ctx, const struct http_request *req, struct http_response *res);
void api_session_delete(void *ctx, const struct http_request *req, struct http_response *res);

/* api_buy.c: what a customer may buy now, and the status of a customer's order */
void api_buy_menu(void *ctx, const struct http_request *req, struct http_response *res);
void api_buy_order(void *ctx, const struct http_request *req, struct http_response *res);

/* api_sales.c */
void api_sales(void *ctx, const struct http_request *req, struct http_response *res);

#endif
