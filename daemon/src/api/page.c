/*
 * page.c - ?limit= and ?cursor= in, a page and its next_cursor out: the pagination rule of
 * every list route, stated once (page.h).
 */
#include "page.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "log.h"

/* A cursor's text: the list's name and each key field, joined by a byte no key can hold. */
#define CURSOR_SEP     '|'
#define LIST_NAME_MAX  16 /* the longest page_spec.list */
#define CURSOR_RAW_MAX (LIST_NAME_MAX + PAGE_KEYS_MAX * (1 + PAGE_KEY_MAX))
/* base64url without padding: 4 characters per 3 bytes. */
#define CURSOR_MAX ((CURSOR_RAW_MAX + 2) / 3 * 4)

static const char s_b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(char c)
{
    const char *p = c != '\0' ? strchr(s_b64url, c) : NULL;

    return p != NULL ? (int)(p - s_b64url) : -1;
}

/* out needs (len + 2) / 3 * 4 + 1 bytes. */
static void b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t n = len - i < 3 ? len - i : 3;

        if (n > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (n > 2)
            v |= in[i + 2];
        for (size_t k = 0; k < n + 1; k++)
            out[o++] = s_b64url[(v >> (18 - 6 * k)) & 0x3f];
    }
    out[o] = '\0';
}

/*
 * Strict: only the alphabet, no padding, and the unused low bits of the last character
 * zero, so a cursor has one spelling and a changed character never decodes to the same key.
 * Returns the decoded length, or -1.
 */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == size)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    return (int)o;
}

/* A key field as a cursor may hold it: the rule of its kind, and *num for a row id. */
static bool key_valid(enum page_key_kind kind, const char *s, int64_t *num)
{
    int64_t ms;

    switch (kind) {
    case PAGE_KEY_MACHINE_ID:
        return vend_machine_id_valid(s);
    case PAGE_KEY_ORDER_ID:
        return vend_order_id_valid(s);
    case PAGE_KEY_TIME_NULL:
        if (s[0] == '\0')
            return true;
        return store_iso_parse(s, &ms) == 0;
    case PAGE_KEY_TIME:
        return store_iso_parse(s, &ms) == 0;
    case PAGE_KEY_ROWID:
        return api_parse_decimal(s, 1, INT64_MAX, num);
    }
    return false;
}

/* The list's name, then exactly spec->nkeys fields, each valid for its kind. */
static bool read_cursor(const char *arg, const struct page_spec *spec, struct page *pg)
{
    unsigned char raw[CURSOR_RAW_MAX + 1];
    size_t len = strlen(arg), nlist = strlen(spec->list);
    char *field, *sep;
    int n;

    if (len == 0 || len > CURSOR_MAX)
        return false;
    n = b64url_decode(arg, len, raw, sizeof(raw) - 1);
    if (n < 0)
        return false;
    raw[n] = '\0';
    if (memchr(raw, '\0', (size_t)n) != NULL || (size_t)n <= nlist ||
        memcmp(raw, spec->list, nlist) != 0 || raw[nlist] != CURSOR_SEP)
        return false;
    field = (char *)raw + nlist + 1;
    for (size_t k = 0; k < spec->nkeys; k++) {
        sep = strchr(field, CURSOR_SEP);
        if ((sep != NULL) != (k + 1 < spec->nkeys))
            return false;
        if (sep != NULL)
            *sep = '\0';
        if (strlen(field) > PAGE_KEY_MAX || !key_valid(spec->keys[k].kind, field, &pg->key_int[k]))
            return false;
        memcpy(pg->key[k], field, strlen(field) + 1);
        if (sep != NULL)
            field = sep + 1;
    }
    pg->after = true;
    return true;
}

bool page_read(const struct http_request *req, const struct page_spec *spec, struct page *pg,
               struct http_response *res)
{
    const char *limit = http_query(req, "limit"), *cursor = http_query(req, "cursor");

    memset(pg, 0, sizeof(*pg));
    pg->limit = PAGE_LIMIT_DEFAULT;
    if (limit != NULL && !api_parse_decimal(limit, 1, PAGE_LIMIT_MAX, &pg->limit)) {
        http_reply_error(res, 422, "INVALID_FIELD", "'limit' must be an integer from 1 to %d",
                         PAGE_LIMIT_MAX);
        return false;
    }
    if (cursor != NULL && !read_cursor(cursor, spec, pg)) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'cursor' is not a cursor of this list: pass back a next_cursor as "
                         "it was given");
        return false;
    }
    return true;
}

/*
 * The cursor after item, from its key fields. Our own rows, but read from a file anyone can
 * edit: a key that would make a cursor page_read() refuses is an error here (NULL), not a
 * dead end for the client one page later.
 */
static json_t *cursor_after(const struct page_spec *spec, const json_t *item)
{
    char raw[CURSOR_RAW_MAX + 1], text[CURSOR_MAX + 1], field[PAGE_KEY_MAX + 1];
    size_t used = strlen(spec->list);
    int64_t num;

    assert(used <= LIST_NAME_MAX);
    memcpy(raw, spec->list, used + 1);
    for (size_t k = 0; k < spec->nkeys; k++) {
        const json_t *val = json_object_get(item, spec->keys[k].field);
        int n;

        if (json_is_integer(val))
            n = snprintf(field, sizeof(field), "%lld", (long long)json_integer_value(val));
        else if (json_is_string(val))
            n = snprintf(field, sizeof(field), "%s", json_string_value(val));
        else if (json_is_null(val) && spec->keys[k].kind == PAGE_KEY_TIME_NULL)
            n = snprintf(field, sizeof(field), "%s", "");
        else
            return NULL;
        if (n < 0 || (size_t)n >= sizeof(field) || !key_valid(spec->keys[k].kind, field, &num))
            return NULL;
        n = snprintf(raw + used, sizeof(raw) - used, "%c%s", CURSOR_SEP, field);
        if (n < 0 || (size_t)n >= sizeof(raw) - used)
            return NULL;
        used += (size_t)n;
    }
    b64url_encode((const unsigned char *)raw, used, text);
    return json_string(text);
}

void page_reply(struct http_response *res, const struct page_spec *spec, const struct page *pg,
                json_t *doc, const char *array_key, json_t *rows)
{
    json_t *next = json_null();

    if (doc == NULL || rows == NULL)
        goto fail;
    if (json_array_size(rows) > (size_t)pg->limit) {
        next = cursor_after(spec, json_array_get(rows, (size_t)pg->limit - 1));
        if (next == NULL) {
            log_warnx("cannot page list '%s': a row without a valid sort key (%s)", spec->list,
                      spec->keys[0].field);
            goto fail;
        }
        while (json_array_size(rows) > (size_t)pg->limit)
            json_array_remove(rows, json_array_size(rows) - 1);
    }
    json_object_set_new(doc, array_key, rows);
    json_object_set_new(doc, "next_cursor", next);
    http_reply_json(res, 200, doc);
    return;
fail:
    json_decref(next);
    json_decref(rows);
    json_decref(doc);
    http_reply_error(res, 500, "INTERNAL", "cannot build the page of list '%s'", spec->list);
}
