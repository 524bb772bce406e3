/*
 * it_events.c - GET /api/events, the event stream (issue 10; docs/HTTP-API.md "Events"),
 * against the real vendd, read over a raw socket as an EventSource reads it: HTTP/1.1,
 * chunked, text/event-stream.
 *
 * 1. A dispense is told as it happens: the order, its unit, the stock and the order again,
 *    in commit order, each event already committed when it arrives, ids strictly increasing
 *    with none of the table's left out.
 * 2. A client that reconnects with Last-Event-ID gets exactly the events it missed (those a
 *    client that stayed saw after that id): no gap, no duplicate; so does ?last_event_id=.
 * 3. An id the window no longer holds, or one newer than the newest, starts with a reset;
 *    an id that is not one is 422.
 * 4. Ids go on above the old ones after vendd stops (cleanly or killed), even when the newest
 *    rows were deleted meanwhile: never reused.
 * 5. A client that stops reading is dropped once it took nothing for EVENTS_STALL_MS with
 *    events waiting, while a client that reads gets every event of the same flood (more than
 *    any buffer holds); the dropped one resumes where it stopped, without a gap.
 * 6. At most EVENTS_CLIENTS_MAX streams (the next is 503 TOO_MANY_STREAMS); a client that
 *    hangs up frees its place at once; an idle stream gets a heartbeat after
 *    EVENTS_HEARTBEAT_MS.
 * 7. An event a telemetry batch wrote (committed without waiting for the disk, db.h "Lazy
 *    durability") is not sent before the WAL is synced: with each sync held back
 *    VENDD_TEST_SYNC_DELAY_MS (test builds), the alert it raised is committed and readable
 *    while the stream stays silent, then comes once the sync is done (SQLite; PostgreSQL
 *    has no lazy commit, and the event just comes).
 * Each test has its own vendd, which then stops with status 0 (under ASan: nothing leaked,
 * streams open at the stop included).
 */
#define _GNU_SOURCE /* memmem, strcasestr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

/* As events.h says (the test reads vendd from outside). */
#define CLIENTS_MAX  64
#define HEARTBEAT_MS 15000
#define STALL_MS     10000

#define WAIT_MS    5000
#define BUF_MAX    (256 * 1024)
#define SEEN_MAX   16384
#define FLOOD      6000 /* status changes of the flood: ~450 KB of events */
#define FLOOD_TEXT "6000"
#define DATA_MAX   1024

/* ---- a server-sent events client over a raw socket ------------------------------------- */

struct sse {
    int fd;
    char raw[BUF_MAX]; /* from the socket, not yet de-chunked */
    size_t rlen;
    char body[BUF_MAX]; /* the stream, not yet cut into blocks */
    size_t blen;
    size_t chunk_left; /* bytes left of the current chunk */
    int state;         /* 0: chunk size line, 1: chunk data, 2: CRLF after the data */
    bool eof;          /* the last chunk, or the connection closed */
    size_t total;      /* stream bytes decoded so far */
};

/* One block of the stream. */
struct sse_event {
    long long id; /* -1: none */
    char event[32];
    char data[DATA_MAX];
    bool has_data;
    bool comment; /* held a comment line (a heartbeat) */
};

/* De-chunk what raw holds into body. */
static void sse_decode(struct sse *s)
{
    for (;;) {
        if (s->state == 0) {
            char *nl = memchr(s->raw, '\n', s->rlen);
            size_t used;

            if (nl == NULL)
                return;
            s->chunk_left = strtoul(s->raw, NULL, 16);
            used = (size_t)(nl - s->raw) + 1;
            memmove(s->raw, s->raw + used, s->rlen - used);
            s->rlen -= used;
            if (s->chunk_left == 0) {
                s->eof = true;
                return;
            }
            s->state = 1;
        } else if (s->state == 1) {
            size_t n = s->chunk_left < s->rlen ? s->chunk_left : s->rlen;

            if (n == 0)
                return;
            assert_true(s->blen + n <= sizeof(s->body));
            memcpy(s->body + s->blen, s->raw, n);
            s->blen += n;
            s->total += n;
            memmove(s->raw, s->raw + n, s->rlen - n);
            s->rlen -= n;
            s->chunk_left -= n;
            if (s->chunk_left == 0)
                s->state = 2;
        } else {
            if (s->rlen < 2)
                return;
            memmove(s->raw, s->raw + 2, s->rlen - 2);
            s->rlen -= 2;
            s->state = 0;
        }
    }
}

/* Read what the socket has within timeout_ms: 1 if something came, 0 if not, -1 at the end. */
static int sse_fill(struct sse *s, int timeout_ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    ssize_t n;

    if (s->eof)
        return -1;
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    n = read(s->fd, s->raw + s->rlen, sizeof(s->raw) - s->rlen);
    if (n <= 0) {
        s->eof = true;
        return -1;
    }
    s->rlen += (size_t)n;
    sse_decode(s);
    return 1;
}

static void block_parse(char *block, struct sse_event *ev)
{
    char *save = NULL;

    memset(ev, 0, sizeof(*ev));
    ev->id = -1;
    for (char *line = strtok_r(block, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == ':')
            ev->comment = true;
        else if (strncmp(line, "id: ", 4) == 0)
            ev->id = strtoll(line + 4, NULL, 10);
        else if (strncmp(line, "event: ", 7) == 0)
            snprintf(ev->event, sizeof(ev->event), "%s", line + 7);
        else if (strncmp(line, "data: ", 6) == 0) {
            snprintf(ev->data, sizeof(ev->data), "%s", line + 6);
            ev->has_data = true;
        }
    }
}

/* The next block within timeout_ms: 1, 0 on timeout, -1 at the end of the stream. */
static int sse_next(struct sse *s, struct sse_event *ev, int timeout_ms)
{
    uint64_t until = harness_now_ms() + (uint64_t)timeout_ms;

    for (;;) {
        char *end = s->blen > 0 ? memmem(s->body, s->blen, "\n\n", 2) : NULL;
        uint64_t now;

        if (end != NULL) {
            char block[DATA_MAX + 256];
            size_t n = (size_t)(end - s->body);

            assert_true(n < sizeof(block));
            memcpy(block, s->body, n);
            block[n] = '\0';
            memmove(s->body, end + 2, s->blen - n - 2);
            s->blen -= n + 2;
            block_parse(block, ev);
            return 1;
        }
        now = harness_now_ms();
        if (now >= until)
            return 0;
        if (sse_fill(s, (int)(until - now)) < 0)
            return -1;
    }
}

/* The next block that is an event (skipping heartbeats and the opening id). */
static int sse_next_event(struct sse *s, struct sse_event *ev, int timeout_ms)
{
    uint64_t until = harness_now_ms() + (uint64_t)timeout_ms;
    int rc;

    do {
        uint64_t now = harness_now_ms();

        rc = sse_next(s, ev, now < until ? (int)(until - now) : 0);
    } while (rc == 1 && !ev->has_data);
    return rc;
}

/*
 * Connect and ask for the stream: last_id as the Last-Event-ID header (NULL: none), query
 * appended to the path (NULL: none), rcvbuf the socket's receive buffer (0: the default).
 * Returns the HTTP status; on 200 s streams; otherwise it is closed.
 */
static long sse_open(struct sse *s, uint16_t port, const char *last_id, const char *query,
                     int rcvbuf)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    char req[512], *end = NULL;
    long status = 0;

    memset(s, 0, sizeof(*s));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    if (rcvbuf > 0)
        assert_int_equal(setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    assert_int_equal(connect(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    snprintf(req, sizeof(req),
             "GET /api/events%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
             "%s%s%s\r\n",
             query != NULL ? query : "", last_id != NULL ? "Last-Event-ID: " : "",
             last_id != NULL ? last_id : "", last_id != NULL ? "\r\n" : "");
    assert_int_equal(write(s->fd, req, strlen(req)), (ssize_t)strlen(req));
    while (end == NULL) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        ssize_t n;

        assert_true(poll(&p, 1, WAIT_MS) == 1);
        n = read(s->fd, s->raw + s->rlen, sizeof(s->raw) - s->rlen - 1);
        assert_true(n > 0);
        s->rlen += (size_t)n;
        s->raw[s->rlen] = '\0';
        end = strstr(s->raw, "\r\n\r\n");
    }
    sscanf(s->raw, "HTTP/1.1 %ld", &status);
    if (status == 200) {
        *end = '\0';
        assert_non_null(strcasestr(s->raw, "Content-Type: text/event-stream"));
        assert_non_null(strcasestr(s->raw, "Cache-Control: no-store"));
        assert_non_null(strcasestr(s->raw, "Transfer-Encoding: chunked"));
        end += 4;
        s->rlen -= (size_t)(end - s->raw);
        memmove(s->raw, end, s->rlen);
        sse_decode(s);
    } else {
        print_message("GET /api/events: %s\n", s->raw);
        close(s->fd);
        s->fd = -1;
    }
    return status;
}

static void sse_close(struct sse *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Open and read the opening block: the id the stream starts after. */
static long long sse_open_at(struct sse *s, uint16_t port, const char *last_id)
{
    struct sse_event ev;

    assert_int_equal(sse_open(s, port, last_id, NULL, 0), 200);
    assert_int_equal(sse_next(s, &ev, WAIT_MS), 1);
    assert_false(ev.has_data);
    assert_true(ev.id >= 0);
    return ev.id;
}

/* ---- what a test looks for ------------------------------------------------------------ */

static void expect_field(const struct sse_event *ev, const char *key, const char *want)
{
    json_t *j = json_loads(ev->data, 0, NULL);
    const json_t *v = j != NULL ? json_object_get(j, key) : NULL;
    char got[128] = "(absent)";

    if (json_is_string(v))
        snprintf(got, sizeof(got), "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(got, sizeof(got), "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(got, sizeof(got), "%s", json_is_true(v) ? "true" : "false");
    json_decref(j);
    if (strcmp(got, want) != 0)
        fail_msg("event %lld (%s %s): %s is %s, want %s", ev->id, ev->event, ev->data, key, got,
                 want);
}

/* "kind key=value key=value": does ev match? */
static bool matches(const struct sse_event *ev, const char *want)
{
    char spec[256], *save = NULL;
    json_t *j;
    bool ok;

    snprintf(spec, sizeof(spec), "%s", want);
    if (strcmp(strtok_r(spec, " ", &save), ev->event) != 0)
        return false;
    j = json_loads(ev->data, 0, NULL);
    ok = j != NULL;
    for (char *kv = strtok_r(NULL, " ", &save); ok && kv != NULL; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        const json_t *v;
        char got[128] = "";

        *eq = '\0';
        v = json_object_get(j, kv);
        if (json_is_string(v))
            snprintf(got, sizeof(got), "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(got, sizeof(got), "%lld", (long long)json_integer_value(v));
        else if (json_is_boolean(v))
            snprintf(got, sizeof(got), "%s", json_is_true(v) ? "true" : "false");
        ok = v != NULL && strcmp(got, eq + 1) == 0;
    }
    json_decref(j);
    return ok;
}

static long long sql_int(struct harness *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static long long sql_int(struct harness *h, const char *fmt, ...)
{
    char sql[512];
    long long v = -1;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    assert_int_equal(harness_sql_int(h, sql, &v), 1);
    return v;
}

/*
 * Read events until one matches the last of want[], checking on the way: ids strictly
 * increasing from after, each already committed (its row is in the file, read by another
 * connection), and want[] seen in that order. Returns the id of the last event read.
 */
static long long expect_sequence(struct harness *h, struct sse *s, long long after,
                                 const char *const *want, size_t nwant)
{
    struct sse_event ev;
    long long prev = after, count = 0;
    size_t next = 0;

    while (next < nwant) {
        int rc = sse_next_event(s, &ev, WAIT_MS);

        if (rc != 1)
            fail_msg("waited for '%s' after event %lld: %s", want[next], prev,
                     rc == 0 ? "nothing came" : "the stream ended");
        if (ev.id <= prev)
            fail_msg("event id %lld after %lld: ids must grow", ev.id, prev);
        if (sql_int(h, "SELECT count(*) FROM events WHERE id = %lld", ev.id) != 1)
            fail_msg("event %lld arrived but is not committed", ev.id);
        prev = ev.id;
        count++;
        if (matches(&ev, want[next]))
            next++;
    }
    /* None of the table's events in the range is missing from what came. */
    assert_int_equal(
        sql_int(h, "SELECT count(*) FROM events WHERE id > %lld AND id <= %lld", after, prev),
        count);
    return prev;
}

/* ---- the tests ------------------------------------------------------------------------- */

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 10, 1500}, {2, 10, 1500}, {0, 0, 0}};

    *state = harness_fixture_new(NULL, slots, "it-events");
    return *state != NULL ? 0 : -1;
}

/* vendd must stop with status 0: under ASan, nothing leaked on the test's paths. */
static int teardown(void **state)
{
    struct harness_fixture *f = *state;
    int rc = 0;

    if (harness_vendd_alive(&f->h) && harness_vendd_term(&f->h) != 0) {
        print_message("vendd did not exit with status 0 (under ASan: a leak or an error)\n");
        rc = -1;
    }
    harness_fixture_free(f);
    return rc;
}

/* Trigger order_id (slot 1, one unit), answer as the machine (dropped), and wait until vendd
 * has applied the answer, so what the test does next comes after it. */
static void dispense_one(struct harness_fixture *f, const char *order_id)
{
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char sql[160];

    assert_int_equal(harness_order(&f->h, order_id, 1, 1), 0);
    assert_int_equal(harness_trigger(&f->h, order_id, NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, WAIT_MS), seen + 1);
    assert_int_equal(harness_answer(&f->machine, order_id, 1, 0), 0);
    snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", order_id);
    assert_int_equal(harness_sql_wait(&f->h, sql, "COMPLETED", WAIT_MS), 0);
}

static void a_dispense_is_told_in_commit_order(void **state)
{
    struct harness_fixture *f = *state;
    static struct sse s;
    static const char *const want[] = {
        "machine machine_id=VM01 status=ONLINE door=CLOSED",
        "order order_id=ev-1 machine_id=VM01 status=PAID",
        "order order_id=ev-1 status=DISPENSING",
        "unit order_id=ev-1 unit=1 slot=1 status=QUEUED",
        "unit order_id=ev-1 unit=1 status=SENT",
        "unit order_id=ev-1 unit=1 status=SUCCEEDED late_result=false",
        "stock machine_id=VM01 slot=1 current_stock=9",
        "order order_id=ev-1 status=COMPLETED",
    };
    long long start = sse_open_at(&s, f->h.http_port, NULL);

    assert_int_equal(start, sql_int(&f->h, "SELECT COALESCE(max(id), 0) FROM events"));
    /* A status message is applied in a group commit: its event follows the batch's commit. */
    assert_int_equal(harness_machine_online(&f->h, &f->machine), 0);
    dispense_one(f, "ev-1");
    expect_sequence(&f->h, &s, start, want, sizeof(want) / sizeof(want[0]));
    sse_close(&s);
}

static void resume_replays_exactly_what_was_missed(void **state)
{
    struct harness_fixture *f = *state;
    static struct sse stay, back, query;
    static const char *const first[] = {"order order_id=ev-2a status=PAID"};
    static const char *const rest[] = {"order order_id=ev-2b status=COMPLETED",
                                       "order order_id=ev-2c status=PAID"};
    struct sse_event a, b;
    char id[32], q[64];
    long long start = sse_open_at(&stay, f->h.http_port, NULL), left, last, n = 0;

    assert_int_equal(sse_open_at(&back, f->h.http_port, NULL), start);
    assert_int_equal(harness_order(&f->h, "ev-2a", 2, 1), 0);
    left = expect_sequence(&f->h, &back, start, first, 1);
    sse_close(&back);

    /* Missed by the client that left: a whole dispense and one more order. */
    dispense_one(f, "ev-2b");
    assert_int_equal(harness_order(&f->h, "ev-2c", 2, 1), 0);
    last = expect_sequence(&f->h, &stay, start, rest, 2);

    snprintf(id, sizeof(id), "%lld", left);
    assert_int_equal(sse_open_at(&back, f->h.http_port, id), left);
    snprintf(q, sizeof(q), "?last_event_id=%lld", left);
    assert_int_equal(sse_open(&query, f->h.http_port, NULL, q, 0), 200);
    assert_int_equal(sse_next(&query, &a, WAIT_MS), 1);
    assert_int_equal(a.id, left);

    /* The one that stayed, read again from the table's view: exactly what came after left. */
    sse_close(&stay);
    assert_int_equal(sse_open_at(&stay, f->h.http_port, id), left);
    for (long long want = left + 1; want <= last; want++, n++) {
        assert_int_equal(sse_next_event(&back, &a, WAIT_MS), 1);
        assert_int_equal(sse_next_event(&query, &b, WAIT_MS), 1);
        assert_int_equal(a.id, want);
        assert_int_equal(b.id, want);
        assert_string_equal(a.event, b.event);
        assert_string_equal(a.data, b.data);
    }
    assert_true(n >= 8);
    /* Nothing more: no duplicate at the end of the replay. */
    assert_int_equal(sse_next_event(&back, &a, 500), 0);
    assert_int_equal(n, sql_int(&f->h, "SELECT count(*) FROM events WHERE id > %lld", left));
    sse_close(&back);
    sse_close(&query);
    sse_close(&stay);
}

static void expect_reset(struct harness_fixture *f, const char *last_id, const char *reason,
                         long long newest)
{
    static struct sse s;
    struct sse_event ev;

    assert_int_equal(sse_open(&s, f->h.http_port, last_id, NULL, 0), 200);
    assert_int_equal(sse_next(&s, &ev, WAIT_MS), 1);
    assert_string_equal(ev.event, "reset");
    assert_int_equal(ev.id, newest);
    expect_field(&ev, "reason", reason);
    expect_field(&ev, "last_event_id", last_id);
    sse_close(&s);
}

static void an_id_out_of_the_window_is_a_reset(void **state)
{
    struct harness_fixture *f = *state;
    static struct sse s;
    struct harness_reply r;
    struct sse_event ev;
    long long newest = sql_int(&f->h, "SELECT max(id) FROM events");
    char id[32];

    snprintf(id, sizeof(id), "%lld", newest + 1000);
    expect_reset(f, id, "unknown", newest);

    /* The window's oldest rows gone (as the window trigger deletes them): an id before them
     * is a reset, the one just before the oldest kept is not. */
    assert_int_equal(harness_vendd_term(&f->h), 0);
    assert_true(harness_sql_exec(&f->h, "DELETE FROM events WHERE id <= 3") == 3);
    assert_int_equal(harness_vendd_start(&f->h), 0);
    expect_reset(f, "1", "pruned", newest);
    assert_int_equal(sse_open_at(&s, f->h.http_port, "3"), 3);
    assert_int_equal(sse_next_event(&s, &ev, WAIT_MS), 1);
    assert_int_equal(ev.id, 4);
    sse_close(&s);

    assert_int_equal(harness_http(&f->h, "GET", "/api/events?last_event_id=x1", NULL, NULL, 0, &r),
                     422);
    assert_string_equal(harness_reply_str(&r, "error.code"), "INVALID_FIELD");
    harness_reply_free(&r);
}

static void ids_go_on_after_a_restart(void **state)
{
    struct harness_fixture *f = *state;
    static struct sse s;
    static const char *const a[] = {"order order_id=ev-4a status=PAID"};
    static const char *const b[] = {"order order_id=ev-4b status=PAID"};
    static const char *const c[] = {"order order_id=ev-4c status=PAID"};
    struct sse_event ev;
    long long start = sse_open_at(&s, f->h.http_port, NULL), e1, e2;
    char id[32];

    assert_int_equal(harness_order(&f->h, "ev-4a", 2, 1), 0);
    e1 = expect_sequence(&f->h, &s, start, a, 1);
    /* vendd stops: the stream ends with it. */
    assert_int_equal(harness_vendd_term(&f->h), 0);
    assert_int_equal(sse_next(&s, &ev, WAIT_MS), -1);
    sse_close(&s);
    /* The newest row deleted while vendd is down: its id is still never given again. */
    assert_int_equal(harness_sql_exec(&f->h, "DELETE FROM events WHERE id = (SELECT max(id) "
                                             "FROM events)"),
                     1);
    assert_int_equal(harness_vendd_start(&f->h), 0);
    snprintf(id, sizeof(id), "%lld", e1 - 1);
    assert_int_equal(sse_open_at(&s, f->h.http_port, id), e1 - 1);
    assert_int_equal(harness_order(&f->h, "ev-4b", 2, 1), 0);
    e2 = expect_sequence(&f->h, &s, e1, b, 1);
    assert_true(e2 > e1);
    sse_close(&s);

    /* Killed, not stopped: the same. */
    harness_vendd_kill(&f->h);
    assert_int_equal(harness_vendd_start(&f->h), 0);
    snprintf(id, sizeof(id), "%lld", e2);
    assert_int_equal(sse_open_at(&s, f->h.http_port, id), e2);
    assert_int_equal(harness_order(&f->h, "ev-4c", 2, 1), 0);
    expect_sequence(&f->h, &s, e2, c, 1);
    sse_close(&s);
}

/* A client that reads everything, on its own thread, while the test floods. */
struct reader {
    struct sse s;
    pthread_t thread;
    long long ids[SEEN_MAX];
    size_t n;
    long long until; /* stop after this id (set before the flood ends: -1 none yet) */
    bool ended;      /* the stream ended under it */
    pthread_mutex_t mu;
};

static void *read_all(void *arg)
{
    struct reader *r = arg;
    struct sse_event ev;

    for (;;) {
        int rc = sse_next_event(&r->s, &ev, 200);
        long long until;

        pthread_mutex_lock(&r->mu);
        if (rc == 1 && r->n < SEEN_MAX)
            r->ids[r->n++] = ev.id;
        if (rc < 0)
            r->ended = true;
        until = r->until;
        pthread_mutex_unlock(&r->mu);
        if (rc < 0 || (until >= 0 && r->n > 0 && r->ids[r->n - 1] >= until))
            return NULL;
    }
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *fp;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    fp = fopen(path, "r");
    if (fp == NULL)
        return -1;
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    }
    fclose(fp);
    return kib;
}

static void a_client_that_stops_reading_is_dropped(void **state)
{
    struct harness_fixture *f = *state;
    static struct reader fast = {.until = -1, .mu = PTHREAD_MUTEX_INITIALIZER};
    static struct sse slow;
    struct sse_event ev;
    long long start, newest, slow_last = -1, slow_count = 0;
    long rss_before, rss_after;
    char id[32], sql[160];

    assert_int_equal(harness_machine_online(&f->h, &f->machine), 0);
    start = sse_open_at(&fast.s, f->h.http_port, NULL);
    assert_int_equal(pthread_create(&fast.thread, NULL, read_all, &fast), 0);
    /* A small receive window: the kernel holds little for it, so vendd sees it stop. */
    assert_int_equal(sse_open(&slow, f->h.http_port, NULL, NULL, 4096), 200);
    assert_int_equal(sse_next(&slow, &ev, WAIT_MS), 1);
    assert_int_equal(ev.id, start);
    rss_before = rss_kib(f->h.pid);

    /* The flood: the machine's presence flips FLOOD times, an event each. */
    for (int i = 0; i < FLOOD; i++) {
        const char *st = i % 2 == 0 ? "{\"status\":\"OFFLINE\"}" : "{\"status\":\"ONLINE\"}";

        assert_int_equal(harness_mqtt_publish(&f->machine, "vm/VM01/status", st, strlen(st)), 0);
    }
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM events WHERE kind = 'machine' AND id > %lld",
             start);
    /* vendd takes them as fast as it can; under a sanitizer on a busy host that is slow. */
    assert_int_equal(harness_sql_wait(&f->h, sql, FLOOD_TEXT, 60000), 0);
    newest = sql_int(&f->h, "SELECT max(id) FROM events");
    pthread_mutex_lock(&fast.mu);
    fast.until = newest;
    pthread_mutex_unlock(&fast.mu);
    assert_int_equal(pthread_join(fast.thread, NULL), 0);

    /* The reader got every event, in order, none twice, and is still connected. */
    assert_false(fast.ended);
    assert_int_equal((long long)fast.n, newest - start);
    for (size_t i = 0; i < fast.n; i++)
        assert_int_equal(fast.ids[i], start + 1 + (long long)i);

    /* The one that stopped reading is dropped once it has taken nothing for the stall time. */
    assert_true(harness_log_wait(&f->h, "dropped the event stream", 1, STALL_MS + 5000) >= 1);
    rss_after = rss_kib(f->h.pid);
    print_message("vendd VmRSS %ld KiB before the flood, %ld KiB after\n", rss_before, rss_after);
    assert_int_equal(harness_call(&f->h, "GET", "/health", NULL, NULL), 200);
    /* What it holds is a prefix of the stream; then the connection is closed. */
    for (;;) {
        int rc = sse_next_event(&slow, &ev, WAIT_MS);

        if (rc != 1)
            break;
        assert_int_equal(ev.id, start + 1 + slow_count);
        slow_last = ev.id;
        slow_count++;
    }
    assert_true(slow.eof);
    assert_true(slow_last < newest);
    sse_close(&slow);

    /* It comes back with its Last-Event-ID and gets the rest, without a gap. */
    snprintf(id, sizeof(id), "%lld", slow_last >= 0 ? slow_last : start);
    assert_int_equal(sse_open_at(&slow, f->h.http_port, id), slow_last >= 0 ? slow_last : start);
    for (long long want = (slow_last >= 0 ? slow_last : start) + 1; want <= newest; want++) {
        assert_int_equal(sse_next_event(&slow, &ev, WAIT_MS), 1);
        assert_int_equal(ev.id, want);
    }
    sse_close(&slow);
    sse_close(&fast.s);
}

static void streams_are_capped_hangups_seen_idle_ones_beat(void **state)
{
    struct harness_fixture *f = *state;
    static struct sse watch, extra[CLIENTS_MAX];
    static struct sse one_more;
    struct sse_event ev;
    uint64_t opened, beat;
    long status = 0;

    assert_int_equal(sse_open(&watch, f->h.http_port, NULL, NULL, 0), 200);
    assert_int_equal(sse_next(&watch, &ev, WAIT_MS), 1);
    opened = harness_now_ms();
    for (int i = 0; i < CLIENTS_MAX - 1; i++)
        assert_int_equal(sse_open(&extra[i], f->h.http_port, NULL, NULL, 0), 200);
    assert_int_equal(sse_open(&one_more, f->h.http_port, NULL, NULL, 0), 503);
    assert_int_equal(harness_call(&f->h, "GET", "/health", NULL, NULL), 200);

    /* Hanging up frees the places at once, not at the next heartbeat. */
    for (int i = 0; i < CLIENTS_MAX - 1; i++)
        sse_close(&extra[i]);
    for (int tries = 0; tries < 50 && status != 200; tries++) {
        harness_sleep_ms(100);
        status = sse_open(&one_more, f->h.http_port, NULL, NULL, 0);
    }
    assert_int_equal(status, 200);
    assert_true(harness_now_ms() - opened < HEARTBEAT_MS / 2);
    sse_close(&one_more);

    /* Idle: a heartbeat comes after EVENTS_HEARTBEAT_MS, not before. */
    assert_int_equal(sse_next(&watch, &ev, HEARTBEAT_MS + 3000), 1);
    beat = harness_now_ms();
    assert_true(ev.comment);
    assert_false(ev.has_data);
    assert_true(beat - opened >= HEARTBEAT_MS - 1000);
    sse_close(&watch);
}

/* The syncer's hold (sqlite_sync.h) and how long the stream must stay silent after the
 * commit is seen: well inside the hold, so a slow machine does not make it pass or fail. */
#define SYNC_DELAY_MS "2000"
#define SILENT_MS     700

static int setup_slow_sync(void **state)
{
    static const struct harness_slot slots[] = {{1, 10, 1500}, {0, 0, 0}};
    static const char *const env[] = {"VENDD_TEST_SYNC_DELAY_MS=" SYNC_DELAY_MS, NULL};

    *state = harness_fixture_new(env, slots, "it-events");
    return *state != NULL ? 0 : -1;
}

static void telemetry_events_wait_for_the_disk(void **state)
{
    static const char reading[] =
        "{\"slots\":[{\"id\":1,\"level\":\"EMPTY\"}],\"temperature\":4.5,\"door\":\"CLOSED\"}";
    static const char *const want[] = {"alert kind=STOCK_SENSOR_MISMATCH machine_id=VM01"};
    struct harness_fixture *f = *state;
    static struct sse s;
    struct sse_event ev;
    long long start;

    start = sse_open_at(&s, f->h.http_port, NULL);
    /* Slot 1 holds 10 by its count: a sensor reading EMPTY raises an alert, an event. */
    assert_int_equal(
        harness_mqtt_publish(&f->machine, "vm/VM01/telemetry", reading, strlen(reading)), 0);
    assert_int_equal(harness_sql_wait(&f->h,
                                      "SELECT count(*) FROM alerts WHERE machine_id = 'VM01' "
                                      "AND kind = 'STOCK_SENSOR_MISMATCH'",
                                      "1", WAIT_MS),
                     0);
    /* Committed (another connection reads it), not yet synced: nothing is sent. PostgreSQL
     * commits every batch to disk before it returns, so its event needs no wait. */
    if (!harness_db_pg(&f->h) && sse_next_event(&s, &ev, SILENT_MS) == 1)
        fail_msg("event %lld (%s) was sent before the disk had it", ev.id, ev.event);
    /* Synced: it comes, in order and without a gap. */
    expect_sequence(&f->h, &s, start, want, 1);
    sse_close(&s);
}

/* Longer: the stream must stay silent past its next tick (EVENTS_TICK_MS), which looks. */
#define SLOWER_SYNC_DELAY_MS "4000"
#define SLOWER_SILENT_MS     1500

static int setup_slower_sync(void **state)
{
    static const struct harness_slot slots[] = {{1, 10, 1500}, {0, 0, 0}};
    static const char *const env[] = {"VENDD_TEST_SYNC_DELAY_MS=" SLOWER_SYNC_DELAY_MS, NULL};

    *state = harness_fixture_new(env, slots, "it-events");
    return *state != NULL ? 0 : -1;
}

/* A status batch that changes nothing (a machine vendd does not know) commits without
 * writing, so without syncing: it must not let out an event the syncer still owes. */
static void an_empty_commit_makes_nothing_durable(void **state)
{
    static const char reading[] =
        "{\"slots\":[{\"id\":1,\"level\":\"EMPTY\"}],\"temperature\":4.5,\"door\":\"CLOSED\"}";
    static const char status[] =
        "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,\"fw\":\"1.0.0\"}";
    static const char *const want[] = {"alert kind=STOCK_SENSOR_MISMATCH machine_id=VM01"};
    struct harness_fixture *f = *state;
    static struct sse s;
    struct sse_event ev;
    long long start;

    start = sse_open_at(&s, f->h.http_port, NULL);
    assert_int_equal(
        harness_mqtt_publish(&f->machine, "vm/VM01/telemetry", reading, strlen(reading)), 0);
    assert_int_equal(harness_sql_wait(&f->h,
                                      "SELECT count(*) FROM alerts WHERE machine_id = 'VM01' "
                                      "AND kind = 'STOCK_SENSOR_MISMATCH'",
                                      "1", WAIT_MS),
                     0);
    assert_int_equal(harness_mqtt_publish(&f->machine, "vm/VM77/status", status, strlen(status)),
                     0);
    assert_true(harness_log_wait(&f->h, "rejected status from 'VM77'", 1, WAIT_MS) >= 1);
    /* PostgreSQL has no lazy commit: its event just comes. */
    if (!harness_db_pg(&f->h) && sse_next_event(&s, &ev, SLOWER_SILENT_MS) == 1)
        fail_msg("event %lld (%s) was sent before the disk had it", ev.id, ev.event);
    expect_sequence(&f->h, &s, start, want, 1);
    sse_close(&s);
}

/* A client that comes while a lazy batch's window is held (none was connected before, so no
 * window was ever sent): its Last-Event-ID, the newest event the disk has, is no "unknown"
 * id to reset from 0, and a client without one starts at the newest, not at id 0. */
static void a_client_arriving_while_held_keeps_its_place(void **state)
{
    static const char reading[] =
        "{\"slots\":[{\"id\":1,\"level\":\"EMPTY\"}],\"temperature\":4.5,\"door\":\"CLOSED\"}";
    static const char *const want[] = {"alert kind=STOCK_SENSOR_MISMATCH machine_id=VM01"};
    struct harness_fixture *f = *state;
    static struct sse s, fresh;
    struct sse_event ev;
    long long newest = 0;
    char id[32];

    /* On PostgreSQL nothing is held: the same places, at once. */
    assert_true(harness_sql_int(&f->h, "SELECT max(id) FROM events", &newest) >= 0);
    assert_true(newest > 0);
    assert_int_equal(
        harness_mqtt_publish(&f->machine, "vm/VM01/telemetry", reading, strlen(reading)), 0);
    assert_int_equal(harness_sql_wait(&f->h,
                                      "SELECT count(*) FROM alerts WHERE machine_id = 'VM01' "
                                      "AND kind = 'STOCK_SENSOR_MISMATCH'",
                                      "1", WAIT_MS),
                     0);
    snprintf(id, sizeof(id), "%lld", newest);
    assert_int_equal(sse_open(&s, f->h.http_port, id, NULL, 0), 200);
    assert_int_equal(sse_open(&fresh, f->h.http_port, NULL, NULL, 0), 200);
    assert_int_equal(sse_next(&s, &ev, WAIT_MS), 1);
    if (ev.has_data)
        fail_msg("Last-Event-ID %lld, the newest event, answered with '%s': %s", newest, ev.event,
                 ev.data);
    assert_true(ev.id == newest);
    expect_sequence(&f->h, &s, newest, want, 1);
    assert_int_equal(sse_next(&fresh, &ev, WAIT_MS), 1);
    assert_false(ev.has_data);
    if (ev.id < newest)
        fail_msg("a client without Last-Event-ID starts after id %lld, older than %lld", ev.id,
                 newest);
    sse_close(&fresh);
    sse_close(&s);
}

int main(void)
{
    /* A vendd each: a test that fails leaves no stream open for the next. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_dispense_is_told_in_commit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(resume_replays_exactly_what_was_missed, setup, teardown),
        cmocka_unit_test_setup_teardown(an_id_out_of_the_window_is_a_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(ids_go_on_after_a_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(a_client_that_stops_reading_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(streams_are_capped_hangups_seen_idle_ones_beat, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(telemetry_events_wait_for_the_disk, setup_slow_sync,
                                        teardown),
        cmocka_unit_test_setup_teardown(an_empty_commit_makes_nothing_durable, setup_slower_sync,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_client_arriving_while_held_keeps_its_place,
                                        setup_slow_sync, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
