/* broker_stats.c - the broker's $SYS counters as gauges, and its drops as an alert; see
 * broker_stats.h. */
#include "broker_stats.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alerts.h"
#include "db.h"
#include "log.h"
#include "vendd.h"

/* The table of what is read: topic (after BROKER_STATS_PREFIX) and the gauge it sets. */
static const struct {
    const char *topic;
    size_t offset; /* of the uint64_t in struct metrics */
} s_stats[] = {
    {"publish/messages/dropped", offsetof(struct metrics, broker_messages_dropped)},
    {"store/messages/count", offsetof(struct metrics, broker_messages_stored)},
    {"clients/connected", offsetof(struct metrics, broker_clients_connected)},
};
#define NSTATS (sizeof(s_stats) / sizeof(s_stats[0]))

const char *broker_stats_filter(size_t i)
{
    static char filters[NSTATS][64];

    if (i >= NSTATS)
        return NULL;
    snprintf(filters[i], sizeof(filters[i]), BROKER_STATS_PREFIX "%s", s_stats[i].topic);
    return filters[i];
}

bool broker_stats_topic(const char *topic)
{
    return strncmp(topic, "$SYS/", 5) == 0;
}

/* A decimal count, at most 19 digits, nothing else. */
static bool parse_count(const char *p, size_t len, uint64_t *out)
{
    uint64_t n = 0;

    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(p[i] - '0');
    }
    *out = n;
    return true;
}

/* The broker dropped messages since vendd last looked: one open alert says how many. */
static void report_drops(struct vendd *v, uint64_t dropped, uint64_t before)
{
    char msg[256], now_iso[32];
    struct db_value p[2];
    int64_t now = v->mono_ms();
    int rc;

    if (v->broker_warned_ms == 0 || now - v->broker_warned_ms >= BROKER_STATS_WARN_MS) {
        v->broker_warned_ms = now;
        log_warnx("the broker dropped %" PRIu64 " message(s) (%" PRIu64 " in all): a client's "
                  "queue is full (max_queued_messages); see the broker's log for which",
                  dropped - before, dropped);
    }
    snprintf(msg, sizeof(msg),
             "the broker has dropped %" PRIu64 " message(s) since it started: a client's queue "
             "was full (max_queued_messages); its log names the client",
             dropped);
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    p[0] = DB_TEXT(BROKER_STATS_ALERT);
    p[1] = DB_TEXT(msg);
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = db_exec(v->db, "UPDATE alerts SET message = $2 WHERE kind = $1 AND resolved_at IS NULL", p,
                 2, NULL, NULL);
    if (rc == 0)
        rc = alerts_raise_locked(v, &(struct alert){.kind = BROKER_STATS_ALERT, .message = msg},
                                 now_iso);
    if (rc >= 0)
        rc = db_commit(v->db);
out:
    if (rc < 0) {
        log_warnx("cannot record the broker's drops as an alert: %s", db_errmsg(v->db));
        db_rollback(v->db);
    }
}

void broker_stats_message(struct vendd *v, const char *topic, const char *payload, size_t len)
{
    size_t plen = sizeof(BROKER_STATS_PREFIX) - 1;
    uint64_t value, *gauge, before;

    for (size_t i = 0; i < NSTATS; i++) {
        if (strncmp(topic, BROKER_STATS_PREFIX, plen) != 0 ||
            strcmp(topic + plen, s_stats[i].topic) != 0)
            continue;
        if (!parse_count(payload, len, &value)) {
            log_warnx("ignored '%s' from the broker: not a count", topic);
            return;
        }
        gauge = (uint64_t *)((char *)&v->metrics + s_stats[i].offset);
        before = *gauge;
        *gauge = value;
        /* The first reading after a start is the broker's history, not news; a broker
         * restart starts it from 0 again. */
        if (gauge == &v->metrics.broker_messages_dropped && v->broker_stats_seen && value > before)
            report_drops(v, value, before);
        if (gauge == &v->metrics.broker_messages_dropped)
            v->broker_stats_seen = true;
        return;
    }
}
