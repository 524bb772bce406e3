/*
 * telemetry.c - a reading stored in one transaction (machine row, raw row, slot levels,
 * mismatch alerts, the hourly rollup), and the timer that prunes raw rows past the
 * retention window; see telemetry.h for the rules.
 */
#include "telemetry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alerts.h"
#include "conf.h"
#include "db.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "store.h"
#include "vend/err.h"
#include "vendd.h"

#define HOUR_MS ((int64_t)3600 * 1000)
#define DAY_MS  (24 * HOUR_MS)

/* The first run waits for the start's own work (the broker session's backlog) to pass. */
#define PRUNE_START_MS  60000
#define PRUNE_PERIOD_MS 600000
#define RETRY_FIRST_MS  1000

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
    bool has_level; /* the slot had a sensor level before this reading */
    enum vend_level level;
    /* Its sensor_at or its creation is later than this reading (the wall clock stepped back,
     * or another vendd's runs ahead): the machine's slots_seen_at would not stand for it. */
    bool ahead;
};

/* The machine's slots as read once for a reading: s[i] is the state of t->slots[i] (the codec
 * rejects a reading that names a slot twice). */
struct slots_read {
    const struct vend_telemetry *t;
    struct slot_state s[VEND_SLOTS_MAX];
    size_t nrows;        /* the machine's slots, reported or not */
    const char *now_iso; /* this reading's time */
};

/* Whether a stored time (NULL: none) is later than this reading's; vendd's times are
 * fixed-width ISO text. */
static bool later_than(const char *at, const char *now_iso)
{
    return at != NULL && strcmp(at, now_iso) > 0;
}

static int take_slot_state(void *arg, const struct db_row *row)
{
    struct slots_read *r = arg;
    int64_t number = db_row_int(row, 0);
    const char *level = db_row_text(row, 3);
    struct slot_state st = {.found = true,
                            .id = db_row_int(row, 1),
                            .stock = db_row_int(row, 2),
                            .ahead = later_than(db_row_text(row, 4), r->now_iso) ||
                                     later_than(db_row_text(row, 5), r->now_iso)};

    /* A stored level the codec does not know (the schema CHECK forbids it) counts as none. */
    st.has_level = level != NULL && vend_level_parse(level, strlen(level), &st.level) == VEND_OK;
    r->nrows++;
    for (size_t i = 0; i < r->t->nslots; i++) {
        if (r->t->slots[i].id == number)
            r->s[i] = st;
    }
    return 0;
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
    rc = alerts_raise_locked(v,
                             &(struct alert){.machine_id = machine_id,
                                             .kind = TELEMETRY_MISMATCH_KIND,
                                             .message = msg,
                                             .slot_id = s->id},
                             now_iso);
    *raised = rc == 1;
    return rc < 0 ? rc : VEND_OK;
}

/* The reading names the slot's stored level again: nothing to write but its sensor_at. */
static bool level_stays(const struct slot_state *s, enum vend_level level)
{
    return s->found && s->has_level && s->level == level;
}

/* Inside the transaction: one range read of the machine's slots (the index of UNIQUE
 * (machine_id, slot_number)), not a lookup per reported slot. Fills r; *all_seen tells
 * whether the reading names every slot the machine has (a reported slot matches one row at
 * most, the codec refuses a slot named twice). */
static int read_slots_locked(struct vendd *v, const char *machine_id, struct slots_read *r,
                             bool *all_seen)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    size_t nfound = 0;
    int rc;

    *all_seen = false;
    if (r->t->nslots == 0)
        return VEND_OK;
    rc = db_exec(v->db,
                 "SELECT slot_number, id, current_stock, sensor_level, sensor_at, created_at "
                 "FROM slots WHERE machine_id = $1",
                 p, 1, take_slot_state, r);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < r->t->nslots; i++)
        nfound += r->s[i].found;
    *all_seen = nfound == r->nrows;
    return VEND_OK;
}

/*
 * Inside the transaction: the per-slot part, after read_slots_locked(). Counts unknown slots,
 * alerts raised and the levels that changed.
 *
 * A level that stays (the usual reading) is not written: SQLite checks the column's
 * CHECK (sensor_level IN (...)) with a temporary b-tree built per statement, which was a
 * quarter of the ingest's instructions. Nor is its time when the reading names every slot
 * (all_seen): the machine row's slots_seen_at, moved by the caller, stands for all of them
 * (TELEMETRY_SENSOR_AT_SQL); a slot not reported keeps the time it was last seen. Unless the
 * slot's time or creation is ahead of this reading (the clock stepped back): the later of the
 * two would not be this reading's, so that slot takes its own.
 */
static int apply_slots_locked(struct vendd *v, const char *machine_id, const struct slots_read *r,
                              bool all_seen, const char *now_iso, struct telemetry_outcome *out,
                              int64_t *level_changes)
{
    const struct vend_telemetry *t = r->t;
    struct db_value p[3];
    int rc;

    for (size_t i = 0; i < t->nslots; i++) {
        const struct slot_state *s = &r->s[i];
        enum vend_level level = t->slots[i].level;
        bool stays = level_stays(s, level);

        if (!s->found) {
            out->unknown_slots++;
            continue;
        }
        if (s->has_level && !stays)
            (*level_changes)++;
        p[0] = DB_INT(s->id);
        p[1] = DB_TEXT(now_iso);
        p[2] = DB_TEXT(vend_level_name(level));
        if (stays && all_seen && !s->ahead)
            rc = VEND_OK; /* its time moved with the machine's slots_seen_at */
        else if (stays)
            rc = db_exec(v->db, "UPDATE slots SET sensor_at = $2 WHERE id = $1", p, 2, NULL, NULL);
        else
            rc = db_exec(v->db, "UPDATE slots SET sensor_level = $3, sensor_at = $2 WHERE id = $1",
                         p, 3, NULL, NULL);
        if (rc < 0)
            return rc;
        if (!level_contradicts(level, s->stock))
            continue;
        rc = raise_mismatch_locked(v, machine_id, t->slots[i].id, s, level, now_iso,
                                   &out->raised[i]);
        if (rc < 0)
            return rc;
    }
    return VEND_OK;
}

/*
 * Inside the transaction: add the reading to its machine's hour. The hour's row exists but
 * for the first reading of the hour, so it is an UPDATE by primary key, and an INSERT only
 * then: an INSERT .. ON CONFLICT DO UPDATE costs about four times as much per reading.
 *
 * An opening is judged against the door the machine's previous telemetry named: the hour's
 * last_door, or for a new hour that of the newest earlier one. Not machines.door: status
 * messages move that one too, and the firmware sends one at every door change, before any
 * telemetry could see it.
 */
static int rollup_locked(struct vendd *v, const char *machine_id, const struct vend_telemetry *t,
                         const char *hour, int64_t level_changes)
{
    struct db_value p[7];
    char prev_door[8];
    int64_t centi = 0;
    int rc;

    if (t->has_temperature) /* hundredths, as the codec keeps them: the sum stays exact */
        centi = (int64_t)(t->temperature * 100.0 + (t->temperature < 0 ? -0.5 : 0.5));
    p[0] = DB_TEXT(machine_id);
    p[1] = DB_TEXT(hour);
    /* The CAST below gives $3 its type when it is NULL: PostgreSQL cannot infer one from
     * "IS NULL" alone (SQLite needs no type; the value is the same). */
    p[2] = t->has_temperature ? DB_REAL(t->temperature) : DB_NULL;
    p[3] = DB_INT(centi);
    p[4] = DB_TEXT(vend_door_name(t->door)); /* NULL when not reported */
    p[5] = DB_INT(level_changes);
    rc = db_exec(v->db,
                 "UPDATE telemetry_hourly SET samples = samples + 1, "
                 "temp_samples = temp_samples + "
                 "CASE WHEN CAST($3 AS DOUBLE PRECISION) IS NULL THEN 0 ELSE 1 END, "
                 "temp_min = CASE WHEN $3 IS NULL OR $3 >= temp_min THEN temp_min ELSE $3 END, "
                 "temp_max = CASE WHEN $3 IS NULL OR $3 <= temp_max THEN temp_max ELSE $3 END, "
                 "temp_sum_centi = temp_sum_centi + $4, "
                 "door_openings = door_openings + "
                 "CASE WHEN $5 = 'OPEN' AND last_door = 'CLOSED' THEN 1 ELSE 0 END, "
                 "level_changes = level_changes + $6, last_door = COALESCE($5, last_door) "
                 "WHERE machine_id = $1 AND hour = $2",
                 p, 6, NULL, NULL);
    if (rc != 0)
        return rc < 0 ? rc : VEND_OK;
    /* The machine's first reading of the hour: its door carries over from its last hour.
     * Read apart: an INSERT ... SELECT from the table it inserts into makes SQLite copy the
     * result to a temporary table first (a tenth of the ingest's CPU in the benchmark). */
    rc = store_query_text(v->db,
                          "SELECT last_door FROM telemetry_hourly WHERE machine_id = $1 "
                          "ORDER BY hour DESC LIMIT 1",
                          p, 1, prev_door, sizeof(prev_door));
    if (rc < 0)
        return rc;
    p[6] = DB_TEXT(rc == 1 ? prev_door : NULL);
    return db_exec(v->db,
                   "INSERT INTO telemetry_hourly (machine_id, hour, samples, temp_samples, "
                   "temp_min, temp_max, temp_sum_centi, door_openings, level_changes, last_door) "
                   "VALUES ($1, $2, 1, CASE WHEN CAST($3 AS DOUBLE PRECISION) IS NULL THEN 0 "
                   "ELSE 1 END, $3, $3, $4, "
                   "CASE WHEN $5 = 'OPEN' AND $7 = 'CLOSED' THEN 1 ELSE 0 END, $6, "
                   "COALESCE($5, $7))",
                   p, 7, NULL, NULL);
}

int telemetry_store(struct vendd *v, const char *machine_id, const struct vend_telemetry *t,
                    const char *data, struct telemetry_outcome *out)
{
    char now_iso[STORE_ISO_SIZE], hour[STORE_ISO_SIZE];
    const char *door = vend_door_name(t->door); /* NULL when not reported */
    int64_t now = v->now_ms(), level_changes = 0;
    struct slots_read r = {.t = t, .now_iso = now_iso};
    struct db_value p[6];
    bool all_seen;
    int rc;

    memset(out, 0, sizeof(*out));
    db_iso_time(now_iso, sizeof(now_iso), now);
    db_iso_time(hour, sizeof(hour), now - now % HOUR_MS);

    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    /* The slots first, read only: whether the reading names them all is for the machine
     * row's slots_seen_at. An unknown machine has none. */
    rc = read_slots_locked(v, machine_id, &r, &all_seen);
    if (rc < 0)
        goto out;
    /* The machine row before any other write: an unknown machine is NOTFOUND, not a
     * foreign-key error. */
    p[0] = DB_TEXT(machine_id);
    p[1] = t->has_temperature ? DB_REAL(t->temperature) : DB_NULL;
    p[2] = DB_TEXT(door);
    p[3] = DB_TEXT(now_iso);
    p[4] = DB_TEXT(all_seen ? now_iso : NULL);
    /* What the message does not report keeps its last known value. */
    rc = db_exec(v->db,
                 "UPDATE machines SET temperature = COALESCE($2, temperature), "
                 "door = COALESCE($3, door), last_seen = $4, updated_at = $4, "
                 "slots_seen_at = COALESCE($5, slots_seen_at) WHERE id = $1",
                 p, 5, NULL, NULL);
    if (rc != 1) {
        rc = rc < 0 ? rc : VEND_ENOTFOUND;
        goto out;
    }
    if (all_seen)
        db_touch(v->db, TELEMETRY_SLOTS_SEEN);
    /*
     * A reading of some slots after the clock stepped back: the machine's time may be later
     * than this reading's, and would hide the time it writes for the slots it names. Then
     * each slot keeps the time it shows, on its own row, and the machine's is cleared (one
     * statement per reading of some slots, writing nothing unless the clock stepped back; a
     * reading of every slot sets the machine's time anyway). After the machine row, as every
     * telemetry transaction locks it before its slots.
     */
    if (!all_seen && r.nrows > 0) {
        p[1] = DB_TEXT(now_iso);
        rc = db_exec(v->db,
                     "UPDATE slots AS s SET sensor_at = (SELECT " TELEMETRY_SENSOR_AT_SQL
                     " FROM machines m WHERE m.id = s.machine_id) WHERE s.machine_id = $1 AND "
                     "EXISTS (SELECT 1 FROM machines WHERE id = $1 AND slots_seen_at > $2)",
                     p, 2, NULL, NULL);
        if (rc > 0) {
            rc = db_exec(v->db, "UPDATE machines SET slots_seen_at = NULL WHERE id = $1", p, 1,
                         NULL, NULL);
            db_touch(v->db, TELEMETRY_SLOTS_SEEN);
        }
        if (rc < 0)
            goto out;
    }
    p[1] = t->has_timestamp ? DB_TEXT(t->timestamp) : DB_NULL;
    p[2] = t->has_temperature ? DB_REAL(t->temperature) : DB_NULL;
    p[3] = DB_TEXT(door);
    p[4] = DB_TEXT(data);
    p[5] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO telemetry (machine_id, device_time, temperature, door, data, "
                 "received_at) VALUES ($1, $2, $3, $4, $5, $6)",
                 p, 6, NULL, NULL);
    if (rc < 0)
        goto out;
    rc = apply_slots_locked(v, machine_id, &r, all_seen, now_iso, out, &level_changes);
    if (rc < 0)
        goto out;
    rc = rollup_locked(v, machine_id, t, hour, level_changes);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    events_emit(v);
out:
    if (rc < 0) {
        db_rollback(v->db);
        return rc;
    }
    v->metrics.telemetry_stored++;
    return VEND_OK;
}

/* ---- retention ------------------------------------------------------------------------ */

int telemetry_prune(struct vendd *v)
{
    char cutoff[STORE_ISO_SIZE];
    struct db_value p[2];
    int rc, n = 0;

    db_iso_time(cutoff, sizeof(cutoff),
                v->now_ms() - (int64_t)v->conf->telemetry_retention_days * DAY_MS);
    p[0] = DB_TEXT(cutoff);
    p[1] = DB_INT(TELEMETRY_PRUNE_BATCH);
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    /* Oldest first through telemetry_received (schema 0008): a batch reads its own rows only,
     * however many are due; ORDER BY id would scan the whole table. */
    rc = db_exec(v->db,
                 "DELETE FROM telemetry WHERE id IN (SELECT id FROM telemetry "
                 "WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
                 p, 2, NULL, NULL);
    if (rc < 0)
        goto out;
    n = rc;
    rc = db_commit(v->db);
out:
    if (rc < 0) {
        db_rollback(v->db);
        return rc;
    }
    v->metrics.telemetry_pruned += (uint64_t)n;
    return n;
}

static void on_timer(void *arg);

static void arm(struct vendd *v, uint64_t delay_ms)
{
    struct telemetry_prune_state *s = &v->telemetry_prune;

    telemetry_prune_stop(v);
    s->timer = loop_timer_add(v->loop, delay_ms, on_timer, v);
    s->delay_ms = delay_ms;
    if (s->timer == 0)
        log_warnx("cannot arm the telemetry prune timer; raw telemetry is kept until the next "
                  "start");
}

void telemetry_prune_run(struct vendd *v)
{
    struct telemetry_prune_state *s = &v->telemetry_prune;
    int rc = telemetry_prune(v);

    if (rc < 0) {
        /* Busy database or worse: try again, ever more slowly, never in a tight loop. */
        s->retry_ms = s->retry_ms == 0                    ? RETRY_FIRST_MS
                      : s->retry_ms * 2 > PRUNE_PERIOD_MS ? PRUNE_PERIOD_MS
                                                          : s->retry_ms * 2;
        log_warnx("cannot prune raw telemetry: %s (%s); next try in %" PRId64 " ms",
                  vend_strerror(rc), db_errmsg(v->db), s->retry_ms);
        arm(v, (uint64_t)s->retry_ms);
        return;
    }
    s->retry_ms = 0;
    s->pruned_run += (uint64_t)rc;
    if (rc == TELEMETRY_PRUNE_BATCH) {
        /* More is due: the next batch after whatever else the loop has waiting. */
        arm(v, 0);
        return;
    }
    if (s->pruned_run > 0)
        log_info("pruned %" PRIu64 " raw telemetry row(s) older than %u day(s)", s->pruned_run,
                 v->conf->telemetry_retention_days);
    s->pruned_run = 0;
    arm(v, PRUNE_PERIOD_MS);
}

static void on_timer(void *arg)
{
    struct vendd *v = arg;

    v->telemetry_prune.timer = 0;
    telemetry_prune_run(v);
}

void telemetry_prune_start(struct vendd *v)
{
    arm(v, PRUNE_START_MS);
}

void telemetry_prune_stop(struct vendd *v)
{
    if (v->telemetry_prune.timer != 0)
        loop_timer_del(v->loop, v->telemetry_prune.timer);
    v->telemetry_prune.timer = 0;
}
