/* msg.c - wire names of the payload enums. Tables are indexed by enum value. */
#include <string.h>

#include "vend/err.h"
#include "vend/msg.h"

static const char *const cmd_names[] = {"dispense", "settle"};
static const char *const level_names[] = {"EMPTY", "LOW", "MEDIUM", "HIGH", "FULL"};
/* Index 0 is VEND_DOOR_UNKNOWN, which is never on the wire. */
static const char *const door_names[] = {NULL, "OPEN", "CLOSED"};
static const char *const presence_names[] = {"OFFLINE", "ONLINE"};
static const char *const result_error_names[] = {
    "TIMEOUT", "NO_DROP",     "JAMMED",    "INVALID_SLOT", "BUSY",          "DOOR_OPEN",
    "EXPIRED", "MOTOR_FAULT", "CANCELLED", "POWER_LOSS",   "JOURNAL_FAULT",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(NELEM(result_error_names) == VEND_RESULT_ERROR_COUNT,
               "one wire name per enum vend_result_error");

static const char *table_name(const char *const *names, size_t n, unsigned v)
{
    if (v >= n)
        return NULL;
    return names[v];
}

/* Index of the name equal to the len bytes at s, or -1. */
static int table_find(const char *const *names, size_t n, const char *s, size_t len)
{
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        if (names[i] != NULL && strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return (int)i;
    }
    return -1;
}

const char *vend_cmd_name(enum vend_cmd c)
{
    return table_name(cmd_names, NELEM(cmd_names), (unsigned)c);
}

int vend_cmd_parse(const char *s, size_t len, enum vend_cmd *out)
{
    int i = table_find(cmd_names, NELEM(cmd_names), s, len);

    if (i < 0)
        return VEND_EENUM;
    *out = (enum vend_cmd)i;
    return VEND_OK;
}

const char *vend_level_name(enum vend_level l)
{
    return table_name(level_names, NELEM(level_names), (unsigned)l);
}

int vend_level_parse(const char *s, size_t len, enum vend_level *out)
{
    int i = table_find(level_names, NELEM(level_names), s, len);

    if (i < 0)
        return VEND_EENUM;
    *out = (enum vend_level)i;
    return VEND_OK;
}

const char *vend_door_name(enum vend_door d)
{
    return table_name(door_names, NELEM(door_names), (unsigned)d);
}

int vend_door_parse(const char *s, size_t len, enum vend_door *out)
{
    int i = table_find(door_names, NELEM(door_names), s, len);

    if (i < 0)
        return VEND_EENUM;
    *out = (enum vend_door)i;
    return VEND_OK;
}

const char *vend_presence_name(enum vend_presence p)
{
    return table_name(presence_names, NELEM(presence_names), (unsigned)p);
}

int vend_presence_parse(const char *s, size_t len, enum vend_presence *out)
{
    int i = table_find(presence_names, NELEM(presence_names), s, len);

    if (i < 0)
        return VEND_EENUM;
    *out = (enum vend_presence)i;
    return VEND_OK;
}

const char *vend_result_error_name(enum vend_result_error e)
{
    return table_name(result_error_names, NELEM(result_error_names), (unsigned)e);
}

int vend_result_error_parse(const char *s, size_t len, enum vend_result_error *out)
{
    int i = table_find(result_error_names, NELEM(result_error_names), s, len);

    if (i < 0)
        return VEND_EENUM;
    *out = (enum vend_result_error)i;
    return VEND_OK;
}

bool vend_result_error_known(const char *code)
{
    if (code == NULL)
        return false;
    return table_find(result_error_names, NELEM(result_error_names), code, strlen(code)) >= 0;
}
