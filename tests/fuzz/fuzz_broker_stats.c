/*
 * fuzz_broker_stats.c - the broker's $SYS counters (ingest/broker_stats.c) as a broker, or
 * someone who may publish under $SYS, sends them: the input is "TOPIC" LF PAYLOAD, on a real
 * struct vendd (its metrics, its alerts in SQLite). Never a crash, and a gauge changes only to
 * the count the payload spells (1 to 19 decimal digits, nothing else) on its own topic.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker_stats.h"
#include "fuzz.h"
#include "fuzz_vendd.h"

#define TOPIC_MAX 256

static struct fuzz_vendd s_fx;
static bool s_ready;

/* The count the payload spells, by the rule above; false if it spells none. */
static bool count_of(const uint8_t *p, size_t len, uint64_t *out)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct {
        const char *topic;
        size_t offset;
    } gauges[] = {
        {"$SYS/broker/publish/messages/dropped", offsetof(struct metrics, broker_messages_dropped)},
        {"$SYS/broker/store/messages/count", offsetof(struct metrics, broker_messages_stored)},
        {"$SYS/broker/clients/connected", offsetof(struct metrics, broker_clients_connected)},
    };
    const uint8_t *nl = memchr(data, '\n', size);
    size_t tlen = nl != NULL ? (size_t)(nl - data) : size, plen;
    char topic[TOPIC_MAX + 1];
    struct metrics before;
    uint64_t want = 0;
    char *payload;

    if (!s_ready) {
        fuzz_vendd_open(&s_fx);
        s_ready = true;
    }
    if (tlen > TOPIC_MAX || memchr(data, '\0', tlen) != NULL)
        return 0;
    memcpy(topic, data, tlen);
    topic[tlen] = '\0';
    plen = nl != NULL ? size - tlen - 1 : 0;
    /* Exactly its size, so ASan sees a read past it. */
    payload = malloc(plen > 0 ? plen : 1);
    FUZZ_CHECK(payload != NULL);
    if (plen > 0)
        memcpy(payload, nl + 1, plen);
    before = s_fx.v.metrics;
    broker_stats_message(&s_fx.v, topic, payload, plen);
    for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
        const uint64_t *now = (const uint64_t *)((const char *)&s_fx.v.metrics + gauges[i].offset);
        const uint64_t *was = (const uint64_t *)((const char *)&before + gauges[i].offset);

        if (strcmp(topic, gauges[i].topic) == 0 && count_of((const uint8_t *)payload, plen, &want))
            FUZZ_CHECK(*now == want);
        else
            FUZZ_CHECK(*now == *was);
    }
    free(payload);
    return 0;
}
