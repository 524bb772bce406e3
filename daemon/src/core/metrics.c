/* metrics.c - the Prometheus text exposition of vendd's counters and the MQTT client's. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mqtt.h"
#include "xmalloc.h"

/* X(exported name, field of struct mqtt_stats, help): the client's counters that an
 * operator alerts on; published and received are already counted by kind above. */
#define METRICS_MQTT_COUNTERS(X)                                                                   \
    X(mqtt_reconnects, reconnects, "MQTT connections made after the first (broker came back)")     \
    X(mqtt_publish_failed, publish_failed,                                                         \
      "MQTT publishes that failed on a live connection and were not retried")

void metrics_reject(struct metrics *m, enum vend_topic_kind kind, int err)
{
    int slot = -err;

    if ((int)kind < 0 || kind >= VEND_TOPIC_KIND_COUNT)
        return;
    if (slot <= 0 || slot >= METRICS_ERR_SLOTS)
        slot = METRICS_ERR_SLOTS - 1; /* unexpected codes share the last slot */
    m->mqtt_rejected[kind][slot]++;
}

/* A growable text buffer for the exposition; metrics text is a few KiB. */
struct text {
    char *buf;
    size_t len, cap;
};

static void __attribute__((format(printf, 2, 3))) text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (n > 0 ? (size_t)n : 0);
        t->buf = xrealloc(t->buf, t->cap);
    }
}

char *metrics_render(const struct metrics *m, const struct mqtt_stats *mq)
{
    static const struct mqtt_stats none;
    struct text t = {.buf = xmalloc(4096), .cap = 4096};

    if (mq == NULL)
        mq = &none;

#define METRICS_RENDER(name, help)                                                                 \
    text_add(&t,                                                                                   \
             "# HELP vendd_" #name "_total " help "\n# TYPE vendd_" #name "_total counter\n"       \
             "vendd_" #name "_total %" PRIu64 "\n",                                                \
             m->name);
    METRICS_COUNTERS(METRICS_RENDER)
#undef METRICS_RENDER
#define METRICS_RENDER_GAUGE(name, help)                                                           \
    text_add(&t,                                                                                   \
             "# HELP vendd_" #name " " help "\n# TYPE vendd_" #name " gauge\nvendd_" #name         \
             " %" PRIu64 "\n",                                                                     \
             m->name);
    METRICS_GAUGES(METRICS_RENDER_GAUGE)
#undef METRICS_RENDER_GAUGE
#define METRICS_RENDER_MQTT(name, field, help)                                                     \
    text_add(&t,                                                                                   \
             "# HELP vendd_" #name "_total " help "\n# TYPE vendd_" #name "_total counter\n"       \
             "vendd_" #name "_total %" PRIu64 "\n",                                                \
             mq->field);
    METRICS_MQTT_COUNTERS(METRICS_RENDER_MQTT)
#undef METRICS_RENDER_MQTT

    text_add(&t,
             "# HELP vendd_http_connections_refused_total HTTP connections closed at accept, "
             "by the limit that refused them\n# TYPE vendd_http_connections_refused_total "
             "counter\nvendd_http_connections_refused_total{reason=\"per_address\"} %" PRIu64
             "\nvendd_http_connections_refused_total{reason=\"full\"} %" PRIu64 "\n",
             m->http_refused_per_address, m->http_refused_full);
    text_add(&t,
             "# HELP vendd_http_connections_closed_total HTTP connections closed because a "
             "request's headers or body were not in by their deadline (idle keep-alive "
             "included)\n# TYPE vendd_http_connections_closed_total counter\n"
             "vendd_http_connections_closed_total{reason=\"header_deadline\"} %" PRIu64
             "\nvendd_http_connections_closed_total{reason=\"body_deadline\"} %" PRIu64 "\n",
             m->http_closed_header_deadline, m->http_closed_body_deadline);
    text_add(&t,
             "# HELP vendd_http_connections HTTP connections open\n# TYPE "
             "vendd_http_connections gauge\nvendd_http_connections %" PRIu64 "\n",
             m->http_connections_open);
    text_add(&t, "# HELP vendd_mqtt_rejected_total MQTT messages rejected, by topic kind and "
                 "reason\n# TYPE vendd_mqtt_rejected_total counter\n");
    for (int k = 0; k < VEND_TOPIC_KIND_COUNT; k++) {
        for (int e = 1; e < METRICS_ERR_SLOTS; e++) {
            if (m->mqtt_rejected[k][e] == 0)
                continue;
            text_add(&t, "vendd_mqtt_rejected_total{topic=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                     vend_topic_kind_name((enum vend_topic_kind)k),
                     e == METRICS_ERR_SLOTS - 1 ? "OTHER" : vend_errname(-e),
                     m->mqtt_rejected[k][e]);
        }
    }
    return t.buf;
}
