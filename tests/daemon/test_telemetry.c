/*
 * test_telemetry.c - telemetry.c on a real database with a pinned clock: the hourly rollup of
 * a scripted sequence of readings across two hours and two machines, pruning by the window in
 * batches (exactly the rows older than it, oldest first, never one inside it, a second run
 * changes nothing), the machine row and the history surviving the prune, and the prune
 * timer's re-arming and backoff.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "conf.h"
#include "db_backend.h"
#include "fixture.h"
#include "machines.h"
#include "schema.h"
#include "slots.h"
#include "store.h"
#include "telemetry.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"

#define MIN_MS (60 * 1000)
#define DAY_MS ((int64_t)24 * 3600 * 1000)

#define T0     1764234000000 /* 2025-11-27T09:00:00.000Z */
#define T0_ISO "2025-11-27T09:00:00.000Z"
#define H1_ISO "2025-11-27T10:00:00.000Z"

#define RETENTION_DAYS 30
#define PERIOD_MS      600000 /* the prune timer's period, telemetry.c */

struct t {
    struct dfx f;
    struct vendd_conf conf;
};

static int setup(void **state)
{
    struct t *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    dfx_open(&t->f);
    dfx_clock_set(T0);
    t->conf.telemetry_retention_days = RETENTION_DAYS;
    t->f.v.conf = &t->conf;
    dfx_sql(t->f.v.db, "INSERT INTO machines (id, name, created_at, updated_at) VALUES "
                       "('VM01', 'VM01', '" T0_ISO "', '" T0_ISO "'), "
                       "('VM02', 'VM02', '" T0_ISO "', '" T0_ISO "')");
    /* VM01: slot 1 with 5 counted, slot 2 with none. */
    dfx_sql(t->f.v.db, "INSERT INTO slots (id, machine_id, slot_number, capacity, "
                       "current_stock, created_at, updated_at) VALUES "
                       "(11, 'VM01', 1, 10, 5, '" T0_ISO "', '" T0_ISO "'), "
                       "(12, 'VM01', 2, 10, 0, '" T0_ISO "', '" T0_ISO "')");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;

    telemetry_prune_stop(&t->f.v);
    dfx_close(&t->f);
    free(t);
    return 0;
}

/* Store reading json of machine at minute min after T0, through the domain call. */
static void store_at(struct t *t, const char *machine, int64_t min, const char *json)
{
    struct vend_telemetry r;
    struct vend_diag diag;
    struct telemetry_outcome done;

    dfx_clock_set(T0 + min * MIN_MS);
    assert_int_equal(vend_decode_telemetry(json, strlen(json), &r, &diag), VEND_OK);
    assert_int_equal(telemetry_store(&t->f.v, machine, &r, json, &done), VEND_OK);
}

/* One hourly row as "samples temp_samples min max sum_centi openings changes last_door",
 * '-' for NULL. */
static void hourly(struct t *t, const char *machine, const char *hour, char *buf, size_t size)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT samples, temp_samples, temp_min, temp_max, temp_sum_centi, door_openings, "
             "level_changes, last_door FROM telemetry_hourly WHERE machine_id = '%s' AND "
             "hour = '%s'",
             machine, hour);
    dfx_row(t->f.v.db, sql, buf, size);
}

/* What pruning must never touch: the machine rows, the slots, the history, the alerts. */
static char *kept(struct t *t)
{
    static const char *const sql[] = {
        "SELECT * FROM machines ORDER BY id",
        "SELECT * FROM slots ORDER BY id",
        "SELECT * FROM telemetry_hourly ORDER BY machine_id, hour",
        "SELECT * FROM alerts ORDER BY id",
    };
    json_t *all = json_array();
    char *out;

    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        json_t *rows = store_query_json(t->f.v.db, sql[i], NULL, 0);

        assert_non_null(rows);
        json_array_append_new(all, rows);
    }
    out = json_dumps(all, JSON_COMPACT);
    assert_non_null(out);
    json_decref(all);
    return out;
}

/*
 * The script: VM01 across 09:00 and 10:00, VM02 once at 09:25. A status message says the
 * door is OPEN before the telemetry does (the firmware sends one at each door change):
 * the opening still counts, since it is judged against the previous telemetry.
 */
static void play_script(struct t *t)
{
    struct vend_status st = {.status = VEND_PRESENCE_ONLINE, .door = VEND_DOOR_OPEN};
    bool changed;

    store_at(t, "VM01", 10,
             "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,\"level\":\"EMPTY\"}],"
             "\"temperature\":4.5,\"door\":\"CLOSED\"}");
    dfx_clock_set(T0 + 15 * MIN_MS);
    assert_int_equal(machines_apply_status(&t->f.v, "VM01", &st, &changed), VEND_OK);
    store_at(t, "VM01", 20,
             "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,\"level\":\"EMPTY\"}],"
             "\"temperature\":5.25,\"door\":\"OPEN\"}");
    store_at(t, "VM02", 25, "{\"slots\":[],\"temperature\":20,\"door\":\"OPEN\"}");
    store_at(t, "VM01", 30, "{\"slots\":[{\"id\":1,\"level\":\"HIGH\"}],\"door\":\"OPEN\"}");
    /* Slot 9 is not configured: skipped, not a change. */
    store_at(t, "VM01", 40,
             "{\"slots\":[{\"id\":1,\"level\":\"MEDIUM\"},{\"id\":2,\"level\":\"LOW\"},"
             "{\"id\":9,\"level\":\"EMPTY\"}],\"temperature\":4.35}");
    store_at(t, "VM01", 50, "{\"slots\":[],\"temperature\":-1.25,\"door\":\"CLOSED\"}");
    /* 10:00: the first opening is judged against the last door of 09:00. */
    store_at(t, "VM01", 65, "{\"slots\":[],\"temperature\":6,\"door\":\"OPEN\"}");
    store_at(t, "VM01", 75,
             "{\"slots\":[{\"id\":1,\"level\":\"MEDIUM\"}],\"temperature\":6.01,\"door\":"
             "\"CLOSED\"}");
    /* Silent on the door: the next OPEN is still an opening from CLOSED. */
    store_at(t, "VM01", 80, "{\"slots\":[]}");
    store_at(t, "VM01", 85, "{\"slots\":[{\"id\":1,\"level\":\"LOW\"}],\"door\":\"OPEN\"}");
}

static void test_rollup_two_hours(void **state)
{
    struct t *t = *state;
    char buf[256];

    play_script(t);
    assert_int_equal(t->f.v.metrics.telemetry_stored, 10);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), 10);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry_hourly"), 3);
    /* 4.5, 5.25, 4.35, -1.25 (sum 12.85, avg 3.2125; 4.35 * 100 is 434.99999... in a double,
     * so a sum that truncated would be off); door CLOSED->OPEN once; HIGH, then MEDIUM and
     * LOW: three level changes. */
    hourly(t, "VM01", T0_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "5 4 -1.25 5.25 1285 1 3 CLOSED");
    /* 6, 6.01; OPEN at 10:05 and again at 10:25; MEDIUM->LOW. */
    hourly(t, "VM01", H1_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "4 2 6.00 6.01 1201 2 1 OPEN");
    /* Its first reading: no earlier door to open from, VM01's is not VM02's. */
    hourly(t, "VM02", T0_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "1 1 20.00 20.00 2000 0 0 OPEN");
    assert_int_equal(dfx_int(t->f.v.db,
                             "SELECT round(CAST(temp_sum_centi AS DOUBLE PRECISION) / 100 / "
                             "temp_samples * 10000) FROM telemetry_hourly WHERE "
                             "machine_id = 'VM01' AND hour = '" T0_ISO "'"),
                     32125);

    /* The machine row holds the latest reading; what 10:25 left out keeps 10:15's value. */
    dfx_row(t->f.v.db, "SELECT temperature, door, last_seen FROM machines WHERE id = 'VM01'", buf,
            sizeof(buf));
    assert_string_equal(buf, "6.01 OPEN 2025-11-27T10:25:00.000Z");
    dfx_join(t->f.v.db, "SELECT sensor_level FROM slots ORDER BY id", " ", buf, sizeof(buf));
    assert_string_equal(buf, "LOW LOW");
}

/* Slot 1 as "level sensor_at". */
static void slot1(struct t *t, char *buf, size_t size)
{
    dfx_text(t->f.v.db,
             "SELECT sensor_level || ' ' || " TELEMETRY_SENSOR_AT_SQL " FROM slots s "
             "JOIN machines m ON m.id = s.machine_id WHERE s.id = 11",
             buf, size);
}

/* A repeated level is not rewritten (telemetry.c skips the column), but the reading still
 * moves sensor_at; a changed level moves both, and counts as a change. */
static void test_slot_level_repeat_and_change(void **state)
{
    struct t *t = *state;
    char buf[128];

    store_at(t, "VM01", 0, "{\"slots\":[{\"id\":1,\"level\":\"HIGH\"}]}");
    slot1(t, buf, sizeof(buf));
    assert_string_equal(buf, "HIGH 2025-11-27T09:00:00.000Z");
    store_at(t, "VM01", 5, "{\"slots\":[{\"id\":1,\"level\":\"HIGH\"}]}");
    slot1(t, buf, sizeof(buf));
    assert_string_equal(buf, "HIGH 2025-11-27T09:05:00.000Z");
    store_at(t, "VM01", 10, "{\"slots\":[{\"id\":1,\"level\":\"LOW\"}]}");
    slot1(t, buf, sizeof(buf));
    assert_string_equal(buf, "LOW 2025-11-27T09:10:00.000Z");
    store_at(t, "VM01", 15, "{\"slots\":[{\"id\":1,\"level\":\"LOW\"}]}");
    slot1(t, buf, sizeof(buf));
    assert_string_equal(buf, "LOW 2025-11-27T09:15:00.000Z");
    /* First level, a repeat, a change, a repeat: one change in the hour. */
    hourly(t, "VM01", T0_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "4 0 - - 0 0 1 -");
}

/* VM02 gets slots 1-3 (ids 21-23); slot 3 counts 4, so EMPTY contradicts it. */
static void add_three_slots(struct t *t)
{
    dfx_sql(t->f.v.db, "INSERT INTO slots (id, machine_id, slot_number, capacity, "
                       "current_stock, created_at, updated_at) VALUES "
                       "(21, 'VM02', 1, 10, 0, '" T0_ISO "', '" T0_ISO "'), "
                       "(22, 'VM02', 2, 10, 0, '" T0_ISO "', '" T0_ISO "'), "
                       "(23, 'VM02', 3, 10, 4, '" T0_ISO "', '" T0_ISO "')");
}

/* VM02's slots as "number:level@HH:MM" ('-' for none), and the reading's outcome. */
static void vm02_slots(struct t *t, char *buf, size_t size)
{
    dfx_join(t->f.v.db,
             "SELECT slot_number || ':' || COALESCE(sensor_level, '-') || '@' || "
             "COALESCE(substr(" TELEMETRY_SENSOR_AT_SQL ", 12, 5), '-') FROM slots s "
             "JOIN machines m ON m.id = s.machine_id WHERE s.machine_id = 'VM02' "
             "ORDER BY slot_number",
             " ", buf, size);
}

static void store_vm02(struct t *t, int64_t min, const char *json, struct telemetry_outcome *done)
{
    struct vend_telemetry r;
    struct vend_diag diag;

    dfx_clock_set(T0 + min * MIN_MS);
    assert_int_equal(vend_decode_telemetry(json, strlen(json), &r, &diag), VEND_OK);
    assert_int_equal(telemetry_store(&t->f.v, "VM02", &r, json, done), VEND_OK);
}

#define VM02_ALL(l1, l2, l3)                                                                       \
    "{\"slots\":[{\"id\":1,\"level\":\"" l1 "\"},{\"id\":2,\"level\":\"" l2 "\"},"                 \
    "{\"id\":3,\"level\":\"" l3 "\"}]}"

/*
 * A reading of every slot the machine has moves every sensor_at (telemetry.c does it in one
 * statement) and writes only the levels that changed; another machine's slots stay; an
 * unchanged level that contradicts the count keeps its one open alert.
 */
static void test_slots_whole_reading(void **state)
{
    struct t *t = *state;
    struct telemetry_outcome done;
    char buf[256];

    add_three_slots(t);
    store_vm02(t, 0, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:00 2:HIGH@09:00 3:EMPTY@09:00");
    assert_true(done.raised[2]);
    /* (a) Nothing changed: every sensor_at moves, no level. */
    store_vm02(t, 5, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:05 2:HIGH@09:05 3:EMPTY@09:05");
    assert_int_equal(done.unknown_slots, 0);
    /* (b) One level changed: that level, and everyone's sensor_at. */
    store_vm02(t, 10, VM02_ALL("FULL", "LOW", "EMPTY"), &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:10 2:LOW@09:10 3:EMPTY@09:10");
    hourly(t, "VM02", T0_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "3 0 - - 0 0 1 -");
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM alerts WHERE slot_id = 23 AND "
                                        "kind = 'STOCK_SENSOR_MISMATCH'"),
                     1);
    /* Most levels changed (telemetry.c writes each slot on its own then): the same result. */
    store_vm02(t, 15, VM02_ALL("HIGH", "EMPTY", "EMPTY"), &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:HIGH@09:15 2:EMPTY@09:15 3:EMPTY@09:15");
    hourly(t, "VM02", T0_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "4 0 - - 0 0 3 -");
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM slots s "
                                        "JOIN machines m ON m.id = s.machine_id "
                                        "WHERE s.machine_id = 'VM01' AND " TELEMETRY_SENSOR_AT_SQL
                                        " IS NOT NULL"),
                     0);
}

/* (c) A reading of some of the slots leaves the others' sensor_at where it was: also when an
 * unknown slot makes the count of reported slots that of the machine's. */
static void test_slots_partial_reading(void **state)
{
    struct t *t = *state;
    struct telemetry_outcome done;
    char buf[256];

    add_three_slots(t);
    store_vm02(t, 0, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    store_vm02(t, 5, "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":3,\"level\":\"EMPTY\"}]}",
               &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:05 2:HIGH@09:00 3:EMPTY@09:05");
    store_vm02(t, 10,
               "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,\"level\":\"HIGH\"},"
               "{\"id\":9,\"level\":\"FULL\"}]}",
               &done);
    assert_int_equal(done.unknown_slots, 1);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:10 2:HIGH@09:10 3:EMPTY@09:05");
    /* A level that changed in a partial reading is written too. */
    store_vm02(t, 15, "{\"slots\":[{\"id\":2,\"level\":\"LOW\"}]}", &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:10 2:LOW@09:15 3:EMPTY@09:05");
    hourly(t, "VM02", T0_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "4 0 - - 0 0 1 -");
}

/* (d) Every known slot and an unknown one: the known ones all move, the unknown is counted
 * and stored nowhere. */
static void test_slots_all_and_unknown(void **state)
{
    struct t *t = *state;
    struct telemetry_outcome done;
    char buf[256];

    add_three_slots(t);
    store_vm02(t, 0, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    store_vm02(t, 5,
               "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,\"level\":\"MEDIUM\"},"
               "{\"id\":3,\"level\":\"EMPTY\"},{\"id\":9,\"level\":\"LOW\"}]}",
               &done);
    assert_int_equal(done.unknown_slots, 1);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:05 2:MEDIUM@09:05 3:EMPTY@09:05");
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM slots WHERE slot_number = 9"), 0);
    hourly(t, "VM02", T0_ISO, buf, sizeof(buf));
    assert_string_equal(buf, "2 0 - - 0 0 1 -");
}

/*
 * (e) A reading of every slot moves the machine's slots_seen_at, which stands for the time of
 * each slot that existed then, not for one added since; a slot's own later time wins.
 */
static void test_slots_seen_at_machine(void **state)
{
    struct t *t = *state;
    struct telemetry_outcome done;
    char buf[256];

    add_three_slots(t);
    store_vm02(t, 5, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    store_vm02(t, 10, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:10 2:HIGH@09:10 3:EMPTY@09:10");
    /* Unchanged levels: only the machine row moved. */
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM slots WHERE machine_id = 'VM02' "
                                        "AND sensor_at = '2025-11-27T09:05:00.000Z'"),
                     3);
    /* Slot 4 is added after that reading: it was not in it. */
    dfx_sql(t->f.v.db, "INSERT INTO slots (id, machine_id, slot_number, capacity, "
                       "current_stock, created_at, updated_at) VALUES (24, 'VM02', 4, 10, 0, "
                       "'2025-11-27T09:12:00.000Z', '2025-11-27T09:12:00.000Z')");
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:10 2:HIGH@09:10 3:EMPTY@09:10 4:-@-");
    /* Slot 1 alone: its own time is the later one. */
    store_vm02(t, 15, "{\"slots\":[{\"id\":1,\"level\":\"FULL\"}]}", &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:15 2:HIGH@09:10 3:EMPTY@09:10 4:-@-");
    /* Slots 1-3 are no longer all of them: each takes its own time, slot 4 none. */
    store_vm02(t, 20, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:20 2:HIGH@09:20 3:EMPTY@09:20 4:-@-");
    /* All four again. */
    store_vm02(t, 25,
               "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,\"level\":\"HIGH\"},"
               "{\"id\":3,\"level\":\"EMPTY\"},{\"id\":4,\"level\":\"EMPTY\"}]}",
               &done);
    vm02_slots(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:25 2:HIGH@09:25 3:EMPTY@09:25 4:EMPTY@09:25");
}

/*
 * The kept /api/stock answers (slots_stock_reads) move with a reading that moves the slots'
 * sensor time, but not with a status message, which rewrites the same machine row: a fleet
 * sends status all the time, and each one dropped every kept stock answer (at 200 status
 * messages a second the stock reads halved; bench/stock_churn.sh). On SQLite: PostgreSQL's
 * versions cannot tell tables apart.
 */
static void test_stock_version_moves_with_readings_not_status(void **state)
{
    struct t *t = *state;
    struct telemetry_outcome done;
    struct vend_status st = {.status = VEND_PRESENCE_ONLINE};
    uint64_t before[2], after[2];
    bool changed = false;

    if (dfx_pg())
        skip();
    add_three_slots(t);
    store_vm02(t, 5, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    db_version_of(t->f.v.db, &slots_stock_reads, before);
    assert_int_equal(machines_apply_status(&t->f.v, "VM02", &st, &changed), VEND_OK);
    st.status = VEND_PRESENCE_OFFLINE;
    assert_int_equal(machines_apply_status(&t->f.v, "VM02", &st, &changed), VEND_OK);
    db_version_of(t->f.v.db, &slots_stock_reads, after);
    assert_memory_equal(before, after, sizeof(before));
    /* Unchanged levels: only the machine's slots_seen_at moves, and the version with it. */
    store_vm02(t, 10, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    db_version_of(t->f.v.db, &slots_stock_reads, after);
    assert_memory_not_equal(before, after, sizeof(before));
    /* A partial reading after the wall clock stepped back clears slots_seen_at: moves too. */
    memcpy(before, after, sizeof(before));
    store_vm02(t, 2, "{\"slots\":[{\"id\":1,\"level\":\"FULL\"}]}", &done);
    db_version_of(t->f.v.db, &slots_stock_reads, after);
    assert_memory_not_equal(before, after, sizeof(before));
    /* A new machine, and a machine gone. */
    memcpy(before, after, sizeof(before));
    dfx_sql(t->f.v.db, "INSERT INTO machines (id, name, status, created_at, updated_at) VALUES "
                       "('VM09', 'VM09', 'ONLINE', 'x', 'x')");
    db_version_of(t->f.v.db, &slots_stock_reads, after);
    assert_memory_not_equal(before, after, sizeof(before));
    memcpy(before, after, sizeof(before));
    dfx_sql(t->f.v.db, "DELETE FROM machines WHERE id = 'VM09'");
    db_version_of(t->f.v.db, &slots_stock_reads, after);
    assert_memory_not_equal(before, after, sizeof(before));
}

/* Whatever readings (of all slots, of one, with a slot vendd does not know), status messages
 * and clock steps come, an unchanged stock version means an unchanged stock answer: a kept
 * answer is never stale. 3,000 steps from a fixed seed; it fails at step 713 without
 * telemetry.c's db_touch() of a full reading. */
static void test_stock_version_never_hides_a_change(void **state)
{
    struct t *t = *state;
    struct telemetry_outcome done;
    uint64_t prev[2], cur[2];
    char *prevtext = NULL, *text = NULL;
    unsigned seed = 12345;
    static const char *const lv[] = {"FULL", "HIGH", "LOW", "EMPTY"};

    if (dfx_pg())
        skip();
    add_three_slots(t);
    db_version_of(t->f.v.db, &slots_stock_reads, prev);
    assert_int_equal(slots_stock_text(&t->f.v, "VM02", &prevtext), VEND_OK);
    for (int i = 0; i < 3000; i++) {
        unsigned r;
        char json[256];
        int64_t min;

        seed = seed * 1103515245u + 12345u;
        r = (seed >> 8) % 100;
        seed = seed * 1103515245u + 12345u;
        min = (int64_t)((seed >> 8) % 200) - 50;
        if (r < 35) {
            snprintf(json, sizeof(json),
                     "{\"slots\":[{\"id\":1,\"level\":\"%s\"},{\"id\":2,\"level\":\"%s\"},"
                     "{\"id\":3,\"level\":\"%s\"}]}",
                     lv[(seed >> 3) % 2], lv[(seed >> 5) % 2], lv[2 + (seed >> 7) % 2]);
            store_vm02(t, min, json, &done);
        } else if (r < 70) {
            snprintf(json, sizeof(json), "{\"slots\":[{\"id\":%u,\"level\":\"%s\"}]}",
                     1 + (seed >> 4) % 3, lv[(seed >> 9) % 2]);
            store_vm02(t, min, json, &done);
        } else if (r < 80) {
            snprintf(json, sizeof(json),
                     "{\"slots\":[{\"id\":%u,\"level\":\"%s\"},{\"id\":9,"
                     "\"level\":\"FULL\"}]}",
                     1 + (seed >> 4) % 3, lv[(seed >> 9) % 2]);
            store_vm02(t, min, json, &done);
        } else {
            struct vend_status st = {.status = (seed >> 6) % 2 ? VEND_PRESENCE_ONLINE
                                                               : VEND_PRESENCE_OFFLINE};
            bool changed = false;

            dfx_clock_set(T0 + min * MIN_MS);
            assert_int_equal(machines_apply_status(&t->f.v, "VM02", &st, &changed), VEND_OK);
        }
        db_version_of(t->f.v.db, &slots_stock_reads, cur);
        assert_int_equal(slots_stock_text(&t->f.v, "VM02", &text), VEND_OK);
        if (memcmp(prev, cur, sizeof(cur)) == 0 && strcmp(prevtext, text) != 0) {
            print_error("op %d (r=%u min=%lld): same version, answer moved\nwas %s\nnow %s\n", i, r,
                        (long long)min, prevtext, text);
            fail();
        }
        free(prevtext);
        prevtext = text;
        memcpy(prev, cur, sizeof(cur));
    }
    free(prevtext);
}

/* VM02's slots as the API shows them (slots_list_json()): "number:level@HH:MM", '-' for none. */
static void vm02_api(struct t *t, char *buf, size_t size)
{
    json_t *slots = NULL, *s;
    size_t i, n = 0;

    assert_int_equal(slots_list_json(&t->f.v, "VM02", &slots), VEND_OK);
    buf[0] = '\0';
    json_array_foreach(slots, i, s)
    {
        const char *level = json_string_value(json_object_get(s, "sensor_level"));
        const char *at = json_string_value(json_object_get(s, "sensor_at"));

        n += (size_t)snprintf(buf + n, size - n, "%s%d:%s@%.5s", i ? " " : "",
                              (int)json_integer_value(json_object_get(s, "slot_number")),
                              level ? level : "-", at ? at + 11 : "-");
        assert_true(n < size);
    }
    json_decref(slots);
}

/*
 * (f) The wall clock steps back (NTP corrects a clock that ran an hour ahead): a slot still
 * shows the time of the last reading that named it, as it did when each reading wrote every
 * slot's sensor_at; not a time the slot or the machine took before the step, kept until the
 * clock passes it again. Also a slot created while the clock was ahead.
 */
static void test_slots_clock_stepped_back(void **state)
{
    struct t *t = *state;
    struct telemetry_outcome done;
    char buf[256];

    add_three_slots(t);
    /* Ahead: 10:00 and 10:30 (the second moves only the machine's time). */
    store_vm02(t, 60, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    store_vm02(t, 90, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    vm02_api(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@10:30 2:HIGH@10:30 3:EMPTY@10:30");
    /* Stepped back to 09:05: slot 1 alone was read last. */
    store_vm02(t, 5, "{\"slots\":[{\"id\":1,\"level\":\"FULL\"}]}", &done);
    vm02_api(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:05 2:HIGH@10:30 3:EMPTY@10:30");
    /* Every slot, levels unchanged. */
    store_vm02(t, 10, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    vm02_api(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:10 2:HIGH@09:10 3:EMPTY@09:10");
    /* Slot 4 was created at 10:40, before the step; it is named from 09:15 on. */
    dfx_sql(t->f.v.db, "INSERT INTO slots (id, machine_id, slot_number, capacity, "
                       "current_stock, created_at, updated_at) VALUES (24, 'VM02', 4, 10, 0, "
                       "'2025-11-27T10:40:00.000Z', '2025-11-27T10:40:00.000Z')");
    store_vm02(t, 15,
               "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,\"level\":\"HIGH\"},"
               "{\"id\":3,\"level\":\"EMPTY\"},{\"id\":4,\"level\":\"LOW\"}]}",
               &done);
    store_vm02(t, 20,
               "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":2,\"level\":\"HIGH\"},"
               "{\"id\":3,\"level\":\"EMPTY\"},{\"id\":4,\"level\":\"LOW\"}]}",
               &done);
    vm02_api(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:20 2:HIGH@09:20 3:EMPTY@09:20 4:LOW@09:20");
}

/*
 * (g) A database that 0017 upgrades, its slots' times written by the telemetry before it (one
 * slot never read): the API shows the same times after the upgrade, and readings move them
 * from there as on a new database.
 */
static void test_slots_seen_at_upgrade(void **state)
{
    struct t *t = *state;
    const struct schema_migration *list = dfx_pg() ? schema_pg : schema_sqlite;
    struct telemetry_outcome done;
    char url[1024], err[256] = "", buf[256];
    struct db *old = NULL;

    dfx_empty_url(&t->f, "before.db", url, sizeof(url));
    assert_int_equal(list[15].version, 16);
    if (db_open_with(&old, url, list, 16, err, sizeof(err)) != VEND_OK)
        fail_msg("db_open_with %s: %s", url, err);
    dfx_sql(old, "INSERT INTO machines (id, name, created_at, updated_at, last_seen) VALUES "
                 "('VM02', 'VM02', '" T0_ISO "', '" T0_ISO "', '2025-11-27T09:07:00.000Z')");
    dfx_sql(old, "INSERT INTO slots (id, machine_id, slot_number, capacity, current_stock, "
                 "sensor_level, sensor_at, created_at, updated_at) VALUES "
                 "(21, 'VM02', 1, 10, 0, 'FULL', '2025-11-27T09:07:00.000Z', '" T0_ISO "', '" T0_ISO
                 "'), "
                 "(22, 'VM02', 2, 10, 0, 'HIGH', '2025-11-27T09:03:00.000Z', '" T0_ISO "', '" T0_ISO
                 "'), "
                 "(23, 'VM02', 3, 10, 4, NULL, NULL, '" T0_ISO "', '" T0_ISO "')");
    db_close(old);
    old = NULL;
    if (db_open(&old, url, err, sizeof(err)) != VEND_OK)
        fail_msg("db_open %s: %s", url, err);
    db_close(t->f.v.db);
    t->f.v.db = old;
    assert_int_equal(dfx_int(old, "SELECT count(*) FROM machines WHERE slots_seen_at IS NULL"), 1);
    vm02_api(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:07 2:HIGH@09:03 3:-@-");
    store_vm02(t, 10, "{\"slots\":[{\"id\":2,\"level\":\"HIGH\"}]}", &done);
    vm02_api(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:07 2:HIGH@09:10 3:-@-");
    store_vm02(t, 15, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    store_vm02(t, 20, VM02_ALL("FULL", "HIGH", "EMPTY"), &done);
    vm02_api(t, buf, sizeof(buf));
    assert_string_equal(buf, "1:FULL@09:20 2:HIGH@09:20 3:EMPTY@09:20");
}

/* A reading that cannot be stored leaves no trace in the rollup either. */
static void test_rollup_rolls_back(void **state)
{
    struct t *t = *state;
    const char *json = "{\"slots\":[],\"temperature\":7}";
    struct vend_telemetry r;
    struct vend_diag diag;
    struct telemetry_outcome done;

    assert_int_equal(vend_decode_telemetry(json, strlen(json), &r, &diag), VEND_OK);
    assert_int_equal(telemetry_store(&t->f.v, "VM99", &r, json, &done), VEND_ENOTFOUND);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry_hourly"), 0);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), 0);
    assert_int_equal(t->f.v.metrics.telemetry_stored, 0);
}

/* A raw row straight into the table, received at at_ms. */
static void insert_raw(struct t *t, int64_t at_ms)
{
    char at[STORE_ISO_SIZE];
    struct db_value p[1];

    db_iso_time(at, sizeof(at), at_ms);
    p[0] = DB_TEXT(at);
    assert_int_equal(db_exec(t->f.v.db,
                             "INSERT INTO telemetry (machine_id, data, received_at) "
                             "VALUES ('VM01', '{}', $1)",
                             p, 1, NULL, NULL),
                     1);
}

static int64_t count_before(struct t *t, int64_t at_ms)
{
    char at[STORE_ISO_SIZE];
    struct db_value p[1];
    int64_t n = -1;

    db_iso_time(at, sizeof(at), at_ms);
    p[0] = DB_TEXT(at);
    assert_int_equal(store_query_int(t->f.v.db,
                                     "SELECT count(*) FROM telemetry WHERE received_at < $1", p, 1,
                                     &n),
                     1);
    return n;
}

#define OLD   1201 /* rows older than the window: two full batches and 201 */
#define YOUNG 301  /* rows inside it, the oldest exactly at its edge */

static void test_prune_exactly_the_old_rows(void **state)
{
    struct t *t = *state;
    const int64_t now = T0 + 40 * DAY_MS, cutoff = now - RETENTION_DAYS * DAY_MS;
    char ids_young[16384], ids_left[16384], sql[256], edge[STORE_ISO_SIZE], *before, *after;

    play_script(t); /* history and a machine row to keep */
    dfx_clock_set(now);
    dfx_sql(t->f.v.db, "DELETE FROM telemetry");
    /* Old and young interleaved, so id order is not time order: old row i is received at
     * cutoff - 1 ms - i minutes, young row i at the cutoff + i minutes. */
    assert_int_equal(db_begin(t->f.v.db), VEND_OK);
    for (int i = 0; i < OLD; i++) {
        insert_raw(t, cutoff - 1 - i * MIN_MS);
        if (i < YOUNG)
            insert_raw(t, cutoff + i * MIN_MS);
    }
    assert_int_equal(db_commit(t->f.v.db), VEND_OK);
    assert_int_equal(count_before(t, cutoff), OLD);
    db_iso_time(edge, sizeof(edge), cutoff);
    snprintf(sql, sizeof(sql), "SELECT id FROM telemetry WHERE received_at >= '%s' ORDER BY id",
             edge);
    dfx_join(t->f.v.db, sql, ",", ids_young, sizeof(ids_young));
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), OLD + YOUNG);
    before = kept(t);

    /* Oldest first, a batch at a time: after the first, the oldest left is old row 700. */
    assert_int_equal(telemetry_prune(&t->f.v), TELEMETRY_PRUNE_BATCH);
    assert_int_equal(count_before(t, cutoff), OLD - TELEMETRY_PRUNE_BATCH);
    assert_int_equal(count_before(t, cutoff - 1 - 700 * MIN_MS), 0);
    assert_int_equal(count_before(t, cutoff - 1 - 699 * MIN_MS), 1);
    assert_int_equal(telemetry_prune(&t->f.v), TELEMETRY_PRUNE_BATCH);
    assert_int_equal(telemetry_prune(&t->f.v), OLD - 2 * TELEMETRY_PRUNE_BATCH);
    assert_int_equal(t->f.v.metrics.telemetry_pruned, OLD);

    /* Exactly the young rows are left, the one at the edge too. */
    assert_int_equal(count_before(t, cutoff), 0);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), YOUNG);
    dfx_join(t->f.v.db, "SELECT id FROM telemetry ORDER BY id", ",", ids_left, sizeof(ids_left));
    assert_string_equal(ids_left, ids_young);
    after = kept(t);
    assert_string_equal(after, before);
    free(after);

    /* Again: nothing is due, nothing changes. */
    assert_int_equal(telemetry_prune(&t->f.v), 0);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), YOUNG);
    after = kept(t);
    assert_string_equal(after, before);
    assert_int_equal(t->f.v.metrics.telemetry_pruned, OLD);
    free(after);
    free(before);
}

/* Every raw row past the window goes; the latest reading and the history stay. */
static void test_prune_keeps_latest_and_history(void **state)
{
    struct t *t = *state;
    char *before, *after, buf[128];

    play_script(t);
    before = kept(t);
    dfx_clock_set(T0 + 85 * MIN_MS + RETENTION_DAYS * DAY_MS); /* the last one is at the edge */
    assert_int_equal(telemetry_prune(&t->f.v), 9);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), 1);
    dfx_clock_set(dfx_clock_ms() + 1);
    assert_int_equal(telemetry_prune(&t->f.v), 1);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), 0);
    after = kept(t);
    assert_string_equal(after, before);
    free(after);
    free(before);
    dfx_row(t->f.v.db, "SELECT temperature, door, last_seen FROM machines WHERE id = 'VM01'", buf,
            sizeof(buf));
    assert_string_equal(buf, "6.01 OPEN 2025-11-27T10:25:00.000Z");

    /* Readings after the prune still know the door they open from: the newest hour's (OPEN
     * since 10:25, so this OPEN is no opening), carried into a new hour through a reading
     * that does not name the door. */
    store_at(t, "VM01", 31 * 24 * 60, "{\"slots\":[],\"door\":\"OPEN\"}");
    store_at(t, "VM01", 31 * 24 * 60 + 1, "{\"slots\":[],\"door\":\"CLOSED\"}");
    store_at(t, "VM01", 31 * 24 * 60 + 60, "{\"slots\":[]}");
    store_at(t, "VM01", 31 * 24 * 60 + 61, "{\"slots\":[],\"door\":\"OPEN\"}");
    hourly(t, "VM01", "2025-12-28T09:00:00.000Z", buf, sizeof(buf));
    assert_string_equal(buf, "2 0 - - 0 0 0 CLOSED");
    hourly(t, "VM01", "2025-12-28T10:00:00.000Z", buf, sizeof(buf));
    assert_string_equal(buf, "2 0 - - 0 1 0 OPEN");
}

/* The timer: at once while batches come back full, the period when done, backoff on failure. */
static void test_prune_timer(void **state)
{
    struct t *t = *state;
    const int64_t now = T0 + 40 * DAY_MS, cutoff = now - RETENTION_DAYS * DAY_MS;
    struct telemetry_prune_state *s = &t->f.v.telemetry_prune;
    int64_t want = 1000;

    dfx_clock_set(now);
    assert_int_equal(db_begin(t->f.v.db), VEND_OK);
    for (int i = 0; i < 2 * TELEMETRY_PRUNE_BATCH + 1; i++)
        insert_raw(t, cutoff - 1 - i * 1000);
    assert_int_equal(db_commit(t->f.v.db), VEND_OK);
    telemetry_prune_start(&t->f.v);
    assert_int_not_equal(s->timer, 0);
    telemetry_prune_run(&t->f.v);
    assert_int_not_equal(s->timer, 0);
    assert_int_equal(s->delay_ms, 0);
    telemetry_prune_run(&t->f.v);
    assert_int_equal(s->delay_ms, 0);
    assert_int_equal(s->pruned_run, 2 * TELEMETRY_PRUNE_BATCH);
    telemetry_prune_run(&t->f.v);
    assert_int_equal(s->delay_ms, PERIOD_MS);
    assert_int_equal(s->pruned_run, 0);
    assert_int_equal(t->f.v.metrics.telemetry_pruned, 2 * TELEMETRY_PRUNE_BATCH + 1);
    assert_int_equal(dfx_int(t->f.v.db, "SELECT count(*) FROM telemetry"), 0);

    /* A batch that fails (here: no table) backs off, doubling up to the period. */
    dfx_sql(t->f.v.db, "ALTER TABLE telemetry RENAME TO telemetry_away");
    for (int i = 0; i < 12; i++) {
        telemetry_prune_run(&t->f.v);
        assert_int_not_equal(s->timer, 0);
        assert_int_equal(s->delay_ms, want);
        want = want * 2 > PERIOD_MS ? PERIOD_MS : want * 2;
    }
    assert_int_equal(s->delay_ms, PERIOD_MS);
    dfx_sql(t->f.v.db, "ALTER TABLE telemetry_away RENAME TO telemetry");
    insert_raw(t, cutoff - 1);
    telemetry_prune_run(&t->f.v);
    assert_int_equal(s->retry_ms, 0);
    assert_int_equal(s->delay_ms, PERIOD_MS);
    assert_int_equal(t->f.v.metrics.telemetry_pruned, 2 * TELEMETRY_PRUNE_BATCH + 2);
    telemetry_prune_stop(&t->f.v);
    assert_int_equal(s->timer, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rollup_two_hours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollup_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_level_repeat_and_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_whole_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_partial_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_all_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_seen_at_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stock_version_moves_with_readings_not_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stock_version_never_hides_a_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_clock_stepped_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_seen_at_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_exactly_the_old_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_latest_and_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_timer, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
