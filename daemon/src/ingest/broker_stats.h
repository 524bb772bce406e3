/*
 * broker_stats.h - what the broker says of itself ($SYS/broker/..., mosquitto's statistics,
 * published every sys_interval), so overload is visible instead of silent (SPEC §10).
 *
 * mosquitto drops messages toward a client whose queue is full (max_queued_messages) without
 * telling anyone but its log; its $SYS count of dropped messages is the one signal vendd can
 * read. The count is broker-wide (mosquitto 2.0 does not count per client): a rise is
 * reported as a warning (at most one a minute) and one open BROKER_DROPPED alert, restated
 * with the new count, for an operator to read the broker's log. The values are gauges in
 * /metrics. The dispense session subscribes to them (ingest.c): on the telemetry session
 * they would queue behind the flood they are to reveal.
 */
#ifndef VENDD_BROKER_STATS_H
#define VENDD_BROKER_STATS_H

#include <stdbool.h>
#include <stddef.h>

struct vendd;

#define BROKER_STATS_PREFIX "$SYS/broker/"
#define BROKER_STATS_ALERT  "BROKER_DROPPED"
/* Warnings about broker drops, at most one per this many ms. */
#define BROKER_STATS_WARN_MS 60000

/* The $SYS topics vendd reads, one per call (i < n), NULL past the last. */
const char *broker_stats_filter(size_t i);

/* True for a topic of the broker's statistics (to route it here, not to the machines'). */
bool broker_stats_topic(const char *topic);

/* A $SYS message: payload is the number as text (not NUL-terminated). Bad ones are ignored
 * after a log line: they are advice, never input that changes money or stock. */
void broker_stats_message(struct vendd *v, const char *topic, const char *payload, size_t len);

#endif
