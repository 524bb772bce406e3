/*
 * cmd_watch.c - `vendctl watch`: vendd's server-sent events (GET /api/events) printed one
 * line each as they come; on a lost connection it reconnects with Last-Event-ID, so the
 * server can send what was missed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sse.h"
#include "vend/err.h"
#include "vendctl.h"

#define EVENTS_PATH     "/api/events"
#define RETRY_MS        1000  /* before a reconnect, unless the server said "retry:" */
#define RETRY_MIN_MS    100   /* whatever it said: a server that hangs up at once is no busy loop */
#define RETRY_MAX_MS    30000 /* the longest wait while reconnects keep failing */
#define RECONNECT_TRIES 10    /* failed reconnects in a row before giving up */

struct watch {
    struct ctl *ctl;
    struct sse sse;
    long long count, seen;
    bool toobig;
};

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* --json: {"id","event","data"}, data parsed if it is JSON, else a string. */
static void print_json(const struct sse_event *ev)
{
    json_t *data = json_loadb(ev->data, ev->len, JSON_DECODE_ANY, NULL);
    json_t *line;

    if (data == NULL)
        data = json_stringn(ev->data, ev->len);
    line = json_pack("{s:s?,s:s,s:o?}", "id", ev->id[0] != '\0' ? ev->id : NULL, "event", ev->type,
                     "data", data);
    if (line == NULL) {
        fputs("vendctl: an event that is not UTF-8 text was skipped\n", stderr);
        return;
    }
    out_json(stdout, line);
    json_decref(line);
}

/* For people: "TYPE DATA" on one line, escaped. */
static void print_text(const struct sse_event *ev)
{
    char type[SSE_NAME_MAX + 1], *data = malloc(ev->len + 1);

    if (data == NULL) {
        fputs("vendctl: out of memory: an event was skipped\n", stderr);
        return;
    }
    out_escape(type, sizeof(type), ev->type);
    /* Data of several lines shows on one, its lines joined by a space. */
    memcpy(data, ev->data, ev->len + 1);
    for (size_t i = 0; i < ev->len; i++) {
        if (data[i] == '\n')
            data[i] = ' ';
    }
    out_escape(data, ev->len + 1, data);
    printf("%s %s\n", type, data);
    free(data);
}

static int on_event(const struct sse_event *ev, void *arg)
{
    struct watch *w = arg;

    if (w->ctl->json)
        print_json(ev);
    else
        print_text(ev);
    /* A reader at the other end of a pipe sees each event when it happens. */
    fflush(stdout);
    w->seen++;
    return w->count > 0 && w->seen >= w->count;
}

static int on_bytes(const char *data, size_t len, void *arg)
{
    struct watch *w = arg;
    int rc = sse_feed(&w->sse, data, len);

    if (rc == VEND_ETOOBIG)
        w->toobig = true;
    return rc != 0;
}

int cmd_watch(struct ctl *ctl)
{
    struct watch w = {.ctl = ctl};
    char last_id[SSE_NAME_MAX + 1] = "", header[SSE_NAME_MAX + 32];
    long retry = RETRY_MS, wait;
    int failures = 0, status;
    bool connected = false;

    status = ctl_opt_int(ctl, CTL_OPT_COUNT, 1, LLONG_MAX, &w.count);
    if (status != CTL_EOK)
        return status;
    for (;;) {
        enum client_stream_end end;
        struct reply r;

        if (sse_init(&w.sse, last_id, on_event, &w) < 0)
            return ctl_fail(CTL_ELOCAL, "out of memory");
        snprintf(header, sizeof(header), "Last-Event-ID: %s", last_id);
        end = client_stream(&ctl->client, EVENTS_PATH, "text/event-stream",
                            last_id[0] != '\0' ? header : NULL, on_bytes, &w, &r);
        memcpy(last_id, w.sse.last_id, sizeof(last_id));
        if (w.sse.retry_ms >= 0)
            retry = w.sse.retry_ms;
        sse_release(&w.sse);
        if (end == CLIENT_STREAM_STOPPED) {
            reply_release(&r);
            if (w.toobig)
                return ctl_fail(CTL_ESERVER,
                                "GET " EVENTS_PATH ": a line or an event over %u "
                                "bytes",
                                SSE_LINE_MAX);
            return CTL_EOK;
        }
        if (end == CLIENT_STREAM_ANSWER) {
            status = client_status(&r);
            if (status == CTL_EOK) {
                status = ctl_fail(CTL_ESERVER, "%s: HTTP %ld, but not an event stream", r.what,
                                  r.status);
            } else if (r.status == 404 || r.status == 405) {
                status = ctl_fail(CTL_EUNSUPPORTED,
                                  "the event stream is not supported by this vendd (%s: %ld)",
                                  r.what, r.status);
            } else if (!connected || status != CTL_ESERVER) {
                client_report(&r);
            } else {
                /* A vendd that answered before and now fails (restarting): try again. */
                snprintf(r.error, sizeof(r.error), "HTTP %ld", r.status);
                end = CLIENT_STREAM_FAILED;
            }
            if (end == CLIENT_STREAM_ANSWER) {
                reply_release(&r);
                return status;
            }
        }
        if (end == CLIENT_STREAM_FAILED && !connected) {
            status = ctl_fail(CTL_ESERVER, "%s: %s", r.what, r.error);
            reply_release(&r);
            return status;
        }
        if (end == CLIENT_STREAM_ENDED) {
            connected = true;
            failures = 0;
        } else if (++failures > RECONNECT_TRIES) {
            status = ctl_fail(CTL_ESERVER, "%s: %s; gave up after %d tries", r.what, r.error,
                              RECONNECT_TRIES);
            reply_release(&r);
            return status;
        }
        wait = retry > RETRY_MIN_MS ? retry : RETRY_MIN_MS;
        for (int i = 1; i < failures && wait < RETRY_MAX_MS; i++)
            wait *= 2;
        if (wait > RETRY_MAX_MS)
            wait = RETRY_MAX_MS;
        out_escape(header, sizeof(header), last_id);
        fprintf(stderr, "vendctl: %s: %s; reconnecting in %ld ms%s%s\n", r.what,
                end == CLIENT_STREAM_ENDED ? "the stream ended" : r.error, wait,
                last_id[0] != '\0' ? " after event " : "", header);
        reply_release(&r);
        sleep_ms(wait);
    }
}
