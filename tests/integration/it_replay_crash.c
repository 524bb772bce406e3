/*
 * it_replay_crash.c - kill -9 of vendd in the middle of a telemetry replay (crash point
 * ingest_replayed, daemon/src/core/crashpoint.h), then a restart.
 *
 * On SQLite a batch of telemetry opens no savepoint per reading; a reading that fails after it
 * changed rows makes vendd roll the batch back and apply the others again (ingest.c
 * batch_replay()). vendd dies right after applying them again, before anything of the batch
 * is committed. A test trigger makes machine VM03's readings fail at their last statement,
 * the hour's rollup, as tests/daemon/test_ingest_replay.c does; a burst of readings from five
 * machines, VM03's in the middle, waits in vendd's broker session while vendd is stopped, so
 * that it arrives as one burst when vendd starts with the crash point armed.
 *
 * After the restart: the database passes SQLite's integrity check; VM03 has no raw row and its
 * machine row was never moved; every raw row has its sample in its hour's rollup and every
 * rollup counts its raw rows; no reading is stored twice. Then vendd stores new readings (VM03's
 * still refused, a replay each time) and stops cleanly. Skipped on PostgreSQL (its batches keep
 * their savepoints: no replay); built only with crash points (VEND_CRASH_POINTS).
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define BURST      40 /* readings in each burst, VM03's one of them */
#define FAILING_AT 20 /* VM03's place in the burst: 20 readings before it share its batch */
#define CRASH_MS   20000
#define WAIT_MS    15000

/* A reading published after vendd is back: once it is stored, so is what came before it. */
static const char s_marker[] = "{\"slots\":[],\"seq\":999}";

/* The machines whose readings are stored; VM03's never are. */
static const char *const s_stored[] = {"VM01", "VM02", "VM04", "VM05"};
#define NSTORED (sizeof(s_stored) / sizeof(s_stored[0]))

static long long sql_int(const struct harness *h, const char *sql)
{
    long long v = -1;

    if (harness_sql_int(h, sql, &v) != 1)
        fail_msg("no answer to '%s'", sql);
    return v;
}

/*
 * Publish a burst of BURST readings, each its own (seq from first on), from the machines of
 * s_stored in turn and VM03's at FAILING_AT. Returns how many are from s_stored.
 */
static int publish_burst(struct harness_mqtt *c, int first)
{
    int stored = 0;

    for (int i = 0; i < BURST; i++) {
        const char *id = i == FAILING_AT ? "VM03" : s_stored[(size_t)i % NSTORED];
        char topic[64], msg[192];
        int n;

        snprintf(topic, sizeof(topic), "vm/%s/telemetry", id);
        n = snprintf(msg, sizeof(msg),
                     "{\"temperature\":4.5,\"door\":\"CLOSED\",\"slots\":[{\"id\":1,\"level\":"
                     "\"FULL\"}],\"seq\":%d}",
                     first + i);
        assert_true(n > 0 && (size_t)n < sizeof(msg));
        assert_int_equal(harness_mqtt_publish(c, topic, msg, (size_t)n), 0);
        stored += i != FAILING_AT;
    }
    return stored;
}

/* Whatever vendd stored is whole and stored once, and VM03's readings are nowhere. */
static void check_stored(const struct harness *h)
{
    char ok[64] = "";

    assert_int_equal(harness_sql_text(h, "PRAGMA integrity_check", ok, sizeof(ok)), 1);
    assert_string_equal(ok, "ok");
    /* The failing reading: no raw row, no sample, no machine row moved. */
    assert_int_equal(sql_int(h, "SELECT count(*) FROM telemetry WHERE machine_id = 'VM03'"), 0);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM telemetry_hourly WHERE machine_id = 'VM03'"),
                     0);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM machines WHERE id = 'VM03' AND "
                                "last_seen IS NOT NULL"),
                     0);
    /* Every raw row has exactly its sample in its hour's rollup, and no sample is without its
     * raw row (received_at and hour share the form '2026-11-27T09'). */
    assert_int_equal(sql_int(h, "SELECT count(*) FROM (SELECT machine_id, substr(received_at, 1, "
                                "13) AS hr, count(*) AS n FROM telemetry GROUP BY 1, 2) t LEFT "
                                "JOIN telemetry_hourly r ON r.machine_id = t.machine_id AND "
                                "substr(r.hour, 1, 13) = t.hr WHERE r.samples IS NOT t.n"),
                     0);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM telemetry_hourly r WHERE r.samples != "
                                "(SELECT count(*) FROM telemetry t WHERE t.machine_id = "
                                "r.machine_id AND substr(t.received_at, 1, 13) = "
                                "substr(r.hour, 1, 13))"),
                     0);
    /* No reading stored twice (each carries its own seq). */
    assert_int_equal(sql_int(h, "SELECT count(*) FROM (SELECT data FROM telemetry GROUP BY data "
                                "HAVING count(*) > 1) d"),
                     0);
    /* Each machine row last moved by a stored reading. */
    assert_int_equal(sql_int(h, "SELECT count(*) FROM machines m WHERE m.last_seen IS NOT "
                                "(SELECT max(received_at) FROM telemetry t WHERE t.machine_id = "
                                "m.id)"),
                     0);
}

/* The count of the vendd log line "rolling back the N message(s)", the last one's N. */
static long replayed_before(const struct harness *h)
{
    static const char needle[] = "rolling back the ";
    char line[1024];
    long n = -1;
    FILE *f = fopen(h->log_path, "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *at = strstr(line, needle);

        if (at != NULL)
            n = strtol(at + sizeof(needle) - 1, NULL, 10);
    }
    fclose(f);
    return n;
}

static int setup(void **state)
{
    /* The machine client publishes the readings of every machine. */
    *state = harness_fixture_new(NULL, NULL, "it-rc-machines");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void killed_in_a_replay_loses_nothing_half_way(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char sql[160], want[16];
    long before;
    int sig, second;

    if (harness_db_pg(h)) {
        skip(); /* PostgreSQL keeps the batch's savepoints: nothing to apply again */
        return;
    }
    /* vendd made the schema and both its broker sessions, which outlive it: stopped, its
     * telemetry session keeps what the machines send until it is back. */
    assert_int_equal(harness_vendd_term(h), 0);
    assert_true(harness_sql_exec(h, "INSERT OR IGNORE INTO machines (id, name, created_at, "
                                    "updated_at) VALUES "
                                    "('VM02', 'VM02', '2026-01-01T00:00:00.000Z', "
                                    "'2026-01-01T00:00:00.000Z'), "
                                    "('VM03', 'VM03', '2026-01-01T00:00:00.000Z', "
                                    "'2026-01-01T00:00:00.000Z'), "
                                    "('VM04', 'VM04', '2026-01-01T00:00:00.000Z', "
                                    "'2026-01-01T00:00:00.000Z'), "
                                    "('VM05', 'VM05', '2026-01-01T00:00:00.000Z', "
                                    "'2026-01-01T00:00:00.000Z')") >= 3);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM machines WHERE id IN ('VM01', 'VM02', "
                                "'VM03', 'VM04', 'VM05')"),
                     5);
    /* VM03's reading fails at its last statement, after its machine row and its raw row were
     * written: it spoils its batch. */
    assert_true(harness_sql_exec(h, "CREATE TRIGGER refuse_vm03 BEFORE INSERT ON "
                                    "telemetry_hourly WHEN NEW.machine_id = 'VM03' BEGIN "
                                    "SELECT RAISE(ABORT, 'refused by the test'); END") >= 0);
    publish_burst(&f->machine, 0);

    /* The burst arrives as vendd starts: it dies applying the batch again, maybe before its
     * start is over. */
    assert_int_equal(harness_env_set(h, "VENDD_CRASH_AT=ingest_replayed"), 0);
    if (harness_vendd_start(h) < 0 && (h->pid > 0 || !h->reaped))
        fail_msg("vendd did not start (log: %s)", h->log_path);
    sig = harness_vendd_wait_death(h, CRASH_MS);
    if (sig != SIGKILL)
        fail_msg("vendd did not die by SIGKILL at ingest_replayed (got %d; log: %s)", sig,
                 h->log_path);
    assert_int_equal(harness_log_count(h, "crash point ingest_replayed:1 reached"), 1);
    before = replayed_before(h);
    print_message("vendd died applying again the %ld reading(s) before VM03's\n", before);
    /* VM03's reading had readings before it in its batch: the replay applied them again. */
    assert_true(before >= 1);

    /* Without the crash point: what the broker delivers again, then a reading to wait for. */
    assert_int_equal(harness_env_set(h, "VENDD_CRASH_AT="), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_mqtt_publish(&f->machine, "vm/VM01/telemetry", s_marker, strlen(s_marker)), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT count(*) FROM telemetry WHERE data LIKE "
                                      "'%\"seq\":999}'",
                                      "1", WAIT_MS),
                     0);
    print_message("after the restart: %lld of the first burst's %d storable readings are stored\n",
                  sql_int(h, "SELECT count(*) FROM telemetry WHERE data NOT LIKE "
                             "'%\"seq\":999}'"),
                  BURST - 1);
    check_stored(h);

    /* New readings are stored, VM03's refused again (the client waits for each PUBACK, so
     * here they mostly come one a batch). */
    second = publish_burst(&f->machine, 1000);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM telemetry WHERE CAST(substr(data, instr(data, '\"seq\":') + "
             "6) AS INTEGER) >= 1000");
    snprintf(want, sizeof(want), "%d", second);
    if (harness_sql_wait(h, sql, want, WAIT_MS) < 0)
        fail_msg("the new readings were not all stored (log: %s)", h->log_path);
    check_stored(h);
    /* This vendd applied again what VM03's readings spoiled, and went on: the burst the broker
     * delivered again (whatever vendd had not acknowledged before it died), or the new one. */
    assert_true(harness_metric(h, "vendd_ingest_batch_replays_total") >= 1);
    assert_int_equal(harness_check(h, NULL), 0);
    /* A clean stop, its memory all freed (under the sanitizers, a leak is a failed exit). */
    assert_int_equal(harness_vendd_term(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(killed_in_a_replay_loses_nothing_half_way, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
