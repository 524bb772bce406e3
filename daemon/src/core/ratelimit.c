/*
 * ratelimit.c - token buckets per address in one fixed table; see ratelimit.h. Lookup is a
 * linear probe from the address's hash over a bounded window, so the cost per request is
 * bounded too.
 */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "xmalloc.h"

/* Slots probed per lookup before the idlest of them is taken over. */
#define PROBE    16
#define ADDR_MAX 46

struct bucket {
    char addr[ADDR_MAX];  /* "" = free */
    int64_t tokens_milli; /* thousandths of a token, so refill needs no floating point */
    int64_t last_ms;
};

struct ratelimit {
    int64_t per_minute;
    struct bucket b[RATELIMIT_ENTRIES];
};

struct ratelimit *ratelimit_new(unsigned per_minute)
{
    struct ratelimit *rl = xcalloc(1, sizeof(*rl));

    rl->per_minute = per_minute > 0 ? per_minute : 1;
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    free(rl);
}

/* FNV-1a: cheap, and good enough to spread addresses. */
static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* addr's bucket, found or made (evicting the idlest of the probe window), refilled to now_ms;
 * NULL for an address longer than any numeric one. */
static struct bucket *bucket_at(struct ratelimit *rl, const char *addr, int64_t now_ms)
{
    int64_t full = rl->per_minute * 1000;
    struct bucket *b = NULL, *idlest = NULL;
    uint32_t h = hash(addr);

    if (strlen(addr) >= ADDR_MAX)
        return NULL;
    for (uint32_t i = 0; i < PROBE; i++) {
        struct bucket *c = &rl->b[(h + i) % RATELIMIT_ENTRIES];

        if (strcmp(c->addr, addr) == 0) {
            b = c;
            break;
        }
        if (idlest == NULL || c->addr[0] == '\0' ||
            (idlest->addr[0] != '\0' && c->last_ms < idlest->last_ms))
            idlest = c;
    }
    if (b == NULL) {
        b = idlest;
        memcpy(b->addr, addr, strlen(addr) + 1);
        b->tokens_milli = full;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        /* per_minute tokens per 60000 ms: per_minute * elapsed / 60 thousandths. */
        int64_t add = (now_ms - b->last_ms) * rl->per_minute / 60;

        if (add >= full - b->tokens_milli) {
            b->tokens_milli = full;
            b->last_ms = now_ms;
        } else {
            /* Only the time that bought whole thousandths is spent: the rest carries over. */
            b->tokens_milli += add;
            b->last_ms += add * 60 / rl->per_minute;
        }
    }
    return b;
}

bool ratelimit_take(struct ratelimit *rl, const char *addr, int64_t now_ms)
{
    struct bucket *b = bucket_at(rl, addr, now_ms);

    if (b == NULL || b->tokens_milli < 1000)
        return false;
    b->tokens_milli -= 1000;
    return true;
}

bool ratelimit_allows(struct ratelimit *rl, const char *addr, int64_t now_ms)
{
    const struct bucket *b = bucket_at(rl, addr, now_ms);

    return b != NULL && b->tokens_milli >= 1000;
}
