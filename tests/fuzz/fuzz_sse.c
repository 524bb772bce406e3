/*
 * fuzz_sse.c - vendctl's server-sent events parser (vendctl/sse.c) on any stream: what
 * `vendctl watch` reads from a server (or a proxy) it cannot vouch for. The input's first byte
 * sets a chunk size (1..32), the rest is the stream. The stream is parsed whole and again in
 * chunks of that size: never a crash, and both give the same events (type, id, data) and the
 * same outcome, so no event depends on where the network split the bytes. Every event's data
 * is len bytes and NUL-terminated; id and type are bounded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sse.h"
#include "vend/err.h"

#define EVENTS_KEPT 64
#define STREAM_MAX  (256u * 1024u)

struct record {
    size_t n;
    unsigned long hash; /* of every event's type, id and data, in order */
};

static unsigned long mix(unsigned long h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = h * 1099511628211ul ^ (unsigned char)s[i];
    return h * 1099511628211ul ^ 0xff;
}

static int on_event(const struct sse_event *ev, void *arg)
{
    struct record *r = arg;

    FUZZ_CHECK(ev->data[ev->len] == '\0');
    FUZZ_CHECK(strlen(ev->type) <= SSE_NAME_MAX && strlen(ev->id) <= SSE_NAME_MAX);
    FUZZ_CHECK(ev->type[0] != '\0');
    r->hash = mix(r->hash, ev->type, strlen(ev->type));
    r->hash = mix(r->hash, ev->id, strlen(ev->id));
    r->hash = mix(r->hash, ev->data, ev->len);
    /* Stopping is part of the contract too: the callback's value comes back. */
    return ++r->n == EVENTS_KEPT ? 7 : 0;
}

static int parse(const char *s, size_t len, size_t chunk, struct record *r)
{
    struct sse p;
    int rc = 0;

    memset(r, 0, sizeof(*r));
    FUZZ_CHECK(sse_init(&p, "41", on_event, r) == 0);
    for (size_t off = 0; off < len && rc == 0; off += chunk)
        rc = sse_feed(&p, s + off, len - off < chunk ? len - off : chunk);
    sse_release(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct record whole, split;
    int rc_whole, rc_split;
    size_t chunk;
    char *s;

    if (size == 0 || size > STREAM_MAX)
        return 0;
    chunk = 1 + data[0] % 32;
    /* Exactly its size, so ASan sees a read past it. */
    s = malloc(size - 1 > 0 ? size - 1 : 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data + 1, size - 1);
    rc_whole = parse(s, size - 1, size, &whole);
    rc_split = parse(s, size - 1, chunk, &split);
    FUZZ_CHECK(rc_whole == 0 || rc_whole == 7 || rc_whole == VEND_ETOOBIG);
    if (rc_whole != rc_split || whole.n != split.n || whole.hash != split.hash) {
        fprintf(stderr, "fuzz_sse: whole %d (%zu events), in chunks of %zu %d (%zu events)\n",
                rc_whole, whole.n, chunk, rc_split, split.n);
        abort();
    }
    free(s);
    return 0;
}
