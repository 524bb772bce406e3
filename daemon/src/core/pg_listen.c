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

#define CONNECT_TIMEOUT_S "5"
/* Reconnects while the server is away: 1 s doubling to 30 s, so that a connect blocking for
 * its timeout (a server that drops packets) stalls the loop rarely. */
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS   30000
/* A channel name: PostgreSQL identifiers are at most 63 bytes. */
#define CHANNEL_MAX 63

struct pg_listen {
    struct loop *loop;
    PGconn *conn; /* NULL while down */
    int fd;       /* watched on the loop; -1 while down */
    char *url;
    char channel[CHANNEL_MAX + 1];
    pg_listen_fn *fn;
    void *arg;
    bool warned;                    /* the connection's loss is logged once until it is back */
    uint64_t retry_at_ms, retry_ms; /* the next reconnect, on the loop's clock */
};

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
    PQfinish(l->conn);
    l->conn = NULL;
}

static void on_readable(void *arg, int fd, unsigned events)
{
    struct pg_listen *l = arg;
    PGnotify *n;

    (void)fd;
    (void)events;
    if (PQconsumeInput(l->conn) == 0) {
        down(l, PQerrorMessage(l->conn));
        return;
    }
    while (l->conn != NULL && (n = PQnotifies(l->conn)) != NULL) {
        char payload[128];

        snprintf(payload, sizeof(payload), "%s", n->extra != NULL ? n->extra : "");
        PQfreemem(n);
        l->fn(l->arg, payload);
    }
}

int pg_listen_check(struct pg_listen *l)
{
    char *ident = NULL, *sql = NULL;
    PGresult *res = NULL;
    int rc = VEND_EDB;

    if (l->conn != NULL)
        return VEND_OK;
    if (loop_now_ms(l->loop) < l->retry_at_ms)
        return VEND_EDB;
    l->conn = PQconnectdbParams((const char *const[]){"connect_timeout", "dbname", NULL},
                                (const char *const[]){CONNECT_TIMEOUT_S, l->url, NULL}, 1);
    if (l->conn == NULL) {
        down(l, "out of memory");
        return VEND_EDB;
    }
    if (PQstatus(l->conn) != CONNECTION_OK) {
        down(l, PQerrorMessage(l->conn)); /* names host and port, never the password */
        return VEND_EDB;
    }
    ident = PQescapeIdentifier(l->conn, l->channel, strlen(l->channel));
    if (ident == NULL) {
        down(l, PQerrorMessage(l->conn));
        goto out;
    }
    sql = xmalloc(strlen(ident) + sizeof("LISTEN "));
    memcpy(sql, "LISTEN ", sizeof("LISTEN ") - 1);
    memcpy(sql + sizeof("LISTEN ") - 1, ident, strlen(ident) + 1);
    res = PQexec(l->conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        down(l, PQerrorMessage(l->conn));
        goto out;
    }
    l->fd = PQsocket(l->conn);
    if (l->fd < 0 || PQsetnonblocking(l->conn, 1) != 0 ||
        loop_io_add(l->loop, l->fd, LOOP_READ, on_readable, l) < 0) {
        l->fd = -1;
        down(l, "cannot watch its socket");
        goto out;
    }
    if (l->warned)
        log_info("PostgreSQL LISTEN connection for '%s' back", l->channel);
    l->warned = false;
    l->retry_ms = 0;
    rc = VEND_OK;
out:
    PQclear(res);
    free(sql);
    PQfreemem(ident);
    return rc;
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
