/* http_cache.c - answers of read routes kept while the data is the same; see http_cache.h. */
#include "http_cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "log.h"
#include "xmalloc.h"

/* Raw deflate with a window of 8 KiB: the answers are a few KiB, and the streams cost
 * (1 << (WBITS + 2)) + (1 << (MEMLEVEL + 9)) bytes, about 100 KiB, not zlib's 256 KiB. */
#define Z_WBITS    13
#define Z_MEMLEVEL 7

/* One allocation per answer: this header, the key and its NUL, then the body, deflated
 * (zlen < len) or as it is (zlen == len). */
struct entry {
    uint32_t len;  /* of the body as served */
    uint32_t zlen; /* of the body as kept */
    uint32_t klen;
    char key[];
};

struct slot {
    uint32_t hash;
    uint32_t stamp;  /* when it was kept: of the two slots of a key, the older goes */
    struct entry *e; /* NULL = empty */
    uint64_t version[2];
};

struct http_cache {
    size_t bytes; /* held by all entries */
    uint32_t stamp;
    bool zok; /* the streams are ready: answers are kept deflated */
    z_stream def, inf;
    const char *dict;
    uInt dict_len;
    unsigned char *zbuf; /* deflate's output, reused */
    size_t zcap;
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

static size_t entry_size(const struct entry *e)
{
    return sizeof(*e) + e->klen + 1 + e->zlen;
}

static void slot_clear(struct http_cache *c, struct slot *s)
{
    c->bytes -= entry_size(s->e);
    free(s->e);
    memset(s, 0, sizeof(*s));
}

struct http_cache *http_cache_new(const char *dictionary)
{
    struct http_cache *c = xcalloc(1, sizeof(struct http_cache));
    size_t dlen = dictionary != NULL ? strlen(dictionary) : 0;

    c->dict = dictionary;
    c->dict_len = dlen <= HTTP_CACHE_DICT_MAX ? (uInt)dlen : 0;
    c->zok = deflateInit2(&c->def, Z_BEST_SPEED, Z_DEFLATED, -Z_WBITS, Z_MEMLEVEL,
                          Z_DEFAULT_STRATEGY) == Z_OK;
    if (c->zok && inflateInit2(&c->inf, -Z_WBITS) != Z_OK) {
        deflateEnd(&c->def);
        c->zok = false;
    }
    if (!c->zok)
        log_warnx("cannot start zlib: the kept answers are kept as they are");
    return c;
}

void http_cache_free(struct http_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < HTTP_CACHE_SLOTS; i++)
        free(c->slots[i].e);
    if (c->zok) {
        deflateEnd(&c->def);
        inflateEnd(&c->inf);
    }
    free(c->zbuf);
    free(c);
}

size_t http_cache_bytes(const struct http_cache *c)
{
    return c->bytes;
}

/* The two slots a key may be kept in: neighbours, so one cache line or two. */
static struct slot *slot_pair(struct http_cache *c, uint32_t h)
{
    return &c->slots[(h % HTTP_CACHE_SLOTS) & ~(uint32_t)1];
}

static bool slot_is(const struct slot *s, uint32_t h, const char *key)
{
    return s->e != NULL && s->hash == h && strcmp(s->e->key, key) == 0;
}

/* The body of e inflated into out (e->len bytes); false if zlib refuses it. */
static bool inflate_into(struct http_cache *c, const struct entry *e, char *out)
{
    int zrc;

    if (inflateReset(&c->inf) != Z_OK ||
        (c->dict_len > 0 &&
         inflateSetDictionary(&c->inf, (const Bytef *)c->dict, c->dict_len) != Z_OK))
        return false;
    c->inf.next_in = (Bytef *)(e->key + e->klen + 1);
    c->inf.avail_in = e->zlen;
    c->inf.next_out = (Bytef *)out;
    c->inf.avail_out = e->len;
    zrc = inflate(&c->inf, Z_FINISH);
    return zrc == Z_STREAM_END && c->inf.avail_out == 0;
}

char *http_cache_get(struct http_cache *c, const char *key, const uint64_t version[2])
{
    uint32_t h = hash_of(key);
    struct slot *pair = slot_pair(c, h), *s;
    char *copy;

    if (version[1] == HTTP_CACHE_VERSION_UNKNOWN)
        return NULL;
    s = slot_is(&pair[0], h, key) ? &pair[0] : slot_is(&pair[1], h, key) ? &pair[1] : NULL;
    if (s == NULL || s->version[0] != version[0] || s->version[1] != version[1])
        return NULL;
    copy = xmalloc((size_t)s->e->len + 1);
    copy[s->e->len] = '\0';
    if (s->e->zlen == s->e->len) {
        memcpy(copy, s->e->key + s->e->klen + 1, s->e->len);
    } else if (!inflate_into(c, s->e, copy)) {
        log_warnx("cannot inflate the kept answer of '%s': built again", key);
        free(copy);
        slot_clear(c, s);
        return NULL;
    }
    return copy;
}

/* body deflated into c->zbuf: its length, or len when it is not worth it (or fails). */
static size_t deflate_body(struct http_cache *c, const char *body, size_t len)
{
    size_t bound;

    if (!c->zok || deflateReset(&c->def) != Z_OK ||
        (c->dict_len > 0 &&
         deflateSetDictionary(&c->def, (const Bytef *)c->dict, c->dict_len) != Z_OK))
        return len;
    bound = deflateBound(&c->def, (uLong)len);
    if (bound > c->zcap) {
        c->zbuf = xrealloc(c->zbuf, bound);
        c->zcap = bound;
    }
    c->def.next_in = (Bytef *)body;
    c->def.avail_in = (uInt)len;
    c->def.next_out = c->zbuf;
    c->def.avail_out = (uInt)bound;
    if (deflate(&c->def, Z_FINISH) != Z_STREAM_END || c->def.total_out >= len)
        return len;
    return c->def.total_out;
}

void http_cache_put(struct http_cache *c, const char *key, const uint64_t version[2],
                    const char *body)
{
    size_t klen = strlen(key), len = strlen(body), zlen, size;
    uint32_t h = hash_of(key);
    struct slot *pair = slot_pair(c, h), *s;
    struct entry *e;

    if (klen > HTTP_CACHE_KEY_MAX || len > HTTP_CACHE_BODY_MAX ||
        version[1] == HTTP_CACHE_VERSION_UNKNOWN)
        return;
    /* The key's own slot, else an empty one, else the one kept first. */
    if (slot_is(&pair[0], h, key) || (pair[0].e == NULL && !slot_is(&pair[1], h, key)))
        s = &pair[0];
    else if (slot_is(&pair[1], h, key) || pair[1].e == NULL)
        s = &pair[1];
    else
        s = pair[0].stamp - pair[1].stamp > UINT32_MAX / 2 ? &pair[0] : &pair[1];
    if (s->e != NULL)
        slot_clear(c, s);
    zlen = deflate_body(c, body, len);
    size = sizeof(*e) + klen + 1 + zlen;
    if (c->bytes + size > HTTP_CACHE_BYTES_MAX)
        return; /* full: this answer is built each time until slots free up */
    e = xmalloc(size);
    e->len = (uint32_t)len;
    e->zlen = (uint32_t)zlen;
    e->klen = (uint32_t)klen;
    memcpy(e->key, key, klen + 1);
    memcpy(e->key + klen + 1, zlen < len ? (const char *)c->zbuf : body, zlen);
    s->e = e;
    s->hash = h;
    s->stamp = ++c->stamp;
    s->version[0] = version[0];
    s->version[1] = version[1];
    c->bytes += size;
}
