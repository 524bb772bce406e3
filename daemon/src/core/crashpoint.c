/* crashpoint.c - VENDD_CRASH_AT, and SIGKILL at the armed point; see crashpoint.h. */
#include "crashpoint.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define NTH_MAX 1000000

#define CRASHPOINT_NAME(id, name) name,
static const char *const s_names[CRASHPOINT_COUNT] = {CRASHPOINTS(CRASHPOINT_NAME)};
#undef CRASHPOINT_NAME

const char *crashpoint_name(int id)
{
    return id >= 0 && id < CRASHPOINT_COUNT ? s_names[id] : "?";
}

int crashpoint_init(struct crashpoint *cp, const char *spec, char *why, size_t size)
{
    const char *colon;
    size_t len;
    char *end = NULL;
    long nth = 1;

    *cp = (struct crashpoint){.nth = 1};
    if (spec == NULL || spec[0] == '\0')
        return 0;
    colon = strchr(spec, ':');
    len = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    if (colon != NULL) {
        errno = 0;
        nth = strtol(colon + 1, &end, 10);
        if (errno != 0 || end == colon + 1 || *end != '\0' || nth < 1 || nth > NTH_MAX) {
            snprintf(why, size, "%s '%.64s': the count after ':' must be 1..%d", CRASHPOINT_ENV,
                     spec, NTH_MAX);
            return -1;
        }
    }
    for (int i = 0; i < CRASHPOINT_COUNT; i++) {
        if (strlen(s_names[i]) == len && memcmp(s_names[i], spec, len) == 0) {
#ifndef VEND_CRASH_POINTS
            snprintf(why, size,
                     "%s is set, but this vendd was built without crash points "
                     "(-DVEND_CRASH_POINTS=ON)",
                     CRASHPOINT_ENV);
            return -1;
#else
            cp->armed = true;
            cp->id = i;
            cp->nth = nth;
            return 0;
#endif
        }
    }
    snprintf(why, size, "%s '%.64s': no such crash point", CRASHPOINT_ENV, spec);
    return -1;
}

#ifdef VEND_CRASH_POINTS
void crashpoint(struct crashpoint *cp, enum crashpoint_id id)
{
    if (!cp->armed || cp->id != (int)id || ++cp->hits != cp->nth)
        return;
    /* The line tells the test it died where it was told to, not somewhere else. */
    log_warnx("crash point %s:%ld reached: SIGKILL", s_names[id], cp->nth);
    raise(SIGKILL);
}
#endif
