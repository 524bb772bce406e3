/*
 * topic.c - vm/{machine_id}/{kind} topics, the filters that match them, and the identifier
 * rules (VEND_MACHINE_ID_PATTERN, VEND_ORDER_ID_PATTERN) that everyone else calls.
 */
#include <string.h>

#include "vend/err.h"
#include "vend/topic.h"

/* The first topic level of the contract; the wildcard level stands for every machine. */
#define ROOT     "vm/"
#define ROOT_LEN 3
#define ANY_ID   "+/"

/* The wire names: the one place a kind's last topic level is spelt. */
static const char *const kind_names[VEND_TOPIC_KIND_COUNT] = {
    [VEND_TOPIC_COMMAND] = "command",     [VEND_TOPIC_DISPENSE_RESULT] = "dispense_result",
    [VEND_TOPIC_TELEMETRY] = "telemetry", [VEND_TOPIC_STATUS] = "status",
    [VEND_TOPIC_CONFIG] = "config",
};

static bool is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool machine_id_char(char c)
{
    return is_alnum(c) || c == '_' || c == '-';
}

static bool order_id_char(char c)
{
    return is_alnum(c) || c == '_' || c == '-' || c == '.' || c == '~';
}

/* True if s[0..len) is 1..max characters, each accepted by ok(). */
static bool charset_valid(const char *s, size_t len, size_t max, bool (*ok)(char))
{
    size_t i;

    if (len == 0 || len > max)
        return false;
    for (i = 0; i < len; i++) {
        if (!ok(s[i]))
            return false;
    }
    return true;
}

/* Length of the NUL-terminated s, but stops counting after max + 1. */
static size_t bounded_len(const char *s, size_t max)
{
    size_t n = 0;

    while (n <= max && s[n] != '\0')
        n++;
    return n;
}

bool vend_machine_id_valid_len(const char *s, size_t len)
{
    return s != NULL && charset_valid(s, len, VEND_MACHINE_ID_MAX, machine_id_char);
}

bool vend_machine_id_valid(const char *s)
{
    return s != NULL && vend_machine_id_valid_len(s, bounded_len(s, VEND_MACHINE_ID_MAX));
}

bool vend_order_id_valid_len(const char *s, size_t len)
{
    return s != NULL && charset_valid(s, len, VEND_ORDER_ID_MAX, order_id_char);
}

bool vend_order_id_valid(const char *s)
{
    return s != NULL && vend_order_id_valid_len(s, bounded_len(s, VEND_ORDER_ID_MAX));
}

const char *vend_topic_kind_name(enum vend_topic_kind k)
{
    if ((unsigned)k >= VEND_TOPIC_KIND_COUNT)
        return NULL;
    return kind_names[k];
}

int vend_topic_parse(const char *topic, size_t len, struct vend_topic *out)
{
    size_t id_end = ROOT_LEN;
    size_t rest;
    unsigned k;

    if (topic == NULL || out == NULL)
        return VEND_EINVAL;
    if (len < ROOT_LEN || memcmp(topic, ROOT, ROOT_LEN) != 0)
        return VEND_ETOPIC;
    while (id_end < len && topic[id_end] != '/')
        id_end++;
    if (id_end == len)
        return VEND_ETOPIC;
    /* Wildcards '+' and '#' and an empty level fail the character set here. */
    if (!vend_machine_id_valid_len(topic + ROOT_LEN, id_end - ROOT_LEN))
        return VEND_ETOPIC;
    rest = len - id_end - 1;
    for (k = 0; k < VEND_TOPIC_KIND_COUNT; k++) {
        if (strlen(kind_names[k]) == rest && memcmp(kind_names[k], topic + id_end + 1, rest) == 0)
            break;
    }
    if (k == VEND_TOPIC_KIND_COUNT)
        return VEND_ETOPIC;
    memcpy(out->machine_id, topic + ROOT_LEN, id_end - ROOT_LEN);
    out->machine_id[id_end - ROOT_LEN] = '\0';
    out->kind = (enum vend_topic_kind)k;
    return VEND_OK;
}

int vend_topic_format(char *buf, size_t size, const char *machine_id, enum vend_topic_kind k)
{
    const char *kind = vend_topic_kind_name(k);
    size_t idlen, kindlen, total;

    if (kind == NULL || !vend_machine_id_valid(machine_id))
        return VEND_ETOPIC;
    idlen = strlen(machine_id);
    kindlen = strlen(kind);
    total = ROOT_LEN + idlen + 1 + kindlen;
    if (buf == NULL || size < total + 1)
        return VEND_ENOSPACE;
    memcpy(buf, ROOT, ROOT_LEN);
    memcpy(buf + ROOT_LEN, machine_id, idlen);
    buf[ROOT_LEN + idlen] = '/';
    memcpy(buf + ROOT_LEN + 1 + idlen, kind, kindlen);
    buf[total] = '\0';
    return (int)total;
}

int vend_topic_filter(char *buf, size_t size, enum vend_topic_kind k)
{
    const char *kind = vend_topic_kind_name(k);
    size_t kindlen, total;

    if (kind == NULL)
        return VEND_ETOPIC;
    kindlen = strlen(kind);
    total = ROOT_LEN + sizeof(ANY_ID) - 1 + kindlen;
    if (buf == NULL || size < total + 1)
        return VEND_ENOSPACE;
    memcpy(buf, ROOT ANY_ID, total - kindlen);
    memcpy(buf + total - kindlen, kind, kindlen);
    buf[total] = '\0';
    return (int)total;
}
