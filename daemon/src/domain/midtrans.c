/*
 * midtrans.c - Midtrans's API and notifications; see midtrans.h for what counts and why.
 * Bodies are built and read with jansson; nothing from Midtrans is used before it has been
 * checked for type and size.
 */
#include "midtrans.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "httpc.h"
#include "log.h"
#include "vend/err.h"
#include "xmalloc.h"

/* An answer larger than this is not one Midtrans sends. */
#define ANSWER_MAX (64 * 1024)

struct mt_call {
    struct mt_call *next;
    struct midtrans *m;
    enum midtrans_call call;
    uint64_t id;
    midtrans_done_fn *done;
    void *arg;
};

struct midtrans {
    struct httpc *httpc;
    char *server_key, *api_base, *snap_base, *notification_url;
    uint32_t connect_timeout_ms, timeout_ms;
    struct mt_call *calls;
};

/* ---- notifications ---------------------------------------------------------------------- */

/* Copy the string member key of obj into buf; "" when absent and optional. A required one
 * must not be empty either: a QRIS charge "created" with qr_string "" has nothing to pay. */
static int take_string(const json_t *obj, const char *key, bool required, char *buf, size_t size,
                       char *why, size_t why_size)
{
    const json_t *v = json_object_get(obj, key);
    const char *s;
    size_t len;

    buf[0] = '\0';
    if (v == NULL || json_is_null(v)) {
        if (!required)
            return VEND_OK;
        snprintf(why, why_size, "'%s' is missing", key);
        return VEND_EMISSING;
    }
    if (!json_is_string(v)) {
        snprintf(why, why_size, "'%s' is not a string", key);
        return VEND_ETYPE;
    }
    s = json_string_value(v);
    len = json_string_length(v);
    if (len == 0 && required) {
        snprintf(why, why_size, "'%s' is empty", key);
        return VEND_EMISSING;
    }
    if (len >= size || strlen(s) != len) {
        snprintf(why, why_size, "'%s' is longer than %zu bytes or holds a NUL", key, size - 1);
        return VEND_ERANGE;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            snprintf(why, why_size, "'%s' holds a control character", key);
            return VEND_ERANGE;
        }
    }
    memcpy(buf, s, len + 1);
    return VEND_OK;
}

/* "10000" or "10000.00" (at most two decimals, all zero) -> 10000: IDR has no cents, and
 * Midtrans writes amounts that way; anything else ("010000", "1e4", "10000.001") is refused. */
static int parse_amount(const char *s, int64_t *out)
{
    int64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
        return VEND_ERANGE;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10 || p - s >= 15)
            return VEND_ERANGE;
        v = v * 10 + (*p - '0');
    }
    if (*p == '.') {
        size_t zeros = strspn(p + 1, "0");

        if (zeros < 1 || zeros > 2)
            return VEND_ERANGE;
        p += 1 + zeros;
    }
    if (*p != '\0')
        return VEND_ERANGE;
    *out = v;
    return VEND_OK;
}

static bool all_of(const char *s, const char *set)
{
    return s[0] != '\0' && strspn(s, set) == strlen(s);
}

/* The notification fields of obj (a notification, or a status answer). */
static int read_notification(const json_t *obj, struct midtrans_notification *n, char *why,
                             size_t why_size)
{
    static const char order_chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~.";
    int rc;

    memset(n, 0, sizeof(*n));
    if (!json_is_object(obj)) {
        snprintf(why, why_size, "the body is not a JSON object");
        return VEND_ETYPE;
    }
    rc = take_string(obj, "order_id", true, n->order_id, sizeof(n->order_id), why, why_size);
    if (rc == VEND_OK && !all_of(n->order_id, order_chars)) {
        snprintf(why, why_size, "'order_id' must match [A-Za-z0-9_~.-]{1,%d}", VEND_ORDER_ID_MAX);
        rc = VEND_ERANGE;
    }
    if (rc == VEND_OK)
        rc = take_string(obj, "transaction_status", true, n->transaction_status,
                         sizeof(n->transaction_status), why, why_size);
    if (rc == VEND_OK)
        rc = take_string(obj, "status_code", true, n->status_code, sizeof(n->status_code), why,
                         why_size);
    if (rc == VEND_OK && !all_of(n->status_code, "0123456789")) {
        snprintf(why, why_size, "'status_code' is not a number");
        rc = VEND_ERANGE;
    }
    if (rc == VEND_OK)
        rc = take_string(obj, "gross_amount", true, n->gross_amount, sizeof(n->gross_amount), why,
                         why_size);
    if (rc == VEND_OK && parse_amount(n->gross_amount, &n->amount) < 0) {
        snprintf(why, why_size, "'gross_amount' is not whole rupiah");
        rc = VEND_ERANGE;
    }
    if (rc == VEND_OK)
        rc = take_string(obj, "transaction_id", false, n->transaction_id, sizeof(n->transaction_id),
                         why, why_size);
    if (rc == VEND_OK)
        rc = take_string(obj, "fraud_status", false, n->fraud_status, sizeof(n->fraud_status), why,
                         why_size);
    if (rc == VEND_OK)
        rc = take_string(obj, "payment_type", false, n->payment_type, sizeof(n->payment_type), why,
                         why_size);
    if (rc == VEND_OK)
        rc = take_string(obj, "signature_key", false, n->signature_key, sizeof(n->signature_key),
                         why, why_size);
    return rc;
}

int midtrans_parse_notification(const char *body, size_t len, struct midtrans_notification *n,
                                char *why, size_t why_size)
{
    json_error_t jerr;
    json_t *obj;
    int rc;

    memset(n, 0, sizeof(*n));
    if (len > MIDTRANS_NOTIFICATION_MAX) {
        snprintf(why, why_size, "the body exceeds %d bytes", MIDTRANS_NOTIFICATION_MAX);
        return VEND_ETOOBIG;
    }
    obj = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj == NULL) {
        snprintf(why, why_size, "not JSON: %s", jerr.text);
        return VEND_ESYNTAX;
    }
    rc = read_notification(obj, n, why, why_size);
    json_decref(obj);
    return rc;
}

void midtrans_sign(const struct midtrans_notification *n, const char *server_key,
                   char out[MIDTRANS_SIGNATURE_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    out[0] = '\0';
    if (ctx == NULL)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, n->order_id, strlen(n->order_id)) == 1 &&
        EVP_DigestUpdate(ctx, n->status_code, strlen(n->status_code)) == 1 &&
        EVP_DigestUpdate(ctx, n->gross_amount, strlen(n->gross_amount)) == 1 &&
        EVP_DigestUpdate(ctx, server_key, strlen(server_key)) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen * 2 == MIDTRANS_SIGNATURE_HEX) {
        for (unsigned int i = 0; i < mdlen; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 0xf];
        }
        out[MIDTRANS_SIGNATURE_HEX] = '\0';
    }
    EVP_MD_CTX_free(ctx);
}

bool midtrans_signature_ok(const struct midtrans_notification *n, const char *server_key)
{
    char want[MIDTRANS_SIGNATURE_HEX + 1], got[MIDTRANS_SIGNATURE_HEX + 1];

    if (strlen(n->signature_key) != MIDTRANS_SIGNATURE_HEX)
        return false;
    /* Lower-case what came (hex is not secret), then compare in constant time. */
    for (size_t i = 0; i <= MIDTRANS_SIGNATURE_HEX; i++)
        got[i] = n->signature_key[i] >= 'A' && n->signature_key[i] <= 'F'
                     ? (char)(n->signature_key[i] - 'A' + 'a')
                     : n->signature_key[i];
    midtrans_sign(n, server_key, want);
    return want[0] != '\0' && CRYPTO_memcmp(want, got, MIDTRANS_SIGNATURE_HEX) == 0;
}

enum midtrans_outcome midtrans_outcome_of(const struct midtrans_notification *n)
{
    const char *st = n->transaction_status;
    bool fraud_ok = n->fraud_status[0] == '\0' || strcmp(n->fraud_status, "accept") == 0;

    if ((strcmp(st, "settlement") == 0 || strcmp(st, "capture") == 0) && fraud_ok &&
        strcmp(n->status_code, "200") == 0)
        return MIDTRANS_PAID;
    if (strcmp(st, "pending") == 0)
        return MIDTRANS_PENDING;
    if (strcmp(st, "deny") == 0 || strcmp(st, "cancel") == 0 || strcmp(st, "failure") == 0)
        return MIDTRANS_CANCELLED;
    if (strcmp(st, "expire") == 0)
        return MIDTRANS_EXPIRED;
    if (strcmp(st, "refund") == 0 || strcmp(st, "partial_refund") == 0)
        return MIDTRANS_REFUNDED;
    return MIDTRANS_OTHER;
}

const char *midtrans_outcome_name(enum midtrans_outcome o)
{
    static const char *const names[] = {"PAID",    "PENDING",  "CANCELLED",
                                        "EXPIRED", "REFUNDED", "OTHER"};

    return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

/* ---- calls ------------------------------------------------------------------------------ */

int midtrans_new(struct midtrans **out, struct httpc *httpc, const struct midtrans_config *cfg)
{
    struct midtrans *m;

    *out = NULL;
    if (cfg->server_key == NULL || cfg->server_key[0] == '\0' || cfg->api_base == NULL ||
        cfg->snap_base == NULL || cfg->connect_timeout_ms == 0 || cfg->timeout_ms == 0) {
        log_warnx("Midtrans client: server key, base URLs and timeouts are required");
        return VEND_EINVAL;
    }
    m = xcalloc(1, sizeof(*m));
    m->httpc = httpc;
    m->server_key = xstrdup(cfg->server_key);
    m->api_base = xstrdup(cfg->api_base);
    m->snap_base = xstrdup(cfg->snap_base);
    m->notification_url = xstrdup(cfg->notification_url != NULL ? cfg->notification_url : "");
    m->connect_timeout_ms = cfg->connect_timeout_ms;
    m->timeout_ms = cfg->timeout_ms;
    *out = m;
    return VEND_OK;
}

static void unlink_call(struct midtrans *m, struct mt_call *c)
{
    for (struct mt_call **pp = &m->calls; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            return;
        }
    }
}

void midtrans_cancel(struct midtrans *m, uint64_t id)
{
    for (struct mt_call *c = m->calls; c != NULL; c = c->next) {
        if (c->id == id) {
            httpc_cancel(m->httpc, id);
            unlink_call(m, c);
            free(c);
            return;
        }
    }
}

void midtrans_free(struct midtrans *m)
{
    if (m == NULL)
        return;
    while (m->calls != NULL)
        midtrans_cancel(m, m->calls->id);
    free(m->server_key);
    free(m->api_base);
    free(m->snap_base);
    free(m->notification_url);
    free(m);
}

static const char *call_name(enum midtrans_call call)
{
    static const char *const names[] = {"Snap transaction", "QRIS charge", "status",
                                        "expire",           "cancel",      "refund"};

    return (unsigned)call < sizeof(names) / sizeof(names[0]) ? names[call] : "?";
}

/* The items as Midtrans's item_details. */
static json_t *items_json(const struct midtrans_request *req)
{
    json_t *items = json_array();

    for (size_t i = 0; i < req->nitems; i++)
        json_array_append_new(items, json_pack("{s:s, s:I, s:I, s:s}", "id", req->items[i].id,
                                               "price", (json_int_t)req->items[i].price, "quantity",
                                               (json_int_t)req->items[i].quantity, "name",
                                               req->items[i].name));
    return items;
}

static json_t *request_body(const struct midtrans_request *req)
{
    json_t *body = NULL, *details;

    switch (req->call) {
    case MIDTRANS_CREATE_SNAP:
    case MIDTRANS_CREATE_QRIS:
        details = json_pack("{s:s, s:I}", "order_id", req->order_id, "gross_amount",
                            (json_int_t)req->amount);
        body = json_pack("{s:o}", "transaction_details", details);
        if (req->nitems > 0)
            json_object_set_new(body, "item_details", items_json(req));
        if (req->call == MIDTRANS_CREATE_QRIS)
            json_object_set_new(body, "payment_type", json_string("qris"));
        /* The payment ends where the order does: a late payment would only be refunded.
         * QRIS: custom_expiry (Core API); Snap: page_expiry, the payment page's life. */
        if (req->expiry_minutes > 0 && req->call == MIDTRANS_CREATE_QRIS)
            json_object_set_new(body, "custom_expiry",
                                json_pack("{s:I, s:s}", "expiry_duration",
                                          (json_int_t)req->expiry_minutes, "unit", "minute"));
        if (req->expiry_minutes > 0 && req->call == MIDTRANS_CREATE_SNAP)
            json_object_set_new(body, "page_expiry",
                                json_pack("{s:I, s:s}", "duration", (json_int_t)req->expiry_minutes,
                                          "unit", "minutes"));
        break;
    case MIDTRANS_REFUND:
        body = json_pack("{s:s, s:I, s:s}", "refund_key", req->refund_key, "amount",
                         (json_int_t)req->amount, "reason", req->reason != NULL ? req->reason : "");
        break;
    case MIDTRANS_STATUS:
    case MIDTRANS_EXPIRE:
    case MIDTRANS_CANCEL:
        break;
    }
    return body;
}

/* The JSON status_code of an answer as a number, 0 if there is none. */
static long body_code(const json_t *obj, struct midtrans_result *res)
{
    const json_t *code = json_object_get(obj, "status_code");

    if (!json_is_string(code) || json_string_length(code) >= sizeof(res->status_code) ||
        !all_of(json_string_value(code), "0123456789"))
        return 0;
    memcpy(res->status_code, json_string_value(code), json_string_length(code) + 1);
    return strtol(res->status_code, NULL, 10);
}

static void set_detail(struct midtrans_result *res, const json_t *obj, const char *fallback)
{
    const json_t *msg = json_object_get(obj, "status_message");
    const json_t *errs = json_object_get(obj, "error_messages");

    if (json_is_array(errs))
        msg = json_array_get(errs, 0);
    snprintf(res->detail, sizeof(res->detail), "%.190s",
             json_is_string(msg) ? json_string_value(msg) : fallback);
}

/* Read what the call's success must carry. VEND_EIO if it is not there. */
static int read_success(enum midtrans_call call, const json_t *obj, struct midtrans_result *res)
{
    char why[160];
    int rc = VEND_OK;

    switch (call) {
    case MIDTRANS_CREATE_SNAP:
        rc = take_string(obj, "token", true, res->token, sizeof(res->token), why, sizeof(why));
        if (rc == VEND_OK)
            rc = take_string(obj, "redirect_url", true, res->redirect_url,
                             sizeof(res->redirect_url), why, sizeof(why));
        break;
    case MIDTRANS_CREATE_QRIS:
        rc = take_string(obj, "qr_string", true, res->qr_string, sizeof(res->qr_string), why,
                         sizeof(why));
        if (rc == VEND_OK)
            rc = take_string(obj, "transaction_id", true, res->transaction_id,
                             sizeof(res->transaction_id), why, sizeof(why));
        break;
    case MIDTRANS_STATUS:
        rc = read_notification(obj, &res->status, why, sizeof(why));
        break;
    case MIDTRANS_REFUND: {
        const json_t *amount = json_object_get(obj, "refund_amount");

        if (json_is_string(amount))
            rc = parse_amount(json_string_value(amount), &res->refund_amount);
        else if (json_is_integer(amount))
            res->refund_amount = json_integer_value(amount);
        if (rc < 0)
            snprintf(why, sizeof(why), "'refund_amount' is not whole rupiah");
        break;
    }
    case MIDTRANS_EXPIRE:
    case MIDTRANS_CANCEL:
        break;
    }
    if (rc < 0) {
        snprintf(res->detail, sizeof(res->detail), "unexpected answer: %s", why);
        return VEND_EIO;
    }
    return VEND_OK;
}

/* Turn an HTTP answer into a result: first the transport, then the HTTP and JSON codes. */
void midtrans_read_answer(enum midtrans_call call, const struct httpc_response *hr,
                          struct midtrans_result *res)
{
    json_error_t jerr;
    json_t *obj = NULL;
    long code;
    bool created = call == MIDTRANS_CREATE_SNAP;

    res->http_status = hr->status;
    if (hr->err < 0) {
        res->err = hr->err == VEND_ETOOBIG ? VEND_EIO : hr->err;
        snprintf(res->detail, sizeof(res->detail), "%s", hr->detail);
        return;
    }
    if (hr->status >= 500) {
        res->err = VEND_EUNAVAILABLE;
        snprintf(res->detail, sizeof(res->detail), "HTTP %ld", hr->status);
        return;
    }
    obj = json_loadb(hr->body, hr->len, 0, &jerr);
    if (!json_is_object(obj)) {
        res->err = VEND_EIO;
        snprintf(res->detail, sizeof(res->detail), "HTTP %ld with a body that is not JSON",
                 hr->status);
        goto out;
    }
    code = body_code(obj, res);
    set_detail(res, obj, "");
    if (hr->status == 401 || code == 401) {
        res->err = VEND_EAUTH;
    } else if (code >= 500) {
        res->err = VEND_EUNAVAILABLE;
    } else if (code == 404 || hr->status == 404) {
        res->err = VEND_ENOTFOUND;
    } else if ((code >= 400 && !(call == MIDTRANS_EXPIRE && code == 407)) ||
               (created && hr->status != 201) ||
               (!created && hr->status >= 300 && hr->status != code)) {
        /* Core answers carry their code in the body, in an HTTP 200 or mirrored in the
         * HTTP status; Snap uses HTTP statuses only, 201 for a new transaction. */
        res->err = VEND_ESTATE;
    } else {
        res->err = read_success(call, obj, res);
    }
out:
    json_decref(obj);
}

static void on_answer(void *arg, const struct httpc_response *hr)
{
    struct mt_call *c = arg;
    struct midtrans_result *res = xcalloc(1, sizeof(*res));

    midtrans_read_answer(c->call, hr, res);
    unlink_call(c->m, c);
    c->done(c->arg, res);
    free(res);
    free(c);
}

int midtrans_start(struct midtrans *m, const struct midtrans_request *req, midtrans_done_fn *done,
                   void *arg, uint64_t *id)
{
    char url[HTTPC_MAX_URL + 1], override[HTTPC_MAX_URL + 40];
    const char *headers[2] = {NULL, NULL};
    struct httpc_request hr = {0};
    struct mt_call *c;
    json_t *body;
    char *text = NULL;
    int rc;

    if (req->order_id == NULL || strlen(req->order_id) > MIDTRANS_ORDER_ID_MAX ||
        (req->call == MIDTRANS_REFUND && req->refund_key == NULL)) {
        log_warnx("Midtrans %s refused: order id or refund key missing or too long",
                  call_name(req->call));
        return VEND_EINVAL;
    }
    switch (req->call) {
    case MIDTRANS_CREATE_SNAP:
        snprintf(url, sizeof(url), "%s/transactions", m->snap_base);
        break;
    case MIDTRANS_CREATE_QRIS:
        snprintf(url, sizeof(url), "%s/v2/charge", m->api_base);
        break;
    case MIDTRANS_STATUS:
        snprintf(url, sizeof(url), "%s/v2/%s/status", m->api_base, req->order_id);
        break;
    case MIDTRANS_EXPIRE:
        snprintf(url, sizeof(url), "%s/v2/%s/expire", m->api_base, req->order_id);
        break;
    case MIDTRANS_CANCEL:
        snprintf(url, sizeof(url), "%s/v2/%s/cancel", m->api_base, req->order_id);
        break;
    case MIDTRANS_REFUND:
        snprintf(url, sizeof(url), "%s/v2/%s/refund", m->api_base, req->order_id);
        break;
    }
    body = request_body(req);
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (text == NULL)
            return VEND_ENOMEM;
    }
    /* Where the notifications of a new transaction go (X-Override-Notification). */
    if ((req->call == MIDTRANS_CREATE_SNAP || req->call == MIDTRANS_CREATE_QRIS) &&
        m->notification_url[0] != '\0') {
        snprintf(override, sizeof(override), "X-Override-Notification: %s", m->notification_url);
        headers[0] = override;
    }
    hr.method = req->call == MIDTRANS_STATUS ? "GET" : "POST";
    hr.url = url;
    hr.body = text;
    hr.body_len = text != NULL ? strlen(text) : 0;
    hr.basic_user = m->server_key;
    hr.headers = headers;
    hr.connect_timeout_ms = m->connect_timeout_ms;
    hr.total_timeout_ms = m->timeout_ms;
    hr.max_response = ANSWER_MAX;

    c = xcalloc(1, sizeof(*c));
    c->m = m;
    c->call = req->call;
    c->done = done;
    c->arg = arg;
    rc = httpc_start(m->httpc, &hr, on_answer, c, &c->id);
    free(text);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->next = m->calls;
    m->calls = c;
    if (id != NULL)
        *id = c->id;
    return VEND_OK;
}
