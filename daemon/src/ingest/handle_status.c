/*
 * handle_status.c - vm/{id}/status (SPEC §3): the machine's presence, door, signal
 * and firmware. The machine publishes ONLINE (retained) when it connects, and its
 * will {"status":"OFFLINE"} is published by the broker when it vanishes.
 *
 * rssi is the latest report: an OFFLINE will carries none, so it becomes NULL
 * (unknown). door and fw keep their last value when absent. last_seen moves only
 * on ONLINE: an OFFLINE will is the broker speaking, not the machine.
 */
#include <stdbool.h>
#include <string.h>

#include "db.h"
#include "ingest.h"
#include "log.h"
#include "store.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"

/* Big enough for every machines.status value. */
#define PRESENCE_SIZE 16

int handle_status(struct vendd *v, const char *machine_id, const char *payload, size_t len)
{
    struct vend_status st;
    struct vend_diag diag;
    char now_iso[STORE_ISO_SIZE], before[PRESENCE_SIZE] = "";
    const char *presence;
    struct db_value p[6];
    int rc;

    rc = vend_decode_status(payload, len, &st, &diag);
    if (rc < 0) {
        log_warnx("rejected status from '%s': %s in '%s'", machine_id, vend_strerror(rc),
                  diag.field);
        return rc;
    }
    presence = vend_presence_name(st.status);
    vendd_now_iso(v, now_iso, sizeof(now_iso));

    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    p[0] = DB_TEXT(machine_id);
    rc = store_query_text(v->db, "SELECT status FROM machines WHERE id = $1", p, 1, before,
                          sizeof(before));
    if (rc <= 0) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    p[1] = DB_TEXT(presence);
    p[2] = DB_TEXT(vend_door_name(st.door)); /* NULL when absent: keeps the last value */
    p[3] = st.has_rssi ? DB_INT(st.rssi) : DB_NULL;
    p[4] = DB_TEXT(st.has_fw ? st.fw : NULL);
    p[5] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "UPDATE machines SET status = $2, door = COALESCE($3, door), rssi = $4, "
                 "fw = COALESCE($5, fw), "
                 "last_seen = CASE WHEN $2 = 'ONLINE' THEN $6 ELSE last_seen END, "
                 "updated_at = $6 WHERE id = $1",
                 p, 6, NULL, NULL);
    if (rc != 1) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    rc = db_commit(v->db);
out:
    if (rc < 0) {
        db_rollback(v->db);
        log_warnx("cannot apply status from '%s': %s (%s)", machine_id, vend_strerror(rc),
                  db_errmsg(v->db));
        return rc;
    }
    v->metrics.status_updates++;
    if (strcmp(before, presence) != 0)
        log_info("machine '%s' is %s", machine_id, presence);
    return VEND_OK;
}
