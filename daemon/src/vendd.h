/*
 * vendd.h - the daemon's context: one struct vendd, built by app_run() and
 * passed to every handler. There is no global state besides the log sink.
 */
#ifndef VENDD_VENDD_H
#define VENDD_VENDD_H

#include <stdint.h>

#include "metrics.h"

struct vendd_conf;
struct loop;
struct db;
struct http_server;
struct mqtt_client;

struct vendd {
    const struct vendd_conf *conf;
    struct loop *loop;
    struct db *db;
    struct http_server *http;
    struct mqtt_client *mqtt;
    struct metrics metrics;
    /* The one timer that fails SENT dispenses past their deadline (dispense.c). */
    uint64_t deadline_timer;
    char deadline_next[32]; /* ISO time the timer is armed for; "" when none */
    /* No unit fails before this (epoch ms): after a restart, results the broker held in
     * our session arrive before the first sweep (dispense_resume). */
    int64_t sweep_not_before_ms;
    /* Order ids made when the kernel's random generator fails (orders.c). */
    uint32_t order_seq;
    /* Wall clock in epoch milliseconds; a seam so tests can pin time. */
    int64_t (*now_ms)(void);
};

/* The wall clock: CLOCK_REALTIME in milliseconds. */
int64_t vendd_wall_ms(void);

/* Now as an ISO 8601 UTC timestamp (db_iso_time); buf >= 25 bytes. */
void vendd_now_iso(const struct vendd *v, char *buf, size_t size);

#endif
