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
#include "log.h"
#include "telemetry.h"
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

/* Lines of the log (a temporary file) that contain needle. */
static int log_lines(FILE *out, const char *needle)
{
    char line[1024];
    int n = 0;

    fflush(out);
    rewind(out);
    while (fgets(line, sizeof(line), out) != NULL)
        n += strstr(line, needle) != NULL;
    return n;
}

/* Capture what vendd logs from here on into a temporary file; log_stop() ends it. */
static FILE *log_capture(void)
{
    FILE *out = tmpfile();

    assert_non_null(out);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, out);
    return out;
}

static void log_stop(void)
{
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
}

/* Each reading one second after the one before: the test's triggers tell the passes apart. */
static int64_t s_ticks;

static int64_t stepping_clock(void)
{
    return T0 + 1000 * ++s_ticks;
}

/*
 * The batch a replay opens vanishes under it (an error that makes SQLite roll the whole
 * transaction back: I/O, a full disk; here a trigger's RAISE(ROLLBACK) on VM01's second
 * pass): the messages after it are committed one transaction each. The log of the batch that
 * was rolled back must not outlive it: a later batch of the same burst that has to be applied
 * again would store those messages a second time.
 */
static void a_reading_stored_alone_in_a_replay_is_not_applied_again(void **state)
{
    struct dfx *f = *state;
    char buf[256];
    FILE *out;

    if (dfx_pg()) {
        skip(); /* savepoints: no replay */
        return;
    }
    dfx_sql(f->v.db, "INSERT INTO machines (id, name, created_at, updated_at) VALUES "
                     "('VM04', 'VM04', '" T0_ISO "', '" T0_ISO "')");
    /* Calls 2 to 5 of the clock: VM01's reading applied again by the first replay (call 4). */
    dfx_sql(f->v.db, "CREATE TRIGGER rollback_vm01 BEFORE INSERT ON telemetry "
                     "WHEN NEW.machine_id = 'VM01' AND "
                     "NEW.received_at > '2025-11-27T09:30:01.000Z' AND "
                     "NEW.received_at < '2025-11-27T09:30:06.000Z' BEGIN "
                     "SELECT RAISE(ROLLBACK, 'transaction rolled back by the test'); END");
    s_ticks = 0;
    f->v.now_ms = stepping_clock;
    out = log_capture();
    /* One burst. VM02 fails half-way: replay; VM01's second pass ends the replay's
     * transaction, VM03 is then committed alone, VM02 fails again alone. */
    deliver(f, "VM01");
    deliver(f, "VM03");
    deliver(f, "VM02");
    /* The trigger's window held VM01's second pass: it and VM02 were rejected. */
    assert_int_equal(rejected_telemetry(f), 2);
    /* A new batch; VM02 fails half-way in it again: only VM04 is to be applied again. */
    deliver(f, "VM04");
    deliver(f, "VM02");
    ingest_commit(&f->v);
    log_stop();
    f->v.now_ms = dfx_clock_ms;
    /* Each failure said once: VM01's in the replay, each of VM02's two readings. */
    assert_int_equal(log_lines(out, "cannot store telemetry from 'VM01'"), 1);
    assert_int_equal(log_lines(out, "cannot store telemetry from 'VM02'"), 2);
    fclose(out);
    stored(f, buf, sizeof(buf));
    /* VM03 was delivered once: one raw row, one sample. VM01 was lost (counted rejected). */
    assert_string_equal(buf, "VM01:0:0:0:never VM02:0:0:0:never VM03:1:1:1:seen "
                             "VM04:1:1:0:seen");
    assert_int_equal(f->v.metrics.telemetry_stored, 2);
    assert_int_equal(f->v.metrics.ingest_batch_replays, 2);
}

/*
 * A replay applies again what the batch held, and each alert those readings raise is raised
 * anew in the database, where the rollback took the first one away: one row. The log must say
 * it once too, as it would have without a replay.
 */
static void an_alert_before_a_replay_is_logged_once(void **state)
{
    struct dfx *f = *state;
    FILE *out = tmpfile();

    assert_non_null(out);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, out);
    deliver(f, "VM01");
    deliver(f, "VM02");
    deliver(f, "VM03");
    ingest_commit(&f->v);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 2);
    /* One line per alert raised: VM01's and VM03's. */
    assert_int_equal(log_lines(out, "alert " TELEMETRY_MISMATCH_KIND), 2);
    fclose(out);
}

/*
 * The reading that spoiled the batch is applied once more after the replay, and fails again:
 * one message, one failure, one line, as on PostgreSQL, where its savepoint takes it back
 * without a replay. The replay's own line says that a message failed half-way, and why.
 */
static void a_failed_reading_is_logged_once(void **state)
{
    struct dfx *f = *state;
    FILE *out = log_capture();

    deliver(f, "VM01");
    deliver(f, "VM02");
    deliver(f, "VM03");
    ingest_commit(&f->v);
    log_stop();
    assert_int_equal(rejected_telemetry(f), 1);
    assert_int_equal(log_lines(out, "cannot store telemetry from 'VM02'"), 1);
    assert_int_equal(log_lines(out, "refused by the test"), dfx_pg() ? 1 : 2);
    assert_int_equal(log_lines(out, "failed half-way through its group commit"), dfx_pg() ? 0 : 1);
    /* The others, stored, with their alerts once. */
    assert_int_equal(log_lines(out, "cannot store telemetry"), 1);
    assert_int_equal(log_lines(out, "alert " TELEMETRY_MISMATCH_KIND), 2);
    fclose(out);
}

/*
 * The reading that spoiled the batch fails on its first pass only (a trigger that holds its
 * first seconds): applied once more after the replay, it is stored. Its outcome is stored, so
 * no line says it could not be, and its alert, raised by the pass that stored it, is logged
 * once; the replay's line still says that it failed half-way first, and why.
 */
static void a_reading_stored_by_its_retry_logs_its_alert(void **state)
{
    struct dfx *f = *state;
    char buf[256];
    FILE *out;

    if (dfx_pg()) {
        skip(); /* savepoints: no replay, no second pass */
        return;
    }
    dfx_sql(f->v.db, "DROP TRIGGER refuse_vm02");
    /* Call 2 of the clock: VM02's first pass, at its raw row, after its machine row; its
     * second (call 4) is let through. */
    dfx_sql(f->v.db, "CREATE TRIGGER refuse_vm02_once BEFORE INSERT ON telemetry "
                     "WHEN NEW.machine_id = 'VM02' AND "
                     "NEW.received_at < '2025-11-27T09:30:03.000Z' BEGIN "
                     "SELECT RAISE(ABORT, 'refused by the test'); END");
    s_ticks = 0;
    f->v.now_ms = stepping_clock;
    out = log_capture();
    deliver(f, "VM01");
    deliver(f, "VM02");
    deliver(f, "VM03");
    ingest_commit(&f->v);
    log_stop();
    f->v.now_ms = dfx_clock_ms;
    stored(f, buf, sizeof(buf));
    assert_string_equal(buf, "VM01:1:1:1:seen VM02:1:1:1:seen VM03:1:1:1:seen");
    assert_int_equal(f->v.metrics.ingest_batch_replays, 1);
    assert_int_equal(rejected_telemetry(f), 0);
    /* The replay's line, with the first pass's error; nothing says it was not stored. */
    assert_int_equal(log_lines(out, "failed half-way through its group commit"), 1);
    assert_int_equal(log_lines(out, "refused by the test"), 1);
    assert_int_equal(log_lines(out, "cannot store telemetry"), 0);
    assert_int_equal(log_lines(out, "alert " TELEMETRY_MISMATCH_KIND ": machine 'VM02'"), 1);
    assert_int_equal(log_lines(out, "alert " TELEMETRY_MISMATCH_KIND), 3);
    fclose(out);
}

static uint64_t rejected_status(struct dfx *f)
{
    uint64_t n = 0;

    for (size_t i = 0; i < METRICS_ERR_SLOTS; i++)
        n += f->v.metrics.mqtt_rejected[VEND_TOPIC_STATUS][i];
    return n;
}

/*
 * The database ends a guarded batch's transaction by itself: SQLite rolls all of it back on an
 * I/O error or a full disk (here a trigger's RAISE(ROLLBACK) on VM02's status), PostgreSQL
 * loses the connection (here a trigger that ends its own session). VM02's status fails with
 * it, and VM01's status and reading before it are gone, already acknowledged; the messages
 * after it are applied. The counts say what was lost, and one line says so.
 */
static void a_batch_the_database_rolled_back_is_counted_lost(void **state)
{
    struct dfx *f = *state;
    static const char online[] = "{\"status\":\"ONLINE\"}";
    char buf[256];
    FILE *out;

    if (dfx_pg()) {
        dfx_sql(f->v.db, "CREATE FUNCTION end_session() RETURNS trigger AS 'BEGIN "
                         "IF NEW.id = ''VM02'' THEN "
                         "PERFORM pg_terminate_backend(pg_backend_pid()); "
                         "PERFORM pg_sleep(5); "
                         "END IF; RETURN NEW; END' LANGUAGE plpgsql");
        dfx_sql(f->v.db, "CREATE TRIGGER end_session BEFORE UPDATE ON machines "
                         "FOR EACH ROW EXECUTE FUNCTION end_session()");
    } else {
        dfx_sql(f->v.db, "CREATE TRIGGER rollback_vm02 BEFORE UPDATE ON machines "
                         "WHEN NEW.id = 'VM02' BEGIN "
                         "SELECT RAISE(ROLLBACK, 'transaction rolled back by the test'); END");
    }
    out = log_capture();
    /* A status first: the batch is guarded (a savepoint per message), the reading joins it. */
    ingest_message(&f->v, "vm/VM01/status", online, strlen(online), false);
    deliver(f, "VM01");
    ingest_message(&f->v, "vm/VM02/status", online, strlen(online), false);
    ingest_message(&f->v, "vm/VM03/status", online, strlen(online), false);
    deliver(f, "VM03");
    ingest_commit(&f->v);
    log_stop();
    assert_false(db_batch_open(f->v.db));
    stored(f, buf, sizeof(buf));
    assert_string_equal(buf, "VM01:0:0:0:never VM02:0:0:0:never VM03:1:1:1:seen");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM machines WHERE status = 'ONLINE'"), 1);
    assert_int_equal(rejected_status(f), 1);
    assert_int_equal(rejected_telemetry(f), 0);
    /* VM03's reading is the one stored; VM01's status and reading were lost. */
    assert_int_equal(f->v.metrics.telemetry_stored, 1);
    assert_int_equal(f->v.metrics.ingest_batch_lost, 2);
    assert_int_equal(log_lines(out, "lost 2 telemetry/status message(s): the database rolled"), 1);
    fclose(out);
}

/*
 * A replay's batch (guarded) ended by the database: VM02's reading spoils the unguarded
 * batch, VM01's is applied again, and VM02's second pass takes the replay's transaction with
 * it (RAISE(ROLLBACK)). VM01's reading is lost, VM03's stored alone.
 */
static void a_replay_the_database_rolled_back_is_counted_lost(void **state)
{
    struct dfx *f = *state;
    char buf[256];
    FILE *out;

    if (dfx_pg()) {
        skip(); /* savepoints: no replay */
        return;
    }
    dfx_sql(f->v.db, "DROP TRIGGER refuse_vm02");
    dfx_sql(f->v.db, "CREATE TRIGGER rollback_vm02 BEFORE INSERT ON telemetry_hourly "
                     "WHEN NEW.machine_id = 'VM02' BEGIN "
                     "SELECT RAISE(ROLLBACK, 'transaction rolled back by the test'); END");
    out = log_capture();
    deliver(f, "VM01");
    deliver(f, "VM02");
    deliver(f, "VM03");
    ingest_commit(&f->v);
    log_stop();
    stored(f, buf, sizeof(buf));
    assert_string_equal(buf, "VM01:0:0:0:never VM02:0:0:0:never VM03:1:1:1:seen");
    assert_int_equal(f->v.metrics.ingest_batch_replays, 1);
    assert_int_equal(rejected_telemetry(f), 1);
    assert_int_equal(f->v.metrics.telemetry_stored, 1);
    assert_int_equal(f->v.metrics.ingest_batch_lost, 1);
    assert_int_equal(log_lines(out, "lost 1 telemetry/status message(s): the database rolled"), 1);
    fclose(out);
}

/* The largest reading: READING's fields and a padding key, VEND_PAYLOAD_MAX bytes. */
static void largest_reading(char *buf, size_t size)
{
    static const char head[] = "{\"temperature\":4.5,\"door\":\"CLOSED\","
                               "\"slots\":[{\"id\":1,\"level\":\"FULL\"}],\"pad\":\"";
    size_t n = sizeof(head) - 1;

    assert_true(size > VEND_PAYLOAD_MAX);
    memcpy(buf, head, n);
    memset(buf + n, 'x', VEND_PAYLOAD_MAX - n - 2);
    memcpy(buf + VEND_PAYLOAD_MAX - 2, "\"}", 3);
    assert_int_equal(strlen(buf), VEND_PAYLOAD_MAX);
}

/*
 * A burst of INGEST_BATCH_MAX readings of the largest size: the log of a batch holds
 * INGEST_LOG_MAX bytes, about 63 of them, so the batch is committed each time the log is full,
 * and a reading failing half-way at the end has only the last batch applied again.
 */
static void a_burst_of_largest_readings_commits_as_its_log_fills(void **state)
{
    struct dfx *f = *state;
    static char big[VEND_PAYLOAD_MAX + 1];
    char buf[256];
    const size_t per_batch = INGEST_LOG_MAX / (4 + strlen("VM03") + VEND_PAYLOAD_MAX);

    largest_reading(big, sizeof(big));
    for (size_t i = 0; i < INGEST_BATCH_MAX; i++)
        ingest_message(&f->v, "vm/VM03/telemetry", big, strlen(big), false);
    /* PostgreSQL keeps savepoints and no log: one batch of INGEST_BATCH_MAX. */
    assert_int_equal(f->v.metrics.ingest_batches, dfx_pg() ? 1 : INGEST_BATCH_MAX / per_batch);
    assert_true(f->v.ingest_log.len <= INGEST_LOG_MAX);
    deliver(f, "VM02");
    ingest_commit(&f->v);
    stored(f, buf, sizeof(buf));
    assert_string_equal(buf, "VM01:0:0:0:never VM02:0:0:0:never VM03:512:512:1:seen");
    assert_int_equal(f->v.metrics.telemetry_stored, INGEST_BATCH_MAX);
    assert_int_equal(f->v.metrics.ingest_batch_replays, dfx_pg() ? 0 : 1);
    assert_int_equal(f->v.metrics.ingest_batch_lost, 0);
    assert_int_equal(rejected_telemetry(f), 1);
}

/*
 * The disk fills in the middle of a flood (PRAGMA max_page_count on vendd's own connection):
 * statements fail with SQLITE_FULL, some after their message changed rows, some taking the
 * transaction with them. Whatever was committed is whole: each raw row has its sample in the
 * hour's rollup, and no machine row was moved by a reading that was not stored.
 */
static void a_full_disk_mid_flood_leaves_no_partial_reading(void **state)
{
    struct dfx *f = *state;
    static char pad[3901];
    char sql[128];
    int64_t pages;

    if (dfx_pg()) {
        skip(); /* no page limit to set */
        return;
    }
    memset(pad, 'x', sizeof(pad) - 1);
    pages = dfx_int(f->v.db, "PRAGMA page_count");
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)pages + 60);
    dfx_int(f->v.db, sql);
    for (int burst = 0; burst < 40; burst++) {
        for (int i = 0; i < 20; i++) {
            static const char *const ids[] = {"VM01", "VM03"};
            char topic[VEND_TOPIC_MAX + 1];

            char msg[VEND_PAYLOAD_MAX + 1];
            int n;

            dfx_clock_set(T0 + (int64_t)(burst * 20 + i) * 1000);
            snprintf(topic, sizeof(topic), "vm/%s/telemetry", ids[i % 2]);
            /* Each reading its own: one stored twice shows. Every third one small. */
            n = snprintf(msg, sizeof(msg),
                         "{\"temperature\":4.5,\"door\":\"CLOSED\",\"slots\":[{\"id\":1,"
                         "\"level\":\"FULL\"}],\"seq\":%d,\"pad\":\"%.*s\"}",
                         burst * 20 + i, i % 3 == 0 ? 0 : 3900, pad);
            assert_true(n > 0 && n <= VEND_PAYLOAD_MAX);
            ingest_message(&f->v, topic, msg, (size_t)n, false);
        }
        ingest_commit(&f->v);
    }
    print_message("stored %llu rows %lld rejected %llu replays %llu lost %llu\n",
                  (unsigned long long)f->v.metrics.telemetry_stored,
                  (long long)dfx_int(f->v.db, "SELECT count(*) FROM telemetry"),
                  (unsigned long long)rejected_telemetry(f),
                  (unsigned long long)f->v.metrics.ingest_batch_replays,
                  (unsigned long long)f->v.metrics.ingest_batch_lost);
    /* What the counters say matches the table: each message delivered was stored, rejected,
     * or lost with a batch the database ended (a replay's, guarded), and counted so. */
    assert_int_equal(f->v.metrics.telemetry_stored,
                     dfx_int(f->v.db, "SELECT count(*) FROM telemetry"));
    assert_int_equal(f->v.metrics.mqtt_messages_received, f->v.metrics.telemetry_stored +
                                                              rejected_telemetry(f) +
                                                              f->v.metrics.ingest_batch_lost);
    /* The disk did fill, half-way through messages. */
    assert_true(rejected_telemetry(f) > 0);
    assert_true(f->v.metrics.ingest_batch_replays > 0);
    assert_true(dfx_int(f->v.db, "SELECT count(*) FROM telemetry") > 0);
    /* No reading stored twice. */
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM (SELECT data FROM telemetry "
                                      "GROUP BY data HAVING count(*) > 1) d"),
                     0);
    /* Every raw row with its sample; no sample without its raw row. */
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM machines m WHERE "
                                      "(SELECT count(*) FROM telemetry t WHERE t.machine_id = "
                                      "m.id) != COALESCE((SELECT sum(samples) FROM "
                                      "telemetry_hourly h WHERE h.machine_id = m.id), 0)"),
                     0);
    /* The machine row moved by stored readings only. */
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM machines m WHERE m.last_seen IS NOT "
                                      "(SELECT max(received_at) FROM telemetry t WHERE "
                                      "t.machine_id = m.id)"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_reading_failing_half_way_leaves_nothing_and_the_others_stay, setup, teardown),
        cmocka_unit_test_setup_teardown(an_unregistered_machine_costs_no_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(a_first_reading_failing_is_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reading_stored_alone_in_a_replay_is_not_applied_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(an_alert_before_a_replay_is_logged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(a_failed_reading_is_logged_once, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reading_stored_by_its_retry_logs_its_alert, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_batch_the_database_rolled_back_is_counted_lost, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_replay_the_database_rolled_back_is_counted_lost, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_burst_of_largest_readings_commits_as_its_log_fills, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_full_disk_mid_flood_leaves_no_partial_reading, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
