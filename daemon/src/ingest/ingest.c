/* ingest.c - the topic table: vendd's subscriptions and the dispatch of what arrives on them. */
#include "ingest.h"

#include <assert.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "machines.h"
#include "metrics.h"
#include "store.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

typedef int ingest_handler_fn(struct vendd *v, const char *machine_id, const char *payload,
                              size_t len);

/*
 * The one table of what vendd accepts from machines (commands and config only go the other
 * way). A row's kind gives its wire name (vend_topic_kind_name()), its subscription filter
 * (filter_build()) and the handler; the rows are in the order the subscriptions are made
 * and logged, which is the order the integration guide shows.
 */
static const struct {
    enum vend_topic_kind kind;
    ingest_handler_fn *fn;
} s_topics[] = {
    {VEND_TOPIC_TELEMETRY, handle_telemetry},
    {VEND_TOPIC_DISPENSE_RESULT, handle_result},
    {VEND_TOPIC_STATUS, handle_status},
};
#define NTOPICS (sizeof(s_topics) / sizeof(s_topics[0]))

/*
 * Put in front of every filter, and the one place to change it: several vendd instances
 * sharing the fleet will subscribe as "$share/vendd/vm/+/..." (MQTT v5 shared subscriptions,
 * docs/DESIGN.md). Received topics never carry it, so parsing is unaffected.
 */
#define FILTER_PREFIX ""

_Static_assert(NTOPICS <= INGEST_TOPICS_MAX, "raise INGEST_TOPICS_MAX");
_Static_assert(sizeof(FILTER_PREFIX) - 1 + VEND_TOPIC_FILTER_MAX <= INGEST_FILTER_MAX,
               "raise INGEST_FILTER_MAX");

/* FILTER_PREFIX + "vm/+/{kind}" into buf[INGEST_FILTER_MAX + 1]. */
static void filter_build(char *buf, enum vend_topic_kind kind)
{
    size_t n = sizeof(FILTER_PREFIX) - 1;
    int rc;

    memcpy(buf, FILTER_PREFIX, n);
    rc = vend_topic_filter(buf + n, INGEST_FILTER_MAX + 1 - n, kind);
    assert(rc > 0); /* the table names only known kinds; the sizes are checked above */
    (void)rc;
}

void ingest_subscriptions(struct ingest_subscriptions *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < NTOPICS; i++) {
        filter_build(out->filter[i], s_topics[i].kind);
        out->filters[i] = out->filter[i];
    }
    out->n = NTOPICS;
}

void ingest_message(void *arg, const char *topic, const void *payload, size_t len, bool retained)
{
    struct vendd *v = arg;
    struct vend_topic t;
    ingest_handler_fn *fn = NULL;
    int rc;

    (void)retained;
    v->metrics.mqtt_messages_received++;
    rc = vend_topic_parse(topic, strlen(topic), &t);
    for (size_t i = 0; rc == VEND_OK && i < NTOPICS; i++) {
        if (s_topics[i].kind == t.kind)
            fn = s_topics[i].fn;
    }
    if (fn == NULL) {
        v->metrics.mqtt_messages_unknown_topic++;
        log_warnx("rejected message on '%.80s': not a topic vendd handles", topic);
        return;
    }
    if (len > VEND_PAYLOAD_MAX) {
        rc = VEND_ETOOBIG;
        log_warnx("rejected %s from '%s': payload of %zu bytes exceeds %d",
                  vend_topic_kind_name(t.kind), t.machine_id, len, VEND_PAYLOAD_MAX);
        goto out;
    }
    rc = machines_exists(v, t.machine_id);
    if (rc <= 0) {
        log_warnx("rejected %s from '%s': %s", vend_topic_kind_name(t.kind), t.machine_id,
                  rc < 0 ? db_errmsg(v->db) : "machine not registered");
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    rc = fn(v, t.machine_id, payload, len);
out:
    if (rc < 0)
        metrics_reject(&v->metrics, t.kind, rc);
}
