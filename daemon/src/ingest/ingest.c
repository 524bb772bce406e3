/* ingest.c - the topic table: vendd's subscriptions and the dispatch of what arrives on them. */
#include "ingest.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "broker_stats.h"
#include "conf.h"
#include "db.h"
#include "dispense_result.h"
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
    enum ingest_session session;
    bool grouped; /* applied inside the burst's batch (its effects need no durable commit) */
    /* The handler's own transaction finds an unregistered machine (its first statement reads
     * or writes the machine row: VEND_ENOTFOUND, logged as not registered), so no separate
     * query asks first: it was 3 % of a telemetry message, and a check inside the write's
     * transaction cannot go stale the way a cache of registered machines could. */
    bool checks_machine;
    /* The handler keeps what the database cannot take now and applies it later (a result:
     * dispense_result_submit()); so a failed machine check must not drop the message. */
    bool keeps;
    /* In a group, handed to one instance ($share). Not status: a machine's OFFLINE and ONLINE
     * handed to two instances can commit the wrong way round, and a machine shown OFFLINE
     * takes no customer orders until its next change. Every instance applies every status,
     * each in the broker's order, so whichever commits last writes the latest. */
    bool shared;
    /* A batch of only these commits lazily (db_batch_begin_lazy()): what they change is
     * read, never acted on, and the event stream waits for the disk by itself. Not status: a
     * machine's ONLINE lets orders through and its OFFLINE holds commands back. */
    bool lazy;
} s_topics[] = {
    {VEND_TOPIC_TELEMETRY, handle_telemetry, INGEST_BULK, true, true, false, true, true},
    {VEND_TOPIC_DISPENSE_RESULT, handle_result, INGEST_DISPENSE, false, false, true, true, false},
    {VEND_TOPIC_STATUS, handle_status, INGEST_DISPENSE, true, true, false, false, false},
};
#define NTOPICS (sizeof(s_topics) / sizeof(s_topics[0]))

/*
 * Put in front of every shared filter with MQTT_SHARED_GROUP G: "$share/G/" (MQTT v5 shared
 * subscriptions: the broker hands each message to one member of the group, docs/DESIGN.md
 * "Several instances"). Received topics never carry it, so parsing is unaffected.
 */
#define SHARE_PREFIX "$share/"

_Static_assert(NTOPICS <= INGEST_TOPICS_MAX, "raise INGEST_TOPICS_MAX");
_Static_assert(sizeof(SHARE_PREFIX) - 1 + CONF_SHARED_GROUP_MAX + 1 + VEND_TOPIC_FILTER_MAX <=
                   INGEST_FILTER_MAX,
               "raise INGEST_FILTER_MAX");

/* ["$share/" group "/"] "vm/+/{kind}" into buf[INGEST_FILTER_MAX + 1]; group "" for none. */
static void filter_build(char *buf, const char *group, enum vend_topic_kind kind)
{
    size_t n = 0;
    int rc;

    assert(strlen(group) <= CONF_SHARED_GROUP_MAX);
    if (group[0] != '\0')
        n = (size_t)snprintf(buf, INGEST_FILTER_MAX + 1, SHARE_PREFIX "%s/", group);
    rc = vend_topic_filter(buf + n, INGEST_FILTER_MAX + 1 - n, kind);
    assert(rc > 0); /* the table names only known kinds; the sizes are checked above */
    (void)rc;
}

void ingest_subscriptions(enum ingest_session session, const char *group,
                          struct ingest_subscriptions *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < NTOPICS; i++) {
        if (s_topics[i].session != session)
            continue;
        filter_build(out->filter[out->n], s_topics[i].shared ? group : "", s_topics[i].kind);
        out->filters[out->n] = out->filter[out->n];
        out->n++;
    }
    /* The broker's own counters ride on the dispense session (broker_stats.h): on the bulk
     * one they would wait behind the very flood they are to reveal. Never shared: every
     * instance shows them. */
    for (size_t i = 0; session == INGEST_DISPENSE && broker_stats_filter(i) != NULL; i++) {
        assert(out->n < INGEST_TOPICS_MAX && strlen(broker_stats_filter(i)) <= INGEST_FILTER_MAX);
        snprintf(out->filter[out->n], sizeof(out->filter[0]), "%s", broker_stats_filter(i));
        out->filters[out->n] = out->filter[out->n];
        out->n++;
    }
}

void ingest_commit(void *arg)
{
    struct vendd *v = arg;
    size_t n = v->ingest_batched;
    int rc;

    if (!db_batch_open(v->db))
        return;
    v->ingest_batched = 0;
    rc = db_batch_commit(v->db);
    if (rc < 0) {
        /* PUBACKed already: these readings are gone (a result is never in a batch). */
        v->metrics.ingest_batch_lost += n;
        log_warnx("lost %zu telemetry/status message(s): their group commit failed: %s (%s)", n,
                  vend_strerror(rc), db_errmsg(v->db));
        return;
    }
    v->metrics.ingest_batches++;
}

/* Open the burst's batch if none is; without one (database busy) each message gets its own
 * transaction, as the handlers would do anyway. */
static void batch_join(struct vendd *v, bool lazy)
{
    /* A message whose commit must wait for the disk after lazy ones (one burst never mixes
     * them today: the sessions split the kinds) gets a batch of its own. */
    if (db_batch_open(v->db) && v->ingest_batch_lazy && !lazy)
        ingest_commit(v);
    if (db_batch_open(v->db))
        return;
    if ((lazy ? db_batch_begin_lazy(v->db) : db_batch_begin(v->db)) < 0)
        return;
    v->ingest_batch_lazy = lazy;
}

void ingest_message(void *arg, const char *topic, const void *payload, size_t len, bool retained)
{
    struct vendd *v = arg;
    struct vend_topic t;
    ingest_handler_fn *fn = NULL;
    bool grouped = false, checks_machine = false, keeps = false, lazy = false;
    int rc;

    (void)retained;
    if (broker_stats_topic(topic)) {
        broker_stats_message(v, topic, payload, len);
        return;
    }
    v->metrics.mqtt_messages_received++;
    rc = vend_topic_parse(topic, strlen(topic), &t);
    for (size_t i = 0; rc == VEND_OK && i < NTOPICS; i++) {
        if (s_topics[i].kind == t.kind) {
            fn = s_topics[i].fn;
            grouped = s_topics[i].grouped;
            checks_machine = s_topics[i].checks_machine;
            keeps = s_topics[i].keeps;
            lazy = s_topics[i].lazy;
        }
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
    rc = checks_machine ? 1 : machines_exists(v, t.machine_id);
    /* The database is away (a restart): a result is not dropped for a check that could not
     * run. Its handler keeps it until the database is back, and applying it matches it to
     * an order sent to this very machine, which an unregistered one never has. */
    if (rc < 0 && keeps && dispense_result_worth_retrying(rc)) {
        log_warnx("cannot check machine '%s' of a %s now: %s; the message is kept", t.machine_id,
                  vend_topic_kind_name(t.kind), db_errmsg(v->db));
        rc = 1;
    }
    if (rc <= 0) {
        log_warnx("rejected %s from '%s': %s", vend_topic_kind_name(t.kind), t.machine_id,
                  rc < 0 ? db_errmsg(v->db) : "machine not registered");
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    if (grouped)
        batch_join(v, lazy);
    else
        ingest_commit(v); /* what came before it is durable first; it is never batched */
    rc = fn(v, t.machine_id, payload, len);
    /* Counted when applied: a rejected message rolled back alone, and a failed group commit
     * loses only what it held. */
    if (rc >= 0 && db_batch_open(v->db) && ++v->ingest_batched >= INGEST_BATCH_MAX)
        ingest_commit(v);
out:
    if (rc < 0)
        metrics_reject(&v->metrics, t.kind, rc);
}
