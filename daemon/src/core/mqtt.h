/*
 * mqtt.h - the daemon's MQTT v5 client: libmosquitto driven by our own loop
 * (no library thread), with reconnect, resubscribe and publish-once semantics.
 * Internals and the reasons behind them: docs/internals/mqtt.md.
 *
 * Invariants:
 *   - Everything runs on the loop thread; no function here may be called from
 *     another thread, and none blocks for long (the TCP connect is probed
 *     non-blocking first, see the doc).
 *   - A message handed to mqtt_client_publish() is given to libmosquitto at
 *     most once and only while connected. Each connection uses a fresh
 *     libmosquitto handle, so nothing queued on a dead connection is ever
 *     re-sent on the next one (no late dispense commands, no double publish).
 *   - Callbacks (on_message, on_state) run on the loop; they may publish, but
 *     must not call mqtt_client_free() on their own client.
 */
#ifndef VENDD_MQTT_H
#define VENDD_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct mqtt_client;

/* Bounds enforced by mqtt_client_new() and mqtt_client_publish(). */
#define MQTT_MAX_SUBSCRIPTIONS 64
#define MQTT_MAX_CLIENT_ID     128
#define MQTT_MAX_HOST          253
#define MQTT_MAX_LABEL         32
/* Largest outbound payload; backend messages are a few hundred bytes. */
#define MQTT_MAX_PUBLISH 65536
/* Sent as the CONNECT Maximum-Packet-Size: the broker drops bigger inbound packets. */
#define MQTT_MAX_INBOUND_PACKET 65536

struct mqtt_config {
    const char *host;      /* required; name or address, resolved once on the first attempt */
    uint16_t port;         /* required, > 0 */
    bool tls;              /* mqtts: verify the broker with ca_file, or the system CAs */
    const char *ca_file;   /* NULL: system CAs (MOSQ_OPT_TLS_USE_OS_CERTS) */
    const char *username;  /* NULL: anonymous */
    const char *password;  /* NULL: none; requires username */
    const char *client_id; /* required: the persistent session is keyed on it */
    const char *const *subscriptions; /* topic filters, subscribed at QoS 1 */
    size_t nsubscriptions;            /* <= MQTT_MAX_SUBSCRIPTIONS */
    uint32_t session_expiry_s;        /* broker keeps our session (and QoS1 queue) this long */
    /* Optional: called on the loop after each burst of inbound messages (at most
     * MQTT_READ_BURST of them, read while the socket had more), with on_message's arg: where
     * a group commit ends (db_batch_commit()). */
    void (*after_burst)(void *arg);
    /* Optional: names the session in log lines ("MQTT telemetry session connected ..."). */
    const char *label;
};

/* Inbound packets read per wake-up of the socket before the loop runs anything else. */
#define MQTT_READ_BURST 256

struct mqtt_stats {
    uint64_t received;       /* inbound messages handed to on_message */
    uint64_t published;      /* mqtt_client_publish() calls that returned VEND_OK */
    uint64_t publish_failed; /* calls that returned an error other than EINVAL/EUNAVAILABLE */
    uint64_t reconnects;     /* successful connections after the first */
};

/* payload is valid during the call only, never NULL (empty payload: len 0). */
typedef void mqtt_message_fn(void *arg, const char *topic, const void *payload, size_t len,
                             bool retained);
/* Called with true after CONNACK success, false when an established connection is lost. */
typedef void mqtt_state_fn(void *arg, bool connected);

/*
 * Process-wide libmosquitto setup (mosquitto_lib_init is not thread-safe and
 * not reference counted here): call mqtt_lib_init() once from main() before
 * any client exists, mqtt_lib_cleanup() once after the last is freed.
 * Returns VEND_OK or VEND_EINTERNAL.
 */
int mqtt_lib_init(void);
void mqtt_lib_cleanup(void);

/*
 * Create a client on loop. cfg is copied (the caller's strings may go away);
 * on_message is required, on_state may be NULL; arg is passed to both.
 * Nothing connects until mqtt_client_start(). Returns VEND_OK and sets *out,
 * or VEND_EINVAL with a log line naming the bad field (then *out is NULL).
 */
int mqtt_client_new(struct mqtt_client **out, struct loop *loop, const struct mqtt_config *cfg,
                    mqtt_message_fn *on_message, mqtt_state_fn *on_state, void *arg);

/*
 * Begin connecting: the first attempt starts now, and from then on the
 * client reconnects by itself with backoff (0.5 s doubling to 30 s, jittered;
 * 30 s after the broker refused our credentials). Never blocks long: DNS is
 * resolved once here (or on the first later attempt that succeeds).
 * Returns VEND_OK, or VEND_ESTATE if already started.
 */
int mqtt_client_start(struct mqtt_client *c);

/* True between CONNACK success and the loss of that connection; false for NULL (no client yet). */
bool mqtt_client_connected(const struct mqtt_client *c);

/*
 * Publish once at QoS 0 or 1; expiry_s > 0 adds the MQTT v5 message-expiry.
 * Returns:
 *   VEND_OK           handed to the connection (QoS 1: the broker acks it later)
 *   VEND_EUNAVAILABLE not connected; NOTHING was queued and nothing will be sent
 *   VEND_EINVAL       bad topic (wildcards, not UTF-8) or qos; logged
 *   VEND_ETOOBIG      len > MQTT_MAX_PUBLISH or over the broker's maximum packet size
 *   VEND_ENOMEM       libmosquitto could not allocate; nothing queued
 *   VEND_EIO          the write failed: the message may or may not have reached
 *                     the broker, and it will NOT be sent again. Never retry it.
 */
int mqtt_client_publish(struct mqtt_client *c, const char *topic, const void *payload, size_t len,
                        int qos, bool retain, uint32_t expiry_s);

/* Counters for /metrics; the pointer is valid until mqtt_client_free(). */
const struct mqtt_stats *mqtt_client_stats(const struct mqtt_client *c);

/*
 * Send a clean DISCONNECT if connected (the broker keeps the session for
 * session_expiry_s), drop every fd and timer from the loop and free the
 * client. NULL is fine. The loop must still exist.
 */
void mqtt_client_free(struct mqtt_client *c);

#endif
