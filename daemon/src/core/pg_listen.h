/*
 * pg_listen.h - a PostgreSQL connection of its own that LISTENs on one channel, read on the
 * loop: what another process NOTIFYs there calls back at once (no thread, no polling).
 *
 * The connection is blocking only while it is made (connect_timeout, as db_pg.c's). A lost
 * connection is dropped and logged; pg_listen_check() makes it again, so notifications sent
 * in between are missed (the caller's periodic look covers them).
 */
#ifndef VENDD_PG_LISTEN_H
#define VENDD_PG_LISTEN_H

#include <stddef.h>

struct loop;
struct pg_listen;

/* A notification on the channel; payload is the sender's text ("" if none). */
typedef void pg_listen_fn(void *arg, const char *payload);

/*
 * Connect to url (postgres[ql]://...) and LISTEN on channel (any text: quoted here). *out is
 * set even when the connection fails (VEND_EDB, logged): pg_listen_check() tries again.
 */
int pg_listen_open(struct pg_listen **out, struct loop *loop, const char *url, const char *channel,
                   pg_listen_fn *fn, void *arg);
/* Reconnect if the connection is down; VEND_OK when listening. */
int pg_listen_check(struct pg_listen *l);
/* NULL is fine. */
void pg_listen_free(struct pg_listen *l);

#endif
