/*
 * events.h - the event stream (GET /api/events; docs/HTTP-API.md "Events"): changes of orders,
 * units, machines, stock, alerts and refunds as server-sent events, each delivered after the
 * commit that made it, with ids a reconnecting client resumes from without a gap or a
 * duplicate.
 *
 * Where events come from: triggers of the schema (migration 0010) write a row of `events` in
 * the transaction of every change they watch, so an event exists exactly when its change
 * committed, whichever code made the change. Ids grow in commit order and are never reused
 * (AUTOINCREMENT, also across restarts); the table keeps the newest EVENTS_WINDOW rows.
 *
 * Delivery: a client is a cursor (the newest id it was given) and a buffer of
 * EVENTS_CLIENT_BUF bytes that is refilled from the table whenever the client has taken what
 * it held, up to the newest id known to be committed. So replay and live delivery are one
 * path, and a client's lag is rows in the table, never bytes in vendd. events_emit(), called
 * after a commit, makes the loop look for new rows before it sleeps. The look is put off
 * while a group commit is open (db_batch_open()): what telemetry and status messages change
 * is sent after db_batch_commit(). While clients are connected a tick every EVENTS_TICK_MS
 * also looks (a commit without events_emit() is late, never lost), sends heartbeats and
 * drops slow clients.
 *
 * Limits: at most EVENTS_CLIENTS_MAX clients (the next one is refused, VEND_ELIMIT); a client
 * that has had events waiting and taken nothing for EVENTS_STALL_MS is dropped, and so is one
 * whose cursor fell out of the window; either reconnects with its Last-Event-ID. Memory per
 * client is the fixed buffer, whatever it lags.
 */
#ifndef VENDD_EVENTS_H
#define VENDD_EVENTS_H

#include <stdint.h>

struct vendd;
struct http_request;
struct events;

/* The newest events a client can resume from: migration 0010's events_window trigger keeps
 * this many (the number is written there too). */
#define EVENTS_WINDOW 100000
/* Clients streaming at once: a dashboard per operator, with room to spare. */
#define EVENTS_CLIENTS_MAX 64
/* What one client holds in vendd: a page of events read from the table. */
#define EVENTS_CLIENT_BUF (16 * 1024)
/* Rows read per refill (as many as fit in the buffer). */
#define EVENTS_PAGE 64
/* A comment line after this long without anything sent: keeps proxies from closing an idle
 * stream, and finds a client that went away. */
#define EVENTS_HEARTBEAT_MS 15000
/* A client with events waiting that takes nothing this long is dropped. */
#define EVENTS_STALL_MS 10000
/* How often the tick runs while clients are connected. */
#define EVENTS_TICK_MS 1000
/* The SSE "retry:" a client is told: how long to wait before it reconnects. */
#define EVENTS_RETRY_MS 2000

/* Create v->events and hook it into v->loop (v->db must be open). VEND_OK, or VEND_EIO if
 * the loop refuses the hook. */
int events_start(struct vendd *v);
/* After http_server_free(), which ends every stream: frees v->events. NULL is fine. */
void events_stop(struct vendd *v);

/*
 * A transaction that may have changed what the stream watches has committed (or an
 * autocommit write ran): deliver its events. Only marks them to be looked for before the loop
 * sleeps, so it is cheap and never sends from inside the caller; harmless when nothing
 * committed, and when v->events is not made yet.
 */
void events_emit(struct vendd *v);
/* After db_durable_take(): send what a lazy commit wrote, now that the disk has it. */
void events_durable(struct vendd *v);

/*
 * Serve req (GET /api/events) as a stream, from inside its handler. last_event_id < 0: none
 * given, the stream starts at the newest event. Otherwise it replays every event after it,
 * then goes on live; an id the window no longer holds, or one newer than the newest (another
 * database), starts with a "reset" event instead (docs/HTTP-API.md). Returns VEND_OK (the
 * handler sets no response), VEND_ELIMIT with EVENTS_CLIENTS_MAX clients connected, or
 * VEND_EBUSY (the database is locked) or another VEND_E* from it (logged).
 */
int events_attach(struct vendd *v, const struct http_request *req, int64_t last_event_id);

#endif
