/*
 * midtrans.c - the Snap and Core API endpoints: validate the body the way
 * Midtrans's Snap, QRIS and API reference docs say it does, call the store, answer in the
 * API's own error shape, and hand any notification to the notifier.
 *
 * http.c has already recorded the request, checked Basic auth, the content
 * type and that a body is a JSON object.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "routes.h"
#include "store.h"
#include "vend/err.h"

#define ITEMS_MAX     50      /* item_details entries we accept */
#define ITEM_NAME_MAX 50      /* Midtrans's item name limit */
#define QUANTITY_MAX  1000000 /* no vending machine sells more at once */
#define EXPIRY_MAX_S  (30 * 24 * 3600)
#define MSG_MAX       256

/* ---- answers ------------------------------------------------------------ */

static const struct {
    const char *code;
    const char *message;
} s_messages[] = {
    {"400", "One or more parameters in the payload is invalid."},
    {"401", "Transaction cannot be authorized with the current client/server key."},
    {"402", "Merchant doesn't have access for this payment type"},
    {"404", "Transaction doesn't exist."},
    {"406", "Duplicate order ID. order_id has already been utilized previously."},
    {"407", "Transaction has expired"},
    {"411", "Token id is missing, invalid, or timed out"},
    {"412", "Merchant cannot modify the status of the transaction"},
    {"413", "The request cannot be processed due to syntax error in the request body."},
    {"414", "Refund request is rejected due to invalid amount"},
    {"429", "API rate limit exceeded"},
    {"500", "Sorry. Our system is recovering from unexpected issues. Please retry."},
    {"502", "Internal server error"},
    {"503", "Sorry, the service is temporarily unavailable. Please retry."},
    {"504", "Internal server error"},
};

const char *mt_message(const char *code)
{
    size_t i;

    for (i = 0; i < sizeof(s_messages) / sizeof(s_messages[0]); i++) {
        if (strcmp(code, s_messages[i].code) == 0)
            return s_messages[i].message;
    }
    return "Refused by fake-midtrans";
}

static unsigned code_num(const char *code)
{
    char *end;
    unsigned long v = strtoul(code, &end, 10);

    return *end == '\0' && v >= 100 && v <= 599 ? (unsigned)v : 0;
}

/* Midtrans's status API docs (and its API reference) show Core API errors
 * such as 404, 406 and 412 in an HTTP 200 answer, with the real code in the
 * body; 401 is a real 401. "mirror" sends the body's code as the HTTP
 * status instead, for a client that must survive both. */
static unsigned core_http_status(struct fake *f, const char *code)
{
    struct store_settings st;
    unsigned n = code_num(code);

    if (n == 401)
        return 401;
    store_settings_get(f->store, &st);
    return st.core_http_mirror && n != 0 ? n : 200;
}

void mt_reply_core(struct fake *f, struct http_res *res, json_t *body)
{
    const char *code = json_string_value(json_object_get(body, "status_code"));

    http_reply_json(res, core_http_status(f, code ? code : "200"), body);
}

static void uuid_like(char out[37])
{
    /* Error ids only need to look like Midtrans's; a counter-free random
     * id keeps two errors apart in a log. */
    unsigned long a = (unsigned long)random(), b = (unsigned long)random();

    snprintf(out, 37, "%08lx-%04lx-4%03lx-a%03lx-%012lx", a & 0xffffffffUL, b & 0xffffUL,
             (a >> 4) & 0xfffUL, (b >> 8) & 0xfffUL, (a ^ (b << 16)) & 0xffffffffffffUL);
}

void mt_error(struct fake *f, enum route_kind kind, struct http_res *res, const char *code,
              const char *message, unsigned http_status)
{
    json_t *o;

    if (kind == ROUTE_SNAP) {
        unsigned n = code_num(code);

        http_reply_json(res, http_status ? http_status : (n >= 400 ? n : 400),
                        json_pack("{s:[s]}", "error_messages", message));
        return;
    }
    o = json_pack("{s:s,s:s}", "status_code", code, "status_message", message);
    if (strcmp(code, "404") == 0) {
        char id[37];

        uuid_like(id);
        json_object_set_new(o, "id", json_string(id));
    }
    if (http_status != 0)
        http_reply_json(res, http_status, o);
    else
        mt_reply_core(f, res, o);
}

/* A 400 listing every problem found, as Midtrans does. */
static void reply_invalid(struct fake *f, enum route_kind kind, struct http_res *res,
                          json_t *problems)
{
    json_t *o;

    if (kind == ROUTE_SNAP) {
        http_reply_json(res, 400, json_pack("{s:o}", "error_messages", problems));
        return;
    }
    o = json_pack("{s:s,s:s,s:o}", "status_code", "400", "status_message", mt_message("400"),
                  "validation_messages", problems);
    mt_reply_core(f, res, o);
}

static void reply_store_error(struct fake *f, enum route_kind kind, struct http_res *res, int rc)
{
    switch (rc) {
    case VEND_ENOTFOUND:
        mt_error(f, kind, res, "404", mt_message("404"), 0);
        break;
    case VEND_ECONFLICT:
        if (kind == ROUTE_SNAP)
            mt_error(f, kind, res, "400", "transaction_details.order_id has already been taken",
                     400);
        else
            mt_error(f, kind, res, "406", mt_message("406"), 0);
        break;
    case VEND_ESTATE:
        mt_error(f, kind, res, "412", mt_message("412"), 0);
        break;
    case VEND_ERANGE:
        mt_error(f, kind, res, "414", mt_message("414"), 0);
        break;
    case VEND_EDUPKEY:
        mt_error(f, kind, res, "406", "Duplicate refund ID", 0);
        break;
    case VEND_ENOSPACE:
        mt_error(f, kind, res, "500",
                 "fake-midtrans: storage limit reached (--max-transactions, or 16 refunds per "
                 "transaction); POST /_fake/reset",
                 500);
        break;
    default:
        mt_error(f, kind, res, "500", mt_message("500"), 500);
        break;
    }
}

/* ---- validation --------------------------------------------------------- */

static void problem(json_t *problems, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(json_t *problems, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(problems, json_string(msg));
}

/* order_id: alphanumeric plus - _ ~ . and at most 50 characters (Midtrans's Snap docs). */
static bool order_id_ok(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && len <= FAKE_ORDER_ID_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~.") == len;
}

/* gross_amount must be a JSON integer: IDR has no decimals and Midtrans
 * refuses decimal amounts (Midtrans's Snap docs). */
static bool amount_ok(const json_t *v, int64_t *out)
{
    json_int_t n;

    if (!json_is_integer(v))
        return false;
    n = json_integer_value(v);
    if (n <= 0 || n > STORE_AMOUNT_MAX)
        return false;
    *out = (int64_t)n;
    return true;
}

static void check_items(const json_t *items, int64_t gross, json_t *problems)
{
    int64_t sum = 0;
    bool ok = true;
    size_t i;
    json_t *it;

    if (!json_is_array(items)) {
        problem(problems, "%s must be an array", "item_details");
        return;
    }
    if (json_array_size(items) > ITEMS_MAX) {
        problem(problems, "%s has more than 50 entries", "item_details");
        return;
    }
    json_array_foreach(items, i, it)
    {
        const json_t *price = json_object_get(it, "price");
        const json_t *qty = json_object_get(it, "quantity");
        const json_t *name = json_object_get(it, "name");
        json_int_t p, q;

        if (!json_is_object(it) || !json_is_integer(price) || !json_is_integer(qty)) {
            problem(problems, "%s[] needs an integer price and quantity", "item_details");
            ok = false;
            continue;
        }
        p = json_integer_value(price);
        q = json_integer_value(qty);
        if (q < 1 || q > QUANTITY_MAX || p < -STORE_AMOUNT_MAX || p > STORE_AMOUNT_MAX) {
            problem(problems, "%s[] price or quantity out of range", "item_details");
            ok = false;
            continue;
        }
        if (!json_is_string(name) || json_string_length(name) == 0 ||
            json_string_length(name) > ITEM_NAME_MAX) {
            problem(problems, "%s[].name is required, at most 50 characters", "item_details");
            ok = false;
        }
        if (json_object_get(it, "id") != NULL && !json_is_string(json_object_get(it, "id")))
            problem(problems, "%s[].id must be a string", "item_details");
        sum += (int64_t)p * (int64_t)q;
        if (sum > STORE_AMOUNT_MAX * 1000 || sum < -STORE_AMOUNT_MAX * 1000) {
            problem(problems, "%s sum out of range", "item_details");
            return;
        }
    }
    if (ok && sum != gross)
        problem(problems, "%s is not equal to the sum of item_details",
                "transaction_details.gross_amount");
}

/* Splits an X-Override/X-Append-Notification header: up to 3 comma-separated
 * http(s) URLs (Midtrans's HTTP notification docs). */
static bool split_urls(const char *hdr, const char *name, char urls[][FAKE_URL_MAX + 1], size_t *n,
                       json_t *problems)
{
    const char *p = hdr;

    *n = 0;
    while (*p != '\0') {
        size_t len;

        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        len = strcspn(p, ",");
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (*n == FAKE_URLS_PER_HDR) {
            problem(problems, "%s: at most 3 URLs", name);
            return false;
        }
        if (len > FAKE_URL_MAX ||
            (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)) {
            problem(problems, "%s: each URL must be http(s) and at most 512 characters", name);
            return false;
        }
        memcpy(urls[*n], p, len);
        urls[(*n)++][len] = '\0';
        p += strcspn(p, ",");
    }
    return true;
}

/* What Snap and Core creation share: transaction_details, item_details,
 * customer_details and the notification headers. */
static void check_create(const struct http_req *req, struct store_create_req *rq, json_t *problems)
{
    const json_t *td = json_object_get(req->json, "transaction_details");
    const json_t *oid = json_object_get(td, "order_id");
    const json_t *gross = json_object_get(td, "gross_amount");
    const json_t *items = json_object_get(req->json, "item_details");
    const json_t *cust = json_object_get(req->json, "customer_details");

    if (!json_is_object(td)) {
        problem(problems, "%s is required", "transaction_details");
        return;
    }
    if (oid == NULL)
        problem(problems, "%s is required", "transaction_details.order_id");
    else if (!json_is_string(oid) || !order_id_ok(json_string_value(oid)))
        problem(problems, "%s must be 1 to 50 characters: letters, digits, '-', '_', '~' and '.'",
                "transaction_details.order_id");
    else
        snprintf(rq->order_id, sizeof(rq->order_id), "%s", json_string_value(oid));
    if (gross == NULL)
        problem(problems, "%s is required", "transaction_details.gross_amount");
    else if (!amount_ok(gross, &rq->gross_amount))
        problem(problems, "%s must be an integer from 1 to 999999999999",
                "transaction_details.gross_amount");
    else if (items != NULL)
        check_items(items, rq->gross_amount, problems);
    if (cust != NULL && !json_is_object(cust))
        problem(problems, "%s must be an object", "customer_details");
    if (req->x_override != NULL)
        split_urls(req->x_override, "X-Override-Notification", rq->override_urls, &rq->noverride,
                   problems);
    if (req->x_append != NULL)
        split_urls(req->x_append, "X-Append-Notification", rq->append_urls, &rq->nappend, problems);
}

static void send_note(struct fake *f, struct note *note)
{
    if (note != NULL)
        notifier_send(f->notifier, note, 1);
}

/* ---- endpoints ---------------------------------------------------------- */

void mt_snap_create(struct fake *f, const struct http_req *req, struct http_res *res)
{
    struct store_create_req rq;
    json_t *problems = json_array(), *out;
    struct note *note;
    int rc;

    memset(&rq, 0, sizeof(rq));
    rq.kind = STORE_SNAP;
    check_create(req, &rq, problems);
    if (json_array_size(problems) > 0) {
        reply_invalid(f, ROUTE_SNAP, res, problems);
        return;
    }
    json_decref(problems);
    rc = store_create(f->store, &rq, &out, &note);
    if (rc < 0) {
        reply_store_error(f, ROUTE_SNAP, res, rc);
        return;
    }
    send_note(f, note);
    http_reply_json(res, 201, out); /* Snap answers 201 Created */
}

static const char *const s_units[] = {"second", "minute", "hour", "day"};
static const int64_t s_unit_s[] = {1, 60, 3600, 86400};

static void check_charge(const struct http_req *req, struct store_create_req *rq, json_t *problems)
{
    const json_t *qris = json_object_get(req->json, "qris");
    const json_t *exp = json_object_get(req->json, "custom_expiry");
    const char *acq;

    if (qris != NULL) {
        acq = json_string_value(json_object_get(qris, "acquirer"));
        if (!json_is_object(qris))
            problem(problems, "%s must be an object", "qris");
        else if (json_object_get(qris, "acquirer") == NULL)
            ;
        else if (acq == NULL || (strcmp(acq, "gopay") != 0 && strcmp(acq, "airpay shopee") != 0))
            problem(problems, "%s must be \"gopay\" or \"airpay shopee\"", "qris.acquirer");
        else
            snprintf(rq->acquirer, sizeof(rq->acquirer), "%s", acq);
    }
    if (exp != NULL) {
        const json_t *dur = json_object_get(exp, "expiry_duration");
        const char *unit = json_string_value(json_object_get(exp, "unit"));
        size_t i;

        for (i = 0; unit != NULL && i < sizeof(s_units) / sizeof(s_units[0]); i++) {
            if (strcmp(unit, s_units[i]) == 0)
                break;
        }
        if (!json_is_object(exp) || !json_is_integer(dur) || json_integer_value(dur) < 1 ||
            unit == NULL || i == sizeof(s_units) / sizeof(s_units[0]) ||
            json_integer_value(dur) > EXPIRY_MAX_S / s_unit_s[i])
            problem(problems,
                    "%s needs an integer expiry_duration >= 1 and a unit (second, minute, "
                    "hour, day), at most 30 days",
                    "custom_expiry");
        else
            rq->expiry_s = (int64_t)json_integer_value(dur) * s_unit_s[i];
    }
}

void mt_charge(struct fake *f, const struct http_req *req, struct http_res *res)
{
    const json_t *pt = json_object_get(req->json, "payment_type");
    struct store_create_req rq;
    json_t *problems, *out;
    struct note *note;
    int rc;

    if (pt == NULL || !json_is_string(pt)) {
        problems = json_pack("[s]", "payment_type is required");
        reply_invalid(f, ROUTE_CORE, res, problems);
        return;
    }
    if (strcmp(json_string_value(pt), "qris") != 0) {
        /* The fake sells QRIS only, which is what the machines use. */
        mt_error(f, ROUTE_CORE, res, "402", mt_message("402"), 0);
        return;
    }
    memset(&rq, 0, sizeof(rq));
    rq.kind = STORE_CORE;
    problems = json_array();
    check_create(req, &rq, problems);
    check_charge(req, &rq, problems);
    if (json_array_size(problems) > 0) {
        reply_invalid(f, ROUTE_CORE, res, problems);
        return;
    }
    json_decref(problems);
    rc = store_create(f->store, &rq, &out, &note);
    if (rc < 0) {
        reply_store_error(f, ROUTE_CORE, res, rc);
        return;
    }
    send_note(f, note);
    mt_reply_core(f, res, out);
}

void mt_status(struct fake *f, const struct http_req *req, struct http_res *res)
{
    json_t *out;
    int rc = store_status(f->store, req->params[0], &out);

    if (rc < 0) {
        reply_store_error(f, ROUTE_CORE, res, rc);
        return;
    }
    mt_reply_core(f, res, out);
}

void mt_expire(struct fake *f, const struct http_req *req, struct http_res *res)
{
    struct note *note;
    json_t *out;
    int rc = store_expire(f->store, req->params[0], &out, &note);

    if (rc < 0) {
        reply_store_error(f, ROUTE_CORE, res, rc);
        return;
    }
    send_note(f, note);
    mt_reply_core(f, res, out);
}

void mt_cancel(struct fake *f, const struct http_req *req, struct http_res *res)
{
    struct note *note;
    json_t *out;
    int rc = store_cancel(f->store, req->params[0], &out, &note);

    if (rc < 0) {
        reply_store_error(f, ROUTE_CORE, res, rc);
        return;
    }
    send_note(f, note);
    mt_reply_core(f, res, out);
}

/* refund_key: [A-Za-z0-9_-] only (Midtrans's refund API reference). */
static bool refund_key_ok(const char *s)
{
    size_t len = strlen(s);

    return len > 0 && len <= STORE_REFUND_KEY_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == len;
}

void mt_refund(struct fake *f, const struct http_req *req, struct http_res *res)
{
    const json_t *key = json_object_get(req->json, "refund_key");
    const json_t *amount = json_object_get(req->json, "amount");
    const json_t *reason = json_object_get(req->json, "reason");
    struct store_refund_req rq;
    json_t *problems = json_array(), *out;
    struct note *note;
    int rc;

    memset(&rq, 0, sizeof(rq));
    if (key != NULL && (!json_is_string(key) || !refund_key_ok(json_string_value(key))))
        problem(problems, "%s must be 1 to 100 characters: letters, digits, '-' and '_'",
                "refund_key");
    else if (key != NULL)
        snprintf(rq.refund_key, sizeof(rq.refund_key), "%s", json_string_value(key));
    if (amount != NULL && !json_is_integer(amount))
        problem(problems, "%s must be an integer", "amount");
    if (reason != NULL &&
        (!json_is_string(reason) || json_string_length(reason) > STORE_REASON_MAX))
        problem(problems, "%s must be a string of at most 255 characters", "reason");
    else if (reason != NULL)
        snprintf(rq.reason, sizeof(rq.reason), "%s", json_string_value(reason));
    if (json_array_size(problems) > 0) {
        reply_invalid(f, ROUTE_CORE, res, problems);
        return;
    }
    json_decref(problems);
    if (amount != NULL) {
        json_int_t v = json_integer_value(amount);

        if (v <= 0 || v > STORE_AMOUNT_MAX) {
            mt_error(f, ROUTE_CORE, res, "414", mt_message("414"), 0);
            return;
        }
        rq.amount = (int64_t)v;
    }
    rc = store_refund(f->store, req->params[0], &rq, &out, &note);
    if (rc < 0) {
        reply_store_error(f, ROUTE_CORE, res, rc);
        return;
    }
    send_note(f, note);
    mt_reply_core(f, res, out);
}
