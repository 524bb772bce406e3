#include "ingest.h"

#include <string.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

typedef int ingest_handler_fn(struct vendd *v, const char *machine_id, const char *payload,
                              size_t len);

/* What vendd accepts from machines; commands and config only go the other way. */
static const struct {
    enum vend_topic_kind kind;
    ingest_handler_fn *fn;
} handlers[] = {
    {VEND_TOPIC_DISPENSE_RESULT, handle_result},
    {VEND_TOPIC_TELEMETRY, handle_telemetry},
    {VEND_TOPIC_STATUS, handle_status},
};

const char *const ingest_subscriptions[] = {
    "vm/+/telemetry",
    "vm/+/dispense_result",
    "vm/+/status",
};
const size_t ingest_nsubscriptions = sizeof(ingest_subscriptions) / sizeof(ingest_subscriptions[0]);

static int machine_known(struct vendd *v, const char *machine_id)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    int64_t n = 0;
    int rc = store_query_int(v->db, "SELECT count(*) FROM machines WHERE id = $1", p, 1, &n);

    return rc < 0 ? rc : n > 0;
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
    for (size_t i = 0; rc == VEND_OK && i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (handlers[i].kind == t.kind)
            fn = handlers[i].fn;
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
    rc = machine_known(v, t.machine_id);
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
