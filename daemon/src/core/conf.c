/*
 * conf.c - the option table, the value parsers and the .env reader.
 *
 * Adding a variable means one row in s_opts (and a line in docs/CONFIG.md and
 * deploy/vendd.env.example); parsing, defaults and printing follow the row.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "xmalloc.h"

enum opt_type {
    OPT_STRING,   /* free text up to the field's size (no control characters) */
    OPT_BOOL,     /* true/false, yes/no, 1/0, case-insensitive */
    OPT_UINT,     /* decimal, min..max, into an unsigned int */
    OPT_HOST,     /* IPv4/IPv6 literal or host name */
    OPT_DBURL,    /* sqlite:PATH | postgres[ql]://... ; fills db_kind, sqlite_path */
    OPT_MQTTURL,  /* mqtt[s]://host[:port] ; fills mqtt_host, mqtt_port, mqtt_tls */
    OPT_HTTPURL,  /* http[s]://host[:port][/path], stored without trailing '/' */
    OPT_MACHINE,  /* VEND_MACHINE_ID_PATTERN, vend_machine_id_valid() */
    OPT_CLIENTID, /* CONF_CLIENT_ID_PATTERN */
    OPT_GROUP,    /* CONF_SHARED_GROUP_PATTERN */
    OPT_LOGFMT,   /* text | json, into an enum log_format */
};

struct conf_opt {
    const char *name;
    enum opt_type type;
    unsigned long min, max; /* OPT_UINT only */
    const char *def;        /* parsed like a user value; NULL = unset or derived */
    size_t offset;          /* of the field in struct vendd_conf */
    size_t size;            /* of that field */
    bool secret;            /* never echoed or printed */
};

#define FIELD(f) offsetof(struct vendd_conf, f), sizeof(((struct vendd_conf *)0)->f)

static const struct conf_opt s_opts[] = {
    {"PORT", OPT_UINT, 0, 65535, "3001", FIELD(port), false},
    {"HOST", OPT_HOST, 0, 0, "0.0.0.0", FIELD(host), false},
    {"DATABASE_URL", OPT_DBURL, 0, 0, "sqlite:var/vendd.db", FIELD(database_url), false},
    {"MQTT_BROKER_URL", OPT_MQTTURL, 0, 0, "mqtt://localhost:1883", FIELD(mqtt_broker_url), false},
    {"MQTT_USERNAME", OPT_STRING, 0, 0, NULL, FIELD(mqtt_username), false},
    {"MQTT_PASSWORD", OPT_STRING, 0, 0, NULL, FIELD(mqtt_password), true},
    {"MQTT_CA_FILE", OPT_STRING, 0, 0, NULL, FIELD(mqtt_ca_file), false},
    /* Fixed, not derived from the host name or PORT: the broker keys vendd's session on it,
     * and a restart must find the results queued there (SPEC §2). */
    {"MQTT_CLIENT_ID", OPT_CLIENTID, 0, 0, "vendd", FIELD(mqtt_client_id), false},
    /* Several vendd on one PostgreSQL and one broker: the MQTT v5 shared subscription group
     * ($share/G/vm/+/...) the broker spreads the machines' messages over. */
    {"MQTT_SHARED_GROUP", OPT_GROUP, 0, 0, NULL, FIELD(mqtt_shared_group), false},
    {"MACHINE_ID", OPT_MACHINE, 0, 0, "VM01", FIELD(machine_id), false},
    {"API_TOKEN", OPT_STRING, 0, 0, NULL, FIELD(api_token), true},
    {"MIDTRANS_SERVER_KEY", OPT_STRING, 0, 0, NULL, FIELD(midtrans_server_key), true},
    {"MIDTRANS_IS_PRODUCTION", OPT_BOOL, 0, 0, "false", FIELD(midtrans_is_production), false},
    {"MIDTRANS_API_BASE", OPT_HTTPURL, 0, 0, NULL, FIELD(midtrans_api_base), false},
    {"MIDTRANS_SNAP_BASE", OPT_HTTPURL, 0, 0, NULL, FIELD(midtrans_snap_base), false},
    /* Where Midtrans sends the notifications of the transactions vendd creates
     * (X-Override-Notification); unset: the URL in the Midtrans dashboard. */
    {"MIDTRANS_NOTIFICATION_URL", OPT_HTTPURL, 0, 0, NULL, FIELD(midtrans_notification_url), false},
    /* A whole Midtrans call; a customer waits for order creation this long at most. */
    {"MIDTRANS_TIMEOUT_MS", OPT_UINT, 500, 60000, "10000", FIELD(midtrans_timeout_ms), false},
    /* >= 1 s: the command's MQTT message expiry is this grace in whole seconds, and a
     * command must never outlive its deadline (SPEC §3). */
    {"DISPENSE_RESULT_GRACE_MS", OPT_UINT, 1000, 600000, "5000", FIELD(dispense_result_grace_ms),
     false},
    {"DISPENSE_DISPATCH_TTL_S", OPT_UINT, 1, 86400, "60", FIELD(dispense_dispatch_ttl_s), false},
    {"ORDER_PAYMENT_TTL_S", OPT_UINT, 60, 86400, "900", FIELD(order_payment_ttl_s), false},
    /* Customer order creation needs no token (a kiosk or a phone calls it): bounded. */
    {"ORDER_PENDING_MAX", OPT_UINT, 1, 1000, "5", FIELD(order_pending_max), false},
    {"ORDER_RATE_PER_MIN", OPT_UINT, 1, 10000, "10", FIELD(order_rate_per_min), false},
    /* A refund call without an answer is retried after this, doubling to an hour. */
    {"REFUND_RETRY_S", OPT_UINT, 1, 3600, "30", FIELD(refund_retry_s), false},
    /* Raw telemetry rows; the hourly rollup and the latest reading are kept for good. */
    {"TELEMETRY_RETENTION_DAYS", OPT_UINT, 1, 3650, "30", FIELD(telemetry_retention_days), false},
    /* A machine OFFLINE this long raises MACHINE_OFFLINE (0: at once); a reconnect within it
     * raises nothing, so a flaky link does not page anyone. */
    {"MACHINE_OFFLINE_ALERT_S", OPT_UINT, 0, 86400, "60", FIELD(machine_offline_alert_s), false},
    /* A slot whose count falls to this share of its capacity (at least 1 unit) raises
     * LOW_STOCK; 0: never. */
    {"LOW_STOCK_PERCENT", OPT_UINT, 0, 99, "20", FIELD(low_stock_percent), false},
    {"LOG_FORMAT", OPT_LOGFMT, 0, 0, "text", FIELD(log_format), false},
    /* The HTTP API's connections (docs/internals/http.md, "Limits"): one client must not
     * hold them all, and the host's own clients keep a reserve. */
    {"HTTP_MAX_CONNECTIONS", OPT_UINT, 16, 100000, "1000", FIELD(http_max_connections), false},
    {"HTTP_LOCAL_RESERVE", OPT_UINT, 0, 99999, "100", FIELD(http_local_reserve), false},
    /* 0 = no cap: behind a reverse proxy every client has the proxy's address. */
    {"HTTP_PER_ADDRESS_MAX", OPT_UINT, 0, 100000, "32", FIELD(http_per_address_max), false},
    {"HTTP_HEADER_TIMEOUT_S", OPT_UINT, 1, 600, "10", FIELD(http_header_timeout_s), false},
    {"HTTP_BODY_TIMEOUT_S", OPT_UINT, 1, 3600, "30", FIELD(http_body_timeout_s), false},
};

#define NOPTS (sizeof s_opts / sizeof s_opts[0])

/* Bytes of a rejected value echoed back: enough to recognise it, short enough for one line. */
#define ECHO_MAX 64

#define MIDTRANS_API_SANDBOX  "https://api.sandbox.midtrans.com"
#define MIDTRANS_SNAP_SANDBOX "https://app.sandbox.midtrans.com/snap/v1"
#define MIDTRANS_API_PROD     "https://api.midtrans.com"
#define MIDTRANS_SNAP_PROD    "https://app.midtrans.com/snap/v1"

static void *field_of(struct vendd_conf *conf, const struct conf_opt *o)
{
    return (char *)conf + o->offset;
}

static const void *cfield_of(const struct vendd_conf *conf, const struct conf_opt *o)
{
    return (const char *)conf + o->offset;
}

/* Copies s into dst[size]; fails instead of truncating. */
static int copy_str(char *dst, size_t size, const char *s, size_t len)
{
    if (len >= size)
        return VEND_ETOOBIG;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return VEND_OK;
}

/* ---- value checks ---- */

static bool has_control(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

static bool client_id_valid(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '.' && s[n] != '-')
            return false;
    }
    return n >= 1 && n <= CONF_CLIENT_ID_MAX;
}

/* A shared subscription's group is one topic level: no '/', '+' or '#'; kept to a safe set. */
static bool group_valid(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
            return false;
    }
    return n >= 1 && n <= CONF_SHARED_GROUP_MAX;
}

static bool all_digits(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* A DNS name: labels of 1..63 letters, digits and '-', not starting or ending with '-'. */
static bool hostname_valid(const char *s, size_t len)
{
    size_t label = 0;
    bool last_numeric = true;

    if (len == 0 || len > CONF_HOST_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            last_numeric = all_digits(s + i - label, label);
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
        if (label == 0 && s[i] == '-')
            return false;
        label++;
        if (label > 63)
            return false;
    }
    /* "999.1.1.1" is a bad IPv4 address, not a name: top-level labels are never numeric. */
    return !last_numeric;
}

static bool ipv4_valid(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static bool ipv6_valid(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, s, &a) == 1;
}

static bool host_valid(const char *s)
{
    return ipv4_valid(s) || ipv6_valid(s) || hostname_valid(s, strlen(s));
}

/* Decimal only: strtoul alone would accept " +12", "-1" (wrapping) and "0x10". */
static int parse_ulong(const char *s, size_t len, unsigned long *out)
{
    char buf[24];
    char *end = NULL;
    unsigned long v;

    if (!all_digits(s, len))
        return VEND_ETYPE;
    if (len >= sizeof buf)
        return VEND_ERANGE;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoul(buf, &end, 10);
    if (errno == ERANGE)
        return VEND_ERANGE;
    if (end != buf + len)
        return VEND_ETYPE;
    *out = v;
    return VEND_OK;
}

/*
 * Splits "host[:port]" or "[v6]:port" (len bytes at s) into host[] and
 * *port (left alone when absent). Returns NULL or the problem.
 */
static const char *parse_authority(const char *s, size_t len, char *host, size_t hostsize,
                                   unsigned int *port)
{
    const char *colon = NULL;
    size_t hlen;
    unsigned long p;

    if (memchr(s, '@', len) != NULL)
        return "user info not allowed";
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return "unterminated '[' in host";
        hlen = (size_t)(close - s) - 1;
        if (close + 1 < s + len) {
            if (close[1] != ':')
                return "junk after ']'";
            colon = close + 1;
        }
        if (copy_str(host, hostsize, s + 1, hlen) < 0 || !ipv6_valid(host))
            return "bad IPv6 address";
    } else {
        colon = memchr(s, ':', len);
        hlen = colon != NULL ? (size_t)(colon - s) : len;
        if (colon != NULL && memchr(colon + 1, ':', len - hlen - 1) != NULL)
            return "IPv6 address must be in brackets";
        if (hlen == 0)
            return "empty host";
        if (copy_str(host, hostsize, s, hlen) < 0 || !host_valid(host))
            return "bad host name";
    }
    if (colon != NULL) {
        size_t plen = len - (size_t)(colon + 1 - s);
        if (parse_ulong(colon + 1, plen, &p) < 0 || p < 1 || p > 65535)
            return "bad port (1..65535)";
        *port = (unsigned int)p;
    }
    return NULL;
}

/* ---- one parser per type; each returns VEND_OK or fills why[] ---- */

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "1"};
    static const char *const no[] = {"false", "no", "0"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return VEND_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return VEND_OK;
        }
    }
    return VEND_ETYPE;
}

static int parse_dburl(struct vendd_conf *conf, const char *v, char *why, size_t whysize)
{
    static const char sqlite[] = "sqlite:";
    size_t len = strlen(v);

    if (strncmp(v, sqlite, sizeof sqlite - 1) == 0) {
        const char *path = v + sizeof sqlite - 1;
        if (*path == '\0') {
            snprintf(why, whysize, "empty sqlite path");
            return VEND_EINVAL;
        }
        conf->db_kind = CONF_DB_SQLITE;
        /* Cannot overflow: the path is shorter than the URL, and the URL fit. */
        return copy_str(conf->sqlite_path, sizeof conf->sqlite_path, path, strlen(path));
    }
    if ((strncmp(v, "postgres://", 11) == 0 && len > 11) ||
        (strncmp(v, "postgresql://", 13) == 0 && len > 13)) {
        conf->db_kind = CONF_DB_POSTGRES;
        return VEND_OK;
    }
    snprintf(why, whysize, "must be sqlite:PATH or postgres://USER:PASS@HOST:PORT/DB");
    return VEND_EINVAL;
}

static int parse_mqtturl(struct vendd_conf *conf, const char *v, char *why, size_t whysize)
{
    const char *rest;
    const char *end;
    const char *problem;
    unsigned int port;
    bool tls;

    if (strncasecmp(v, "mqtt://", 7) == 0) {
        rest = v + 7;
        tls = false;
        port = 1883;
    } else if (strncasecmp(v, "mqtts://", 8) == 0) {
        rest = v + 8;
        tls = true;
        port = 8883;
    } else {
        snprintf(why, whysize, "unsupported scheme (use mqtt:// or mqtts://)");
        return VEND_EINVAL;
    }
    end = rest + strcspn(rest, "/?#");
    /* A bare trailing '/' is an empty path; anything else is not a broker address. */
    if (*end != '\0' && strcmp(end, "/") != 0) {
        snprintf(why, whysize, "path, query or fragment not allowed");
        return VEND_EINVAL;
    }
    problem =
        parse_authority(rest, (size_t)(end - rest), conf->mqtt_host, sizeof conf->mqtt_host, &port);
    if (problem != NULL) {
        if (strcmp(problem, "user info not allowed") == 0)
            problem = "user info not allowed (use MQTT_USERNAME and MQTT_PASSWORD)";
        snprintf(why, whysize, "%s", problem);
        return VEND_EINVAL;
    }
    conf->mqtt_port = port;
    conf->mqtt_tls = tls;
    /* Normalized, so --check -v shows the port actually used. */
    snprintf(conf->mqtt_broker_url, sizeof conf->mqtt_broker_url, "%s://%s%s%s:%u",
             tls ? "mqtts" : "mqtt", strchr(conf->mqtt_host, ':') != NULL ? "[" : "",
             conf->mqtt_host, strchr(conf->mqtt_host, ':') != NULL ? "]" : "", port);
    return VEND_OK;
}

static int parse_httpurl(char *field, size_t size, const char *v, char *why, size_t whysize)
{
    const char *rest;
    const char *scheme;
    const char *path;
    const char *problem;
    char host[CONF_HOST_MAX + 1];
    unsigned int port = 0;
    size_t len;

    if (strncasecmp(v, "https://", 8) == 0) {
        scheme = "https://";
    } else if (strncasecmp(v, "http://", 7) == 0) {
        scheme = "http://";
    } else {
        snprintf(why, whysize, "must start with http:// or https://");
        return VEND_EINVAL;
    }
    rest = v + strlen(scheme);
    if (strpbrk(rest, "?# ") != NULL) {
        snprintf(why, whysize, "query, fragment or space not allowed");
        return VEND_EINVAL;
    }
    path = rest + strcspn(rest, "/");
    problem = parse_authority(rest, (size_t)(path - rest), host, sizeof host, &port);
    if (problem != NULL) {
        snprintf(why, whysize, "%s", problem);
        return VEND_EINVAL;
    }
    /* Callers append "/v2/..." or "/transactions": drop trailing slashes once, here. */
    len = strlen(v);
    while (len > 0 && v[len - 1] == '/')
        len--;
    if (len >= size) {
        snprintf(why, whysize, "longer than %zu bytes", size - 1);
        return VEND_ETOOBIG;
    }
    memcpy(field, scheme, strlen(scheme));
    memcpy(field + strlen(scheme), rest, len - strlen(scheme));
    field[len] = '\0';
    return VEND_OK;
}

static int opt_parse(struct vendd_conf *conf, const struct conf_opt *o, const char *v, char *why,
                     size_t whysize)
{
    void *field = field_of(conf, o);
    size_t len = strlen(v);
    unsigned long n = 0;
    int rc;

    if (has_control(v)) {
        snprintf(why, whysize, "contains a control character");
        return VEND_EINVAL;
    }
    switch (o->type) {
    case OPT_UINT:
        assert(o->size == sizeof(unsigned int));
        rc = parse_ulong(v, len, &n);
        if (rc == VEND_ETYPE) {
            snprintf(why, whysize, "not a decimal number");
            return rc;
        }
        if (rc < 0 || n < o->min || n > o->max) {
            snprintf(why, whysize, "out of range %lu..%lu", o->min, o->max);
            return VEND_ERANGE;
        }
        *(unsigned int *)field = (unsigned int)n;
        return VEND_OK;
    case OPT_BOOL:
        assert(o->size == sizeof(bool));
        rc = parse_bool(v, field);
        if (rc < 0)
            snprintf(why, whysize, "not a boolean (use true/false, yes/no or 1/0)");
        return rc;
    case OPT_LOGFMT:
        assert(o->size == sizeof(enum log_format));
        if (strcmp(v, "text") == 0) {
            *(enum log_format *)field = LOG_FORMAT_TEXT;
        } else if (strcmp(v, "json") == 0) {
            *(enum log_format *)field = LOG_FORMAT_JSON;
        } else {
            snprintf(why, whysize, "must be text or json");
            return VEND_EENUM;
        }
        return VEND_OK;
    case OPT_STRING:
    case OPT_HOST:
    case OPT_DBURL:
    case OPT_MQTTURL:
    case OPT_HTTPURL:
    case OPT_MACHINE:
    case OPT_CLIENTID:
    case OPT_GROUP:
        break;
    }

    /* The string types: bound the length first, then check the syntax. */
    if (len >= o->size) {
        snprintf(why, whysize, "longer than %zu bytes", o->size - 1);
        return VEND_ETOOBIG;
    }
    switch (o->type) {
    case OPT_HOST:
        if (!host_valid(v)) {
            snprintf(why, whysize, "not an IP address or host name");
            return VEND_EINVAL;
        }
        break;
    case OPT_MACHINE:
        if (!vend_machine_id_valid(v)) {
            snprintf(why, whysize, "must match %s", VEND_MACHINE_ID_PATTERN);
            return VEND_EINVAL;
        }
        break;
    case OPT_CLIENTID:
        if (!client_id_valid(v)) {
            snprintf(why, whysize, "must match %s", CONF_CLIENT_ID_PATTERN);
            return VEND_EINVAL;
        }
        break;
    case OPT_GROUP:
        if (!group_valid(v)) {
            snprintf(why, whysize, "must match %s", CONF_SHARED_GROUP_PATTERN);
            return VEND_EINVAL;
        }
        break;
    case OPT_DBURL:
        rc = parse_dburl(conf, v, why, whysize);
        if (rc < 0)
            return rc;
        break;
    case OPT_MQTTURL:
        /* Writes the normalized URL into the field itself. */
        return parse_mqtturl(conf, v, why, whysize);
    case OPT_HTTPURL:
        return parse_httpurl(field, o->size, v, why, whysize);
    default:
        break;
    }
    return copy_str(field, o->size, v, len);
}

/* ---- echoing values in messages ---- */

/*
 * In out (a NUL-terminated copy of a URL), replaces the value of every "password=" query
 * parameter (libpq reads one there too) by "***"; out holds size bytes.
 */
static void redact_query_password(char *out, size_t size)
{
    static const char key[] = "password=";
    char *p = strchr(out, '?');

    while (p != NULL) {
        char *end;
        p++; /* past the '?' or '&' */
        end = p + strcspn(p, "&#");
        if (strncasecmp(p, key, sizeof key - 1) == 0) {
            char *val = p + sizeof key - 1;
            size_t tail = strlen(end) + 1;
            if ((size_t)(val - out) + 3 + tail > size) {
                *val = '\0'; /* no room for the rest: cut rather than show it */
                return;
            }
            memmove(val + 3, end, tail);
            memcpy(val, "***", 3);
            end = val + 3;
        }
        p = *end == '&' ? end : NULL;
    }
}

/*
 * Copies url into out[size] with the password of "scheme://user:pass@host", and of a
 * "password=" query parameter, replaced by "***". Anything else is copied unchanged
 * (possibly truncated: the result is only ever displayed).
 */
static void redact_url(const char *url, char *out, size_t size)
{
    const char *auth = strstr(url, "://");
    const char *at = NULL;
    const char *colon = NULL;

    /* The last '@' ends the credentials: a password may itself hold '/', '?', '#' or '@'
     * unencoded (libpq accepts them). A '@' later in a path over-redacts; never leaks. */
    if (auth != NULL) {
        auth += 3;
        at = strrchr(auth, '@');
    }
    if (at != NULL)
        colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon == NULL) {
        snprintf(out, size, "%s", url);
        redact_query_password(out, size);
        return;
    }
    snprintf(out, size, "%.*s***%s", (int)(colon + 1 - url), url, at);
    redact_query_password(out, size);
}

static bool is_url_type(enum opt_type t)
{
    return t == OPT_DBURL || t == OPT_MQTTURL || t == OPT_HTTPURL;
}

/* Writes v quoted-safe for one line: control bytes as \xNN, at most ECHO_MAX bytes. */
static void echo_value(FILE *out, const char *v)
{
    size_t i;

    for (i = 0; v[i] != '\0' && i < ECHO_MAX; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    if (v[i] != '\0')
        fputs("...", out);
}

static void report(FILE *errout, const struct conf_opt *o, const char *why, const char *v)
{
    char redacted[CONF_DBURL_MAX + 8];

    if (errout == NULL)
        return;
    fprintf(errout, "vendd: %s: %s ", o->name, why);
    if (o->secret) {
        fputs("(value hidden)\n", errout);
        return;
    }
    if (is_url_type(o->type)) {
        redact_url(v, redacted, sizeof redacted);
        v = redacted;
    }
    fputs("(got '", errout);
    echo_value(errout, v);
    fputs("')\n", errout);
}

/* ---- .env ---- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static char *skip_blank(char *p)
{
    while (is_blank(*p))
        p++;
    return p;
}

/*
 * Parses one NUL-terminated line in place. Returns 1 with *key and *val set,
 * 0 for a blank or comment line, or -1 with *problem set.
 */
static int dotenv_line(char *line, char **key, char **val, const char **problem)
{
    char *p = skip_blank(line);
    char *key_end;
    char *v;

    if (*p == '\0' || *p == '#')
        return 0;
    if (strncmp(p, "export", 6) == 0 && is_blank(p[6]))
        p = skip_blank(p + 6);
    *key = p;
    if (!isalpha((unsigned char)*p) && *p != '_') {
        *problem = "malformed line (expected KEY=VALUE)";
        return -1;
    }
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    key_end = p;
    p = skip_blank(p);
    if (*p != '=') {
        *problem = "malformed line (expected KEY=VALUE)";
        return -1;
    }
    *key_end = '\0';
    v = skip_blank(p + 1);

    if (*v == '"' || *v == '\'') {
        char *close = strchr(v + 1, *v);
        if (close == NULL) {
            *problem = "unterminated quote";
            return -1;
        }
        *close = '\0';
        p = skip_blank(close + 1);
        if (*p != '\0' && *p != '#') {
            *problem = "text after the closing quote";
            return -1;
        }
        *val = v + 1;
        return 1;
    }
    /* Unquoted: a '#' after a blank starts a comment; trailing blanks go. */
    for (p = v; *p != '\0'; p++) {
        if (*p == '#' && p > v && is_blank(p[-1])) {
            *p = '\0';
            break;
        }
    }
    while (p > v && is_blank(p[-1]))
        p--;
    *p = '\0';
    *val = v;
    return 1;
}

/*
 * Reads dotenv_path into *bufp (xmalloc'd, NUL-terminated). A missing file
 * leaves *bufp NULL and is not an error. Returns the number of problems.
 */
static int dotenv_read(const char *path, char **bufp, size_t *lenp, FILE *errout)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t n = 0;
    int bad = 0;

    *bufp = NULL;
    f = fopen(path, "rb");
    if (f == NULL) {
        if (errno != ENOENT) {
            if (errout != NULL)
                fprintf(errout, "vendd: %s: cannot open: %s\n", path, strerror(errno));
            bad = 1;
        }
        goto out;
    }
    /* One byte more than allowed, to tell "exactly the limit" from "over it". */
    buf = xmalloc(CONF_DOTENV_MAX_BYTES + 2);
    n = fread(buf, 1, CONF_DOTENV_MAX_BYTES + 1, f);
    if (ferror(f)) {
        if (errout != NULL)
            fprintf(errout, "vendd: %s: cannot read: %s\n", path, strerror(errno));
        bad = 1;
        goto out;
    }
    if (n > CONF_DOTENV_MAX_BYTES) {
        if (errout != NULL)
            fprintf(errout, "vendd: %s: larger than %d bytes\n", path, CONF_DOTENV_MAX_BYTES);
        bad = 1;
        goto out;
    }
    if (memchr(buf, '\0', n) != NULL) {
        if (errout != NULL)
            fprintf(errout, "vendd: %s: contains a NUL byte\n", path);
        bad = 1;
        goto out;
    }
    buf[n] = '\0';
    *bufp = buf;
    *lenp = n;
    buf = NULL;
out:
    free(buf);
    if (f != NULL)
        fclose(f);
    return bad;
}

/* Fills vals[i] (pointing into *bufp) for each known key; the last occurrence wins. */
static int dotenv_load(const char *path, char **bufp, const char *vals[NOPTS], FILE *errout)
{
    size_t len = 0;
    unsigned long lineno = 0;
    int bad;
    char *line;

    bad = dotenv_read(path, bufp, &len, errout);
    if (*bufp == NULL)
        return bad;
    line = *bufp;
    while (line < *bufp + len) {
        char *nl = strchr(line, '\n');
        char *next = nl != NULL ? nl + 1 : *bufp + len;
        size_t linelen = nl != NULL ? (size_t)(nl - line) : strlen(line);
        char *key = NULL;
        char *val = NULL;
        const char *problem = NULL;
        int rc;

        lineno++;
        if (linelen > 0 && line[linelen - 1] == '\r')
            linelen--;
        line[linelen] = '\0';
        if (linelen > CONF_DOTENV_MAX_LINE) {
            problem = "line longer than 4096 bytes";
            rc = -1;
        } else {
            rc = dotenv_line(line, &key, &val, &problem);
        }
        if (rc < 0) {
            /* The line itself is never echoed: it may hold a secret. */
            if (errout != NULL)
                fprintf(errout, "vendd: %s:%lu: %s\n", path, lineno, problem);
            bad++;
        } else if (rc > 0) {
            for (size_t i = 0; i < NOPTS; i++) {
                if (strcmp(key, s_opts[i].name) == 0)
                    vals[i] = val;
            }
        }
        line = next;
    }
    return bad;
}

/* ---- the public functions ---- */

/* Like getenv(3), over an explicit array. */
static const char *env_lookup(char *const *envp, const char *name)
{
    size_t len = strlen(name);

    if (envp == NULL)
        return NULL;
    for (; *envp != NULL; envp++) {
        if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
            return *envp + len + 1;
    }
    return NULL;
}

static const struct conf_opt *opt_find(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strcmp(s_opts[i].name, name) == 0)
            return &s_opts[i];
    }
    assert(!"option not in table");
    return NULL;
}

/* Fields computed from others, and the checks that span variables. */
static int conf_derive(struct vendd_conf *conf, FILE *errout)
{
    const bool prod = conf->midtrans_is_production;
    int bad = 0;

    if (conf->midtrans_api_base[0] == '\0')
        snprintf(conf->midtrans_api_base, sizeof conf->midtrans_api_base, "%s",
                 prod ? MIDTRANS_API_PROD : MIDTRANS_API_SANDBOX);
    if (conf->midtrans_snap_base[0] == '\0')
        snprintf(conf->midtrans_snap_base, sizeof conf->midtrans_snap_base, "%s",
                 prod ? MIDTRANS_SNAP_PROD : MIDTRANS_SNAP_SANDBOX);
    conf->dev_mode = conf->api_token[0] == '\0';
    /* libmosquitto cannot send a password without a user name. */
    if (conf->mqtt_password[0] != '\0' && conf->mqtt_username[0] == '\0') {
        report(errout, opt_find("MQTT_PASSWORD"), "set without MQTT_USERNAME", "");
        bad++;
    }
    /* Several instances share what one process used to own: only PostgreSQL's row locks and
     * compare-and-sets across connections decide for them (docs/DESIGN.md). */
    if (conf->mqtt_shared_group[0] != '\0' && conf->database_url[0] != '\0' &&
        conf->db_kind != CONF_DB_POSTGRES) {
        report(errout, opt_find("MQTT_SHARED_GROUP"),
               "needs a postgres:// DATABASE_URL (several vendd cannot share SQLite)",
               conf->mqtt_shared_group);
        bad++;
    }
    /* The reserve is part of the limit: the rest is what everyone else may use. (A limit
     * that did not parse is 0 here, already reported.) */
    if (conf->http_max_connections != 0 && conf->http_local_reserve >= conf->http_max_connections) {
        char why[64], got[16];

        snprintf(why, sizeof why, "must be below HTTP_MAX_CONNECTIONS (%u)",
                 conf->http_max_connections);
        snprintf(got, sizeof got, "%u", conf->http_local_reserve);
        report(errout, opt_find("HTTP_LOCAL_RESERVE"), why, got);
        bad++;
    }
    return bad;
}

int conf_load(struct vendd_conf *conf, char *const *envp, const char *dotenv_path, FILE *errout)
{
    const char *dotenv_vals[NOPTS] = {0};
    char *buf = NULL;
    char why[128];
    int bad = 0;

    memset(conf, 0, sizeof *conf);
    if (dotenv_path != NULL)
        bad += dotenv_load(dotenv_path, &buf, dotenv_vals, errout);

    for (size_t i = 0; i < NOPTS; i++) {
        const struct conf_opt *o = &s_opts[i];
        const char *v = env_lookup(envp, o->name);

        if (v == NULL)
            v = dotenv_vals[i];
        if (v == NULL || *v == '\0')
            v = o->def;
        if (v == NULL)
            continue;
        if (opt_parse(conf, o, v, why, sizeof why) < 0) {
            report(errout, o, why, v);
            bad++;
        }
    }
    bad += conf_derive(conf, errout);

    free(buf);
    if (bad > 0) {
        memset(conf, 0, sizeof *conf);
        return VEND_ECONF;
    }
    return VEND_OK;
}

void conf_print(const struct vendd_conf *conf, FILE *out)
{
    char redacted[CONF_DBURL_MAX + 8];

    for (size_t i = 0; i < NOPTS; i++) {
        const struct conf_opt *o = &s_opts[i];
        const void *field = cfield_of(conf, o);

        fprintf(out, "%s=", o->name);
        if (o->secret) {
            fputs(((const char *)field)[0] != '\0' ? "(set)\n" : "(unset)\n", out);
            continue;
        }
        switch (o->type) {
        case OPT_UINT:
            fprintf(out, "%u\n", *(const unsigned int *)field);
            break;
        case OPT_BOOL:
            fputs(*(const bool *)field ? "true\n" : "false\n", out);
            break;
        case OPT_LOGFMT:
            fputs(*(const enum log_format *)field == LOG_FORMAT_JSON ? "json\n" : "text\n", out);
            break;
        case OPT_DBURL:
            redact_url(field, redacted, sizeof redacted);
            fprintf(out, "%s\n", redacted);
            break;
        case OPT_STRING:
        case OPT_HOST:
        case OPT_MQTTURL:
        case OPT_HTTPURL:
        case OPT_MACHINE:
        case OPT_CLIENTID:
        case OPT_GROUP:
            fprintf(out, "%s\n", (const char *)field);
            break;
        }
    }
}
