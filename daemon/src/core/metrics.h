/*
 * metrics.h - counters exported at GET /metrics (Prometheus text format).
 * Plain integers in struct vendd: one thread, no atomics needed. The MQTT client counts
 * its own connection events (struct mqtt_stats, mqtt.h); they are rendered beside these.
 */
#ifndef VENDD_METRICS_H
#define VENDD_METRICS_H

#include <stdint.h>

#include "vend/err.h"
#include "vend/topic.h"

/* VEND_E* codes are 0..-N; rejections are counted per topic kind and error code. */
#define METRICS_ERR_SLOTS 32

/* X(name, help) for plain counters. */
#define METRICS_COUNTERS(X)                                                                        \
    X(mqtt_messages_received, "MQTT messages received on subscribed topics")                       \
    X(mqtt_messages_unknown_topic, "MQTT messages on topics vendd does not handle")                \
    X(commands_published, "dispense commands handed to the broker")                                \
    X(dispense_succeeded, "dispensed units confirmed with a drop")                                 \
    X(dispense_failed, "dispensed units that failed or had no drop")                               \
    X(dispense_no_result, "dispensed units failed for lack of a result")                           \
    X(dispense_unreachable, "queued units failed because they could not be sent in time")          \
    X(dispense_late_results, "results that arrived after their unit had timed out")                \
    X(dispense_duplicate_results, "repeated results answered with the state already recorded")     \
    X(dispense_sweep_retries, "deadline sweeps that could not finish and were retried later")      \
    X(dispense_results_retried, "results kept because the database could not take them at once")   \
    X(dispense_results_dropped, "results dropped because too many were waiting for the database")  \
    X(dispense_unsettled, "units past their deadline on a settling machine, asked, not failed")    \
    X(settle_asks, "settle commands published")                                                    \
    X(ingest_batches, "group commits of inbound telemetry and status")                             \
    X(ingest_batch_lost, "telemetry and status messages lost with a group commit that failed")     \
    X(ingest_batch_replays, "group commits rolled back and applied again: a message failed in it") \
    X(dispense_settled_by_operator, "unsettled units an operator settled by hand")                 \
    X(orders_created, "customer orders recorded and sent to Midtrans")                             \
    X(orders_expired, "customer orders that expired unpaid")                                       \
    X(payment_notifications_applied, "payment notifications verified, stored and applied")         \
    X(payment_notifications_duplicate, "byte-identical payment notifications seen again")          \
    X(payment_notifications_rejected, "payment notifications refused (signature, amount, form)")   \
    X(refunds_done, "refunds Midtrans accepted")                                                   \
    X(telemetry_stored, "telemetry messages stored")                                               \
    X(telemetry_pruned, "raw telemetry rows deleted past TELEMETRY_RETENTION_DAYS")                \
    X(status_updates, "machine status messages applied")

/* X(name, help) for gauges: values as last seen, not counts of vendd's own. */
#define METRICS_GAUGES(X)                                                                          \
    X(broker_messages_dropped, "the broker's $SYS count of messages it dropped (queue limits)")    \
    X(broker_messages_stored, "the broker's $SYS count of messages it holds (queued, retained)")   \
    X(broker_clients_connected, "the broker's $SYS count of connected clients")                    \
    X(results_waiting, "dispense results waiting in memory for the database")                      \
    X(ingest_batch_open, "messages in the group commit being built")

struct metrics {
#define METRICS_FIELD(name, help) uint64_t name;
    METRICS_COUNTERS(METRICS_FIELD)
    METRICS_GAUGES(METRICS_FIELD)
#undef METRICS_FIELD
    /* rejected[kind][-err]: bad input per topic kind and error code. */
    uint64_t mqtt_rejected[VEND_TOPIC_KIND_COUNT][METRICS_ERR_SLOTS];
    /* The HTTP server's connection limits (http.h struct http_stats), copied in before
     * rendering: connections refused at accept and closed at a deadline, by reason. */
    uint64_t http_refused_per_address, http_refused_full;
    uint64_t http_closed_header_deadline, http_closed_body_deadline;
    uint64_t http_connections_open;
};

/* Count one rejected message on a topic of kind with error err (negative VEND_E*). */
void metrics_reject(struct metrics *m, enum vend_topic_kind kind, int err);

struct mqtt_stats;

/* Prometheus text exposition of every counter, those of the MQTT client mq included (NULL,
 * before there is a client: zeros); returns an xmalloc'd string. */
char *metrics_render(const struct metrics *m, const struct mqtt_stats *mq);

#endif
