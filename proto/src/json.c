/* json.c - strict RFC 8259 recognizer, string unescaping and number parsing. */
#include <string.h>

#include "json.h"
#include "vend/err.h"

struct scan {
    const char *s;
    size_t len;
    size_t pos;
    int max_depth;
};

static void skip_ws(struct scan *c)
{
    while (c->pos < c->len) {
        char ch = c->s[c->pos];

        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
            break;
        c->pos++;
    }
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at s (at least 4 bytes available) into *out. */
static bool hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        int h = hexval(s[i]);

        if (h < 0)
            return false;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return true;
}

/* Length of the valid UTF-8 sequence (2..4 bytes) at p, or 0 (overlong, surrogate, > U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n, i;

    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        n = 2;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        n = 3;
        if (p[0] == 0xE0)
            lo = 0xA0;
        if (p[0] == 0xED)
            hi = 0x9F;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        n = 4;
        if (p[0] == 0xF0)
            lo = 0x90;
        if (p[0] == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    }
    return n;
}

/* \uXXXX at s[pos] (the backslash); a high surrogate must be followed by a low one. */
static int scan_uescape(struct scan *c)
{
    uint32_t u, lo;

    if (c->len - c->pos < 6 || !hex4(c->s + c->pos + 2, &u))
        return VEND_ESYNTAX;
    c->pos += 6;
    if (u >= 0xDC00 && u <= 0xDFFF)
        return VEND_ESYNTAX;
    if (u < 0xD800 || u > 0xDBFF)
        return VEND_OK;
    if (c->len - c->pos < 6 || c->s[c->pos] != '\\' || c->s[c->pos + 1] != 'u' ||
        !hex4(c->s + c->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
        return VEND_ESYNTAX;
    c->pos += 6;
    return VEND_OK;
}

/* 1 for a byte that stands for itself in a string: printable ASCII but the quote and backslash. */
static const unsigned char str_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xA0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xB0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xC0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xD0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xE0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0xF0 */
};

/* The position is kept in a local: a store to c->pos could alias the bytes read through c->s. */
static int scan_string(struct scan *c)
{
    const char *s = c->s;
    size_t len = c->len, pos = c->pos + 1; /* after the opening quote */

    while (pos < len) {
        unsigned char ch = (unsigned char)s[pos];
        size_t n;

        /* Printable ASCII, the common case, first. */
        if (str_plain[ch]) {
            pos++;
            continue;
        }
        if (ch == '"') {
            c->pos = pos + 1;
            return VEND_OK;
        }
        if (ch < 0x20)
            return VEND_ESYNTAX;
        if (ch == '\\') {
            if (pos + 1 >= len)
                return VEND_ESYNTAX;
            if (s[pos + 1] == 'u') {
                int rc;

                c->pos = pos;
                rc = scan_uescape(c);
                if (rc < 0)
                    return rc;
                pos = c->pos;
                continue;
            }
            if (strchr("\"\\/bfnrt", s[pos + 1]) == NULL || s[pos + 1] == '\0')
                return VEND_ESYNTAX;
            pos += 2;
            continue;
        }
        n = utf8_seq((const unsigned char *)s + pos, len - pos);
        if (n == 0)
            return VEND_ESYNTAX;
        pos += n;
    }
    return VEND_ESYNTAX;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Consumes one or more digits; false if there is none. */
static bool digits(struct scan *c)
{
    size_t start = c->pos;

    while (c->pos < c->len && is_digit(c->s[c->pos]))
        c->pos++;
    return c->pos > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; "01" stops after "0" and fails later. */
static int scan_number(struct scan *c)
{
    if (c->s[c->pos] == '-')
        c->pos++;
    if (c->pos >= c->len || !is_digit(c->s[c->pos]))
        return VEND_ESYNTAX;
    if (c->s[c->pos] == '0')
        c->pos++;
    else
        digits(c);
    if (c->pos < c->len && c->s[c->pos] == '.') {
        c->pos++;
        if (!digits(c))
            return VEND_ESYNTAX;
    }
    if (c->pos < c->len && (c->s[c->pos] == 'e' || c->s[c->pos] == 'E')) {
        c->pos++;
        if (c->pos < c->len && (c->s[c->pos] == '+' || c->s[c->pos] == '-'))
            c->pos++;
        if (!digits(c))
            return VEND_ESYNTAX;
    }
    return VEND_OK;
}

static int scan_literal(struct scan *c, const char *lit)
{
    size_t n = strlen(lit);

    if (c->len - c->pos < n || memcmp(c->s + c->pos, lit, n) != 0)
        return VEND_ESYNTAX;
    c->pos += n;
    return VEND_OK;
}

static int scan_value(struct scan *c, int depth);

/* Object or array at s[pos]; depth is the depth of this container. */
static int scan_container(struct scan *c, int depth)
{
    bool object = c->s[c->pos] == '{';
    char close = object ? '}' : ']';
    int rc;

    if (depth > c->max_depth)
        return VEND_EDEPTH;
    c->pos++;
    skip_ws(c);
    if (c->pos < c->len && c->s[c->pos] == close) {
        c->pos++;
        return VEND_OK;
    }
    for (;;) {
        if (object) {
            skip_ws(c);
            if (c->pos >= c->len || c->s[c->pos] != '"')
                return VEND_ESYNTAX;
            rc = scan_string(c);
            if (rc < 0)
                return rc;
            skip_ws(c);
            if (c->pos >= c->len || c->s[c->pos] != ':')
                return VEND_ESYNTAX;
            c->pos++;
        }
        rc = scan_value(c, depth);
        if (rc < 0)
            return rc;
        skip_ws(c);
        if (c->pos >= c->len)
            return VEND_ESYNTAX;
        if (c->s[c->pos] == close) {
            c->pos++;
            return VEND_OK;
        }
        if (c->s[c->pos] != ',')
            return VEND_ESYNTAX;
        c->pos++;
    }
}

/* Any value; depth is that of the enclosing container (0 at the top). */
static int scan_value(struct scan *c, int depth)
{
    skip_ws(c);
    if (c->pos >= c->len)
        return VEND_ESYNTAX;
    switch (c->s[c->pos]) {
    case '{':
    case '[':
        return scan_container(c, depth + 1);
    case '"':
        return scan_string(c);
    case 't':
        return scan_literal(c, "true");
    case 'f':
        return scan_literal(c, "false");
    case 'n':
        return scan_literal(c, "null");
    default:
        return scan_number(c);
    }
}

int json_validate(const char *s, size_t len, int max_depth)
{
    struct scan c = {s, len, 0, max_depth};
    int rc;

    skip_ws(&c);
    if (c.pos >= len || s[c.pos] != '{')
        return VEND_ESYNTAX;
    rc = scan_value(&c, 0);
    if (rc < 0)
        return rc;
    skip_ws(&c);
    if (c.pos != len)
        return VEND_ETRAILING;
    return VEND_OK;
}

/* Streams the unescaped UTF-8 bytes of a validated raw string. */
struct unesc {
    const char *p;
    const char *end;
    unsigned char buf[4];
    size_t n; /* bytes in buf */
    size_t i; /* next byte of buf */
};

static size_t utf8_put(uint32_t cp, unsigned char *b)
{
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Next byte, or -1 at the end. The input was validated, so escapes are well-formed. */
static int unesc_next(struct unesc *u)
{
    uint32_t cp = 0, lo = 0; /* hex4() cannot fail here, which -O3 cannot see */

    if (u->i < u->n)
        return u->buf[u->i++];
    if (u->p >= u->end)
        return -1;
    if (*u->p != '\\')
        return (unsigned char)*u->p++;
    u->p++;
    switch (*u->p++) {
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'u':
        break;
    default: /* " \ / */
        return (unsigned char)u->p[-1];
    }
    hex4(u->p, &cp);
    u->p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        hex4(u->p + 2, &lo);
        u->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    u->n = utf8_put(cp, u->buf);
    u->i = 1;
    return u->buf[0];
}

static void unesc_init(struct unesc *u, const char *raw, size_t len)
{
    u->p = raw;
    u->end = raw + len;
    u->n = 0;
    u->i = 0;
}

int json_str_decode(const char *raw, size_t rawlen, char *out, size_t cap, size_t *outlen)
{
    struct unesc u;
    size_t n = 0;
    int b;

    /* Without escapes the raw bytes are the value; too long writes what the loop would. */
    if (memchr(raw, '\\', rawlen) == NULL) {
        if (rawlen > cap) {
            memcpy(out, raw, cap);
            return VEND_ERANGE;
        }
        memcpy(out, raw, rawlen);
        out[rawlen] = '\0';
        if (outlen != NULL)
            *outlen = rawlen;
        return VEND_OK;
    }
    unesc_init(&u, raw, rawlen);
    for (;;) {
        b = unesc_next(&u);
        if (b < 0)
            break;
        if (n == cap)
            return VEND_ERANGE;
        out[n++] = (char)b;
    }
    out[n] = '\0';
    if (outlen != NULL)
        *outlen = n;
    return VEND_OK;
}

bool json_str_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    struct unesc ua, ub;
    int ca, cb;

    /* Without escapes the raw bytes are the value. */
    if (memchr(a, '\\', alen) == NULL && memchr(b, '\\', blen) == NULL)
        return alen == blen && memcmp(a, b, alen) == 0;
    unesc_init(&ua, a, alen);
    unesc_init(&ub, b, blen);
    do {
        ca = unesc_next(&ua);
        cb = unesc_next(&ub);
        if (ca != cb)
            return false;
    } while (ca >= 0);
    return true;
}

bool json_str_eq_lit(const char *raw, size_t rawlen, const char *lit)
{
    return json_str_eq(raw, rawlen, lit, strlen(lit));
}

/* Saturation point of the integer accumulators: far above every bound, far below overflow. */
#define INT_SAT 1000000000000000LL

int json_int_parse(const char *s, size_t len, int64_t *out)
{
    bool neg = false;
    int64_t v = 0;
    size_t i = 0;

    if (memchr(s, '.', len) != NULL || memchr(s, 'e', len) != NULL || memchr(s, 'E', len) != NULL)
        return VEND_ETYPE;
    if (len > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    for (; i < len; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > INT_SAT)
            return VEND_ERANGE;
    }
    /* -0 is a valid JSON number but never a meaningful integer field. */
    if (neg && v == 0)
        return VEND_ETYPE;
    *out = neg ? -v : v;
    return VEND_OK;
}

int json_centi_parse(const char *s, size_t len, int32_t *out)
{
    /* value = 0.d1 d2 d3 ... * 10^point, with d1 != 0 once leading zeros are dropped. */
    char dig[8]; /* the first significant digits: enough for 999.99 and a rounding digit */
    size_t ndig = 0, i = 0;
    long point = 0, exp = 0;
    bool neg = false, seen_nonzero = false, in_frac = false, exp_neg = false;
    int32_t v = 0;
    long k;

    if (i < len && s[i] == '-') {
        neg = true;
        i++;
    }
    for (; i < len && s[i] != 'e' && s[i] != 'E'; i++) {
        if (s[i] == '.') {
            in_frac = true;
            continue;
        }
        if (!seen_nonzero && s[i] == '0') {
            if (in_frac)
                point--;
            continue;
        }
        seen_nonzero = true;
        if (!in_frac)
            point++;
        if (ndig < sizeof(dig))
            dig[ndig++] = s[i];
    }
    if (i < len) {
        i++;
        if (s[i] == '+' || s[i] == '-') {
            exp_neg = s[i] == '-';
            i++;
        }
        for (; i < len; i++) {
            if (exp < 100000)
                exp = exp * 10 + (s[i] - '0');
        }
    }
    if (!seen_nonzero) {
        *out = 0;
        return VEND_OK;
    }
    point += exp_neg ? -exp : exp;
    if (point > 3)
        return VEND_ERANGE;
    /* Hundredths are the digits up to position point + 2; the next one rounds. */
    for (k = 0; k < point + 2; k++)
        v = v * 10 + (k >= 0 && (size_t)k < ndig ? dig[k] - '0' : 0);
    k = point + 2;
    if (k >= 0 && (size_t)k < ndig && dig[k] >= '5')
        v++;
    *out = neg ? -v : v;
    return VEND_OK;
}
