/*
 * routes.h - the route table of fake-midtrans and the handlers it names.
 *
 * Three families: Midtrans's own API (Snap and Core, real paths, checked
 * and recorded by http.c before the handler runs; midtrans.c), the test
 * control API under /_fake/ (control.c) and two browser pages (control.c).
 * A route is a row; http.c matches rows in order, so a fixed path goes
 * before a pattern that would also match it.
 */
#ifndef FAKE_MIDTRANS_ROUTES_H
#define FAKE_MIDTRANS_ROUTES_H

#include <stddef.h>

#include "fake.h"
#include "http.h"

enum route_kind {
    ROUTE_SNAP,    /* Snap API: errors are {"error_messages":[...]} */
    ROUTE_CORE,    /* Core API: errors are {"status_code","status_message"} */
    ROUTE_CONTROL, /* /_fake/: not recorded, no auth */
    ROUTE_PAGE,    /* what a browser would fetch: not recorded, no auth */
};

enum route_body {
    BODY_NONE,     /* a body is ignored */
    BODY_OPTIONAL, /* JSON object if present */
    BODY_REQUIRED, /* JSON object */
};

typedef void route_fn(struct fake *f, const struct http_req *req, struct http_res *res);

struct route {
    const char *method;
    const char *pattern; /* "/v2/{id}/status": {x} matches one non-empty segment */
    enum route_kind kind;
    const char *endpoint; /* failure-injection name (Midtrans routes) */
    enum route_body body;
    route_fn *fn;
};

const struct route *routes_table(size_t *n);

/* midtrans.c */
route_fn mt_snap_create, mt_charge, mt_status, mt_expire, mt_cancel, mt_refund;
/*
 * A Midtrans error in the shape of the route's API: Core gets status_code,
 * status_message (and "id" for 404); Snap gets error_messages. http_status 0
 * means "as Midtrans would": Snap uses the code itself, Core uses HTTP 200
 * (or the code, with core_http_status "mirror"), 401 always being 401.
 */
void mt_error(struct fake *f, enum route_kind kind, struct http_res *res, const char *code,
              const char *message, unsigned http_status);
/* A Core API success or error body: the HTTP status follows its status_code
 * as mt_error describes. body is stolen. */
void mt_reply_core(struct fake *f, struct http_res *res, json_t *body);
/* The usual message for a Midtrans status code, for refusals. */
const char *mt_message(const char *code);

/* control.c */
route_fn ctl_action, ctl_notify, ctl_fail_set, ctl_fail_get, ctl_fail_clear, ctl_requests,
    ctl_requests_clear, ctl_notifications, ctl_notifications_clear, ctl_transactions,
    ctl_transaction, ctl_config_get, ctl_config_set, ctl_reset, page_index, page_snap, page_qr;

#endif
