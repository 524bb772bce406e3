/*
 * events.c - the event stream: clients as cursors over the `events` table, read as they can
 * take it, woken after commits, heartbeats and dropped when slow; see events.h.
 */
#include "events.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"
#include "http.h"
#include "log.h"
#include "peers.h"
#include "loop.h"
#include "store.h"
#include "vend/err.h"
#include "vendd.h"
#include "xmalloc.h"

/*
 * The longest event as text. Every field is bounded (s_cols), and jansson writes a byte as at
 * most 6 ("\u001f"): 6 * (32 + 64 + 16 + 128) for the strings, 3 integers of 20 digits, the
 * names and punctuation: under 1700 bytes of JSON, plus "id:", "event:" and "data:" lines.
 */
#define EVENT_JSON_MAX 2048
#define EVENT_MAX      (EVENT_JSON_MAX + 64)
_Static_assert(EVENTS_CLIENT_BUF >= 2 * EVENT_MAX, "a client's buffer holds a few events");

/* The columns of EVENTS_SELECT after id and kind (migration 0010 says what each holds per
 * kind), and how each is shown. */
enum col {
    C_MACHINE,
    C_ORDER,
    C_UNIT,
    C_SLOT,
    C_REF,
    C_STATUS,
    C_AMOUNT,
    C_STOCK,
    C_DETAIL,
    C_FLAG,
    NCOLS
};
#define EVENTS_SELECT                                                                              \
    "SELECT id, kind, machine_id, order_id, unit, slot, ref_id, status, amount, stock, detail, "   \
    "flag FROM events WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3"
#define COL0 2 /* the row index of C_MACHINE */

enum col_type { COL_TEXT, COL_INT, COL_BOOL };

/* Text is cut at max bytes: the identifiers are shorter by the schema's CHECKs, and a detail
 * longer than that belongs to the REST API, not to a notification. */
static const struct {
    enum col_type type;
    size_t max;
} s_cols[NCOLS] = {
    [C_MACHINE] = {COL_TEXT, 32}, [C_ORDER] = {COL_TEXT, 64}, [C_UNIT] = {COL_INT, 0},
    [C_SLOT] = {COL_INT, 0},      [C_REF] = {COL_INT, 0},     [C_STATUS] = {COL_TEXT, 16},
    [C_AMOUNT] = {COL_INT, 0},    [C_STOCK] = {COL_INT, 0},   [C_DETAIL] = {COL_TEXT, 128},
    [C_FLAG] = {COL_BOOL, 0},
};

/* Each kind's fields: the JSON name of each column it uses (NULL: not part of it). */
static const struct {
    const char *kind;
    const char *name[NCOLS];
} s_kinds[] = {
    {"order",
     {[C_MACHINE] = "machine_id",
      [C_ORDER] = "order_id",
      [C_STATUS] = "status",
      [C_DETAIL] = "failure_reason"}},
    {"unit",
     {[C_MACHINE] = "machine_id",
      [C_ORDER] = "order_id",
      [C_UNIT] = "unit",
      [C_SLOT] = "slot",
      [C_STATUS] = "status",
      [C_DETAIL] = "error",
      [C_FLAG] = "late_result"}},
    {"machine", {[C_MACHINE] = "machine_id", [C_STATUS] = "status", [C_DETAIL] = "door"}},
    {"stock",
     {[C_MACHINE] = "machine_id",
      [C_SLOT] = "slot",
      [C_STOCK] = "current_stock",
      [C_FLAG] = "needs_inspection"}},
    {"alert",
     {[C_REF] = "id",
      [C_MACHINE] = "machine_id",
      [C_ORDER] = "order_id",
      [C_SLOT] = "slot",
      [C_STATUS] = "status",
      [C_DETAIL] = "kind"}},
    {"refund",
     {[C_REF] = "id",
      [C_MACHINE] = "machine_id",
      [C_ORDER] = "order_id",
      [C_STATUS] = "status",
      [C_AMOUNT] = "amount"}},
};
#define NKINDS (sizeof(s_kinds) / sizeof(s_kinds[0]))

struct client {
    struct events *ev;
    struct http_stream *stream;
    struct client *next, *prev;
    int64_t cursor;     /* the newest event id put in buf */
    size_t off, len;    /* buf[off, off + len) is not yet handed to the server */
    uint64_t active_ms; /* the server last asked for bytes, or the stream was woken */
    uint64_t sent_ms;   /* bytes were last handed to the server */
    bool asleep;        /* the reader had nothing: the stream waits for a wake */
    bool ended;         /* http_stream_end() was called: done follows */
    /* Came while the window was held: placed (place()) once it is sent, from want_id, its
     * Last-Event-ID (-1: none); until then it reads nothing. */
    bool unplaced;
    int64_t want_id;
    char remote[INET6_ADDRSTRLEN];
    char buf[EVENTS_CLIENT_BUF];
};

struct events {
    struct vendd *v;
    struct client *clients;
    size_t nclients;
    /* The window as last looked at: the oldest kept and the newest committed event id
     * (first = last + 1 while the table is empty). Clients read no further than last. */
    int64_t first, last;
    /* A look whose newest rows a lazy batch wrote (db_batch_begin_lazy()): its window, kept
     * from clients until commit generation held_gen is durable (events_durable()). */
    bool held;
    uint64_t held_gen;
    int64_t held_first, held_last;
    bool dirty;       /* events_emit() since the last look */
    bool look_failed; /* the last look failed (logged once until one works) */
    uint64_t tick;    /* loop timer, 0 while no client is connected */
};

/* ---- the window --------------------------------------------------------------------------- */

struct ends {
    int64_t first, last;
    bool any;
};

static int take_ends(void *arg, const struct db_row *row)
{
    struct ends *e = arg;

    e->any = !db_row_is_null(row, 1);
    e->first = e->any ? db_row_int(row, 0) : 0;
    e->last = e->any ? db_row_int(row, 1) : 0;
    return 1;
}

static void client_wake(struct client *c, uint64_t now)
{
    if (!c->asleep || c->ended)
        return;
    c->asleep = false;
    c->active_ms = now;
    http_stream_wake(c->stream);
}

static void place(struct client *c, int64_t last_event_id);

/* Make first..last the window clients read, place those that came while it was held, and
 * wake those with something to read. */
static void publish(struct events *ev, int64_t first, int64_t last)
{
    uint64_t now = loop_now_ms(ev->v->loop);

    ev->first = first;
    ev->last = last;
    for (struct client *c = ev->clients; c != NULL; c = c->next) {
        if (c->unplaced) {
            c->unplaced = false;
            place(c, c->want_id);
        }
        if (c->cursor < ev->last || c->len > 0)
            client_wake(c, now);
    }
}

/* Publishes the held window once it is durable (any commit that waited for the disk also
 * made it so); true while it is not. */
static bool still_held(struct events *ev)
{
    if (!ev->held)
        return false;
    if (db_durable(ev->v->db) < ev->held_gen)
        return true;
    ev->held = false;
    publish(ev, ev->held_first, ev->held_last);
    return false;
}

/*
 * Read the window's ends and publish them. Only what is committed and durable may be sent:
 * inside a group commit (its rows wait for db_batch_commit()) the look is put off and the last
 * window kept; the loop's callbacks leave no other transaction open. A window that a lazy
 * commit may still lose on power failure is held until the disk has it (events_durable()): a
 * client must never be given an event id that a restart could hand to another event. Two
 * subqueries, because SQLite answers min() and max() from the index only one at a time.
 */
static int look(struct events *ev)
{
    struct ends e = {0};
    uint64_t gen = db_commits(ev->v->db);
    int rc;

    if (db_batch_open(ev->v->db) || still_held(ev))
        return VEND_OK; /* dirty stays set: the next prepare, or the release, looks */
    ev->dirty = false;
    rc = db_exec(ev->v->db, "SELECT (SELECT min(id) FROM events), (SELECT max(id) FROM events)",
                 NULL, 0, take_ends, &e);
    if (rc < 0) {
        if (!ev->look_failed)
            log_warnx("cannot read the event window: %s", db_errmsg(ev->v->db));
        ev->look_failed = true;
        return rc;
    }
    ev->look_failed = false;
    /* The table is never emptied once written (the window keeps the newest), so an empty
     * one has had no event: ids start at 1. */
    if (!e.any)
        e.first = e.last + 1;
    if (db_durable(ev->v->db) < gen) {
        ev->held = true;
        ev->held_gen = gen;
        ev->held_first = e.first;
        ev->held_last = e.last;
        return VEND_OK;
    }
    publish(ev, e.first, e.last);
    return VEND_OK;
}

void events_durable(struct vendd *v)
{
    if (v->events != NULL)
        still_held(v->events);
}

/* ---- one event as text -------------------------------------------------------------------- */

/* s cut to max bytes (at a character boundary) as a JSON string; a text that is not UTF-8 (a
 * row vendd did not write) keeps its ASCII and shows '?' for the rest. */
static json_t *text_json(const char *s, size_t max)
{
    char ascii[128 + 1];
    size_t n = strnlen(s, max + 1);
    json_t *j;

    assert(max < sizeof(ascii));
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    j = json_stringn(s, n);
    if (j != NULL)
        return j;
    for (size_t i = 0; i < n; i++)
        ascii[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    return json_stringn(ascii, n);
}

/* The row as "id: N\nevent: KIND\ndata: {json}\n\n" into out; its length, or 0 when it does
 * not fit in size. */
static size_t event_format(const struct db_row *row, char *out, size_t size)
{
    char data[EVENT_JSON_MAX];
    const char *kind = db_row_text(row, 1);
    size_t k = 0, n;
    json_t *obj = json_object();
    int len;

    while (k < NKINDS && (kind == NULL || strcmp(s_kinds[k].kind, kind) != 0))
        k++;
    for (int i = 0; k < NKINDS && i < NCOLS; i++) {
        const char *name = s_kinds[k].name[i];
        json_t *val;

        if (name == NULL || db_row_is_null(row, COL0 + i))
            continue;
        if (s_cols[i].type == COL_TEXT)
            val = text_json(db_row_text(row, COL0 + i), s_cols[i].max);
        else if (s_cols[i].type == COL_INT)
            val = json_integer(db_row_int(row, COL0 + i));
        else
            val = json_boolean(db_row_int(row, COL0 + i) != 0);
        json_object_set_new(obj, name, val);
    }
    n = json_dumpb(obj, data, sizeof(data), JSON_COMPACT);
    json_decref(obj);
    assert(n > 0 && n <= sizeof(data)); /* bounded by s_cols, see EVENT_JSON_MAX */
    if (n == 0 || n > sizeof(data))
        return 0;
    /* A kind this build does not know (a row vendd did not write) still takes its id, so the
     * client neither stalls on it nor misses what follows. */
    len = snprintf(out, size, "id: %" PRId64 "\nevent: %s\ndata: %.*s\n\n", db_row_int(row, 0),
                   k < NKINDS ? s_kinds[k].kind : "unknown", (int)n, data);
    return len > 0 && (size_t)len < size ? (size_t)len : 0;
}

/* ---- a client's buffer -------------------------------------------------------------------- */

struct fill {
    struct client *c;
    int64_t first_id; /* the first row read, 0 if none */
};

static int take_event(void *arg, const struct db_row *row)
{
    struct fill *f = arg;
    struct client *c = f->c;
    size_t n = event_format(row, c->buf + c->len, sizeof(c->buf) - c->len);

    if (n == 0)
        return 1; /* full: the rest is read next time */
    if (f->first_id == 0)
        f->first_id = db_row_int(row, 0);
    c->len += n;
    c->cursor = db_row_int(row, 0);
    return 0;
}

/*
 * Fill the empty buffer with the events after the cursor, up to the newest committed. The
 * window only loses its oldest rows, so when the next row is not cursor + 1 and the oldest
 * kept is past cursor + 1, events this client was owed are gone: VEND_ERANGE (it reconnects
 * and is told to reset). A hole in the ids alone (a backend whose sequences skip) is no gap.
 */
static int refill(struct client *c)
{
    struct events *ev = c->ev;
    struct db_value p[3] = {DB_INT(c->cursor), DB_INT(ev->last), DB_INT(EVENTS_PAGE)};
    struct fill f = {.c = c};
    int64_t before = c->cursor, oldest = 0;
    int rc;

    c->off = 0;
    rc = db_exec(ev->v->db, EVENTS_SELECT, p, 3, take_event, &f);
    if (rc >= 0 && f.first_id != before + 1)
        rc = store_query_int(ev->v->db, "SELECT min(id) FROM events", NULL, 0, &oldest);
    if (rc < 0) {
        log_warnx("cannot read events for '%s' after id %" PRId64 ": %s", c->remote, before,
                  db_errmsg(ev->v->db));
        return rc;
    }
    if (f.first_id != before + 1 && (rc == 0 || oldest > before + 1)) {
        log_warnx("event stream of '%s' fell out of the window (after id %" PRId64 ", oldest kept "
                  "%" PRId64 "): closed, it resumes with a reset",
                  c->remote, before, oldest);
        return VEND_ERANGE;
    }
    return VEND_OK;
}

/* http_stream_read_fn */
static long client_read(void *arg, char *buf, size_t max)
{
    struct client *c = arg;
    uint64_t now = loop_now_ms(c->ev->v->loop);
    size_t n;

    c->active_ms = now;
    if (c->len == 0 && !c->unplaced && c->cursor < c->ev->last && refill(c) < 0)
        return -1;
    if (c->len == 0) {
        c->asleep = true;
        return 0;
    }
    n = c->len < max ? c->len : max;
    memcpy(buf, c->buf + c->off, n);
    c->off = c->len > n ? c->off + n : 0;
    c->len -= n;
    c->sent_ms = now;
    return (long)n;
}

/* http_stream_done_fn */
static void client_done(void *arg)
{
    struct client *c = arg;
    struct events *ev = c->ev;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ev->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    ev->nclients--;
    if (ev->nclients == 0 && ev->tick != 0) {
        loop_timer_del(ev->v->loop, ev->tick);
        ev->tick = 0;
    }
    log_info("event stream of '%s' closed at id %" PRId64, c->remote, c->cursor);
    free(c);
}

/* A client that reads slower than events come costs rows in the table, not memory; one that
 * stops reading would hold its place for good. It reconnects with its Last-Event-ID. */
static void client_drop_stalled(struct client *c)
{
    log_warnx("dropped the event stream of '%s' at id %" PRId64 " (newest %" PRId64 "): it took "
              "nothing for %d ms with events waiting",
              c->remote, c->cursor, c->ev->last, EVENTS_STALL_MS);
    c->ended = true;
    http_stream_end(c->stream);
}

/* Append text to an asleep client's (empty) buffer. */
static void client_say(struct client *c, const char *text)
{
    size_t n = strlen(text);

    assert(c->off + c->len + n <= sizeof(c->buf));
    memcpy(c->buf + c->off + c->len, text, n);
    c->len += n;
}

/* ---- the loop's side ---------------------------------------------------------------------- */

static void on_tick(void *arg);

static void tick_arm(struct events *ev)
{
    if (ev->tick != 0 || ev->nclients == 0)
        return;
    ev->tick = loop_timer_add(ev->v->loop, EVENTS_TICK_MS, on_tick, ev);
    if (ev->tick == 0)
        log_warnx("cannot arm the event stream's timer: no heartbeats until the next client");
}

/* Look for what came without events_emit(), then each client: dropped when stalled, a
 * heartbeat when idle. */
static void on_tick(void *arg)
{
    struct events *ev = arg;
    uint64_t now = loop_now_ms(ev->v->loop);

    ev->tick = 0;
    look(ev);
    for (struct client *c = ev->clients; c != NULL; c = c->next) {
        bool waiting = c->len > 0 || (!c->unplaced && c->cursor < ev->last);

        if (c->ended)
            continue;
        if (!c->asleep && waiting && now - c->active_ms >= EVENTS_STALL_MS) {
            client_drop_stalled(c);
        } else if (c->asleep && now - c->sent_ms >= EVENTS_HEARTBEAT_MS) {
            client_say(c, ": heartbeat\n\n");
            client_wake(c, now);
        }
    }
    tick_arm(ev);
}

static void on_prepare(void *arg)
{
    struct events *ev = arg;

    if (ev->dirty && ev->nclients > 0)
        look(ev);
}

/* ---- the module's face -------------------------------------------------------------------- */

int events_start(struct vendd *v)
{
    struct events *ev = xcalloc(1, sizeof(*ev));

    ev->v = v;
    ev->first = 1;
    if (loop_prepare_add(v->loop, on_prepare, ev) < 0) {
        free(ev);
        log_warnx("cannot hook the event stream into the loop");
        return VEND_EIO;
    }
    v->events = ev;
    return VEND_OK;
}

void events_stop(struct vendd *v)
{
    struct events *ev = v->events;

    if (ev == NULL)
        return;
    /* http_server_free() ended every stream, and each client went with its done_fn. */
    assert(ev->clients == NULL && ev->tick == 0);
    loop_prepare_del(v->loop, on_prepare, ev);
    free(ev);
    v->events = NULL;
}

void events_emit(struct vendd *v)
{
    if (v->events != NULL)
        v->events->dirty = true;
    peers_committed(v); /* the other instances of a shared group are told too */
}

/* Set c's cursor from the client's Last-Event-ID (-1: none) against the window sent, and say
 * it first on the stream. */
static void place(struct client *c, int64_t last_event_id)
{
    struct events *ev = c->ev;
    char text[256];
    const char *why = NULL, *why_text = NULL; /* a reset: its reason, on the wire and logged */

    if (last_event_id > ev->last) {
        why = "unknown";
        why_text = "newer than the newest event";
    } else if (last_event_id >= 0 && last_event_id < ev->first - 1) {
        why = "pruned";
        why_text = "older than the window";
    }
    /* The stream opens with the client's position, as an "id:" without data, which sets the id
     * a client resumes from without dispatching an event: one that loses the connection
     * before any event still resumes from where it was, not from wherever it reconnects. */
    c->cursor = last_event_id >= 0 && why == NULL ? last_event_id : ev->last;
    if (why == NULL)
        snprintf(text, sizeof(text), "retry: %d\nid: %" PRId64 "\n\n", EVENTS_RETRY_MS, c->cursor);
    else
        snprintf(text, sizeof(text),
                 "retry: %d\nid: %" PRId64 "\nevent: reset\ndata: {\"reason\":\"%s\","
                 "\"last_event_id\":%" PRId64 ",\"oldest\":%" PRId64 ",\"newest\":%" PRId64 "}\n\n",
                 EVENTS_RETRY_MS, c->cursor, why, last_event_id, ev->first, ev->last);
    client_say(c, text);
    if (why != NULL)
        log_info("event stream for '%s' from id %" PRId64 ": reset, Last-Event-ID %" PRId64
                 " is %s",
                 c->remote, c->cursor, last_event_id, why_text);
    else
        log_info("event stream for '%s' from id %" PRId64, c->remote, c->cursor);
}

int events_attach(struct vendd *v, const struct http_request *req, int64_t last_event_id)
{
    struct events *ev = v->events;
    struct client *c;
    int rc;

    if (ev->nclients >= EVENTS_CLIENTS_MAX)
        return VEND_ELIMIT;
    rc = look(ev);
    if (rc < 0)
        return rc;
    c = xcalloc(1, sizeof(*c));
    c->ev = ev;
    c->active_ms = c->sent_ms = loop_now_ms(v->loop);
    snprintf(c->remote, sizeof(c->remote), "%s", req->remote_addr);
    /* A held window (look()) is newer than the one sent, which may be none at all: judged
     * against that, the client's place would be "unknown" or id 0. It is placed when the
     * window it comes in is sent. */
    c->unplaced = ev->held;
    c->want_id = last_event_id;
    if (!c->unplaced)
        place(c, last_event_id);
    c->stream = http_stream_start(req, "text/event-stream", client_read, client_done, c);
    c->next = ev->clients;
    if (ev->clients != NULL)
        ev->clients->prev = c;
    ev->clients = c;
    ev->nclients++;
    tick_arm(ev);
    return VEND_OK;
}
