/* pg_listen.c - LISTEN on a PostgreSQL connection of its own; see pg_listen.h. */
#include "pg_listen.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "log.h"
#include "loop.h"
#include "vend/err.h"
#include "xmalloc.h"

/* A connection and its LISTEN are made on the loop, a step each time the socket is ready,
 * and given up past this: a server that accepts and then says nothing (stopped, or a black
 * hole) must not hold the loop, as libpq's blocking connect and PQexec() did. */
#define ATTEMPT_MS 5000
/* Reconnects while the server is away: 1 s doubling to 30 s. */
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS   30000
/* A channel name: PostgreSQL identifiers are at most 63 bytes. */
#define CHANNEL_MAX 63

enum listen_state {
    LISTEN_DOWN,       /* no connection; the next attempt at retry_at_ms */
    LISTEN_CONNECTING, /* PQconnectPoll() steps */
    LISTEN_ASKING,     /* LISTEN sent, its answer awaited */
    LISTEN_UP,         /* notifications read as they come */
};

struct pg_listen {
    struct loop *loop;
    enum listen_state state;
    PGconn *conn; /* NULL while down */
    int fd;       /* watched on the loop; -1 while down */
    unsigned watched;
    char *url;
    char channel[CHANNEL_MAX + 1];
    pg_listen_fn *fn;
    void *arg;
    bool warned;                    /* the connection's loss is logged once until it is back */
    uint64_t retry_at_ms, retry_ms; /* the next reconnect, on the loop's clock */
    uint64_t give_up_at_ms;         /* an attempt not up by then is dropped */
    bool refused;                   /* a result of the LISTEN was not COMMAND_OK */
};

static void on_io(void *arg, int fd, unsigned events);

/* libpq's default prints notices raw to stderr, past the log's format; among them the
 * server's last word (FATAL) before it ends an idle connection. The loss itself is logged. */
static void notice_to_log(void *arg, const char *message)
{
    const struct pg_listen *l = arg;

    log_debug("postgresql (LISTEN '%s'): %.*s", l->channel, (int)strcspn(message, "\n"), message);
}

static void down(struct pg_listen *l, const char *why)
{
    if (!l->warned)
        log_warnx("PostgreSQL LISTEN connection for '%s' down: %.*s; other instances' changes "
                  "are seen by the periodic look until it is back",
                  l->channel, (int)strcspn(why, "\n"), why);
    l->warned = true;
    l->retry_ms = l->retry_ms == 0                 ? RETRY_FIRST_MS
                  : l->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
                                                   : l->retry_ms * 2;
    l->retry_at_ms = loop_now_ms(l->loop) + l->retry_ms;
    if (l->fd >= 0)
        loop_io_del(l->loop, l->fd);
    l->fd = -1;
    l->watched = 0;
    PQfinish(l->conn);
    l->conn = NULL;
    l->state = LISTEN_DOWN;
}

/* Watch the connection's socket for events; libpq may change the socket while it connects
 * (another address of the host). */
static int watch(struct pg_listen *l, unsigned events)
{
    int fd = PQsocket(l->conn);

    if (fd < 0)
        return VEND_EIO;
    if (fd != l->fd) {
        if (l->fd >= 0)
            loop_io_del(l->loop, l->fd);
        l->fd = -1;
        if (loop_io_add(l->loop, fd, events, on_io, l) < 0)
            return VEND_EIO;
        l->fd = fd;
    } else if (events != l->watched && loop_io_set(l->loop, fd, events) < 0) {
        return VEND_EIO;
    }
    l->watched = events;
    return VEND_OK;
}

/* Connected: send LISTEN without waiting for its answer. */
static void ask(struct pg_listen *l)
{
    char *ident = PQescapeIdentifier(l->conn, l->channel, strlen(l->channel));
    char *sql = NULL;
    int flushed;

    if (ident == NULL) {
        down(l, PQerrorMessage(l->conn));
        return;
    }
    sql = xmalloc(strlen(ident) + sizeof("LISTEN "));
    memcpy(sql, "LISTEN ", sizeof("LISTEN ") - 1);
    memcpy(sql + sizeof("LISTEN ") - 1, ident, strlen(ident) + 1);
    if (PQsetnonblocking(l->conn, 1) != 0 || PQsendQuery(l->conn, sql) == 0 ||
        (flushed = PQflush(l->conn)) < 0) {
        down(l, PQerrorMessage(l->conn));
    } else if (watch(l, flushed == 1 ? LOOP_READ | LOOP_WRITE : LOOP_READ) < 0) {
        down(l, "cannot watch its socket");
    } else {
        l->state = LISTEN_ASKING;
        l->refused = false;
    }
    free(sql);
    PQfreemem(ident);
}

static void connect_step(struct pg_listen *l)
{
    switch (PQconnectPoll(l->conn)) {
    case PGRES_POLLING_READING:
        if (watch(l, LOOP_READ) < 0)
            down(l, "cannot watch its socket");
        break;
    case PGRES_POLLING_WRITING:
        if (watch(l, LOOP_WRITE) < 0)
            down(l, "cannot watch its socket");
        break;
    case PGRES_POLLING_OK:
        ask(l);
        break;
    default:
        down(l, PQerrorMessage(l->conn)); /* names host and port, never the password */
        break;
    }
}

/* The LISTEN's answer, read as it comes. */
static void answer_step(struct pg_listen *l, unsigned events)
{
    PGresult *res;

    if ((events & LOOP_WRITE) != 0) {
        int flushed = PQflush(l->conn);

        if (flushed < 0 || watch(l, flushed == 1 ? LOOP_READ | LOOP_WRITE : LOOP_READ) < 0) {
            down(l, PQerrorMessage(l->conn));
            return;
        }
    }
    if (PQconsumeInput(l->conn) == 0) {
        down(l, PQerrorMessage(l->conn));
        return;
    }
    while (!PQisBusy(l->conn)) {
        res = PQgetResult(l->conn);
        if (res == NULL)
            break; /* the whole answer is in */
        l->refused = l->refused || PQresultStatus(res) != PGRES_COMMAND_OK;
        PQclear(res);
    }
    if (PQisBusy(l->conn))
        return; /* more to come, at the next readable */
    if (l->refused) {
        down(l, PQerrorMessage(l->conn));
        return;
    }
    if (l->warned)
        log_info("PostgreSQL LISTEN connection for '%s' back", l->channel);
    l->warned = false;
    l->retry_ms = 0;
    l->state = LISTEN_UP;
}

static void notifications(struct pg_listen *l)
{
    PGnotify *n;

    while (l->conn != NULL && (n = PQnotifies(l->conn)) != NULL) {
        char payload[128];

        snprintf(payload, sizeof(payload), "%s", n->extra != NULL ? n->extra : "");
        PQfreemem(n);
        l->fn(l->arg, payload);
    }
}

static void on_io(void *arg, int fd, unsigned events)
{
    struct pg_listen *l = arg;

    (void)fd;
    switch (l->state) {
    case LISTEN_CONNECTING:
        connect_step(l);
        return;
    case LISTEN_ASKING:
        answer_step(l, events);
        if (l->state == LISTEN_UP)
            notifications(l); /* any that came with the answer */
        return;
    case LISTEN_UP:
        if (PQconsumeInput(l->conn) == 0) {
            down(l, PQerrorMessage(l->conn));
            return;
        }
        notifications(l);
        return;
    case LISTEN_DOWN:
        return;
    }
}

int pg_listen_check(struct pg_listen *l)
{
    uint64_t now = loop_now_ms(l->loop);

    switch (l->state) {
    case LISTEN_UP:
        return VEND_OK;
    case LISTEN_CONNECTING:
    case LISTEN_ASKING:
        if (now >= l->give_up_at_ms)
            down(l, l->state == LISTEN_CONNECTING ? "no connection within 5 s"
                                                  : "no answer to LISTEN within 5 s");
        return VEND_EDB;
    case LISTEN_DOWN:
        break;
    }
    if (now < l->retry_at_ms)
        return VEND_EDB;
    /* A host name is resolved here, synchronously (libpq); an address in the URL avoids it. */
    l->conn = PQconnectStartParams((const char *const[]){"dbname", NULL},
                                   (const char *const[]){l->url, NULL}, 1);
    if (l->conn == NULL) {
        down(l, "out of memory");
        return VEND_EDB;
    }
    if (PQstatus(l->conn) == CONNECTION_BAD) {
        down(l, PQerrorMessage(l->conn));
        return VEND_EDB;
    }
    PQsetNoticeProcessor(l->conn, notice_to_log, l);
    l->state = LISTEN_CONNECTING;
    l->give_up_at_ms = now + ATTEMPT_MS;
    /* libpq's rule: after PQconnectStart, wait until the socket is writable. */
    if (watch(l, LOOP_WRITE) < 0)
        down(l, "cannot watch its socket");
    return VEND_EDB;
}

int pg_listen_open(struct pg_listen **out, struct loop *loop, const char *url, const char *channel,
                   pg_listen_fn *fn, void *arg)
{
    struct pg_listen *l = xcalloc(1, sizeof(*l));

    l->loop = loop;
    l->fd = -1;
    l->url = xstrdup(url);
    snprintf(l->channel, sizeof(l->channel), "%s", channel);
    l->fn = fn;
    l->arg = arg;
    *out = l;
    return pg_listen_check(l);
}

void pg_listen_free(struct pg_listen *l)
{
    if (l == NULL)
        return;
    if (l->fd >= 0)
        loop_io_del(l->loop, l->fd);
    PQfinish(l->conn);
    free(l->url);
    free(l);
}
