/* http_cache.c - answers of read routes kept while the data is the same; see http_cache.h. */
#include "http_cache.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct slot {
    uint32_t hash;
    char *key; /* NULL = empty; key and body share one allocation */
    char *body;
    size_t size; /* of that allocation */
    uint64_t version[2];
};

struct http_cache {
    size_t bytes; /* held by all slots */
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

static void slot_clear(struct http_cache *c, struct slot *s)
{
    c->bytes -= s->size;
    free(s->key);
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
        free(c->slots[i].key);
    free(c);
}

char *http_cache_get(struct http_cache *c, const char *key, const uint64_t version[2])
{
    uint32_t h = hash_of(key);
    struct slot *s = &c->slots[h % HTTP_CACHE_SLOTS];
    size_t len;
    char *copy;

    if (version[1] == HTTP_CACHE_VERSION_UNKNOWN || s->key == NULL || s->hash != h ||
        strcmp(s->key, key) != 0 || s->version[0] != version[0] || s->version[1] != version[1])
        return NULL;
    len = strlen(s->body);
    copy = xmalloc(len + 1);
    memcpy(copy, s->body, len + 1);
    return copy;
}

void http_cache_put(struct http_cache *c, const char *key, const uint64_t version[2],
                    const char *body)
{
    size_t klen = strlen(key), len = strlen(body), size = klen + 1 + len + 1;
    uint32_t h = hash_of(key);
    struct slot *s = &c->slots[h % HTTP_CACHE_SLOTS];

    if (klen > HTTP_CACHE_KEY_MAX || len > HTTP_CACHE_BODY_MAX ||
        version[1] == HTTP_CACHE_VERSION_UNKNOWN)
        return;
    if (s->key != NULL)
        slot_clear(c, s);
    if (c->bytes + size > HTTP_CACHE_BYTES_MAX)
        return; /* full: this answer is built each time until slots free up */
    s->key = xmalloc(size);
    memcpy(s->key, key, klen + 1);
    s->body = s->key + klen + 1;
    memcpy(s->body, body, len + 1);
    s->hash = h;
    s->size = size;
    s->version[0] = version[0];
    s->version[1] = version[1];
    c->bytes += size;
}
