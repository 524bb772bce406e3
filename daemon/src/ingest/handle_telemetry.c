/*
 * handle_telemetry.c - vm/{id}/telemetry (SPEC §3): decode the reading, hand it to
 * telemetry_store() (domain/telemetry.h: what is stored, the mismatch alerts, the hourly
 * rollup, in one transaction, which also finds an unregistered machine), and log what it
 * did once committed.
 */
#include <stdbool.h>
#include <string.h>

#include "db.h"
#include "ingest.h"
#include "log.h"
#include "telemetry.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"

int handle_telemetry(struct vendd *v, const char *machine_id, const char *payload, size_t len)
{
    struct vend_telemetry t;
    struct vend_diag diag;
    struct telemetry_outcome done;
    char data[VEND_PAYLOAD_MAX + 1];
    int rc;

    rc = vend_decode_telemetry(payload, len, &t, &diag);
    if (rc < 0) {
        log_warnx("rejected telemetry from '%s': %s in '%s'", machine_id, vend_strerror(rc),
                  diag.field);
        return rc;
    }
    /* The decoder accepted it, so it is at most VEND_PAYLOAD_MAX bytes of JSON without NUL. */
    memcpy(data, payload, len);
    data[len] = '\0';
    rc = telemetry_store(v, machine_id, &t, data, &done);
    /* Failed after it changed rows in an unguarded batch: ingest.c rolls the batch back and
     * applies this message once more (batch_replay()), and that pass logs its outcome, stored
     * or not; the replay's own line says this pass failed, and why. Logging here too would
     * say one failure twice, or a failure of a reading that ends up stored. */
    if (rc < 0 && db_batch_spoiled(v->db))
        return rc;
    if (rc == VEND_ENOTFOUND) {
        log_warnx("rejected telemetry from '%s': machine not registered", machine_id);
        return rc;
    }
    if (rc < 0) {
        log_warnx("cannot store telemetry from '%s': %s (%s)", machine_id, vend_strerror(rc),
                  db_errmsg(v->db));
        return rc;
    }
    /* Applied again after its batch was rolled back: its first pass logged the same lines
     * (the alerts it raises again are the rows the rollback took away). Not the message that
     * failed, applied once more after them: its first pass logged nothing. */
    if (v->ingest_replaying)
        return VEND_OK;
    for (size_t i = 0; i < t.nslots; i++) {
        if (done.raised[i])
            log_warnx("alert %s: machine '%s' slot %u reads %s, contradicting its count",
                      TELEMETRY_MISMATCH_KIND, machine_id, (unsigned)t.slots[i].id,
                      vend_level_name(t.slots[i].level));
    }
    if (done.unknown_slots > 0)
        log_debug("telemetry from '%s': %u slot(s) not configured, skipped", machine_id,
                  done.unknown_slots);
    return VEND_OK;
}
