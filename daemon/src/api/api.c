/* api.c - helpers shared by the handlers, and the health, metrics and OpenAPI endpoints. */
#include "api.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dispense_result.h"
#include "metrics.h"
#include "mqtt.h"
#include "vend/err.h"
#include "vendd.h"
#include "xmalloc.h"

/*
 * Unicode's control characters (C0, DEL, C1) in the UTF-8 jansson guarantees. Text fields
 * end up in the dashboard, CSV exports and log lines, where a newline or an escape
 * sequence forges or hides content; no product or place name needs one.
 */
static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return true;
        if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9f)
            return true;
    }
    return false;
}

bool api_field_string(const json_t *body, const char *key, bool required, size_t max_len, char *out,
                      size_t size, struct http_response *res)
{
    const json_t *val = json_object_get(body, key);
    size_t len;

    if (val == NULL || json_is_null(val)) {
        if (required)
            http_reply_error(res, 422, "INVALID_FIELD", "'%s' is required", key);
        return !required;
    }
    if (!json_is_string(val)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'%s' must be a string", key);
        return false;
    }
    len = json_string_length(val);
    if (len == 0 || len > max_len || len >= size || strlen(json_string_value(val)) != len) {
        http_reply_error(res, 422, "INVALID_FIELD", "'%s' must be 1 to %zu bytes, without NUL", key,
                         max_len < size ? max_len : size - 1);
        return false;
    }
    if (has_control(json_string_value(val), len)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'%s' must not contain control characters",
                         key);
        return false;
    }
    memcpy(out, json_string_value(val), len + 1);
    return true;
}

bool api_field_int(const json_t *body, const char *key, bool required, int64_t min, int64_t max,
                   int64_t *out, struct http_response *res)
{
    const json_t *val = json_object_get(body, key);

    if (val == NULL || json_is_null(val)) {
        if (required)
            http_reply_error(res, 422, "INVALID_FIELD", "'%s' is required", key);
        return !required;
    }
    if (!json_is_integer(val) || json_integer_value(val) < min || json_integer_value(val) > max) {
        http_reply_error(res, 422, "INVALID_FIELD", "'%s' must be an integer from %lld to %lld",
                         key, (long long)min, (long long)max);
        return false;
    }
    *out = json_integer_value(val);
    return true;
}

bool api_parse_decimal(const char *s, int64_t min, int64_t max, int64_t *out)
{
    int64_t v = 0;

    if (s == NULL || s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1] != '\0'))
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool api_fields_allowed(const json_t *body, const char *const *allowed, struct http_response *res)
{
    const char *key;
    json_t *val;

    json_object_foreach((json_t *)body, key, val)
    {
        const char *const *a = allowed;

        while (*a != NULL && strcmp(*a, key) != 0)
            a++;
        if (*a == NULL) {
            http_reply_error(res, 422, "INVALID_FIELD", "unknown field '%.64s'", key);
            return false;
        }
    }
    return true;
}

/* The HTTP status and error code of a VEND_E* (500 INTERNAL for the rest). */
static void err_status(int err, int *status, const char **code)
{
    static const struct {
        int err;
        int status;
        const char *code;
    } map[] = {
        {VEND_ENOTFOUND, 404, "NOT_FOUND"},       {VEND_ESTATE, 409, "WRONG_STATE"},
        {VEND_ECONFLICT, 409, "CONFLICT"},        {VEND_EUNAVAILABLE, 503, "BROKER_UNAVAILABLE"},
        {VEND_EINVAL, 422, "INVALID_FIELD"},      {VEND_ERANGE, 422, "INVALID_FIELD"},
        {VEND_ECONSTRAINT, 422, "INVALID_FIELD"}, {VEND_EBUSY, 503, "BUSY"},
    };

    *status = 500;
    *code = "INTERNAL";
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (map[i].err == err) {
            *status = map[i].status;
            *code = map[i].code;
        }
    }
}

void api_reply_err(struct http_response *res, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int status;
    const char *code;

    err_status(err, &status, &code);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error(res, status, code, "%s", msg);
}

void api_deferred_err(struct http_deferred *d, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int status;
    const char *code;

    err_status(err, &status, &code);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_deferred_error(d, status, code, "%s", msg);
}

void api_health(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    bool mqtt_up = mqtt_client_connected(v->mqtt);

    (void)req;
    /* 200 while vendd can take orders; the broker's state is reported, not fatal.
     * mqtt_connected is the dispense session (commands and results). */
    http_reply_json(res, 200,
                    json_pack("{s:s, s:s, s:b, s:b}", "status", "ok", "version", VENDD_VERSION,
                              "mqtt_connected", mqtt_up, "mqtt_telemetry_connected",
                              mqtt_client_connected(v->mqtt_bulk)));
}

/* Both sessions' counters, summed: the series keep the names they had with one session. */
static struct mqtt_stats mqtt_stats_sum(const struct vendd *v)
{
    struct mqtt_stats sum = {0};
    const struct mqtt_client *const clients[] = {v->mqtt, v->mqtt_bulk};

    for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
        const struct mqtt_stats *s = clients[i] != NULL ? mqtt_client_stats(clients[i]) : NULL;

        if (s == NULL)
            continue;
        sum.received += s->received;
        sum.published += s->published;
        sum.publish_failed += s->publish_failed;
        sum.reconnects += s->reconnects;
    }
    return sum;
}

void api_metrics(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    struct mqtt_stats mq = mqtt_stats_sum(v);

    v->metrics.results_waiting = dispense_results_waiting(v);
    v->metrics.ingest_batch_open = v->ingest_batched;
    if (v->http != NULL) {
        const struct http_stats *hs = http_server_stats(v->http);

        v->metrics.http_refused_per_address = hs->refused_per_address;
        v->metrics.http_refused_full = hs->refused_full;
        v->metrics.http_closed_header_deadline = hs->closed_header_deadline;
        v->metrics.http_closed_body_deadline = hs->closed_body_deadline;
        v->metrics.http_connections_open = hs->open;
    }
    (void)req;
    res->status = 200;
    res->body = metrics_render(&v->metrics, &mq);
    res->content_type = "text/plain; version=0.0.4";
}

void api_openapi(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    res->status = 200;
    res->body = xmalloc(api_openapi_json_len + 1);
    memcpy(res->body, api_openapi_json, api_openapi_json_len + 1);
}
