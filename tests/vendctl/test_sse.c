/*
 * test_sse.c - vendctl's server-sent events parser (vendctl/sse.h): fields, line ends of
 * every kind split anywhere across chunks, the last event id across events and into a new
 * stream, comments, retry, the BOM, and its bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sse.h"
#include "vend/err.h"

#define EVENTS_MAX 8

struct got {
    int n;
    char id[EVENTS_MAX][SSE_NAME_MAX + 1];
    char type[EVENTS_MAX][SSE_NAME_MAX + 1];
    char data[EVENTS_MAX][256];
    size_t len[EVENTS_MAX];
    int stop_after; /* 0: never */
};

static int on_event(const struct sse_event *ev, void *arg)
{
    struct got *g = arg;

    assert_true(g->n < EVENTS_MAX);
    assert_true(ev->len < sizeof(g->data[0]));
    snprintf(g->id[g->n], sizeof(g->id[0]), "%s", ev->id);
    snprintf(g->type[g->n], sizeof(g->type[0]), "%s", ev->type);
    memcpy(g->data[g->n], ev->data, ev->len + 1);
    g->len[g->n] = ev->len;
    g->n++;
    return g->stop_after > 0 && g->n >= g->stop_after ? 7 : 0;
}

/* Feed text in chunks of chunk bytes (0: all at once). */
static int feed(struct sse *p, const char *text, size_t chunk)
{
    size_t len = strlen(text);
    int rc = 0;

    if (chunk == 0)
        return sse_feed(p, text, len);
    for (size_t i = 0; i < len && rc == 0; i += chunk)
        rc = sse_feed(p, text + i, len - i < chunk ? len - i : chunk);
    return rc;
}

static const char stream[] = "\xef\xbb\xbf"
                             "retry: 2000\r\n"
                             "id: 7\r\n"
                             "\r\n"
                             ": a heartbeat\n"
                             "id: 8\n"
                             "event: order\n"
                             "data: {\"id\":\"A\",\r\n"
                             "data:\"status\":\"PAID\"}\r\n"
                             "\n"
                             "unknown: field\r"
                             "data\r"
                             "data: x\r"
                             "\r"
                             "id: 9\n"
                             "event: machine\n"
                             "data: last\n"
                             "\n";

/* The same events whatever the chunk size: CRLF split across chunks counts once. */
static void test_events_any_chunking(void **state)
{
    (void)state;
    for (size_t chunk = 0; chunk <= 5; chunk++) {
        struct got g = {0};
        struct sse p;

        assert_int_equal(sse_init(&p, NULL, on_event, &g), 0);
        assert_int_equal(feed(&p, stream, chunk), 0);
        assert_int_equal(g.n, 3);
        assert_string_equal(g.id[0], "8");
        assert_string_equal(g.type[0], "order");
        assert_string_equal(g.data[0], "{\"id\":\"A\",\n\"status\":\"PAID\"}");
        /* "data" alone is an empty line of data; the id carries over from event 8. */
        assert_string_equal(g.id[1], "8");
        assert_string_equal(g.type[1], "message");
        assert_string_equal(g.data[1], "\nx");
        assert_string_equal(g.id[2], "9");
        assert_string_equal(g.type[2], "machine");
        assert_string_equal(g.data[2], "last");
        assert_int_equal(p.retry_ms, 2000);
        assert_string_equal(p.last_id, "9");
        sse_release(&p);
    }
}

/* An id without data moves the last event id (a stream's opening position) but is no event. */
static void test_id_without_data(void **state)
{
    struct got g = {0};
    struct sse p;

    (void)state;
    assert_int_equal(sse_init(&p, "3", on_event, &g), 0);
    assert_string_equal(p.last_id, "3");
    assert_int_equal(feed(&p, "id: 41\nevent: ignored\n\n", 0), 0);
    assert_int_equal(g.n, 0);
    assert_string_equal(p.last_id, "41");
    /* The event type does not leak into the next event. */
    assert_int_equal(feed(&p, "data: a\n\n", 0), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.type[0], "message");
    assert_string_equal(g.id[0], "41");
    /* An id holding NUL is ignored; "id" alone empties it. */
    assert_int_equal(sse_feed(&p, "id: 4\0002\ndata: b\n\n", 17), 0);
    assert_string_equal(g.id[1], "41");
    assert_int_equal(feed(&p, "id\ndata: c\n\n", 0), 0);
    assert_string_equal(g.id[2], "");
    sse_release(&p);
}

/* A callback's nonzero stops the feed at once. */
static void test_stop(void **state)
{
    struct got g = {.stop_after = 1};
    struct sse p;

    (void)state;
    assert_int_equal(sse_init(&p, NULL, on_event, &g), 0);
    assert_int_equal(feed(&p, "data: 1\n\ndata: 2\n\n", 0), 7);
    assert_int_equal(g.n, 1);
    sse_release(&p);
}

/* Bounds: a line, the data of one event, an id or an event name. */
static void test_bounds(void **state)
{
    char *big = malloc(SSE_LINE_MAX + 16);
    struct got g = {0};
    struct sse p;

    (void)state;
    assert_non_null(big);
    memset(big, 'a', SSE_LINE_MAX + 1);
    assert_int_equal(sse_init(&p, NULL, on_event, &g), 0);
    assert_int_equal(sse_feed(&p, big, SSE_LINE_MAX + 1), VEND_ETOOBIG);
    sse_release(&p);

    /* Many data lines, each short, past SSE_DATA_MAX together. */
    assert_int_equal(sse_init(&p, NULL, on_event, &g), 0);
    memcpy(big, "data: ", 6);
    memset(big + 6, 'b', 1000);
    big[1006] = '\n';
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < SSE_DATA_MAX / 1000 + 2; i++)
        rc = sse_feed(&p, big, 1007);
    assert_int_equal(rc, VEND_ETOOBIG);
    assert_int_equal(g.n, 0);
    sse_release(&p);

    assert_int_equal(sse_init(&p, NULL, on_event, &g), 0);
    memcpy(big, "id: ", 4);
    memset(big + 4, '1', SSE_NAME_MAX + 1);
    big[4 + SSE_NAME_MAX + 1] = '\n';
    assert_int_equal(sse_feed(&p, big, SSE_NAME_MAX + 6), VEND_ETOOBIG);
    sse_release(&p);
    sse_release(&p); /* twice is fine */
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_any_chunking),
        cmocka_unit_test(test_id_without_data),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
