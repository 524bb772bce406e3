/*
 * vendd.h - the daemon's context: one struct vendd, built by app_run() and
 * passed to every handler. There is no global state besides the log sink.
 */
#ifndef VENDD_VENDD_H
#define VENDD_VENDD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker_seam.h"
#include "crashpoint.h"
#include "deadline.h"
#include "ingest.h"
#include "metrics.h"
#include "offline.h"
#include "telemetry.h"

struct vendd_conf;
struct loop;
struct db;
struct http_server;
struct mqtt_client;
struct httpc;
struct midtrans;
struct checkout;
struct refund_send;
struct pg_listen;
struct ratelimit;
struct result_backlog;
struct dispense_group;
struct events;

struct vendd {
    const struct vendd_conf *conf;
    struct loop *loop;
    struct db *db;
    struct http_server *http;
    struct mqtt_client *mqtt;
    /* The domain publishes only through this (broker_seam.h); app.c wires it to mqtt. */
    struct broker broker;
    struct metrics metrics;
    /* The timer that fails units past their limits (deadline.c). */
    struct deadline_state deadline;
    /* Outbound HTTP on the loop, and Midtrans over it; NULL without MIDTRANS_SERVER_KEY. */
    struct httpc *httpc;
    struct midtrans *midtrans;
    /* Customer orders and their Midtrans calls in flight (checkout.c). */
    struct checkout *checkout;
    /* Customer orders per client address (ORDER_RATE_PER_MIN). */
    struct ratelimit *order_limit;
    /* Operator sign-ins per client address (API_SIGNIN_PER_MIN, api_session.c). */
    struct ratelimit *signin_limit;
    /* The event stream's clients and what they have been sent (events.c). */
    struct events *events;
    /* The timer of the WAL checkpoint (app.c). */
    uint64_t checkpoint_timer;
    /* db_durable_fd() as the loop watches it, or -1 (app.c). */
    int durable_fd;
    /* The telemetry session (ingest.h); v->mqtt is the dispense session. */
    struct mqtt_client *mqtt_bulk;
    /* Messages in the open group commit (ingest.c), and how many of them are telemetry
     * (counted in metrics.telemetry_stored until the batch commits). */
    size_t ingest_batched;
    size_t ingest_batched_telemetry;
    bool ingest_batch_lazy; /* its commit does not wait for the disk (db_batch_begin_lazy()) */
    struct ingest_log ingest_log;
    /* ingest.c applies again what a rolled-back batch held: their first pass logged what
     * they did (handle_telemetry.c). */
    bool ingest_replaying;
    /* The broker's $SYS drop count has been read once; the last warning about it
     * (broker_stats.c). */
    bool broker_stats_seen;
    int64_t broker_warned_ms;
    /* Results waiting for the database to take them (dispense_result.c). */
    struct result_backlog *result_backlog;
    /* Triggers and results of this loop turn, for one commit (dispense_group.c). */
    struct dispense_group *dispense_group;
    /* The timer that sends refunds, and their Midtrans calls in flight (refunds.c). */
    uint64_t refunds_timer;
    struct refund_send *refund_sends;
    /* The timer that raises the alerts of machines OFFLINE past their grace (offline.c). */
    struct offline_state offline;
    /* With MQTT_SHARED_GROUP: the timer that looks for the other instances' work (peers.c). */
    struct {
        bool active;
        uint64_t timer, rearm_timer;
        unsigned ticks;
        bool notify;        /* a commit to tell the others of */
        bool notify_failed; /* the last NOTIFY failed (logged once) */
        struct pg_listen *listen;
    } peers;
    /* The timer that prunes raw telemetry past TELEMETRY_RETENTION_DAYS (telemetry.c). */
    struct telemetry_prune_state telemetry_prune;
    /* Order ids made when the kernel's random generator fails (orders.c). */
    uint32_t order_seq;
    /* Wall clock in epoch milliseconds; a seam so tests can pin time. */
    int64_t (*now_ms)(void);
    /* Monotonic clock in milliseconds (deadlines run on it); a seam too. */
    int64_t (*mono_ms)(void);
    /* This boot of the host (the kernel's boot_id); NULL or "" if unknown. The monotonic
     * clock is only comparable within one boot (deadline.c). */
    const char *boot_id;
    /* VENDD_CRASH_AT, read at start: where the crash tests stop vendd (crashpoint.h). */
    struct crashpoint crash;
    /* Set when vendd can no longer keep a rule (e.g. no timer for the deadlines): the loop
     * stops and vendd exits non-zero, to be restarted and resume from the database. */
    bool failed;
};

/* The wall clock: CLOCK_REALTIME in milliseconds. */
int64_t vendd_wall_ms(void);
/* The monotonic clock: CLOCK_MONOTONIC in milliseconds. */
int64_t vendd_mono_ms(void);

/* Now as an ISO 8601 UTC timestamp (db_iso_time); buf >= 25 bytes. */
void vendd_now_iso(const struct vendd *v, char *buf, size_t size);

#endif
