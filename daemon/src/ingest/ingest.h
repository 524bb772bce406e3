/*
 * ingest.h - everything the machines send: the topic table and the handlers
 * behind it (handle_result.c, handle_telemetry.c, handle_status.c).
 *
 * ingest_message() is vendd's mqtt_message_fn. It parses the topic, bounds the
 * payload (VEND_PAYLOAD_MAX), checks the machine is registered and hands the
 * payload to the kind's handler. A handler decodes with the shared codec and
 * applies the message in one transaction, or rejects it whole. Every
 * rejection is logged with its reason and counted per kind and error in
 * /metrics; none stops the daemon or leaves a partial write.
 */
#ifndef VENDD_INGEST_H
#define VENDD_INGEST_H

#include <stdbool.h>
#include <stddef.h>

struct vendd;

/* The subscriptions vendd makes (QoS 1), in the order the guide logs them. */
extern const char *const ingest_subscriptions[];
extern const size_t ingest_nsubscriptions;

/* mqtt_message_fn: arg is the struct vendd. */
void ingest_message(void *arg, const char *topic, const void *payload, size_t len, bool retained);

/*
 * Handlers: payload is NOT NUL-terminated; machine_id is registered. They return VEND_OK
 * or a negative VEND_E* after logging why (the caller counts it).
 */
int handle_result(struct vendd *v, const char *machine_id, const char *payload, size_t len);
int handle_telemetry(struct vendd *v, const char *machine_id, const char *payload, size_t len);
int handle_status(struct vendd *v, const char *machine_id, const char *payload, size_t len);

#endif
