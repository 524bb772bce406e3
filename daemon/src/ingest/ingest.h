/*
 * ingest.h - everything the machines send: the topic table and the handlers
 * behind it (handle_result.c, handle_telemetry.c, handle_status.c).
 *
 * ingest_message() is vendd's mqtt_message_fn. It parses the topic, bounds the
 * payload (VEND_PAYLOAD_MAX) and hands the payload to the kind's handler. A handler
 * decodes with the shared codec and applies the message in one transaction, or rejects
 * it whole. The machine must be registered: for a result ingest.c asks first; telemetry
 * and status find out in their own transaction (VEND_ENOTFOUND), where no separate read
 * can go stale. Every
 * rejection is logged with its reason and counted per kind and error in
 * /metrics; none stops the daemon or leaves a partial write.
 *
 * Two MQTT sessions (SPEC §10): the dispense session carries results and status in (and
 * commands out), the bulk session carries telemetry, so a telemetry flood can never fill
 * the broker's queue that results travel in. Group commit: the telemetry and status of one
 * burst (mqtt.h, MQTT_READ_BURST) are applied in one transaction, a savepoint per message
 * (db_batch_begin()), or for telemetry none: the batch is rolled back and applied again if one
 * fails half-way (struct ingest_log). A batch whose commit fails, or whose transaction the
 * database ends by itself (db_batch_lost()), loses its messages, acknowledged already: they
 * count in ingest_batch_lost, no longer in telemetry_stored. A result is never in a batch:
 * the batch before it is committed first, and the result is applied in its own transaction,
 * whose effects (the next command) follow its commit.
 */
#ifndef VENDD_INGEST_H
#define VENDD_INGEST_H

#include <stdbool.h>
#include <stddef.h>

struct vendd;

/* Bounds of struct ingest_subscriptions, checked against the table at compile time. */
#define INGEST_TOPICS_MAX 8
#define INGEST_FILTER_MAX 64

enum ingest_session {
    INGEST_DISPENSE, /* results and status; the commands go out on it */
    INGEST_BULK,     /* telemetry */
};

/* The filters one session subscribes to (QoS 1), built from the topic table in ingest.c. */
struct ingest_subscriptions {
    char filter[INGEST_TOPICS_MAX][INGEST_FILTER_MAX + 1];
    const char *filters[INGEST_TOPICS_MAX]; /* filter[i], the form struct mqtt_config takes */
    size_t n;
};

/*
 * Fills *out with session's filters, in table order (the order the guide shows); group is
 * MQTT_SHARED_GROUP ("" for plain subscriptions): the machines' results and telemetry become
 * "$share/<group>/vm/+/...", their status and the broker's $SYS counters stay unshared.
 */
void ingest_subscriptions(enum ingest_session session, const char *group,
                          struct ingest_subscriptions *out);

/* mqtt_message_fn: arg is the struct vendd. */
void ingest_message(void *arg, const char *topic, const void *payload, size_t len, bool retained);

/* After a burst of inbound messages (struct mqtt_config after_burst): commit the batch.
 * Also called before anything else that must not run inside one. */
void ingest_commit(void *arg);

/* Messages in a batch before it is committed whatever the burst. */
#define INGEST_BATCH_MAX 512

/*
 * What an unguarded batch (db_batch_guard(): telemetry, no savepoint per message) applied,
 * kept until it commits: when one of its messages fails after changing rows, ingest.c rolls
 * the batch back and applies these again, guarded. At most INGEST_LOG_MAX bytes: a batch whose
 * log cannot take the next message is committed first.
 */
#define INGEST_LOG_MAX (256 * 1024)
struct ingest_log {
    char *buf;  /* INGEST_LOG_MAX bytes, allocated at first use */
    size_t len; /* bytes held */
    size_t n;   /* messages held */
};

/* Frees what ingest keeps (the log); after the last ingest_commit(). */
void ingest_free(struct vendd *v);

/*
 * Handlers: payload is NOT NUL-terminated; machine_id is registered (handle_result), or
 * may not be (the others: VEND_ENOTFOUND, logged as not registered). They return VEND_OK
 * or a negative VEND_E* after logging why (the caller counts it); but a failure that spoiled
 * an unguarded batch (db_batch_spoiled()) is not logged by its handler: ingest.c says so and
 * applies the message once more, and that pass logs the message's outcome.
 */
int handle_result(struct vendd *v, const char *machine_id, const char *payload, size_t len);
int handle_telemetry(struct vendd *v, const char *machine_id, const char *payload, size_t len);
int handle_status(struct vendd *v, const char *machine_id, const char *payload, size_t len);

#endif
