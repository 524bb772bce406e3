/*
 * handle_status.c - vm/{id}/status (SPEC §3): the machine's presence, door, signal
 * and firmware. The machine publishes ONLINE (retained) when it connects, and its
 * will {"status":"OFFLINE"} is published by the broker when it vanishes.
 *
 * This file decodes and logs; machines_apply_status() keeps the presence rules
 * (machines.h). rssi is the latest report: an OFFLINE will carries none, so it
 * becomes NULL (unknown). door and fw keep their last value when absent.
 */
#include <stdbool.h>

#include "db.h"
#include "ingest.h"
#include "log.h"
#include "machines.h"
#include "settle.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"

int handle_status(struct vendd *v, const char *machine_id, const char *payload, size_t len)
{
    struct vend_status st;
    struct vend_diag diag;
    bool changed = false;
    int rc;

    rc = vend_decode_status(payload, len, &st, &diag);
    if (rc < 0) {
        log_warnx("rejected status from '%s': %s in '%s'", machine_id, vend_strerror(rc),
                  diag.field);
        return rc;
    }
    rc = machines_apply_status(v, machine_id, &st, &changed);
    if (rc == VEND_ENOTFOUND) {
        log_warnx("rejected status from '%s': machine not registered", machine_id);
        return rc;
    }
    if (rc < 0) {
        log_warnx("cannot apply status from '%s': %s (%s)", machine_id, vend_strerror(rc),
                  db_errmsg(v->db));
        return rc;
    }
    v->metrics.status_updates++;
    if (changed)
        log_info("machine '%s' is %s", machine_id, vend_presence_name(st.status));
    /* A machine that (re)connects can answer what it could not while away. */
    if (st.status == VEND_PRESENCE_ONLINE)
        settle_machine_online(v, machine_id);
    return VEND_OK;
}
