/*
 * routes.c - the route table: Midtrans's real paths (status, Snap, charge, actions)
 * with the name a test uses to arm failures on them, the control API under
 * /_fake/ (tools/fake-midtrans/README.md) and the browser pages.
 */
#include "routes.h"

static const struct route s_routes[] = {
    /* Midtrans: Snap and Core API. */
    {"POST", "/snap/v1/transactions", ROUTE_SNAP, "snap", BODY_REQUIRED, mt_snap_create},
    {"POST", "/v2/charge", ROUTE_CORE, "charge", BODY_REQUIRED, mt_charge},
    {"GET", "/v2/{id}/status", ROUTE_CORE, "status", BODY_NONE, mt_status},
    {"POST", "/v2/{id}/expire", ROUTE_CORE, "expire", BODY_OPTIONAL, mt_expire},
    {"POST", "/v2/{id}/cancel", ROUTE_CORE, "cancel", BODY_OPTIONAL, mt_cancel},
    {"POST", "/v2/{id}/refund", ROUTE_CORE, "refund", BODY_OPTIONAL, mt_refund},

    /* What a customer's browser or phone fetches. */
    {"GET", "/", ROUTE_PAGE, NULL, BODY_NONE, page_index},
    {"GET", "/snap/v2/vtweb/{token}", ROUTE_PAGE, NULL, BODY_NONE, page_snap},
    {"GET", "/v2/qris/{id}/qr-code", ROUTE_PAGE, NULL, BODY_NONE, page_qr},

    /* The control API for tests; fixed paths before the {action} pattern. */
    {"GET", "/_fake/requests", ROUTE_CONTROL, NULL, BODY_NONE, ctl_requests},
    {"DELETE", "/_fake/requests", ROUTE_CONTROL, NULL, BODY_NONE, ctl_requests_clear},
    {"GET", "/_fake/notifications", ROUTE_CONTROL, NULL, BODY_NONE, ctl_notifications},
    {"DELETE", "/_fake/notifications", ROUTE_CONTROL, NULL, BODY_NONE, ctl_notifications_clear},
    {"GET", "/_fake/transactions", ROUTE_CONTROL, NULL, BODY_NONE, ctl_transactions},
    {"GET", "/_fake/transactions/{id}", ROUTE_CONTROL, NULL, BODY_NONE, ctl_transaction},
    {"GET", "/_fake/fail", ROUTE_CONTROL, NULL, BODY_NONE, ctl_fail_get},
    {"POST", "/_fake/fail", ROUTE_CONTROL, NULL, BODY_REQUIRED, ctl_fail_set},
    {"DELETE", "/_fake/fail", ROUTE_CONTROL, NULL, BODY_NONE, ctl_fail_clear},
    {"GET", "/_fake/config", ROUTE_CONTROL, NULL, BODY_NONE, ctl_config_get},
    {"POST", "/_fake/config", ROUTE_CONTROL, NULL, BODY_REQUIRED, ctl_config_set},
    {"POST", "/_fake/reset", ROUTE_CONTROL, NULL, BODY_NONE, ctl_reset},
    {"POST", "/_fake/notify/{id}", ROUTE_CONTROL, NULL, BODY_OPTIONAL, ctl_notify},
    {"POST", "/_fake/{action}/{id}", ROUTE_CONTROL, NULL, BODY_OPTIONAL, ctl_action},
};

const struct route *routes_table(size_t *n)
{
    *n = sizeof(s_routes) / sizeof(s_routes[0]);
    return s_routes;
}
