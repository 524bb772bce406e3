/*
 * handle_telemetry.c - vm/{id}/telemetry (SPEC §3): store the reading, update the
 * machine's temperature, door and last_seen and each reported slot's sensor level,
 * in one transaction.
 *
 * The sensor level is a reading, never a count: slots.current_stock is not touched
 * here (SPEC §4 rule 5). When a reading contradicts the count (mismatch_rules below)
 * an alert STOCK_SENSOR_MISMATCH is raised, at most one open per slot; the operator's
 * audit (PUT .../slots/{slot} with current_stock) resolves it, and the next mismatch
 * alerts again.
 *
 * Slots the machine reports but vendd does not know (not configured through the API
 * yet) are skipped and counted in one debug line: a machine with more slots than are
 * configured is normal during setup and must not make its telemetry fail.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "alerts.h"
#include "db.h"
#include "ingest.h"
#include "log.h"
#include "store.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"

#define MISMATCH_KIND "STOCK_SENSOR_MISMATCH"

/* When a sensor level contradicts the counted stock. */
enum mismatch_when {
    MISMATCH_NEVER,      /* a partial level cannot be checked against a count */
    MISMATCH_IF_STOCKED, /* the sensor sees nothing, the count says some */
    MISMATCH_IF_EMPTY,   /* the sensor sees plenty, the count says none */
};

static const struct {
    enum vend_level level;
    enum mismatch_when when;
} mismatch_rules[] = {
    {VEND_LEVEL_EMPTY, MISMATCH_IF_STOCKED}, {VEND_LEVEL_LOW, MISMATCH_NEVER},
    {VEND_LEVEL_MEDIUM, MISMATCH_NEVER},     {VEND_LEVEL_HIGH, MISMATCH_IF_EMPTY},
    {VEND_LEVEL_FULL, MISMATCH_IF_EMPTY},
};

static bool level_contradicts(enum vend_level level, int64_t stock)
{
    for (size_t i = 0; i < sizeof(mismatch_rules) / sizeof(mismatch_rules[0]); i++) {
        if (mismatch_rules[i].level != level)
            continue;
        switch (mismatch_rules[i].when) {
        case MISMATCH_NEVER:
            return false;
        case MISMATCH_IF_STOCKED:
            return stock > 0;
        case MISMATCH_IF_EMPTY:
            return stock == 0;
        }
    }
    return false;
}

struct slot_state {
    bool found;
    int64_t id;
    int64_t stock;
};

static int take_slot_state(void *arg, const struct db_row *row)
{
    struct slot_state *s = arg;

    s->found = true;
    s->id = db_row_int(row, 0);
    s->stock = db_row_int(row, 1);
    return 1;
}

/* Inside the transaction: one open alert per slot (alerts_raise_locked skips repeats). */
static int raise_mismatch_locked(struct vendd *v, const char *machine_id, uint16_t slot_number,
                                 const struct slot_state *s, enum vend_level level,
                                 const char *now_iso, bool *raised)
{
    char msg[160];
    int rc;

    snprintf(msg, sizeof(msg), "machine '%s' slot %u: sensor reads %s but the count is %lld",
             machine_id, (unsigned)slot_number, vend_level_name(level), (long long)s->stock);
    rc = alerts_raise_locked(
        v,
        &(struct alert){
            .machine_id = machine_id, .kind = MISMATCH_KIND, .message = msg, .slot_id = s->id},
        now_iso);
    *raised = rc == 1;
    return rc < 0 ? rc : VEND_OK;
}

/* Inside the transaction: the per-slot part. Counts unknown slots and alerts raised. */
static int apply_slots_locked(struct vendd *v, const char *machine_id,
                              const struct vend_telemetry *t, const char *now_iso,
                              unsigned *unknown, bool raised[VEND_SLOTS_MAX])
{
    struct db_value p[3];
    int rc;

    for (size_t i = 0; i < t->nslots; i++) {
        struct slot_state s = {0};

        raised[i] = false;
        p[0] = DB_TEXT(machine_id);
        p[1] = DB_INT(t->slots[i].id);
        rc = db_exec(v->db,
                     "SELECT id, current_stock FROM slots WHERE machine_id = $1 "
                     "AND slot_number = $2",
                     p, 2, take_slot_state, &s);
        if (rc < 0)
            return rc;
        if (!s.found) {
            (*unknown)++;
            continue;
        }
        p[0] = DB_INT(s.id);
        p[1] = DB_TEXT(vend_level_name(t->slots[i].level));
        p[2] = DB_TEXT(now_iso);
        rc = db_exec(v->db, "UPDATE slots SET sensor_level = $2, sensor_at = $3 WHERE id = $1", p,
                     3, NULL, NULL);
        if (rc < 0)
            return rc;
        if (!level_contradicts(t->slots[i].level, s.stock))
            continue;
        rc = raise_mismatch_locked(v, machine_id, t->slots[i].id, &s, t->slots[i].level, now_iso,
                                   &raised[i]);
        if (rc < 0)
            return rc;
    }
    return VEND_OK;
}

int handle_telemetry(struct vendd *v, const char *machine_id, const char *payload, size_t len)
{
    struct vend_telemetry t;
    struct vend_diag diag;
    char data[VEND_PAYLOAD_MAX + 1], now_iso[STORE_ISO_SIZE];
    const char *door;
    bool raised[VEND_SLOTS_MAX];
    unsigned unknown = 0;
    struct db_value p[6];
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
    door = vend_door_name(t.door); /* NULL when not reported */
    vendd_now_iso(v, now_iso, sizeof(now_iso));

    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    /* The machine row first: an unknown machine is NOTFOUND, not a foreign-key error. */
    p[0] = DB_TEXT(machine_id);
    p[1] = t.has_temperature ? DB_REAL(t.temperature) : DB_NULL;
    p[2] = DB_TEXT(door);
    p[3] = DB_TEXT(now_iso);
    /* What the message does not report keeps its last known value. */
    rc = db_exec(v->db,
                 "UPDATE machines SET temperature = COALESCE($2, temperature), "
                 "door = COALESCE($3, door), last_seen = $4, updated_at = $4 WHERE id = $1",
                 p, 4, NULL, NULL);
    if (rc != 1) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    p[1] = t.has_timestamp ? DB_TEXT(t.timestamp) : DB_NULL;
    p[2] = t.has_temperature ? DB_REAL(t.temperature) : DB_NULL;
    p[3] = DB_TEXT(door);
    p[4] = DB_TEXT(data);
    p[5] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO telemetry (machine_id, device_time, temperature, door, data, "
                 "received_at) VALUES ($1, $2, $3, $4, $5, $6)",
                 p, 6, NULL, NULL);
    if (rc < 0)
        goto out;
    rc = apply_slots_locked(v, machine_id, &t, now_iso, &unknown, raised);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
out:
    if (rc < 0) {
        db_rollback(v->db);
        log_warnx("cannot store telemetry from '%s': %s (%s)", machine_id, vend_strerror(rc),
                  db_errmsg(v->db));
        return rc;
    }
    v->metrics.telemetry_stored++;
    for (size_t i = 0; i < t.nslots; i++) {
        if (raised[i])
            log_warnx("alert %s: machine '%s' slot %u reads %s, contradicting its count",
                      MISMATCH_KIND, machine_id, (unsigned)t.slots[i].id,
                      vend_level_name(t.slots[i].level));
    }
    if (unknown > 0)
        log_debug("telemetry from '%s': %u slot(s) not configured, skipped", machine_id, unknown);
    return VEND_OK;
}
