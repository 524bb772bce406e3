/*
 * control.c - the test control API under /_fake/ and the two pages a
 * customer's browser or phone would fetch (the Snap payment page and the QR
 * image URL). Documented in tools/fake-midtrans/README.md.
 *
 * These calls act for everyone who is not the merchant: the customer who
 * pays, the bank that denies, Midtrans's own expiry and notification engine,
 * and the network between them (failure modes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "routes.h"
#include "store.h"
#include "vend/err.h"

#define NOTIFY_TIMES_MAX 20
#define FAIL_COUNT_MAX   1000
#define FAIL_DELAY_MAX   60000
#define PAGE_MAX         4096

/* Optional typed members of a control body; each returns false if the
 * member is present with the wrong type. */
static bool opt_string(const json_t *o, const char *key, const char **out)
{
    const json_t *v = json_object_get(o, key);

    if (v == NULL)
        return true;
    *out = json_string_value(v);
    return *out != NULL;
}

static bool opt_bool(const json_t *o, const char *key, bool *out)
{
    const json_t *v = json_object_get(o, key);

    if (v == NULL)
        return true;
    if (!json_is_boolean(v))
        return false;
    *out = json_is_true(v);
    return true;
}

static bool opt_uint(const json_t *o, const char *key, unsigned lo, unsigned hi, unsigned *out)
{
    const json_t *v = json_object_get(o, key);

    if (v == NULL)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return false;
    *out = (unsigned)json_integer_value(v);
    return true;
}

static bool url_ok(const char *u)
{
    return strlen(u) <= FAKE_URL_MAX &&
           (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0);
}

static uint64_t since_arg(const struct http_req *req)
{
    const char *s = http_query(req, "since");

    return s ? strtoull(s, NULL, 10) : 0;
}

/* ---- state changes and notifications ------------------------------------ */

void ctl_action(struct fake *f, const struct http_req *req, struct http_res *res)
{
    struct store_action_req rq = {.action = req->params[0], .notify = true};
    struct note *note;
    json_t *out;
    size_t queued = 0;
    int rc;

    if (req->json != NULL && (!opt_string(req->json, "transaction_status", &rq.status) ||
                              !opt_string(req->json, "fraud_status", &rq.fraud_status) ||
                              !opt_string(req->json, "payment_type", &rq.payment_type) ||
                              !opt_bool(req->json, "notify", &rq.notify))) {
        http_reply_error(res, 400,
                         "transaction_status, fraud_status and payment_type are "
                         "strings, notify is a boolean");
        return;
    }
    rc = store_action(f->store, req->params[1], &rq, &out, &note);
    switch (rc) {
    case 0:
        break;
    case VEND_ENOTFOUND:
        http_reply_error(res, 404, "no transaction '%s'", req->params[1]);
        return;
    case VEND_ESTATE:
        http_reply_error(res, 409,
                         "'%s' is not possible in the transaction's current status (see GET "
                         "/_fake/transactions/%s)",
                         rq.action, req->params[1]);
        return;
    default:
        http_reply_error(res, 400,
                         "unknown action '%s' or bad value: actions are pay, pending, expire, "
                         "deny, cancel, failure; pay takes transaction_status settlement or "
                         "capture, fraud_status accept, challenge or deny",
                         rq.action);
        return;
    }
    if (note != NULL)
        queued = notifier_send(f->notifier, note, 1);
    http_reply_json(
        res, 200,
        json_pack("{s:o,s:I}", "transaction", out, "notifications_queued", (json_int_t)queued));
}

void ctl_notify(struct fake *f, const struct http_req *req, struct http_res *res)
{
    const char *status = NULL, *url = NULL;
    bool bad_signature = false;
    unsigned times = 1;
    struct note *note;
    size_t queued;
    int rc;

    if (req->json != NULL && (!opt_uint(req->json, "times", 1, NOTIFY_TIMES_MAX, &times) ||
                              !opt_string(req->json, "transaction_status", &status) ||
                              !opt_bool(req->json, "bad_signature", &bad_signature) ||
                              !opt_string(req->json, "url", &url))) {
        http_reply_error(res, 400,
                         "times is 1..%d, transaction_status and url are strings, "
                         "bad_signature is a boolean",
                         NOTIFY_TIMES_MAX);
        return;
    }
    if (url != NULL && !url_ok(url)) {
        http_reply_error(res, 400, "url must be http(s) and at most %d characters", FAKE_URL_MAX);
        return;
    }
    rc = store_make_note(f->store, req->params[0], status, bad_signature, url, &note);
    switch (rc) {
    case 0:
        break;
    case VEND_ENOTFOUND:
        http_reply_error(res, 404, "no transaction '%s'", req->params[0]);
        return;
    case VEND_ESTATE:
        http_reply_error(res, 409, "'%s' has no status yet (a Snap order nobody has paid)",
                         req->params[0]);
        return;
    default:
        http_reply_error(res, 400, "unknown transaction_status '%s'", status ? status : "");
        return;
    }
    if (note->nurls == 0) {
        note_free(note);
        http_reply_error(res, 409,
                         "no notification URL: start with --notify-url, POST /_fake/config "
                         "{\"notify_url\":...}, pass \"url\", or create the order with "
                         "X-Override-Notification");
        return;
    }
    queued = notifier_send(f->notifier, note, times);
    http_reply_json(res, 200, json_pack("{s:I}", "queued", (json_int_t)queued));
}

/* ---- failure modes ------------------------------------------------------ */

static const char *const s_modes[] = {"", "http_error", "timeout", "garbage", "refuse"};

void ctl_fail_set(struct fake *f, const struct http_req *req, struct http_res *res)
{
    const char *endpoint = "any", *mode = NULL, *code = NULL, *msg = NULL, *body = NULL;
    struct store_fail fail;
    size_t i;

    memset(&fail, 0, sizeof(fail));
    fail.count = 1;
    if (!opt_string(req->json, "endpoint", &endpoint) || !opt_string(req->json, "mode", &mode) ||
        !opt_uint(req->json, "count", 1, FAIL_COUNT_MAX, &fail.count) ||
        !opt_uint(req->json, "http_status", 100, 599, &fail.http_status) ||
        !opt_uint(req->json, "delay_ms", 1, FAIL_DELAY_MAX, &fail.delay_ms) ||
        !opt_bool(req->json, "drop", &fail.drop) || !opt_string(req->json, "status_code", &code) ||
        !opt_string(req->json, "status_message", &msg) || !opt_string(req->json, "body", &body)) {
        http_reply_error(res, 400,
                         "fields: endpoint, mode, status_code, status_message and body are "
                         "strings; count 1..%d, http_status 100..599, delay_ms 1..%d, drop "
                         "boolean",
                         FAIL_COUNT_MAX, FAIL_DELAY_MAX);
        return;
    }
    for (i = 1; mode != NULL && i < sizeof(s_modes) / sizeof(s_modes[0]); i++) {
        if (strcmp(mode, s_modes[i]) == 0)
            fail.mode = (enum store_fail_mode)i;
    }
    switch (fail.mode) {
    case STORE_FAIL_HTTP:
        if (fail.http_status == 0)
            fail.http_status = 500;
        if (fail.http_status < 500) {
            http_reply_error(res, 400, "http_error takes an http_status of 500..599");
            return;
        }
        break;
    case STORE_FAIL_TIMEOUT:
        if (fail.delay_ms == 0) {
            http_reply_error(res, 400, "timeout needs delay_ms (1..%d)", FAIL_DELAY_MAX);
            return;
        }
        break;
    case STORE_FAIL_GARBAGE:
        if (body != NULL && strlen(body) > STORE_FAIL_BODY_MAX) {
            http_reply_error(res, 400, "body is at most %d bytes", STORE_FAIL_BODY_MAX);
            return;
        }
        snprintf(fail.body, sizeof(fail.body), "%s", body ? body : "");
        break;
    case STORE_FAIL_REFUSE:
        if (code == NULL || strlen(code) != 3 || strspn(code, "0123456789") != 3 ||
            (msg != NULL && strlen(msg) >= sizeof(fail.status_message))) {
            http_reply_error(res, 400,
                             "refuse needs a 3-digit status_code string (e.g. "
                             "\"412\") and a status_message under 256 characters");
            return;
        }
        snprintf(fail.status_code, sizeof(fail.status_code), "%s", code);
        snprintf(fail.status_message, sizeof(fail.status_message), "%s", msg ? msg : "");
        break;
    default:
        http_reply_error(res, 400, "mode is http_error, timeout, garbage or refuse");
        return;
    }
    if (store_fail_set(f->store, endpoint, &fail) < 0) {
        http_reply_error(res, 400,
                         "endpoint is snap, charge, status, expire, cancel, refund or any");
        return;
    }
    http_reply_json(res, 200, store_fail_json(f->store));
}

void ctl_fail_get(struct fake *f, const struct http_req *req, struct http_res *res)
{
    (void)req;
    http_reply_json(res, 200, store_fail_json(f->store));
}

void ctl_fail_clear(struct fake *f, const struct http_req *req, struct http_res *res)
{
    (void)req;
    store_fail_clear(f->store);
    http_reply_json(res, 200, store_fail_json(f->store));
}

/* ---- inspection --------------------------------------------------------- */

void ctl_requests(struct fake *f, const struct http_req *req, struct http_res *res)
{
    http_reply_json(res, 200, store_requests_json(f->store, since_arg(req)));
}

void ctl_requests_clear(struct fake *f, const struct http_req *req, struct http_res *res)
{
    (void)req;
    store_requests_clear(f->store);
    http_reply_json(res, 200, json_pack("{s:b}", "cleared", 1));
}

void ctl_notifications(struct fake *f, const struct http_req *req, struct http_res *res)
{
    http_reply_json(res, 200, notifier_log_json(f->notifier, since_arg(req)));
}

void ctl_notifications_clear(struct fake *f, const struct http_req *req, struct http_res *res)
{
    (void)req;
    notifier_reset(f->notifier);
    http_reply_json(res, 200, json_pack("{s:b}", "cleared", 1));
}

void ctl_transactions(struct fake *f, const struct http_req *req, struct http_res *res)
{
    (void)req;
    http_reply_json(res, 200, store_list_json(f->store));
}

void ctl_transaction(struct fake *f, const struct http_req *req, struct http_res *res)
{
    json_t *out;

    if (store_tx_json(f->store, req->params[0], &out) < 0) {
        http_reply_error(res, 404, "no transaction '%s'", req->params[0]);
        return;
    }
    http_reply_json(res, 200, out);
}

/* ---- settings ----------------------------------------------------------- */

static json_t *settings_json(const struct store_settings *st)
{
    return json_pack("{s:s,s:b,s:b,s:s}", "notify_url", st->notify_url, "notify_pending",
                     st->notify_pending, "auto_notify", st->auto_notify, "core_http_status",
                     st->core_http_mirror ? "mirror" : "200");
}

void ctl_config_get(struct fake *f, const struct http_req *req, struct http_res *res)
{
    struct store_settings st;

    (void)req;
    store_settings_get(f->store, &st);
    http_reply_json(res, 200, settings_json(&st));
}

void ctl_config_set(struct fake *f, const struct http_req *req, struct http_res *res)
{
    const char *url = NULL, *mode = NULL;
    struct store_settings st;

    store_settings_get(f->store, &st);
    if (!opt_string(req->json, "notify_url", &url) ||
        !opt_bool(req->json, "notify_pending", &st.notify_pending) ||
        !opt_bool(req->json, "auto_notify", &st.auto_notify) ||
        !opt_string(req->json, "core_http_status", &mode) ||
        (url != NULL && url[0] != '\0' && !url_ok(url)) ||
        (mode != NULL && strcmp(mode, "200") != 0 && strcmp(mode, "mirror") != 0)) {
        http_reply_error(res, 400,
                         "notify_url is an http(s) URL or \"\", notify_pending and auto_notify "
                         "are booleans, core_http_status is \"200\" or \"mirror\"");
        return;
    }
    if (url != NULL)
        snprintf(st.notify_url, sizeof(st.notify_url), "%s", url);
    if (mode != NULL)
        st.core_http_mirror = strcmp(mode, "mirror") == 0;
    store_settings_set(f->store, &st);
    http_reply_json(res, 200, settings_json(&st));
}

void ctl_reset(struct fake *f, const struct http_req *req, struct http_res *res)
{
    (void)req;
    store_reset(f->store);
    notifier_reset(f->notifier);
    http_reply_json(res, 200, json_pack("{s:b}", "reset", 1));
}

/* ---- pages -------------------------------------------------------------- */

void page_index(struct fake *f, const struct http_req *req, struct http_res *res)
{
    char text[PAGE_MAX];

    (void)req;
    snprintf(text, sizeof(text),
             "fake-midtrans: a fake Midtrans for tests and development.\n\n"
             "Midtrans API (Basic auth: server key as user, empty password):\n"
             "  POST %s/snap/v1/transactions   Snap: token + redirect_url\n"
             "  POST %s/v2/charge              Core: QRIS charge\n"
             "  GET  %s/v2/{id}/status\n"
             "  POST %s/v2/{id}/expire | cancel | refund\n\n"
             "Control API (no auth), see tools/fake-midtrans/README.md:\n"
             "  POST /_fake/pay/{order_id}      the customer pays: settlement + notification\n"
             "  POST /_fake/{pending|expire|deny|cancel|failure}/{order_id}\n"
             "  POST /_fake/notify/{order_id}   {times, transaction_status, bad_signature, url}\n"
             "  POST /_fake/fail                {endpoint, mode, count, ...}\n"
             "  GET  /_fake/requests | notifications | transactions[/{id}] | config\n"
             "  POST /_fake/config | reset\n",
             f->base, f->base, f->base, f->base);
    http_reply_text(res, 200, "text/plain; charset=utf-8", text);
}

/* The Snap payment page: one button that does what paying does. */
void page_snap(struct fake *f, const struct http_req *req, struct http_res *res)
{
    char order_id[FAKE_ORDER_ID_MAX + 1], page[PAGE_MAX];

    if (store_lookup_token(f->store, req->params[0], order_id, sizeof(order_id)) < 0) {
        http_reply_text(res, 404, "text/html; charset=utf-8",
                        "<!doctype html><title>fake-midtrans</title><p>Unknown Snap token.</p>\n");
        return;
    }
    /* order_id is [A-Za-z0-9_~.-] only, so it needs no HTML escaping. */
    snprintf(page, sizeof(page),
             "<!doctype html><title>fake-midtrans: pay %s</title>\n"
             "<h1>fake-midtrans</h1><p>Order <code>%s</code></p>\n"
             "<form method=post action=\"/_fake/pay/%s\"><button>Simulate payment "
             "(settlement)</button></form>\n"
             "<form method=post action=\"/_fake/pending/%s\"><button>Choose QRIS "
             "(pending)</button></form>\n",
             order_id, order_id, order_id, order_id);
    http_reply_text(res, 200, "text/html; charset=utf-8", page);
}

/* The "generate-qr-code" action URL: the QR payload as text (the real one
 * is a PNG image of it). */
void page_qr(struct fake *f, const struct http_req *req, struct http_res *res)
{
    char qr[300];

    if (store_qr_string(f->store, req->params[0], qr, sizeof(qr)) < 0) {
        http_reply_error(res, 404, "no QR for transaction '%s'", req->params[0]);
        return;
    }
    http_reply_text(res, 200, "text/plain; charset=utf-8", qr);
}
