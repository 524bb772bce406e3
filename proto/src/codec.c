/*
 * codec.c - decoders and encoders of the five payloads.
 *
 * Decoding runs in layers: size check, the strict recognizer (json.c), jsmn
 * for the token tree, a walk that rejects duplicate keys at every level, then
 * one schema function per payload that reads known keys in wire order.
 */
#include <string.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "json.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"

#define ROOT      "(root)"
#define PATH_MAX_ 48 /* == sizeof(struct vend_diag.field) */

struct dec {
    const char *js;
    int ntok;
    bool esc;               /* the payload has a backslash: some key may be escaped */
    struct vend_diag *diag; /* may be NULL */
    jsmntok_t tok[VEND_JSON_TOKENS_MAX];
};

/* Appends the n bytes at s to the NUL-terminated path of capacity PATH_MAX_, truncating. */
static size_t path_append(char *path, size_t len, const char *s, size_t n)
{
    if (n > PATH_MAX_ - 1 - len)
        n = PATH_MAX_ - 1 - len;
    memcpy(path + len, s, n);
    path[len + n] = '\0';
    return len + n;
}

static size_t path_append_index(char *path, size_t len, unsigned idx)
{
    char num[12];
    size_t n = sizeof(num);

    do {
        num[--n] = (char)('0' + idx % 10);
        idx /= 10;
    } while (idx > 0);
    len = path_append(path, len, "[", 1);
    len = path_append(path, len, num + n, sizeof(num) - n);
    return path_append(path, len, "]", 1);
}

/* Records err for prefix.key (or prefix, key, "(root)") and returns err. */
static int fail(const struct dec *d, int err, const char *prefix, const char *key)
{
    size_t len = 0;

    if (d->diag == NULL)
        return err;
    d->diag->err = err;
    d->diag->field[0] = '\0';
    if (prefix != NULL && prefix[0] != '\0')
        len = path_append(d->diag->field, len, prefix, strlen(prefix));
    if (key != NULL) {
        if (len > 0)
            len = path_append(d->diag->field, len, ".", 1);
        len = path_append(d->diag->field, len, key, strlen(key));
    }
    if (len == 0)
        path_append(d->diag->field, 0, ROOT, strlen(ROOT));
    return err;
}

static const char *tok_text(const struct dec *d, int i)
{
    return d->js + d->tok[i].start;
}

static size_t tok_len(const struct dec *d, int i)
{
    return (size_t)(d->tok[i].end - d->tok[i].start);
}

/* Index of the first token after the subtree rooted at i. */
static int tok_skip(const struct dec *d, int i)
{
    int end = d->tok[i].end;

    if (d->tok[i].type == JSMN_STRING || d->tok[i].type == JSMN_PRIMITIVE)
        return i + 1;
    i++;
    while (i < d->ntok && d->tok[i].start < end)
        i++;
    return i;
}

/* Keys compare after unescaping; without a backslash in the payload the raw bytes are the key. */
static bool key_eq(const struct dec *d, int a, int b)
{
    size_t n = tok_len(d, a);

    if (!d->esc)
        return n == tok_len(d, b) && memcmp(tok_text(d, a), tok_text(d, b), n) == 0;
    return json_str_eq(tok_text(d, a), n, tok_text(d, b), tok_len(d, b));
}

/*
 * True if an object anywhere in the subtree at token i repeats a key; *next is
 * the token after the subtree (when false). It builds no path: dup_path()
 * names the duplicate once one is known. Recursion is bounded by
 * VEND_JSON_DEPTH_MAX, checked before.
 */
static bool has_dup(const struct dec *d, int i, int *next)
{
    const jsmntok_t *t = &d->tok[i];
    bool object = t->type == JSMN_OBJECT;
    int j = i + 1, k, m;

    for (k = 0; k < t->size; k++) {
        if (object) {
            for (m = i + 1; m < j; m = tok_skip(d, m + 1)) {
                if (key_eq(d, m, j))
                    return true;
            }
            j++;
        }
        if (d->tok[j].type == JSMN_OBJECT || d->tok[j].type == JSMN_ARRAY) {
            if (has_dup(d, j, &j))
                return true;
        } else {
            j++;
        }
    }
    *next = j;
    return false;
}

/*
 * Rejects a key repeated within one object anywhere below token i; *next is
 * the token after the subtree. path holds the location of i (len bytes).
 * The first duplicate in document order is reported, with its path. Run only
 * once has_dup() found one. Recursion is bounded by VEND_JSON_DEPTH_MAX,
 * checked before.
 */
static int dup_path(const struct dec *d, int i, char *path, size_t len, int *next)
{
    const jsmntok_t *t = &d->tok[i];
    int j = i + 1, k, m, rc;

    if (t->type != JSMN_OBJECT && t->type != JSMN_ARRAY) {
        *next = i + 1;
        return VEND_OK;
    }
    for (k = 0; k < t->size; k++) {
        size_t sub;
        int v = j;

        if (t->type == JSMN_OBJECT) {
            sub = len > 0 ? path_append(path, len, ".", 1) : 0;
            sub = path_append(path, sub, tok_text(d, j), tok_len(d, j));
            for (m = i + 1; m < j; m = tok_skip(d, m + 1)) {
                if (key_eq(d, m, j))
                    return fail(d, VEND_EDUPKEY, path, NULL);
            }
            v = j + 1;
        } else {
            sub = path_append_index(path, len, (unsigned)k);
        }
        rc = dup_path(d, v, path, sub, &j);
        if (rc < 0)
            return rc;
        path[len] = '\0';
    }
    *next = j;
    return VEND_OK;
}

/* Everything before the schema: size, strict syntax, tokens, duplicate keys. */
static int dec_open(struct dec *d, const char *json, size_t len, struct vend_diag *diag)
{
    jsmn_parser p;
    char path[PATH_MAX_];
    int n, next, rc;

    d->diag = diag;
    d->js = json;
    d->ntok = 0;
    if (diag != NULL) {
        diag->err = VEND_OK;
        diag->field[0] = '\0';
    }
    if (json == NULL)
        return fail(d, VEND_EINVAL, NULL, NULL);
    if (len > VEND_PAYLOAD_MAX)
        return fail(d, VEND_ETOOBIG, NULL, NULL);
    rc = json_validate(json, len, VEND_JSON_DEPTH_MAX);
    if (rc < 0)
        return fail(d, rc, NULL, NULL);
    jsmn_init(&p);
    n = jsmn_parse(&p, json, len, d->tok, VEND_JSON_TOKENS_MAX);
    if (n == JSMN_ERROR_NOMEM)
        return fail(d, VEND_ETOOBIG, NULL, NULL);
    /* Cannot happen after json_validate(); kept so a jsmn quirk fails closed. */
    if (n < 1 || d->tok[0].type != JSMN_OBJECT)
        return fail(d, VEND_ESYNTAX, NULL, NULL);
    d->ntok = n;
    d->esc = memchr(json, '\\', len) != NULL;
    if (!has_dup(d, 0, &next))
        return VEND_OK;
    path[0] = '\0';
    return dup_path(d, 0, path, 0, &next);
}

/* Index of the value of key (a name without escapes) in object obj, or -1. */
static int field_find(const struct dec *d, int obj, const char *key)
{
    size_t n = strlen(key);
    int j = obj + 1, k;

    for (k = 0; k < d->tok[obj].size; k++) {
        if (d->esc ? json_str_eq(tok_text(d, j), tok_len(d, j), key, n)
                   : tok_len(d, j) == n && memcmp(tok_text(d, j), key, n) == 0)
            return j + 1;
        j = tok_skip(d, j + 1);
    }
    return -1;
}

static bool is_number(const struct dec *d, int v)
{
    char c = tok_text(d, v)[0];

    return d->tok[v].type == JSMN_PRIMITIVE && (c == '-' || (c >= '0' && c <= '9'));
}

/* Reads an integer field. *present stays false for an absent optional field. */
static int get_int(const struct dec *d, int obj, const char *prefix, const char *key, bool required,
                   int64_t min, int64_t max, int64_t *out, bool *present)
{
    int v = field_find(d, obj, key);
    int rc;

    *present = false;
    if (v < 0)
        return required ? fail(d, VEND_EMISSING, prefix, key) : VEND_OK;
    if (!is_number(d, v))
        return fail(d, VEND_ETYPE, prefix, key);
    rc = json_int_parse(tok_text(d, v), tok_len(d, v), out);
    if (rc < 0)
        return fail(d, rc, prefix, key);
    if (*out < min || *out > max)
        return fail(d, VEND_ERANGE, prefix, key);
    *present = true;
    return VEND_OK;
}

/* Reads a boolean field. *present stays false for an absent optional field. */
static int get_bool(const struct dec *d, int obj, const char *key, bool required, bool *out,
                    bool *present)
{
    int v = field_find(d, obj, key);
    char c;

    *present = false;
    if (v < 0)
        return required ? fail(d, VEND_EMISSING, NULL, key) : VEND_OK;
    c = tok_text(d, v)[0];
    if (d->tok[v].type != JSMN_PRIMITIVE || (c != 't' && c != 'f'))
        return fail(d, VEND_ETYPE, NULL, key);
    *out = c == 't';
    *present = true;
    return VEND_OK;
}

/*
 * Reads a string field into out (cap bytes + NUL). *present stays false if an
 * optional field is absent, or is null and null_ok. Too long: VEND_ERANGE.
 */
static int get_str(const struct dec *d, int obj, const char *prefix, const char *key, bool required,
                   bool null_ok, char *out, size_t cap, size_t *n, bool *present)
{
    int v = field_find(d, obj, key);
    int rc;

    *present = false;
    if (v < 0)
        return required ? fail(d, VEND_EMISSING, prefix, key) : VEND_OK;
    if (null_ok && d->tok[v].type == JSMN_PRIMITIVE && tok_text(d, v)[0] == 'n')
        return VEND_OK;
    if (d->tok[v].type != JSMN_STRING)
        return fail(d, VEND_ETYPE, prefix, key);
    rc = json_str_decode(tok_text(d, v), tok_len(d, v), out, cap, n);
    if (rc < 0)
        return fail(d, rc, prefix, key);
    *present = true;
    return VEND_OK;
}

/* Enum names are short; a longer string is simply not one of them. */
#define ENUM_NAME_MAX 15

static int get_enum_str(const struct dec *d, int obj, const char *prefix, const char *key,
                        bool required, char *out, size_t *n, bool *present)
{
    int rc = get_str(d, obj, prefix, key, required, false, out, ENUM_NAME_MAX, n, present);

    if (rc == VEND_ERANGE)
        return fail(d, VEND_EENUM, prefix, key);
    return rc;
}

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool error_code_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool fw_char(char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '+' || c == '-';
}

/* A config key name, or "(root)" for a config that failed as a whole. */
static bool config_error_char(char c)
{
    return is_alnum(c) || c == '_' || c == '(' || c == ')';
}

/* s[0..n) is 1..max characters accepted by ok(); n counts bytes, so a NUL fails. */
static bool charset_ok(const char *s, size_t n, size_t max, bool (*ok)(char))
{
    size_t i;

    if (n == 0 || n > max)
        return false;
    for (i = 0; i < n; i++) {
        if (!ok(s[i]))
            return false;
    }
    return true;
}

/* Length of the NUL-terminated string in an array of size cap, or cap if unterminated. */
static size_t arr_len(const char *s, size_t cap)
{
    const char *z = memchr(s, '\0', cap);

    return z == NULL ? cap : (size_t)(z - s);
}

static unsigned num2(const char *s)
{
    return (unsigned)(s[0] - '0') * 10u + (unsigned)(s[1] - '0');
}

/* RFC 3339 in UTC: YYYY-MM-DDTHH:MM:SS[.1-9 digits]Z with real calendar dates. */
static bool timestamp_ok(const char *s, size_t n)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    static const unsigned char mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned year, mon, day;
    size_t i, frac;

    if (n < 20 || n > VEND_TIMESTAMP_MAX)
        return false;
    for (i = 0; i < 19; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';

        if (shape[i] == 'd' ? !digit : s[i] != shape[i])
            return false;
    }
    if (s[i] == '.') {
        frac = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == frac || i - frac > 9)
            return false;
    }
    if (i != n - 1 || s[i] != 'Z')
        return false;
    year = num2(s) * 100u + num2(s + 2);
    mon = num2(s + 5);
    day = num2(s + 8);
    if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1])
        return false;
    if (mon == 2 && day == 29 && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
        return false;
    /* Second 60 is a leap second, which RFC 3339 allows. */
    return num2(s + 11) <= 23 && num2(s + 14) <= 59 && num2(s + 17) <= 60;
}

static int command_fields(const struct dec *d, struct vend_command *out)
{
    char name[ENUM_NAME_MAX + 1];
    size_t n;
    int64_t v;
    bool present;
    int rc;

    rc = get_enum_str(d, 0, NULL, "cmd", true, name, &n, &present);
    if (rc < 0)
        return rc;
    if (vend_cmd_parse(name, n, &out->cmd) < 0)
        return fail(d, VEND_EENUM, NULL, "cmd");
    rc = get_int(d, 0, NULL, "slot", true, VEND_SLOT_MIN, VEND_SLOT_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->slot = (uint16_t)v;
    rc =
        get_str(d, 0, NULL, "orderId", true, false, out->order_id, VEND_ORDER_ID_MAX, &n, &present);
    if (rc < 0)
        return rc;
    if (!vend_order_id_valid_len(out->order_id, n))
        return fail(d, VEND_ERANGE, NULL, "orderId");
    /* A settle runs no motor and is never late: it has neither key, and ignores them. */
    if (out->cmd == VEND_CMD_DISPENSE) {
        rc = get_int(d, 0, NULL, "timeoutMs", true, VEND_TIMEOUT_MS_MIN, VEND_TIMEOUT_MS_MAX, &v,
                     &present);
        if (rc < 0)
            return rc;
        out->timeout_ms = (uint32_t)v;
    }
    rc = get_int(d, 0, NULL, "unit", false, VEND_UNIT_MIN, VEND_UNIT_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->unit = present ? (uint16_t)v : 0;
    if (out->cmd == VEND_CMD_DISPENSE) {
        rc = get_int(d, 0, NULL, "expiresAt", false, VEND_EXPIRES_AT_MIN, VEND_EXPIRES_AT_MAX, &v,
                     &present);
        if (rc < 0)
            return rc;
        out->expires_at_ms = present ? (uint64_t)v : 0;
    }
    return VEND_OK;
}

static int result_fields(const struct dec *d, struct vend_dispense_result *out)
{
    size_t n;
    int64_t v;
    bool present;
    int rc;

    rc =
        get_str(d, 0, NULL, "orderId", true, false, out->order_id, VEND_ORDER_ID_MAX, &n, &present);
    if (rc < 0)
        return rc;
    if (!vend_order_id_valid_len(out->order_id, n))
        return fail(d, VEND_ERANGE, NULL, "orderId");
    rc = get_int(d, 0, NULL, "slot", true, VEND_SLOT_MIN, VEND_SLOT_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->slot = (uint16_t)v;
    rc = get_bool(d, 0, "success", true, &out->success, &present);
    if (rc < 0)
        return rc;
    rc = get_bool(d, 0, "dropDetected", true, &out->drop_detected, &present);
    if (rc < 0)
        return rc;
    rc = get_int(d, 0, NULL, "durationMs", false, 0, VEND_DURATION_MS_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->has_duration = present;
    out->duration_ms = present ? (uint32_t)v : 0;
    rc = get_str(d, 0, NULL, "error", false, true, out->error, VEND_ERROR_CODE_MAX, &n, &present);
    if (rc < 0)
        return rc;
    if (present && !charset_ok(out->error, n, VEND_ERROR_CODE_MAX, error_code_char))
        return fail(d, VEND_ERANGE, NULL, "error");
    out->has_error = present;
    rc = get_int(d, 0, NULL, "unit", false, VEND_UNIT_MIN, VEND_UNIT_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->unit = present ? (uint16_t)v : 0;
    return VEND_OK;
}

static int door_field(const struct dec *d, enum vend_door *out)
{
    char name[ENUM_NAME_MAX + 1];
    size_t n;
    bool present;
    int rc;

    *out = VEND_DOOR_UNKNOWN;
    rc = get_enum_str(d, 0, NULL, "door", false, name, &n, &present);
    if (rc < 0)
        return rc;
    if (present && vend_door_parse(name, n, out) < 0)
        return fail(d, VEND_EENUM, NULL, "door");
    return VEND_OK;
}

static int slot_fields(const struct dec *d, int obj, const char *prefix,
                       struct vend_slot_level *out)
{
    char name[ENUM_NAME_MAX + 1];
    size_t n;
    int64_t v;
    bool present;
    int rc;

    if (d->tok[obj].type != JSMN_OBJECT)
        return fail(d, VEND_ETYPE, prefix, NULL);
    rc = get_int(d, obj, prefix, "id", true, VEND_SLOT_MIN, VEND_SLOT_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->id = (uint16_t)v;
    rc = get_enum_str(d, obj, prefix, "level", true, name, &n, &present);
    if (rc < 0)
        return rc;
    if (vend_level_parse(name, n, &out->level) < 0)
        return fail(d, VEND_EENUM, prefix, "level");
    return VEND_OK;
}

_Static_assert(VEND_SLOTS_MAX <= 100, "slot_prefix() writes at most two digits");

/* "slots[k]", as path_append_index() would write it, without its general-purpose appends. */
static void slot_prefix(char *p, size_t k)
{
    size_t n = sizeof("slots[") - 1;

    memcpy(p, "slots[", n);
    if (k >= 10)
        p[n++] = (char)('0' + k / 10);
    p[n++] = (char)('0' + k % 10);
    p[n++] = ']';
    p[n] = '\0';
}

static int telemetry_fields(const struct dec *d, struct vend_telemetry *out)
{
    char prefix[PATH_MAX_];
    size_t n, k, m;
    int slots, j, rc;
    bool present;

    rc = get_str(d, 0, NULL, "timestamp", false, false, out->timestamp, VEND_TIMESTAMP_MAX, &n,
                 &present);
    if (rc < 0)
        return rc;
    if (present && !timestamp_ok(out->timestamp, n))
        return fail(d, VEND_ERANGE, NULL, "timestamp");
    out->has_timestamp = present;

    slots = field_find(d, 0, "slots");
    if (slots < 0)
        return fail(d, VEND_EMISSING, NULL, "slots");
    if (d->tok[slots].type != JSMN_ARRAY)
        return fail(d, VEND_ETYPE, NULL, "slots");
    if (d->tok[slots].size > VEND_SLOTS_MAX)
        return fail(d, VEND_ERANGE, NULL, "slots");
    out->nslots = (size_t)d->tok[slots].size;
    j = slots + 1;
    for (k = 0; k < out->nslots; k++) {
        slot_prefix(prefix, k);
        rc = slot_fields(d, j, prefix, &out->slots[k]);
        if (rc < 0)
            return rc;
        for (m = 0; m < k; m++) {
            if (out->slots[m].id == out->slots[k].id)
                return fail(d, VEND_EDUPKEY, prefix, "id");
        }
        j = tok_skip(d, j);
    }

    j = field_find(d, 0, "temperature");
    if (j >= 0) {
        int32_t centi;

        if (!is_number(d, j))
            return fail(d, VEND_ETYPE, NULL, "temperature");
        rc = json_centi_parse(tok_text(d, j), tok_len(d, j), &centi);
        if (rc < 0 || centi < VEND_TEMP_CENTI_MIN || centi > VEND_TEMP_CENTI_MAX)
            return fail(d, VEND_ERANGE, NULL, "temperature");
        out->has_temperature = true;
        out->temperature = (double)centi / 100.0;
    }
    return door_field(d, &out->door);
}

static int status_fields(const struct dec *d, struct vend_status *out)
{
    char name[ENUM_NAME_MAX + 1];
    size_t n;
    int64_t v;
    bool present;
    int rc;

    rc = get_enum_str(d, 0, NULL, "status", true, name, &n, &present);
    if (rc < 0)
        return rc;
    if (vend_presence_parse(name, n, &out->status) < 0)
        return fail(d, VEND_EENUM, NULL, "status");
    rc = door_field(d, &out->door);
    if (rc < 0)
        return rc;
    rc = get_int(d, 0, NULL, "rssi", false, VEND_RSSI_MIN, VEND_RSSI_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->has_rssi = present;
    out->rssi = present ? (int16_t)v : 0;
    rc = get_str(d, 0, NULL, "fw", false, false, out->fw, VEND_FW_MAX, &n, &present);
    if (rc < 0)
        return rc;
    if (present && !charset_ok(out->fw, n, VEND_FW_MAX, fw_char))
        return fail(d, VEND_ERANGE, NULL, "fw");
    out->has_fw = present;
    rc = get_bool(d, 0, "settle", false, &out->settle, &present);
    if (rc < 0)
        return rc;
    out->has_settle = present;
    rc = get_str(d, 0, NULL, "configError", false, false, out->config_error, VEND_CONFIG_ERROR_MAX,
                 &n, &present);
    if (rc < 0)
        return rc;
    if (present && !charset_ok(out->config_error, n, VEND_CONFIG_ERROR_MAX, config_error_char))
        return fail(d, VEND_ERANGE, NULL, "configError");
    out->has_config_error = present;
    return VEND_OK;
}

static int config_fields(const struct dec *d, struct vend_config *out)
{
    int64_t v;
    bool present;
    int rc;

    rc = get_int(d, 0, NULL, "motorTimeout", true, VEND_MOTOR_TIMEOUT_MS_MIN,
                 VEND_MOTOR_TIMEOUT_MS_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->motor_timeout_ms = (uint32_t)v;
    rc = get_int(d, 0, NULL, "dropSensorDelay", true, 0, VEND_DROP_DELAY_MS_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->drop_sensor_delay_ms = (uint32_t)v;
    rc = get_int(d, 0, NULL, "telemetryInterval", true, VEND_TELEMETRY_INTERVAL_MIN,
                 VEND_TELEMETRY_INTERVAL_MAX, &v, &present);
    if (rc < 0)
        return rc;
    out->telemetry_interval_ms = (uint32_t)v;
    return VEND_OK;
}

/* One decoder per kind: zero *out, run the common layers, then the schema. */
#define VEND_DECODER(kind, fields)                                                                 \
    int vend_decode_##kind(const char *json, size_t len, struct vend_##kind *out,                  \
                           struct vend_diag *diag)                                                 \
    {                                                                                              \
        struct dec d;                                                                              \
        int rc;                                                                                    \
                                                                                                   \
        if (out == NULL) {                                                                         \
            d.diag = diag;                                                                         \
            return fail(&d, VEND_EINVAL, NULL, NULL);                                              \
        }                                                                                          \
        memset(out, 0, sizeof(*out));                                                              \
        rc = dec_open(&d, json, len, diag);                                                        \
        if (rc < 0)                                                                                \
            return rc;                                                                             \
        return fields(&d, out);                                                                    \
    }

VEND_DECODER(command, command_fields)
VEND_DECODER(dispense_result, result_fields)
VEND_DECODER(telemetry, telemetry_fields)
VEND_DECODER(status, status_fields)
VEND_DECODER(config, config_fields)

/* Encoding: an append-only writer that remembers running out of space. */
struct out {
    char *buf;
    size_t size;
    size_t len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    /* Keep one byte for the NUL. */
    if (o->full || o->size - o->len < n + 1) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_lit(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_uint(struct out *o, uint32_t v)
{
    char num[10];
    size_t n = sizeof(num);

    do {
        num[--n] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v > 0);
    put(o, num + n, sizeof(num) - n);
}

/* Epoch milliseconds: more digits than put_uint() holds. */
static void put_uint64(struct out *o, uint64_t v)
{
    char num[20];
    size_t n = sizeof(num);

    do {
        num[--n] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v > 0);
    put(o, num + n, sizeof(num) - n);
}

static void put_int(struct out *o, int32_t v)
{
    if (v < 0) {
        put(o, "-", 1);
        put_uint(o, (uint32_t)(-(int64_t)v));
        return;
    }
    put_uint(o, (uint32_t)v);
}

/* A JSON string; validated fields never need escapes, but a writer must not emit bad JSON. */
static void put_str(struct out *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    put(o, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[6] = {'\\', 'u', '0', '0', 0, 0};

        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            put(o, esc, 2);
        } else if (c < 0x20) {
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            put(o, esc, 6);
        } else {
            put(o, s, 1);
        }
    }
    put(o, "\"", 1);
}

/* key with its quotes and colon, preceded by a comma unless first. */
static void put_key(struct out *o, const char *key, bool first)
{
    if (!first)
        put(o, ",", 1);
    put(o, "\"", 1);
    put_lit(o, key);
    put(o, "\":", 2);
}

/* Hundredths as a JSON number with at most two decimals, trailing zeros dropped. */
static void put_centi(struct out *o, int32_t centi)
{
    uint32_t mag = centi < 0 ? (uint32_t)(-(int64_t)centi) : (uint32_t)centi;
    char frac[3] = {'.', 0, 0};

    if (centi < 0)
        put(o, "-", 1);
    put_uint(o, mag / 100u);
    mag %= 100u;
    if (mag == 0)
        return;
    frac[1] = (char)('0' + mag / 10u);
    frac[2] = (char)('0' + mag % 10u);
    put(o, frac, mag % 10u == 0 ? 2 : 3);
}

static int out_open(struct out *o, char *buf, size_t size, const void *in)
{
    o->buf = buf;
    o->size = size;
    o->len = 0;
    o->full = buf == NULL || size == 0;
    if (in == NULL)
        return VEND_EINVAL;
    return VEND_OK;
}

static int out_close(struct out *o)
{
    if (o->full)
        return VEND_ENOSPACE;
    o->buf[o->len] = '\0';
    return (int)o->len;
}

static bool in_range(int64_t v, int64_t min, int64_t max)
{
    return v >= min && v <= max;
}

/* s is an array of VEND_ORDER_ID_MAX + 1: unterminated fails the length. */
static bool order_id_ok(const char *s)
{
    return vend_order_id_valid_len(s, arr_len(s, VEND_ORDER_ID_MAX + 1));
}

static bool unit_ok(uint16_t unit)
{
    return unit == 0 || in_range(unit, VEND_UNIT_MIN, VEND_UNIT_MAX);
}

/* A settle has no timeout and no expiry: both zero, so that decode(encode(x)) == x. */
static bool command_timing_ok(const struct vend_command *in)
{
    if (in->cmd == VEND_CMD_SETTLE)
        return in->timeout_ms == 0 && in->expires_at_ms == 0;
    return in_range(in->timeout_ms, VEND_TIMEOUT_MS_MIN, VEND_TIMEOUT_MS_MAX) &&
           (in->expires_at_ms == 0 || (in->expires_at_ms >= (uint64_t)VEND_EXPIRES_AT_MIN &&
                                       in->expires_at_ms <= (uint64_t)VEND_EXPIRES_AT_MAX));
}

int vend_encode_command(char *buf, size_t size, const struct vend_command *in)
{
    struct out o;

    if (out_open(&o, buf, size, in) < 0)
        return VEND_EINVAL;
    if (vend_cmd_name(in->cmd) == NULL || !in_range(in->slot, VEND_SLOT_MIN, VEND_SLOT_MAX) ||
        !order_id_ok(in->order_id) || !unit_ok(in->unit))
        return VEND_EINVAL;
    if (!command_timing_ok(in))
        return VEND_EINVAL;
    put(&o, "{", 1);
    put_key(&o, "cmd", true);
    put_str(&o, vend_cmd_name(in->cmd));
    put_key(&o, "slot", false);
    put_uint(&o, in->slot);
    put_key(&o, "orderId", false);
    put_str(&o, in->order_id);
    if (in->cmd == VEND_CMD_DISPENSE) {
        put_key(&o, "timeoutMs", false);
        put_uint(&o, in->timeout_ms);
    }
    if (in->unit != 0) {
        put_key(&o, "unit", false);
        put_uint(&o, in->unit);
    }
    if (in->expires_at_ms != 0) {
        put_key(&o, "expiresAt", false);
        put_uint64(&o, in->expires_at_ms);
    }
    put(&o, "}", 1);
    return out_close(&o);
}

int vend_encode_dispense_result(char *buf, size_t size, const struct vend_dispense_result *in)
{
    struct out o;

    if (out_open(&o, buf, size, in) < 0)
        return VEND_EINVAL;
    if (!order_id_ok(in->order_id) || !in_range(in->slot, VEND_SLOT_MIN, VEND_SLOT_MAX) ||
        (in->has_duration && in->duration_ms > VEND_DURATION_MS_MAX) ||
        (in->has_error && !charset_ok(in->error, arr_len(in->error, VEND_ERROR_CODE_MAX + 1),
                                      VEND_ERROR_CODE_MAX, error_code_char)) ||
        !unit_ok(in->unit))
        return VEND_EINVAL;
    put(&o, "{", 1);
    put_key(&o, "orderId", true);
    put_str(&o, in->order_id);
    put_key(&o, "slot", false);
    put_uint(&o, in->slot);
    put_key(&o, "success", false);
    put_lit(&o, in->success ? "true" : "false");
    put_key(&o, "dropDetected", false);
    put_lit(&o, in->drop_detected ? "true" : "false");
    if (in->has_duration) {
        put_key(&o, "durationMs", false);
        put_uint(&o, in->duration_ms);
    }
    put_key(&o, "error", false);
    if (in->has_error)
        put_str(&o, in->error);
    else
        put_lit(&o, "null");
    if (in->unit != 0) {
        put_key(&o, "unit", false);
        put_uint(&o, in->unit);
    }
    put(&o, "}", 1);
    return out_close(&o);
}

int vend_encode_telemetry(char *buf, size_t size, const struct vend_telemetry *in)
{
    struct out o;
    size_t k, m;
    int32_t centi = 0;

    if (out_open(&o, buf, size, in) < 0)
        return VEND_EINVAL;
    if ((in->has_timestamp &&
         !timestamp_ok(in->timestamp, arr_len(in->timestamp, VEND_TIMESTAMP_MAX + 1))) ||
        in->nslots > VEND_SLOTS_MAX || (in->door != VEND_DOOR_UNKNOWN && !vend_door_name(in->door)))
        return VEND_EINVAL;
    for (k = 0; k < in->nslots; k++) {
        if (!in_range(in->slots[k].id, VEND_SLOT_MIN, VEND_SLOT_MAX) ||
            vend_level_name(in->slots[k].level) == NULL)
            return VEND_EINVAL;
        for (m = 0; m < k; m++) {
            if (in->slots[m].id == in->slots[k].id)
                return VEND_EINVAL;
        }
    }
    if (in->has_temperature) {
        /* Written as "!(in range)" so that NaN is rejected too. */
        if (!(in->temperature >= VEND_TEMP_CENTI_MIN / 100.0 &&
              in->temperature <= VEND_TEMP_CENTI_MAX / 100.0))
            return VEND_EINVAL;
        centi = (int32_t)(in->temperature * 100.0 + (in->temperature < 0 ? -0.5 : 0.5));
    }
    put(&o, "{", 1);
    if (in->has_timestamp) {
        put_key(&o, "timestamp", true);
        put_str(&o, in->timestamp);
    }
    put_key(&o, "slots", !in->has_timestamp);
    put(&o, "[", 1);
    for (k = 0; k < in->nslots; k++) {
        put_lit(&o, k == 0 ? "{\"id\":" : ",{\"id\":");
        put_uint(&o, in->slots[k].id);
        put_lit(&o, ",\"level\":");
        put_str(&o, vend_level_name(in->slots[k].level));
        put(&o, "}", 1);
    }
    put(&o, "]", 1);
    if (in->has_temperature) {
        put_key(&o, "temperature", false);
        put_centi(&o, centi);
    }
    if (in->door != VEND_DOOR_UNKNOWN) {
        put_key(&o, "door", false);
        put_str(&o, vend_door_name(in->door));
    }
    put(&o, "}", 1);
    return out_close(&o);
}

int vend_encode_status(char *buf, size_t size, const struct vend_status *in)
{
    struct out o;

    if (out_open(&o, buf, size, in) < 0)
        return VEND_EINVAL;
    if (vend_presence_name(in->status) == NULL ||
        (in->door != VEND_DOOR_UNKNOWN && !vend_door_name(in->door)) ||
        (in->has_rssi && !in_range(in->rssi, VEND_RSSI_MIN, VEND_RSSI_MAX)) ||
        (in->has_fw &&
         !charset_ok(in->fw, arr_len(in->fw, VEND_FW_MAX + 1), VEND_FW_MAX, fw_char)) ||
        (in->has_config_error &&
         !charset_ok(in->config_error, arr_len(in->config_error, VEND_CONFIG_ERROR_MAX + 1),
                     VEND_CONFIG_ERROR_MAX, config_error_char)))
        return VEND_EINVAL;
    put(&o, "{", 1);
    put_key(&o, "status", true);
    put_str(&o, vend_presence_name(in->status));
    if (in->door != VEND_DOOR_UNKNOWN) {
        put_key(&o, "door", false);
        put_str(&o, vend_door_name(in->door));
    }
    if (in->has_rssi) {
        put_key(&o, "rssi", false);
        put_int(&o, in->rssi);
    }
    if (in->has_fw) {
        put_key(&o, "fw", false);
        put_str(&o, in->fw);
    }
    if (in->has_settle) {
        put_key(&o, "settle", false);
        put_lit(&o, in->settle ? "true" : "false");
    }
    if (in->has_config_error) {
        put_key(&o, "configError", false);
        put_str(&o, in->config_error);
    }
    put(&o, "}", 1);
    return out_close(&o);
}

int vend_encode_config(char *buf, size_t size, const struct vend_config *in)
{
    struct out o;

    if (out_open(&o, buf, size, in) < 0)
        return VEND_EINVAL;
    if (!in_range(in->motor_timeout_ms, VEND_MOTOR_TIMEOUT_MS_MIN, VEND_MOTOR_TIMEOUT_MS_MAX) ||
        in->drop_sensor_delay_ms > VEND_DROP_DELAY_MS_MAX ||
        !in_range(in->telemetry_interval_ms, VEND_TELEMETRY_INTERVAL_MIN,
                  VEND_TELEMETRY_INTERVAL_MAX))
        return VEND_EINVAL;
    put(&o, "{", 1);
    put_key(&o, "motorTimeout", true);
    put_uint(&o, in->motor_timeout_ms);
    put_key(&o, "dropSensorDelay", false);
    put_uint(&o, in->drop_sensor_delay_ms);
    put_key(&o, "telemetryInterval", false);
    put_uint(&o, in->telemetry_interval_ms);
    put(&o, "}", 1);
    return out_close(&o);
}
