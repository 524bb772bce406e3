/* ingest.c - the topic table: vendd's subscriptions and the dispatch of what arrives on them. */
#include "ingest.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_stats.h"
#include "conf.h"
#include "crashpoint.h"
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
#include "xmalloc.h"

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
     * machine's ONLINE lets orders through and its OFFLINE holds commands back. Such a batch
     * is also unguarded (db_batch_guard()): its messages open no savepoint, and are applied
     * again if one fails half-way; what they do outside the database before the commit is
     * their log lines and the stored count (unapplied() below). */
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

static ingest_handler_fn *handler_of(enum vend_topic_kind kind)
{
    for (size_t i = 0; i < NTOPICS; i++) {
        if (s_topics[i].kind == kind)
            return s_topics[i].fn;
    }
    return NULL;
}

/* ---- the log of an unguarded batch (struct ingest_log) ---- */

/* One message in the log: this header, its machine id, its payload. */
struct log_entry {
    uint8_t kind; /* enum vend_topic_kind */
    uint8_t idlen;
    uint16_t len;
};

_Static_assert(VEND_MACHINE_ID_MAX <= UINT8_MAX && VEND_PAYLOAD_MAX <= UINT16_MAX,
               "struct log_entry cannot hold a message");
_Static_assert(sizeof(struct log_entry) + VEND_MACHINE_ID_MAX + VEND_PAYLOAD_MAX <= INGEST_LOG_MAX,
               "INGEST_LOG_MAX cannot hold one message");

static size_t log_need(const char *machine_id, size_t len)
{
    return sizeof(struct log_entry) + strlen(machine_id) + len;
}

static bool log_fits(const struct ingest_log *lg, size_t need)
{
    return need <= INGEST_LOG_MAX - lg->len;
}

/* Keeps a message the unguarded batch applied; the caller made room (batch_join()). */
static void log_add(struct ingest_log *lg, enum vend_topic_kind kind, const char *machine_id,
                    const void *payload, size_t len)
{
    struct log_entry e = {
        .kind = (uint8_t)kind, .idlen = (uint8_t)strlen(machine_id), .len = (uint16_t)len};

    assert(log_fits(lg, log_need(machine_id, len)));
    if (lg->buf == NULL)
        lg->buf = xmalloc(INGEST_LOG_MAX);
    memcpy(lg->buf + lg->len, &e, sizeof(e));
    memcpy(lg->buf + lg->len + sizeof(e), machine_id, e.idlen);
    memcpy(lg->buf + lg->len + sizeof(e) + e.idlen, payload, len);
    lg->len += log_need(machine_id, len);
    lg->n++;
}

static void log_clear(struct ingest_log *lg)
{
    lg->len = 0;
    lg->n = 0;
}

void ingest_free(struct vendd *v)
{
    free(v->ingest_log.buf);
    v->ingest_log.buf = NULL;
    log_clear(&v->ingest_log);
}

/* A message rolled back with its batch is no longer stored (handle_telemetry counted it). */
static void unapplied(struct vendd *v, enum vend_topic_kind kind)
{
    if (kind == VEND_TOPIC_TELEMETRY && v->metrics.telemetry_stored > 0)
        v->metrics.telemetry_stored--;
}

/* A message applied in the open batch: counted until the batch commits or is lost. */
static void batched(struct vendd *v, enum vend_topic_kind kind)
{
    v->ingest_batched++;
    if (kind == VEND_TOPIC_TELEMETRY)
        v->ingest_batched_telemetry++;
}

/* The messages of the batch are gone with it, PUBACKed already (a result is never in one): no
 * longer stored, counted lost. Returns how many. */
static size_t batch_gone(struct vendd *v)
{
    size_t n = v->ingest_batched;
    uint64_t readings = v->ingest_batched_telemetry;

    v->metrics.telemetry_stored -=
        readings < v->metrics.telemetry_stored ? readings : v->metrics.telemetry_stored;
    v->metrics.ingest_batch_lost += n;
    v->ingest_batched = 0;
    v->ingest_batched_telemetry = 0;
    return n;
}

/*
 * After a message in a batch: if the database ended the batch's transaction by itself
 * (db_batch_lost(): I/O, a full disk, a lost connection; db.c logged the error), what it held
 * is gone, and this message and the ones after it ran in transactions of their own. One line
 * per batch; the message that failed with it logged its own failure.
 */
static void batch_check(struct vendd *v)
{
    size_t n;

    if (!db_batch_lost(v->db) || v->ingest_batched == 0)
        return;
    n = batch_gone(v);
    log_warnx("lost %zu telemetry/status message(s): the database rolled their group commit "
              "back by itself (an I/O error, a full disk, a lost connection)",
              n);
}

void ingest_commit(void *arg)
{
    struct vendd *v = arg;
    size_t n;
    int rc;

    log_clear(&v->ingest_log);
    batch_check(v);
    if (!db_batch_open(v->db))
        return;
    rc = db_batch_commit(v->db);
    if (rc < 0) {
        /* None: a replay's batch the failed message alone was in, taken by the database. */
        n = batch_gone(v);
        if (n > 0)
            log_warnx("lost %zu telemetry/status message(s): their group commit failed: %s (%s)", n,
                      vend_strerror(rc), db_errmsg(v->db));
        return;
    }
    v->ingest_batched = 0;
    v->ingest_batched_telemetry = 0;
    v->metrics.ingest_batches++;
}

/* Open the burst's batch if none is; without one (database busy) each message gets its own
 * transaction, as the handlers would do anyway. need: the bytes the message takes in the log
 * of an unguarded batch. */
static void batch_join(struct vendd *v, bool lazy, size_t need)
{
    batch_check(v); /* before a new batch forgets that the last one was lost */
    /* A message whose commit must wait for the disk after lazy ones (one burst never mixes
     * them today: the sessions split the kinds) gets a batch of its own. */
    if (db_batch_open(v->db) && v->ingest_batch_lazy && !lazy)
        ingest_commit(v);
    /* An unguarded batch must keep what it applied, bounded. */
    if (db_batch_open(v->db) && !db_batch_guarded(v->db) && !log_fits(&v->ingest_log, need))
        ingest_commit(v);
    if (db_batch_open(v->db))
        return;
    if ((lazy ? db_batch_begin_lazy(v->db) : db_batch_begin(v->db)) < 0)
        return;
    v->ingest_batch_lazy = lazy;
    /* The log says what this batch applied: nothing yet. Never an earlier batch's: one whose
     * replay's transaction the database ended (I/O, a full disk) ended without
     * ingest_commit(), its messages lost or committed one transaction each since. */
    log_clear(&v->ingest_log);
    db_batch_guard(v->db, !lazy);
}

/*
 * A message of an unguarded batch failed after it changed rows (db_batch_spoiled()): roll the
 * whole batch back, apply what it held again in a batch that is guarded (a savepoint per
 * message), then the failed message once more, which rolls back alone if it fails again, as
 * it would have with a savepoint the first time. Returns the failed message's new result.
 * The failed pass's handler logged nothing (ingest.h): the line here says it failed half-way,
 * and why, and the pass after the replay, outside ingest_replaying, logs the outcome.
 */
static int batch_replay(struct vendd *v, ingest_handler_fn *fn, const char *machine_id,
                        const void *payload, size_t len)
{
    struct ingest_log *lg = &v->ingest_log;
    size_t at = 0;
    int rc;

    log_warnx("a message from '%s' failed half-way through its group commit (%s): rolling "
              "back the %zu message(s) before it and applying them again",
              machine_id, db_errmsg(v->db), lg->n);
    v->metrics.ingest_batch_replays++;
    db_batch_abort(v->db);
    v->ingest_batched = 0;
    v->ingest_batched_telemetry = 0;
    for (size_t i = 0; i < lg->n; i++) {
        struct log_entry e;

        memcpy(&e, lg->buf + at, sizeof(e));
        unapplied(v, (enum vend_topic_kind)e.kind);
        at += sizeof(e) + e.idlen + e.len;
    }
    /* Guarded from here on; without a batch (database busy), each its own transaction. */
    if ((v->ingest_batch_lazy ? db_batch_begin_lazy(v->db) : db_batch_begin(v->db)) < 0)
        log_warnx("cannot open a batch to apply them again: %s; one transaction each",
                  db_errmsg(v->db));
    at = 0;
    v->ingest_replaying = true;
    for (size_t i = 0; i < lg->n; i++) {
        struct log_entry e;
        char id[VEND_MACHINE_ID_MAX + 1];
        ingest_handler_fn *again;

        memcpy(&e, lg->buf + at, sizeof(e));
        memcpy(id, lg->buf + at + sizeof(e), e.idlen);
        id[e.idlen] = '\0';
        again = handler_of((enum vend_topic_kind)e.kind);
        assert(again != NULL); /* logged from the table */
        rc = again(v, id, lg->buf + at + sizeof(e) + e.idlen, e.len);
        if (rc < 0)
            metrics_reject(&v->metrics, (enum vend_topic_kind)e.kind, rc);
        else if (db_batch_open(v->db))
            batched(v, (enum vend_topic_kind)e.kind);
        batch_check(v); /* the database may end this guarded batch too */
        at += sizeof(e) + e.idlen + e.len;
    }
    v->ingest_replaying = false;
    /* The crash tests die here: the batch's messages applied again, nothing of it committed
     * (unless the batch could not be opened), the failed message not yet retried. */
    crashpoint(&v->crash, CRASH_INGEST_REPLAYED);
    /* The log is kept until the commit: it still says what the batch holds. */
    return fn(v, machine_id, payload, len);
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
        batch_join(v, lazy, log_need(t.machine_id, len));
    else
        ingest_commit(v); /* what came before it is durable first; it is never batched */
    rc = fn(v, t.machine_id, payload, len);
    if (rc < 0 && db_batch_spoiled(v->db))
        rc = batch_replay(v, fn, t.machine_id, payload, len);
    else if (rc >= 0 && !db_batch_guarded(v->db))
        log_add(&v->ingest_log, t.kind, t.machine_id, payload, len);
    /* Counted when applied: a rejected message rolled back alone, and a failed group commit
     * loses only what it held. */
    if (rc >= 0 && db_batch_open(v->db))
        batched(v, t.kind);
    batch_check(v);
    if (db_batch_open(v->db) && v->ingest_batched >= INGEST_BATCH_MAX)
        ingest_commit(v);
out:
    if (rc < 0)
        metrics_reject(&v->metrics, t.kind, rc);
}
