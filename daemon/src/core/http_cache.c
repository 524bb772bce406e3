/* http_cache.c - answers of read routes kept while the data is the same; see http_cache.h. */
#include "http_cache.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

struct slot {
    char key[HTTP_CACHE_KEY_MAX + 1]; /* "" = empty */
    uint64_t version[2];
    char *body;
    size_t len;
};

struct http_cache {
    struct slot slots[HTTP_CACHE_SLOTS];
};

/* FNV-1a: the key is a path we routed, short and not chosen to collide for long. */
static struct slot *slot_of(struct http_cache *c, const char *key)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return &c->slots[h % HTTP_CACHE_SLOTS];
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
        free(c->slots[i].body);
    free(c);
}

char *http_cache_get(struct http_cache *c, const char *key, const uint64_t version[2])
{
    struct slot *s = slot_of(c, key);
    char *copy;

    if (version[1] == HTTP_CACHE_VERSION_UNKNOWN || s->body == NULL || strcmp(s->key, key) != 0 ||
        s->version[0] != version[0] || s->version[1] != version[1])
        return NULL;
    copy = xmalloc(s->len + 1);
    memcpy(copy, s->body, s->len + 1);
    return copy;
}

void http_cache_put(struct http_cache *c, const char *key, const uint64_t version[2],
                    const char *body)
{
    size_t klen = strlen(key), len = strlen(body);
    struct slot *s;

    if (klen > HTTP_CACHE_KEY_MAX || len > HTTP_CACHE_BODY_MAX ||
        version[1] == HTTP_CACHE_VERSION_UNKNOWN)
        return;
    s = slot_of(c, key);
    free(s->body);
    memcpy(s->key, key, klen + 1);
    s->version[0] = version[0];
    s->version[1] = version[1];
    s->body = xmalloc(len + 1);
    memcpy(s->body, body, len + 1);
    s->len = len;
}
