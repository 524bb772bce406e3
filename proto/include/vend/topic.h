/*
 * topic.h - MQTT topic names vm/{machine_id}/{kind} and identifier rules.
 *
 * Only the five exact topics of the contract are accepted: no wildcards, no
 * extra or missing levels, no shared-subscription prefix (that belongs to a
 * subscription filter, never to the topic of a received message).
 *
 * No OS headers: compiled freestanding for the ESP32.
 */
#ifndef VEND_TOPIC_H
#define VEND_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#include "vend/msg.h"

enum vend_topic_kind {
    VEND_TOPIC_COMMAND = 0,     /* "command": backend -> machine */
    VEND_TOPIC_DISPENSE_RESULT, /* "dispense_result": machine -> backend */
    VEND_TOPIC_TELEMETRY,       /* "telemetry": machine -> backend */
    VEND_TOPIC_STATUS,          /* "status": machine -> backend, retained */
    VEND_TOPIC_CONFIG,          /* "config": backend -> machine, retained */
    VEND_TOPIC_KIND_COUNT,
};

/* Longest topic: "vm/" + id + "/" + "dispense_result". */
#define VEND_TOPIC_MAX (3 + VEND_MACHINE_ID_MAX + 1 + 15)
/* Longest filter of vend_topic_filter(): "vm/+/dispense_result". */
#define VEND_TOPIC_FILTER_MAX (3 + 1 + 1 + 15)

/*
 * The identifier rules, stated once. The validators below implement them; every message
 * that tells a user the rule prints these texts (POSIX extended regular expressions, whole
 * string), and tests/proto/test_topic.c checks each text against its validator byte by byte.
 */
#define VEND_STRINGIFY_(x)      #x
#define VEND_STRINGIFY(x)       VEND_STRINGIFY_(x)
#define VEND_MACHINE_ID_PATTERN "[A-Za-z0-9_-]{1," VEND_STRINGIFY(VEND_MACHINE_ID_MAX) "}"
#define VEND_ORDER_ID_PATTERN   "[A-Za-z0-9_.~-]{1," VEND_STRINGIFY(VEND_ORDER_ID_MAX) "}"

struct vend_topic {
    char machine_id[VEND_MACHINE_ID_MAX + 1]; /* NUL-terminated */
    enum vend_topic_kind kind;
};

/*
 * Parses the len bytes at topic (no NUL needed; a NUL inside is rejected).
 * Returns VEND_OK and fills *out, VEND_ETOPIC for anything that is not exactly
 * vm/{machine_id}/{kind}, or VEND_EINVAL for NULL arguments. On error *out
 * may be partially written and must not be used.
 */
int vend_topic_parse(const char *topic, size_t len, struct vend_topic *out);

/*
 * Writes "vm/{machine_id}/{kind}" and a NUL into buf. Returns the length
 * without the NUL, VEND_ETOPIC if machine_id is not valid or kind unknown, or
 * VEND_ENOSPACE if size is too small (VEND_TOPIC_MAX + 1 always suffices).
 */
int vend_topic_format(char *buf, size_t size, const char *machine_id, enum vend_topic_kind k);

/*
 * Writes the subscription filter "vm/+/{kind}" (kind k from every machine) and a NUL into
 * buf. Returns the length without the NUL, VEND_ETOPIC if k is unknown, or VEND_ENOSPACE if
 * size is too small (VEND_TOPIC_FILTER_MAX + 1 always suffices). A shared-subscription
 * prefix is the subscriber's business: it goes in front of what this writes.
 */
int vend_topic_filter(char *buf, size_t size, enum vend_topic_kind k);

/* The last topic level for k ("dispense_result"), or NULL for an unknown kind. */
const char *vend_topic_kind_name(enum vend_topic_kind k);

/* True if the NUL-terminated s matches VEND_MACHINE_ID_PATTERN; false for NULL. */
bool vend_machine_id_valid(const char *s);
/* True if the len bytes at s match VEND_MACHINE_ID_PATTERN (a NUL among them does not). */
bool vend_machine_id_valid_len(const char *s, size_t len);

/* True if the NUL-terminated s matches VEND_ORDER_ID_PATTERN; false for NULL. */
bool vend_order_id_valid(const char *s);
/* True if the len bytes at s match VEND_ORDER_ID_PATTERN (a NUL among them does not). */
bool vend_order_id_valid_len(const char *s, size_t len);

#endif
