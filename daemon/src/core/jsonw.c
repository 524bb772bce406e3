/* jsonw.c - JSON text written straight into a buffer; see jsonw.h. */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "xmalloc.h"

#define JW_FIRST_CAP 512
#define JW_REAL_MAX  32

static void reserve(struct jsonw *w, size_t n)
{
    size_t cap;

    if (w->len + n + 1 <= w->cap)
        return;
    cap = w->cap != 0 ? w->cap : JW_FIRST_CAP;
    while (cap < w->len + n + 1)
        cap *= 2;
    w->buf = xrealloc(w->buf, cap);
    w->cap = cap;
}

static void put(struct jsonw *w, const char *s, size_t n)
{
    reserve(w, n);
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void put_char(struct jsonw *w, char c)
{
    reserve(w, 1);
    w->buf[w->len++] = c;
}

/* Before a value or a key: the comma that separates it from the one before. */
static void sep(struct jsonw *w)
{
    if (w->comma)
        put_char(w, ',');
}

void jw_obj_begin(struct jsonw *w)
{
    sep(w);
    put_char(w, '{');
    w->comma = false;
}

void jw_obj_end(struct jsonw *w)
{
    put_char(w, '}');
    w->comma = true;
}

void jw_arr_begin(struct jsonw *w)
{
    sep(w);
    put_char(w, '[');
    w->comma = false;
}

void jw_arr_end(struct jsonw *w)
{
    put_char(w, ']');
    w->comma = true;
}

/* Length of the UTF-8 sequence at s as jansson accepts it (utf8.c: no overlong form, no
 * surrogate, nothing past U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];

    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
            return 0;
        return 4;
    }
    return 0;
}

/* The bytes a string is copied with as they are: printable ASCII but '"' and '\\'. */
static bool plain(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/*
 * s in quotes, escaped as jansson's dump.c escapes it without flags, in one pass that also
 * checks the UTF-8: false (w unchanged) if it is not.
 */
static bool put_string(struct jsonw *w, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(s), start = w->len;
    const unsigned char *p = (const unsigned char *)s;
    char *o;

    reserve(w, len * 6 + 2); /* every byte a \u00XX at worst */
    o = w->buf + w->len;
    *o++ = '"';
    for (;;) {
        unsigned char c;
        size_t n;

        while (plain(*p))
            *o++ = (char)*p++;
        c = *p;
        if (c == '\0')
            break;
        if (c >= 0x80) {
            n = utf8_seq(p);
            if (n == 0) {
                w->len = start;
                return false;
            }
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 0xf];
            o += 5;
            break;
        }
        p++;
    }
    *o++ = '"';
    w->len = (size_t)(o - w->buf);
    return true;
}

void jw_key(struct jsonw *w, const char *key)
{
    size_t n = 0;
    char *o;

    /* Keys are column names: plain ASCII, copied in one piece with their quotes, comma and
     * colon (a fifth of the writer's work when each went through the string escaper). */
    while (key[n] != '\0' && plain((unsigned char)key[n]))
        n++;
    if (key[n] == '\0') {
        reserve(w, n + 4);
        o = w->buf + w->len;
        if (w->comma)
            *o++ = ',';
        *o++ = '"';
        memcpy(o, key, n);
        o += n;
        *o++ = '"';
        *o++ = ':';
        w->len = (size_t)(o - w->buf);
        w->comma = false;
        return;
    }
    sep(w);
    if (!put_string(w, key))
        put(w, "null", 4); /* not UTF-8: a key cannot be null, but this is never a valid one */
    put_char(w, ':');
    w->comma = false;
}

void jw_null(struct jsonw *w)
{
    sep(w);
    put(w, "null", 4);
    w->comma = true;
}

void jw_str(struct jsonw *w, const char *s)
{
    size_t before = w->len;

    sep(w);
    if (s == NULL || !put_string(w, s)) {
        w->len = before;
        jw_null(w);
        return;
    }
    w->comma = true;
}

void jw_int(struct jsonw *w, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    /* The magnitude as unsigned: INT64_MIN has no positive int64_t. */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[--i] = '-';
    sep(w);
    put(w, tmp + i, sizeof(tmp) - i);
    w->comma = true;
}

void jw_real(struct jsonw *w, double v)
{
    char tmp[JW_REAL_MAX];
    char *e;
    int n;

    if (!isfinite(v)) {
        jw_null(w);
        return;
    }
    n = snprintf(tmp, sizeof(tmp) - 2, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof(tmp) - 2) {
        jw_null(w);
        return;
    }
    /* A locale's decimal comma, as jansson's strbuffer replaces it. */
    for (int i = 0; i < n; i++) {
        if (tmp[i] == ',')
            tmp[i] = '.';
    }
    if (strchr(tmp, '.') == NULL && strchr(tmp, 'e') == NULL) {
        memcpy(tmp + n, ".0", 3);
        n += 2;
    }
    /* jansson's exponent: no '+', no leading zeros ("1e+20" is "1e20", "1e-05" "1e-5"). */
    e = strchr(tmp, 'e');
    if (e != NULL) {
        char *start = e + 1, *end = start + 1;

        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)n + 1 - (size_t)(end - tmp));
            n -= (int)(end - start);
        }
    }
    sep(w);
    put(w, tmp, (size_t)n);
    w->comma = true;
}

void jw_bool(struct jsonw *w, bool v)
{
    sep(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
    w->comma = true;
}

bool jw_is_flag_column(const char *name)
{
    /* By the first letter: this runs for every integer of every row written. */
    switch (name[0]) {
    case 's':
        return strcmp(name, "success") == 0;
    case 'd':
        return strcmp(name, "drop_detected") == 0;
    case 'l':
        return strcmp(name, "late_result") == 0;
    case 'i':
        return strcmp(name, "is_active") == 0;
    case 'n':
        return strcmp(name, "needs_inspection") == 0;
    default:
        return false;
    }
}

void jw_row_fields(struct jsonw *w, const struct db_row *row)
{
    for (int c = 0; c < db_row_count(row); c++) {
        const char *key = db_row_name(row, c);

        jw_key(w, key);
        switch (db_row_type(row, c)) {
        case DB_T_NULL:
            jw_null(w);
            break;
        case DB_T_INT:
            if (jw_is_flag_column(key))
                jw_bool(w, db_row_int(row, c) != 0);
            else
                jw_int(w, db_row_int(row, c));
            break;
        case DB_T_REAL:
            jw_real(w, db_row_real(row, c));
            break;
        case DB_T_TEXT:
            jw_str(w, db_row_text(row, c));
            break;
        default:
            jw_null(w);
            break;
        }
    }
}

void jw_row(struct jsonw *w, const struct db_row *row)
{
    jw_obj_begin(w);
    jw_row_fields(w, row);
    jw_obj_end(w);
}

char *jw_take(struct jsonw *w)
{
    char *s;

    reserve(w, 0);
    w->buf[w->len] = '\0';
    s = w->buf;
    memset(w, 0, sizeof(*w));
    return s;
}

void jw_free(struct jsonw *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}
