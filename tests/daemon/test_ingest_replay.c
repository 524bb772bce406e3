/*
 * test_ingest_replay.c - a group commit of telemetry opens no savepoint per message
 * (db_batch_guard()). When one message fails half-way, after it changed rows, ingest.c rolls
 * the batch back and applies the others again: they are stored once, with their alerts once,
 * the failed one not at all, and the counts say so. A message rejected before it changed
 * anything (an unregistered machine) costs no replay. On PostgreSQL the batch keeps its
 * savepoints: the same outcome, without a replay.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "fixture.h"
#include "ingest.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"

#define T0     1764235800000 /* 2025-11-27T09:30:00.000Z */
#define T0_ISO "2025-11-27T09:30:00.000Z"

/* Slot 1 reads FULL with none counted: a mismatch alert each time it is stored anew. */
#define READING                                                                                    \
    "{\"temperature\":4.5,\"door\":\"CLOSED\",\"slots\":[{\"id\":1,\"level\":\"FULL\"}]}"

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_open(f);
    dfx_clock_set(T0);
    dfx_sql(f->v.db, "INSERT INTO machines (id, name, created_at, updated_at) VALUES "
                     "('VM01', 'VM01', '" T0_ISO "', '" T0_ISO "'), "
                     "('VM02', 'VM02', '" T0_ISO "', '" T0_ISO "'), "
                     "('VM03', 'VM03', '" T0_ISO "', '" T0_ISO "')");
    dfx_sql(f->v.db, "INSERT INTO slots (id, machine_id, slot_number, capacity, current_stock, "
                     "created_at, updated_at) VALUES "
                     "(11, 'VM01', 1, 10, 0, '" T0_ISO "', '" T0_ISO "'), "
                     "(21, 'VM02', 1, 10, 0, '" T0_ISO "', '" T0_ISO "'), "
                     "(31, 'VM03', 1, 10, 0, '" T0_ISO "', '" T0_ISO "')");
    /* VM02's reading fails at its last statement, the hour's rollup, after its machine row,
     * its raw row and its alert were written. */
    if (dfx_pg()) {
        dfx_sql(f->v.db, "CREATE FUNCTION refuse_vm02() RETURNS trigger AS 'BEGIN "
                         "IF NEW.machine_id = ''VM02'' THEN "
                         "RAISE EXCEPTION ''refused by the test''; "
                         "END IF; RETURN NEW; END' LANGUAGE plpgsql");
        dfx_sql(f->v.db, "CREATE TRIGGER refuse_vm02 BEFORE INSERT ON telemetry_hourly "
                         "FOR EACH ROW EXECUTE FUNCTION refuse_vm02()");
    } else {
        dfx_sql(f->v.db, "CREATE TRIGGER refuse_vm02 BEFORE INSERT ON telemetry_hourly "
                         "WHEN NEW.machine_id = 'VM02' BEGIN "
                         "SELECT RAISE(ABORT, 'refused by the test'); END");
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct dfx *f = *state;

    dfx_close(f);
    free(f);
    return 0;
}

/* A reading of machine as the broker hands it over, inside the burst's batch. */
static void deliver(struct dfx *f, const char *machine)
{
    char topic[VEND_TOPIC_MAX + 1];

    snprintf(topic, sizeof(topic), "vm/%s/telemetry", machine);
    ingest_message(&f->v, topic, READING, strlen(READING), false);
}

static uint64_t rejected_telemetry(struct dfx *f)
{
    uint64_t n = 0;

    for (size_t i = 0; i < METRICS_ERR_SLOTS; i++)
        n += f->v.metrics.mqtt_rejected[VEND_TOPIC_TELEMETRY][i];
    return n;
}

/* What is stored of each machine: "machine:raw rows:rollup samples:open alerts:seen". */
static void stored(struct dfx *f, char *buf, size_t size)
{
    dfx_join(f->v.db,
             "SELECT m.id || ':' || "
             "(SELECT count(*) FROM telemetry t WHERE t.machine_id = m.id) || ':' || "
             "COALESCE((SELECT samples FROM telemetry_hourly h WHERE h.machine_id = m.id), 0) "
             "|| ':' || (SELECT count(*) FROM alerts a WHERE a.machine_id = m.id) || ':' || "
             "CASE WHEN m.last_seen IS NULL THEN 'never' ELSE 'seen' END "
             "FROM machines m ORDER BY m.id",
             " ", buf, size);
}

static void a_reading_failing_half_way_leaves_nothing_and_the_others_stay(void **state)
{
    struct dfx *f = *state;
    char buf[256];

    deliver(f, "VM01");
    deliver(f, "VM02");
    deliver(f, "VM03");
    deliver(f, "VM01");
    ingest_commit(&f->v);
    assert_false(db_batch_open(f->v.db));
    /* VM01 twice (one alert: the second reading finds it open), VM03 once, VM02 nothing. */
    stored(f, buf, sizeof(buf));
    assert_string_equal(buf, "VM01:2:2:1:seen VM02:0:0:0:never VM03:1:1:1:seen");
    assert_int_equal(f->v.metrics.telemetry_stored, 3);
    assert_int_equal(rejected_telemetry(f), 1);
    /* SQLite: the batch ran unguarded and was applied again once; PostgreSQL: savepoints. */
    assert_int_equal(f->v.metrics.ingest_batch_replays, dfx_pg() ? 0 : 1);
    assert_int_equal(f->v.metrics.ingest_batch_lost, 0);
}

static void an_unregistered_machine_costs_no_replay(void **state)
{
    struct dfx *f = *state;
    char buf[256];

    deliver(f, "VM01");
    deliver(f, "VM99");
    deliver(f, "VM03");
    ingest_commit(&f->v);
    stored(f, buf, sizeof(buf));
    assert_string_equal(buf, "VM01:1:1:1:seen VM02:0:0:0:never VM03:1:1:1:seen");
    assert_int_equal(f->v.metrics.telemetry_stored, 2);
    assert_int_equal(rejected_telemetry(f), 1);
    assert_int_equal(f->v.metrics.ingest_batch_replays, 0);
}

/* The first message of a batch failing: nothing before it to apply again. */
static void a_first_reading_failing_is_alone(void **state)
{
    struct dfx *f = *state;
    char buf[256];

    deliver(f, "VM02");
    deliver(f, "VM03");
    ingest_commit(&f->v);
    stored(f, buf, sizeof(buf));
    assert_string_equal(buf, "VM01:0:0:0:never VM02:0:0:0:never VM03:1:1:1:seen");
    assert_int_equal(f->v.metrics.telemetry_stored, 1);
    assert_int_equal(rejected_telemetry(f), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_reading_failing_half_way_leaves_nothing_and_the_others_stay, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unregistered_machine_costs_no_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(a_first_reading_failing_is_alone, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
