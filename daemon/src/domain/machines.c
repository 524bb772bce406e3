/*
 * machines.c - registration, presence, the operator's views of a machine and the config
 * push; the rules it keeps are listed in machines.h.
 */
#include "machines.h"

#include <stdio.h>
#include <string.h>

#include "broker_seam.h"
#include "db.h"
#include "events.h"
#include "log.h"
#include "offline.h"
#include "slots.h"
#include "store.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"

/* What the API shows of a machine: never a secret, not even mqtt_username. */
#define MACHINE_SELECT                                                                             \
    "SELECT id, name, location, status, door, rssi, fw, temperature, last_seen, config, "          \
    "created_at, updated_at FROM machines"

/* Big enough for every machines.status value. */
#define PRESENCE_SIZE 16

/* ---- registration and presence ---------------------------------------------------------- */

int machines_register(struct vendd *v, const char *id, const char *name, const char *location)
{
    char now_iso[STORE_ISO_SIZE];
    struct db_value p[4];
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    p[0] = DB_TEXT(id);
    p[1] = DB_TEXT(name);
    p[2] = DB_TEXT(location);
    p[3] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO machines (id, name, location, status, created_at, updated_at) "
                 "VALUES ($1, $2, $3, 'OFFLINE', $4, $4)",
                 p, 4, NULL, NULL);
    if (rc == VEND_ECONFLICT)
        return rc;
    if (rc < 0) {
        log_warnx("cannot register machine '%s': %s", id, db_errmsg(v->db));
        return rc;
    }
    events_emit(v);
    log_info("registered machine '%s'", id);
    return VEND_OK;
}

int machines_register_default(struct vendd *v, const char *id)
{
    char now_iso[STORE_ISO_SIZE];
    struct db_value p[2];
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    p[0] = DB_TEXT(id);
    p[1] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO machines (id, name, status, created_at, updated_at) "
                 "VALUES ($1, $1, 'OFFLINE', $2, $2) ON CONFLICT (id) DO NOTHING",
                 p, 2, NULL, NULL);
    if (rc == 1)
        log_info("registered default machine '%s'", id);
    return rc < 0 ? rc : VEND_OK;
}

int machines_exists(struct vendd *v, const char *id)
{
    struct db_value p[1] = {DB_TEXT(id)};
    int64_t n = 0;
    int rc = store_query_int(v->db, "SELECT count(*) FROM machines WHERE id = $1", p, 1, &n);

    return rc < 0 ? rc : n > 0;
}

int machines_apply_status(struct vendd *v, const char *id, const struct vend_status *st,
                          bool *changed)
{
    const char *presence = vend_presence_name(st->status);
    char now_iso[STORE_ISO_SIZE], before[PRESENCE_SIZE] = "";
    struct db_value p[7];
    bool offline = false;
    int raised = 0, rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    p[0] = DB_TEXT(id);
    p[1] = DB_TEXT(presence);
    p[2] = DB_TEXT(vend_door_name(st->door)); /* NULL when absent: keeps the last value */
    p[3] = st->has_rssi ? DB_INT(st->rssi) : DB_NULL;
    p[4] = DB_TEXT(st->has_fw ? st->fw : NULL);
    p[5] = DB_TEXT(now_iso);
    /* The will ({"status":"OFFLINE"}) says nothing of the extension: keep what it said. */
    p[6] = st->has_settle ? DB_INT(st->settle) : DB_NULL;
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    /* The usual status repeats the presence: then one statement that leaves the status
     * column alone (writing it, SQLite checks status IN (...) with a temporary b-tree per
     * statement, and the events trigger watches it). No row: unknown machine, or the
     * presence moves. */
    rc = db_exec(v->db,
                 "UPDATE machines SET door = COALESCE($3, door), rssi = $4, "
                 "fw = COALESCE($5, fw), settle = COALESCE($7, settle), "
                 "last_seen = CASE WHEN $2 = 'ONLINE' THEN $6 ELSE last_seen END, "
                 "updated_at = $6 WHERE id = $1 AND status = $2",
                 p, 7, NULL, NULL);
    if (rc == 1) {
        snprintf(before, sizeof(before), "%s", presence);
    } else if (rc == 0) {
        rc = store_query_text(v->db, "SELECT status FROM machines WHERE id = $1", p, 1, before,
                              sizeof(before));
        if (rc == 1)
            rc = db_exec(v->db,
                         "UPDATE machines SET status = $2, door = COALESCE($3, door), rssi = $4, "
                         "fw = COALESCE($5, fw), settle = COALESCE($7, settle), "
                         "last_seen = CASE WHEN $2 = 'ONLINE' THEN $6 ELSE last_seen END, "
                         "updated_at = $6 WHERE id = $1",
                         p, 7, NULL, NULL);
    }
    if (rc != 1) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    /* The offline alert moves with the presence, in its transaction (offline.h). */
    offline = st->status == VEND_PRESENCE_OFFLINE;
    if (strcmp(before, presence) != 0)
        raised = offline_presence_locked(v, id, offline, now_iso);
    rc = raised < 0 ? raised : db_commit(v->db);
    events_emit(v);
out:
    if (rc < 0)
        db_rollback(v->db);
    *changed = rc >= 0 && strcmp(before, presence) != 0;
    if (*changed && raised == 1)
        log_warnx("alert MACHINE_OFFLINE: machine '%s' has been OFFLINE since %s", id, now_iso);
    else if (*changed && offline)
        offline_arm(v);
    return rc < 0 ? rc : VEND_OK;
}

/* ---- views ------------------------------------------------------------------------------- */

/* machines.config is stored as JSON text: show it as the object it is. */
static void config_as_object(json_t *machine)
{
    const json_t *text = json_object_get(machine, "config");
    json_t *obj;

    if (!json_is_string(text))
        return;
    obj = json_loads(json_string_value(text), JSON_REJECT_DUPLICATES, NULL);
    /* A damaged value shows as null rather than failing the whole listing. */
    json_object_set_new(machine, "config", obj != NULL ? obj : json_null());
}

int machines_get_json(struct vendd *v, const char *id, bool with_slots, json_t **out, char *why,
                      size_t why_size)
{
    struct db_value p[1] = {DB_TEXT(id)};
    json_t *rows = store_query_json(v->db, MACHINE_SELECT " WHERE id = $1", p, 1);
    json_t *machine = NULL, *slots = NULL;
    int rc = VEND_OK;

    *out = NULL;
    if (rows == NULL) {
        log_warnx("cannot read machine '%s': %s", id, db_errmsg(v->db));
        rc = VEND_EDB;
    } else if (json_array_size(rows) == 0) {
        rc = VEND_ENOTFOUND;
    }
    if (rc < 0) {
        snprintf(why, why_size, "no machine '%s'", id);
        goto out;
    }
    machine = json_incref(json_array_get(rows, 0));
    config_as_object(machine);
    if (with_slots) {
        rc = slots_list_json(v, id, &slots);
        if (rc < 0) {
            snprintf(why, why_size, "cannot read the slots of machine '%s'", id);
            goto out;
        }
        json_object_set_new(machine, "slots", slots);
    }
    *out = json_incref(machine);
out:
    json_decref(machine);
    json_decref(rows);
    return rc;
}

int machines_page_json(struct vendd *v, const char *after_id, int64_t n, json_t **out)
{
    struct db_value p[2] = {DB_INT(n), DB_TEXT(after_id)};

    /* Keyset on the primary key: a page reads n rows wherever it starts (docs/HTTP-API.md). */
    if (after_id == NULL)
        *out = store_query_json(v->db, MACHINE_SELECT " ORDER BY id LIMIT $1", p, 1);
    else
        *out = store_query_json(v->db, MACHINE_SELECT " WHERE id > $2 ORDER BY id LIMIT $1", p, 2);
    if (*out == NULL) {
        log_warnx("cannot list machines: %s", db_errmsg(v->db));
        return VEND_EDB;
    }
    for (size_t i = 0; i < json_array_size(*out); i++)
        config_as_object(json_array_get(*out, i));
    return VEND_OK;
}

/* The machine's rows of a per-machine list: VEND_ENOTFOUND for an unknown one, not []. */
static int machine_known(struct vendd *v, const char *id, char *why, size_t why_size)
{
    int rc = machines_exists(v, id);

    if (rc <= 0)
        snprintf(why, why_size, rc < 0 ? "cannot read machine '%s'" : "no machine '%s'", id);
    return rc < 0 ? VEND_EDB : rc == 0 ? VEND_ENOTFOUND : VEND_OK;
}

#define LOGS_SELECT                                                                                \
    "SELECT id, order_id, unit, machine_id, slot_number, status, timeout_ms, command_sent_at, "    \
    "deadline_at, completed_at, duration_ms, success, drop_detected, error_message, late_result "  \
    "FROM dispense_logs WHERE machine_id = $1 AND command_sent_at IS "
/* The units sent, newest command first; then those never sent (QUEUED, or failed unsent),
 * newest first. Two statements, not one ORDER BY: a NULL has no place in a keyset (and
 * sorts first in one backend, last in the other). Both read dispense_logs_machine. */
#define LOGS_SENT         LOGS_SELECT "NOT NULL"
#define LOGS_SENT_ORDER   " ORDER BY command_sent_at DESC, id DESC LIMIT $2"
#define LOGS_UNSENT       LOGS_SELECT "NULL"
#define LOGS_UNSENT_ORDER " ORDER BY id DESC LIMIT $2"

int machines_dispense_logs_json(struct vendd *v, const char *id, const char *after_sent,
                                int64_t after_id, int64_t n, json_t **out, char *why,
                                size_t why_size)
{
    struct db_value p[4] = {DB_TEXT(id), DB_INT(n), DB_INT(after_id), DB_TEXT(after_sent)};
    json_t *rows = NULL, *unsent = NULL;
    int rc;

    *out = NULL;
    rc = machine_known(v, id, why, why_size);
    if (rc < 0)
        return rc;
    if (after_id == 0)
        rows = store_query_json(v->db, LOGS_SENT LOGS_SENT_ORDER, p, 2);
    else if (after_sent != NULL)
        rows = store_query_json(
            v->db, LOGS_SENT " AND (command_sent_at, id) < ($4, $3)" LOGS_SENT_ORDER, p, 4);
    else
        rows = json_array();
    if (rows == NULL)
        goto out;
    if (json_array_size(rows) < (size_t)n) {
        p[1] = DB_INT(n - (int64_t)json_array_size(rows));
        if (after_id != 0 && after_sent == NULL)
            unsent = store_query_json(v->db, LOGS_UNSENT " AND id < $3" LOGS_UNSENT_ORDER, p, 3);
        else
            unsent = store_query_json(v->db, LOGS_UNSENT LOGS_UNSENT_ORDER, p, 2);
        if (unsent == NULL)
            goto out;
        json_array_extend(rows, unsent);
    }
    *out = json_incref(rows);
out:
    if (*out == NULL) {
        log_warnx("cannot read the dispense logs of machine '%s': %s", id, db_errmsg(v->db));
        snprintf(why, why_size, "cannot read dispense logs");
        rc = VEND_EDB;
    }
    json_decref(unsent);
    json_decref(rows);
    return rc;
}

/* data stays the text the machine sent: parsed, a page of 500 messages of 64 slot levels
 * each lifts RSS by 18 MB in jansson's nodes (as text, by 3 MB). */
#define TELEMETRY_SELECT                                                                           \
    "SELECT id, device_time, temperature, door, data, received_at FROM telemetry "                 \
    "WHERE machine_id = $1"
#define TELEMETRY_ORDER " ORDER BY received_at DESC, id DESC LIMIT $2"

int machines_telemetry_json(struct vendd *v, const char *id, const char *after_time,
                            int64_t after_id, int64_t n, json_t **out, char *why, size_t why_size)
{
    struct db_value p[4] = {DB_TEXT(id), DB_INT(n), DB_TEXT(after_time), DB_INT(after_id)};
    int rc;

    *out = NULL;
    rc = machine_known(v, id, why, why_size);
    if (rc < 0)
        return rc;
    if (after_time == NULL)
        *out = store_query_json(v->db, TELEMETRY_SELECT TELEMETRY_ORDER, p, 2);
    else
        *out = store_query_json(
            v->db, TELEMETRY_SELECT " AND (received_at, id) < ($3, $4)" TELEMETRY_ORDER, p, 4);
    if (*out == NULL) {
        log_warnx("cannot read the telemetry of machine '%s': %s", id, db_errmsg(v->db));
        snprintf(why, why_size, "cannot read telemetry");
        return VEND_EDB;
    }
    return VEND_OK;
}

/* ---- config ------------------------------------------------------------------------------ */

int machines_push_config(struct vendd *v, const char *id, const struct vend_config *cfg,
                         json_t **out, char *why, size_t why_size)
{
    char topic[VEND_TOPIC_MAX + 1], payload[VEND_PAYLOAD_MAX + 1], now_iso[STORE_ISO_SIZE];
    struct db_value p[3];
    bool maybe_sent = false;
    int len, rc;

    *out = NULL;
    /* The codec is the contract: what it will not encode, the machine would not accept. */
    len = vend_encode_config(payload, sizeof(payload), cfg);
    rc = vend_topic_format(topic, sizeof(topic), id, VEND_TOPIC_CONFIG);
    if (len < 0 || rc < 0) {
        snprintf(why, why_size, "config for '%s' rejected by the codec: %s", id,
                 vend_strerror(len < 0 ? len : rc));
        return VEND_EINVAL;
    }
    rc = machines_exists(v, id);
    if (rc <= 0) {
        snprintf(why, why_size, "no machine '%s'", id);
        return rc < 0 ? rc : VEND_ENOTFOUND;
    }
    if (!broker_up(&v->broker)) {
        snprintf(why, why_size, "the MQTT broker is not connected; config of '%s' not changed", id);
        return VEND_EUNAVAILABLE;
    }

    /*
     * The one publish inside a transaction (docs/HACKING.md, Database): a retained config
     * is idempotent, unlike a command, so publishing before the COMMIT risks nothing a
     * second PUT does not repair, and it lets a publish that fails leave the stored
     * config as it was. The publish only hands the message over; it never blocks.
     */
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    p[0] = DB_TEXT(id);
    p[1] = DB_TEXT(payload);
    p[2] = DB_TEXT(now_iso);
    rc = db_exec(v->db, "UPDATE machines SET config = $2, updated_at = $3 WHERE id = $1", p, 3,
                 NULL, NULL);
    if (rc != 1) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    rc = broker_publish(&v->broker, topic, payload, (size_t)len, 1, true, 0);
    /* The broker may hold it already (retained): the stored copy stays in step with what
     * machines may receive, and the operator repeats the PUT. */
    maybe_sent = rc == VEND_EIO;
    if (rc < 0 && !maybe_sent)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        log_warnx("config of '%s' %s to %s but not stored: %s", id,
                  maybe_sent ? "perhaps published" : "published", topic, db_errmsg(v->db));
out:
    if (rc < 0)
        db_rollback(v->db);
    if (maybe_sent) {
        if (rc >= 0)
            log_warnx("config of '%s' stored, but its publish to %s may have failed", id, topic);
        snprintf(why, why_size,
                 "config of '%s' stored, but the broker may not have it: PUT it again", id);
        return VEND_EIO;
    }
    if (rc < 0) {
        if (rc != VEND_EUNAVAILABLE && rc != VEND_ENOTFOUND)
            log_warnx("cannot push the config of '%s': %s (%s)", id, vend_strerror(rc),
                      db_errmsg(v->db));
        snprintf(why, why_size, "cannot push the config of '%s': %s", id, vend_strerror(rc));
        return rc;
    }
    log_info("config of '%s' published to %s: %s", id, topic, payload);
    *out = json_pack("{s:s, s:s, s:{s:I, s:I, s:I}}", "machine_id", id, "topic", topic, "config",
                     "motorTimeout", (json_int_t)cfg->motor_timeout_ms, "dropSensorDelay",
                     (json_int_t)cfg->drop_sensor_delay_ms, "telemetryInterval",
                     (json_int_t)cfg->telemetry_interval_ms);
    return VEND_OK;
}
