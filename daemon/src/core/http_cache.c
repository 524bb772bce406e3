/* http_cache.c - answers of read routes kept while the data is the same; see http_cache.h. */
#include "http_cache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

#define WAYS      8
#define SETS      (HTTP_CACHE_SLOTS / WAYS)
#define TEMPLATES 8
/* A template shorter than this saves too little to be worth one. */
#define TEMPLATE_MIN 64
#define GRAM_BITS    12
#define MIN_MATCH    4
/* An op's first byte: 0..127 is a run of 1..128 bytes that follow; 128..255 a copy of
 * MIN_MATCH..COPY_MAX bytes of the template, at the offset that follows (7 bits a byte, the
 * low bits first, the high bit set on all but the last). */
#define LIT_MAX  128
#define COPY_MAX (127 + MIN_MATCH)
/* What an allocation costs beyond its size (glibc's header, rounded), counted in the bound. */
#define ALLOC_OVERHEAD 16
#define NO_TEMPLATE    0xff

/* The first answer kept under a path prefix ("/api/stock/"): the others under it are kept as
 * what differs from it, which for answers of one route is mostly the values. */
struct template
{
    char prefix[HTTP_CACHE_KEY_MAX + 1]; /* "" = unused */
    char *body;
    size_t len;
    uint16_t gram[1u << GRAM_BITS]; /* 1 + where a 4-byte sequence is in body; 0 = nowhere */
};

/* One kept answer, in one allocation. */
struct entry {
    uint64_t version[2];
    uint32_t size; /* of the allocation */
    uint32_t enc;  /* of the encoded body */
    uint32_t len;  /* of the body, decoded */
    uint8_t tmpl;  /* its template, or NO_TEMPLATE */
    char key[];    /* the key, its NUL, then the encoded body */
};

/* Small, as there are many: most of a fleet's answers are kept. */
struct slot {
    uint32_t hash;
    uint32_t used;   /* the cache's clock when last kept or served: a set's oldest goes first */
    struct entry *e; /* NULL = empty */
};

struct http_cache {
    size_t bytes; /* held by all slots, with ALLOC_OVERHEAD each */
    uint32_t clock;
    size_t hand; /* where the next eviction for room looks */
    unsigned char scratch[HTTP_CACHE_BODY_MAX + HTTP_CACHE_BODY_MAX / LIT_MAX + 8];
    struct template tmpl[TEMPLATES];
    struct slot slots[HTTP_CACHE_SLOTS];
};

/* FNV-1a: the key is a path we routed, short and not chosen to collide for long. */
static uint32_t hash_of(const char *key)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static unsigned gram_of(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return (unsigned)((v * 2654435761u) >> (32 - GRAM_BITS));
}

static void slot_clear(struct http_cache *c, struct slot *s)
{
    if (s->e == NULL)
        return;
    c->bytes -= s->e->size + ALLOC_OVERHEAD;
    free(s->e);
    memset(s, 0, sizeof(*s));
}

struct http_cache *http_cache_new(void)
{
    return xcalloc(1, sizeof(struct http_cache));
}

void http_cache_free(struct http_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < HTTP_CACHE_SLOTS; i++)
        free(c->slots[i].e);
    for (size_t i = 0; i < TEMPLATES; i++)
        free(c->tmpl[i].body);
    free(c);
}

/* ---- the encoding --------------------------------------------------------------------- */

static size_t put_literals(unsigned char *out, size_t o, const char *p, size_t n)
{
    while (n > 0) {
        size_t k = n > LIT_MAX ? LIT_MAX : n;

        out[o++] = (unsigned char)(k - 1);
        memcpy(out + o, p, k);
        o += k;
        p += k;
        n -= k;
    }
    return o;
}

static size_t put_copy(unsigned char *out, size_t o, size_t off, size_t n)
{
    while (n > 0) {
        size_t k = n > COPY_MAX ? COPY_MAX : n;

        if (n - k > 0 && n - k < MIN_MATCH)
            k = n - MIN_MATCH; /* the rest must make a copy too */
        out[o++] = (unsigned char)(128 + k - MIN_MATCH);
        for (size_t v = off;; v >>= 7) {
            out[o++] = (unsigned char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
            if (v < 0x80)
                break;
        }
        off += k;
        n -= k;
    }
    return o;
}

/* How many bytes a and b have alike from the start, up to max; 8 at a time, then 1. */
static size_t match_len(const char *a, const char *b, size_t max)
{
    size_t m = MIN_MATCH; /* the caller compared these */
    uint64_t x, y;

    while (m + sizeof(x) <= max) {
        memcpy(&x, a + m, sizeof(x));
        memcpy(&y, b + m, sizeof(y));
        if (x != y)
            break;
        m += sizeof(x);
    }
    while (m < max && a[m] == b[m])
        m++;
    return m;
}

/*
 * body (len bytes) as ops against t (NULL: literal runs only) into out, which has room for
 * len + len / LIT_MAX + 8 bytes (a copy takes at most 3 bytes for its 4 or more, so the ops
 * are never longer than the literal runs). Where the last copy ended is tried first (answers
 * of one route differ mostly by values of the same length), then the template's 4-gram.
 */
static size_t encode(const struct template *t, const char *body, size_t len, unsigned char *out)
{
    const char *s = t != NULL ? t->body : NULL;
    size_t slen = t != NULL ? t->len : 0, i = 0, lit = 0, o = 0, at = 0;

    while (slen >= MIN_MATCH && i + MIN_MATCH <= len) {
        size_t p = SIZE_MAX, m;
        unsigned g;

        if (at + MIN_MATCH <= slen && memcmp(s + at, body + i, MIN_MATCH) == 0) {
            p = at;
        } else {
            g = t->gram[gram_of((const unsigned char *)body + i)];
            if (g != 0 && g - 1 + MIN_MATCH <= slen && memcmp(s + g - 1, body + i, MIN_MATCH) == 0)
                p = g - 1;
        }
        if (p == SIZE_MAX) {
            i++;
            at++;
            continue;
        }
        m = match_len(s + p, body + i, len - i < slen - p ? len - i : slen - p);
        o = put_literals(out, o, body + lit, i - lit);
        o = put_copy(out, o, p, m);
        i += m;
        at = p + m;
        lit = i;
    }
    return put_literals(out, o, body + lit, len - lit);
}

/* The ops in (n bytes) against t into out, which must come to exactly len bytes. */
static bool decode(const struct template *t, const unsigned char *in, size_t n, char *out,
                   size_t len)
{
    size_t i = 0, o = 0;

    while (i < n) {
        size_t tag = in[i++], k, off = 0;

        if (tag < 128) {
            k = tag + 1;
            if (k > n - i || k > len - o)
                return false;
            memcpy(out + o, in + i, k);
            i += k;
            o += k;
            continue;
        }
        k = tag - 128 + MIN_MATCH;
        for (unsigned shift = 0;; shift += 7) {
            if (i == n || shift > 21)
                return false;
            off |= (size_t)(in[i] & 0x7f) << shift;
            if ((in[i++] & 0x80) == 0)
                break;
        }
        if (t == NULL || off > t->len || k > t->len - off || k > len - o)
            return false;
        memcpy(out + o, t->body + off, k);
        o += k;
    }
    return o == len;
}

/* The template of key's prefix (up to its last '/'), made from body if there is none yet
 * and a place for one; NO_TEMPLATE when neither. */
static uint8_t template_for(struct http_cache *c, const char *key, const char *body, size_t len)
{
    const char *slash = strrchr(key, '/');
    size_t plen = slash != NULL ? (size_t)(slash - key) + 1 : 0;
    struct template *t;

    for (uint8_t i = 0; i < TEMPLATES; i++) {
        t = &c->tmpl[i];
        if (t->prefix[0] == '\0') {
            if (len < TEMPLATE_MIN || plen == 0)
                return NO_TEMPLATE;
            memcpy(t->prefix, key, plen);
            t->prefix[plen] = '\0';
            t->body = xmalloc(len);
            memcpy(t->body, body, len);
            t->len = len;
            for (size_t p = len - MIN_MATCH + 1; p-- > 0;)
                t->gram[gram_of((const unsigned char *)body + p)] = (uint16_t)(p + 1);
            return i;
        }
        if (strncmp(t->prefix, key, plen) == 0 && t->prefix[plen] == '\0')
            return i;
    }
    return NO_TEMPLATE;
}

/* ---- lookups -------------------------------------------------------------------------- */

static struct slot *find(struct http_cache *c, const char *key, uint32_t h)
{
    struct slot *set = &c->slots[(h % SETS) * WAYS];

    for (size_t w = 0; w < WAYS; w++) {
        if (set[w].e != NULL && set[w].hash == h && strcmp(set[w].e->key, key) == 0)
            return &set[w];
    }
    return NULL;
}

char *http_cache_get(struct http_cache *c, const char *key, const uint64_t version[2])
{
    uint32_t h = hash_of(key);
    struct slot *s;
    struct entry *e;
    char *body;

    if (version[1] == HTTP_CACHE_VERSION_UNKNOWN)
        return NULL;
    s = find(c, key, h);
    if (s == NULL)
        return NULL;
    e = s->e;
    if (e->version[0] != version[0] || e->version[1] != version[1])
        return NULL;
    body = xmalloc((size_t)e->len + 1);
    if (!decode(e->tmpl != NO_TEMPLATE ? &c->tmpl[e->tmpl] : NULL,
                (const unsigned char *)e->key + strlen(e->key) + 1, e->enc, body, e->len)) {
        free(body); /* cannot happen: we wrote it; built again instead */
        slot_clear(c, s);
        return NULL;
    }
    body[e->len] = '\0';
    s->used = ++c->clock;
    return body;
}

/* Room for size more bytes, answers evicted in slot order from where the last eviction
 * stopped (one sweep at most); false if there is still none. */
static bool make_room(struct http_cache *c, size_t size)
{
    for (size_t n = 0; n < HTTP_CACHE_SLOTS && c->bytes + size > HTTP_CACHE_BYTES_MAX; n++) {
        slot_clear(c, &c->slots[c->hand]);
        c->hand = (c->hand + 1) % HTTP_CACHE_SLOTS;
    }
    return c->bytes + size <= HTTP_CACHE_BYTES_MAX;
}

void http_cache_put(struct http_cache *c, const char *key, const uint64_t version[2],
                    const char *body)
{
    size_t klen = strlen(key), len = strlen(body), n, size;
    uint32_t h = hash_of(key);
    struct slot *set = &c->slots[(h % SETS) * WAYS], *s;
    struct entry *e;
    uint8_t tmpl;

    if (klen > HTTP_CACHE_KEY_MAX || len > HTTP_CACHE_BODY_MAX ||
        version[1] == HTTP_CACHE_VERSION_UNKNOWN)
        return;
    s = find(c, key, h);
    for (size_t w = 0; s == NULL && w < WAYS; w++) {
        if (set[w].e == NULL)
            s = &set[w];
    }
    if (s == NULL) { /* the set is full: its least recently used goes */
        s = &set[0];
        for (size_t w = 1; w < WAYS; w++) {
            if (c->clock - set[w].used > c->clock - s->used)
                s = &set[w];
        }
    }
    slot_clear(c, s);
    tmpl = template_for(c, key, body, len);
    n = encode(tmpl != NO_TEMPLATE ? &c->tmpl[tmpl] : NULL, body, len, c->scratch);
    size = offsetof(struct entry, key) + klen + 1 + n;
    if (!make_room(c, size + ALLOC_OVERHEAD))
        return;
    e = xmalloc(size);
    e->version[0] = version[0];
    e->version[1] = version[1];
    e->size = (uint32_t)size;
    e->enc = (uint32_t)n;
    e->len = (uint32_t)len;
    e->tmpl = tmpl;
    memcpy(e->key, key, klen + 1);
    memcpy(e->key + klen + 1, c->scratch, n);
    s->e = e;
    s->hash = h;
    s->used = ++c->clock;
    c->bytes += size + ALLOC_OVERHEAD;
}
