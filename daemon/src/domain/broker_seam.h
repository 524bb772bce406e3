/*
 * broker_seam.h - the seam between the domain and the MQTT client. The dispense path and the
 * config push talk to machines only through these two calls on struct vendd, so the
 * domain tests run against a fake broker in milliseconds; app.c wires them to mqtt.c
 * (like the clock seam now_ms).
 *
 * The contract is mqtt_client_publish()'s (mqtt.h): a publish is handed over at most once
 * and only while connected. VEND_EUNAVAILABLE means nothing was queued and nothing will be
 * sent; VEND_EIO means it may or may not have reached the broker and will not be re-sent.
 */
#ifndef VENDD_BROKER_SEAM_H
#define VENDD_BROKER_SEAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vend/err.h"

struct broker {
    /* QoS 0 or 1; expiry_s > 0 adds the MQTT v5 message expiry. Returns VEND_OK or as above. */
    int (*publish)(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                   bool retain, uint32_t expiry_s);
    /* True while connected: a publish now is handed to the broker. */
    bool (*up)(void *ctx);
    void *ctx;
};

/* No broker wired (tools, some tests) is a broker that is down. */
static inline bool broker_up(const struct broker *b)
{
    return b->up != NULL && b->up(b->ctx);
}

static inline int broker_publish(const struct broker *b, const char *topic, const void *payload,
                                 size_t len, int qos, bool retain, uint32_t expiry_s)
{
    if (b->publish == NULL)
        return VEND_EUNAVAILABLE;
    return b->publish(b->ctx, topic, payload, len, qos, retain, expiry_s);
}

#endif
