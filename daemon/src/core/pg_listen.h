/*
 * pg_listen.h - a PostgreSQL connection of its own that LISTENs on one channel, read on the
 * loop: what another process NOTIFYs there calls back at once (no thread, no polling).
 *
 * The connection and its LISTEN are made on the loop, a step whenever the socket is ready,
 * never waiting for the server; an attempt not done within 5 s is dropped. A lost connection
 * is dropped and logged; pg_listen_check() makes it again, so notifications sent in between
 * are missed (the caller's periodic look covers them).
 */
#ifndef VENDD_PG_LISTEN_H
#define VENDD_PG_LISTEN_H

#include <stddef.h>

struct loop;
struct pg_listen;

/* A notification on the channel; payload is the sender's text ("" if none). */
typedef void pg_listen_fn(void *arg, const char *payload);

/*
 * Start connecting to url (postgres[ql]://...) to LISTEN on channel (any text: quoted here).
 * *out is always set; VEND_EDB while not listening yet (a failure is logged).
 */
int pg_listen_open(struct pg_listen **out, struct loop *loop, const char *url, const char *channel,
                   pg_listen_fn *fn, void *arg);
/* Call it periodically (every 250 ms, peers.c): starts a reconnect when the connection is
 * down and due, drops an attempt past its 5 s; VEND_OK when listening. */
int pg_listen_check(struct pg_listen *l);
/* NULL is fine. */
void pg_listen_free(struct pg_listen *l);

#endif
