/*
 * sse.h - a parser of server-sent events (the text/event-stream format of the WHATWG HTML
 * standard, "Server-sent events"), fed bytes as they arrive in chunks of any size.
 *
 * Lines end with LF, CR or CRLF (a CRLF split across two chunks counts once). "data:" lines
 * join with LF, "event:" names the event (default "message"), "id:" sets the last event id
 * (kept across events, for Last-Event-ID on a reconnect; an id holding NUL is ignored),
 * "retry:" digits set the reconnection time; ':' starts a comment, other fields are ignored,
 * an empty line dispatches the event (none when it has no data). A leading UTF-8 BOM is
 * skipped.
 *
 * Bounded: a line over SSE_LINE_MAX bytes, an event's data over SSE_DATA_MAX, or an id or
 * event name over SSE_NAME_MAX is an error (VEND_ETOOBIG), after which the parser must be
 * reset with sse_init() before it is fed again.
 */
#ifndef VENDCTL_SSE_H
#define VENDCTL_SSE_H

#include <stdbool.h>
#include <stddef.h>

#define SSE_LINE_MAX (1u << 20)
#define SSE_DATA_MAX (1u << 20)
#define SSE_NAME_MAX 256

struct sse_event {
    const char *id;   /* the last event id ("" if none yet) */
    const char *type; /* "message" unless the event named another */
    const char *data; /* NUL-terminated; len bytes (no trailing LF) */
    size_t len;
};

/* Called for each event; returns 0 to go on, anything else to stop sse_feed() with it. */
typedef int sse_event_fn(const struct sse_event *ev, void *arg);

struct sse {
    char *line; /* malloc'd, SSE_LINE_MAX + 1 */
    size_t line_len;
    char *data; /* malloc'd, SSE_DATA_MAX + 1 */
    size_t data_len;
    bool has_data;
    bool after_cr; /* the last byte was CR: an LF now ends no line */
    bool started;  /* past the optional BOM */
    char type[SSE_NAME_MAX + 1];
    char id[SSE_NAME_MAX + 1];      /* the id buffer of the event being read */
    char last_id[SSE_NAME_MAX + 1]; /* the last event id of the stream */
    long retry_ms;                  /* -1 until a retry: field */
    sse_event_fn *fn;
    void *arg;
};

/*
 * Start a stream with fn(arg) for its events; last_id (NULL: none) is the id the stream
 * continues from. Returns 0, or VEND_ENOMEM (nothing to release then).
 */
int sse_init(struct sse *p, const char *last_id, sse_event_fn *fn, void *arg);
/* Free what sse_init() allocated. Safe twice. */
void sse_release(struct sse *p);
/*
 * Parse len bytes. Returns 0, VEND_ETOOBIG (see above), or the nonzero value of the event
 * callback that stopped it (the bytes after that event are not parsed).
 */
int sse_feed(struct sse *p, const char *buf, size_t len);

#endif
