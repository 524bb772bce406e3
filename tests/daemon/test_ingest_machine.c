/*
 * test_ingest_machine.c - handle_telemetry and handle_status on a real database:
 * what they store, that stock is never touched, the mismatch alert is raised once
 * per slot, and that every bad payload is rejected with its code and no change.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "ingest.h"
#include "telemetry.h"
#include "vend/err.h"
#include "vend/msg.h"

#define T0     1764235800000 /* 2025-11-27T09:30:00.000Z */
#define T0_ISO "2025-11-27T09:30:00.000Z"
#define T1     (T0 + 61500)
#define T1_ISO "2025-11-27T09:31:01.500Z"
#define T2     (T1 + 1000)
#define T2_ISO "2025-11-27T09:31:02.500Z"

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_open(f);
    dfx_clock_set(T0);
    dfx_sql(f->v.db, "INSERT INTO machines (id, name, created_at, updated_at) "
                     "VALUES ('VM01', 'VM01', '" T0_ISO "', '" T0_ISO "')");
    dfx_sql(f->v.db, "INSERT INTO products (id, name, price, created_at, updated_at) "
                     "VALUES (1, 'Cola', 5000, '" T0_ISO "', '" T0_ISO "')");
    /* slot 1: 5 counted; slot 2: none; slot 3: 3 counted. */
    dfx_sql(f->v.db, "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, "
                     "current_stock, created_at, updated_at) VALUES "
                     "(11, 'VM01', 1, 1, 10, 5, '" T0_ISO "', '" T0_ISO "'), "
                     "(12, 'VM01', 2, 1, 10, 0, '" T0_ISO "', '" T0_ISO "'), "
                     "(13, 'VM01', 3, 1, 10, 3, '" T0_ISO "', '" T0_ISO "')");
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

static int send(struct dfx *f, int (*fn)(struct vendd *, const char *, const char *, size_t),
                const char *machine, const char *payload)
{
    return fn(&f->v, machine, payload, strlen(payload));
}

static int64_t open_alerts(struct dfx *f)
{
    return dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE kind = 'STOCK_SENSOR_MISMATCH' "
                            "AND resolved_at IS NULL");
}

static void test_telemetry_stored(void **state)
{
    struct dfx *f = *state;
    const char *msg = "{\"timestamp\":\"2025-11-04T10:30:00Z\",\"slots\":[{\"id\":1,\"level\":"
                      "\"EMPTY\"},{\"id\":2,\"level\":\"FULL\"},{\"id\":3,\"level\":\"MEDIUM\"},"
                      "{\"id\":9,\"level\":\"LOW\"}],\"temperature\":25.5,\"door\":\"CLOSED\"}";
    char buf[4200];

    assert_int_equal(send(f, handle_telemetry, "VM01", msg), VEND_OK);
    assert_int_equal(f->v.metrics.telemetry_stored, 1);

    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM telemetry"), 1);
    dfx_text(f->v.db, "SELECT data FROM telemetry", buf, sizeof(buf));
    assert_string_equal(buf, msg);
    dfx_text(f->v.db,
             "SELECT device_time || '|' || door || '|' || received_at || '|' || "
             "machine_id FROM telemetry",
             buf, sizeof(buf));
    assert_string_equal(buf, "2025-11-04T10:30:00Z|CLOSED|" T0_ISO "|VM01");
    assert_int_equal(dfx_int(f->v.db, "SELECT temperature * 100 FROM telemetry"), 2550);

    dfx_text(f->v.db, "SELECT door || '|' || last_seen || '|' || updated_at FROM machines", buf,
             sizeof(buf));
    assert_string_equal(buf, "CLOSED|" T0_ISO "|" T0_ISO);
    assert_int_equal(dfx_int(f->v.db, "SELECT temperature * 100 FROM machines"), 2550);

    dfx_join(f->v.db,
             "SELECT slot_number || ':' || sensor_level || '@' || " TELEMETRY_SENSOR_AT_SQL
             " || '=' || current_stock || 'v' || s.version FROM slots s "
             "JOIN machines m ON m.id = s.machine_id ORDER BY slot_number",
             " ", buf, sizeof(buf));
    /* Levels and times stored; counts and versions untouched. */
    assert_string_equal(buf,
                        "1:EMPTY@" T0_ISO "=5v1 2:FULL@" T0_ISO "=0v1 3:MEDIUM@" T0_ISO "=3v1");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM stock_logs"), 0);

    /* Slot 1 reads EMPTY with 5 counted, slot 2 FULL with 0: two alerts, one per slot. */
    assert_int_equal(open_alerts(f), 2);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE slot_id IN (11, 12) "
                                      "AND machine_id = 'VM01' AND created_at = '" T0_ISO "'"),
                     2);

    /* The same reading again: stored, but no second alert. */
    dfx_clock_set(T1);
    assert_int_equal(send(f, handle_telemetry, "VM01", msg), VEND_OK);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM telemetry"), 2);
    assert_int_equal(open_alerts(f), 2);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 2);
    dfx_text(f->v.db,
             "SELECT " TELEMETRY_SENSOR_AT_SQL " FROM slots s "
             "JOIN machines m ON m.id = s.machine_id WHERE s.id = 11",
             buf, sizeof(buf));
    assert_string_equal(buf, T1_ISO);

    /* Resolved by the operator, the contradiction raises a new one. */
    dfx_sql(f->v.db, "UPDATE alerts SET resolved_at = '" T1_ISO "' WHERE slot_id = 11");
    assert_int_equal(send(f, handle_telemetry, "VM01", msg), VEND_OK);
    assert_int_equal(open_alerts(f), 2);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 3);

    /* Agreeing readings (EMPTY at 0, FULL at 3) raise nothing. */
    assert_int_equal(send(f, handle_telemetry, "VM01",
                          "{\"slots\":[{\"id\":2,\"level\":\"EMPTY\"},{\"id\":3,\"level\":"
                          "\"FULL\"}]}"),
                     VEND_OK);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 3);
    /* Not reported: temperature and door keep their last value; device_time NULL. */
    assert_int_equal(dfx_int(f->v.db, "SELECT temperature * 100 FROM machines"), 2550);
    dfx_text(f->v.db, "SELECT door FROM machines", buf, sizeof(buf));
    assert_string_equal(buf, "CLOSED");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM telemetry WHERE device_time IS NULL "
                                      "AND temperature IS NULL AND door IS NULL"),
                     1);
    assert_int_equal(dfx_int(f->v.db, "SELECT sum(current_stock) FROM slots"), 8);
    assert_int_equal(f->v.metrics.telemetry_stored, 4);
}

static void test_status_online_offline(void **state)
{
    struct dfx *f = *state;
    char buf[256];

    assert_int_equal(send(f, handle_status, "VM01",
                          "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,"
                          "\"fw\":\"1.0.0\"}"),
                     VEND_OK);
    dfx_text(f->v.db,
             "SELECT status || '|' || door || '|' || rssi || '|' || fw || '|' || "
             "last_seen || '|' || updated_at FROM machines",
             buf, sizeof(buf));
    assert_string_equal(buf, "ONLINE|CLOSED|-65|1.0.0|" T0_ISO "|" T0_ISO);

    /* The will: OFFLINE, rssi unknown, the rest kept; last_seen stays the machine's. */
    dfx_clock_set(T1);
    assert_int_equal(send(f, handle_status, "VM01", "{\"status\":\"OFFLINE\"}"), VEND_OK);
    dfx_text(
        f->v.db,
        "SELECT status || '|' || door || '|' || coalesce(CAST(rssi AS TEXT), 'null') || '|' || "
        "fw || '|' || last_seen || '|' || updated_at FROM machines",
        buf, sizeof(buf));
    assert_string_equal(buf, "OFFLINE|CLOSED|null|1.0.0|" T0_ISO "|" T1_ISO);

    assert_int_equal(send(f, handle_status, "VM01", "{\"status\":\"ONLINE\",\"door\":\"OPEN\"}"),
                     VEND_OK);
    dfx_text(f->v.db, "SELECT status || '|' || door || '|' || last_seen FROM machines", buf,
             sizeof(buf));
    assert_string_equal(buf, "ONLINE|OPEN|" T1_ISO);

    /* ONLINE again (machines.c then leaves the status column alone): the rest is still
     * applied, and the presence did not move, so no event tells of it. */
    dfx_clock_set(T2);
    assert_int_equal(
        dfx_int(f->v.db,
                "SELECT count(*) FROM events WHERE kind = 'machine' AND status = 'ONLINE'"),
        2);
    assert_int_equal(send(f, handle_status, "VM01",
                          "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-70,"
                          "\"fw\":\"1.0.1\"}"),
                     VEND_OK);
    dfx_text(f->v.db,
             "SELECT status || '|' || door || '|' || rssi || '|' || fw || '|' || last_seen || "
             "'|' || updated_at FROM machines",
             buf, sizeof(buf));
    assert_string_equal(buf, "ONLINE|CLOSED|-70|1.0.1|" T2_ISO "|" T2_ISO);
    assert_int_equal(
        dfx_int(f->v.db,
                "SELECT count(*) FROM events WHERE kind = 'machine' AND status = 'ONLINE'"),
        2);
    assert_int_equal(f->v.metrics.status_updates, 4);
    assert_int_equal(f->v.metrics.telemetry_stored, 0);
}

struct bad_case {
    int (*fn)(struct vendd *, const char *, const char *, size_t);
    const char *machine;
    const char *payload; /* NULL: the oversized payload */
    int want;
};

static void test_bad_input_changes_nothing(void **state)
{
    struct dfx *f = *state;
    const struct bad_case cases[] = {
        {handle_telemetry, "VM01", "not json", VEND_ESYNTAX},
        {handle_telemetry, "VM01", "", VEND_ESYNTAX},
        {handle_telemetry, "VM01", "[1]", VEND_ESYNTAX},
        {handle_telemetry, "VM01", "{\"slots\":[]} x", VEND_ETRAILING},
        {handle_telemetry, "VM01", "{\"temperature\":20}", VEND_EMISSING},
        {handle_telemetry, "VM01", "{\"slots\":\"full\"}", VEND_ETYPE},
        {handle_telemetry, "VM01", "{\"slots\":[{\"id\":\"1\",\"level\":\"FULL\"}]}", VEND_ETYPE},
        {handle_telemetry, "VM01", "{\"slots\":[{\"id\":1}]}", VEND_EMISSING},
        {handle_telemetry, "VM01", "{\"slots\":[{\"id\":1,\"level\":\"HALF\"}]}", VEND_EENUM},
        {handle_telemetry, "VM01", "{\"slots\":[{\"id\":0,\"level\":\"FULL\"}]}", VEND_ERANGE},
        {handle_telemetry, "VM01",
         "{\"slots\":[{\"id\":1,\"level\":\"FULL\"},{\"id\":1,\"level\":\"LOW\"}]}", VEND_EDUPKEY},
        {handle_telemetry, "VM01", "{\"slots\":[],\"temperature\":\"hot\"}", VEND_ETYPE},
        {handle_telemetry, "VM01", "{\"slots\":[],\"temperature\":999}", VEND_ERANGE},
        {handle_telemetry, "VM01", "{\"slots\":[],\"door\":\"AJAR\"}", VEND_EENUM},
        {handle_telemetry, "VM01", "{\"slots\":[],\"timestamp\":\"yesterday\"}", VEND_ERANGE},
        {handle_telemetry, "VM01", NULL, VEND_ETOOBIG},
        {handle_telemetry, "NOPE", "{\"slots\":[{\"id\":1,\"level\":\"EMPTY\"}]}", VEND_ENOTFOUND},
        {handle_status, "VM01", "{}", VEND_EMISSING},
        {handle_status, "VM01", "{\"status\":\"SLEEPING\"}", VEND_EENUM},
        {handle_status, "VM01", "{\"status\":1}", VEND_ETYPE},
        {handle_status, "VM01", "{\"status\":\"ONLINE\",\"rssi\":\"-65\"}", VEND_ETYPE},
        {handle_status, "VM01", "{\"status\":\"ONLINE\",\"rssi\":5}", VEND_ERANGE},
        {handle_status, "VM01", "{\"status\":\"ONLINE\",\"fw\":\"1 0\"}", VEND_ERANGE},
        {handle_status, "VM01", "{\"status\":\"ONLINE\",\"status\":\"OFFLINE\"}", VEND_EDUPKEY},
        {handle_status, "VM01", "{\"status\":\"ONLINE\"", VEND_ESYNTAX},
        {handle_status, "VM01", NULL, VEND_ETOOBIG},
        {handle_status, "NOPE", "{\"status\":\"ONLINE\"}", VEND_ENOTFOUND},
    };
    /* Valid JSON, but one byte over the limit. */
    char big[VEND_PAYLOAD_MAX + 2];
    char *before = dfx_snapshot(f->v.db);

    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, "{\"status\":\"ONLINE\",\"slots\":[]}", 30);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *payload = cases[i].payload != NULL ? cases[i].payload : big;
        int rc = cases[i].fn(&f->v, cases[i].machine, payload, strlen(payload));
        char *after;

        if (rc != cases[i].want)
            fail_msg("case %zu '%.60s': got %s, want %s", i, payload, vend_errname(rc),
                     vend_errname(cases[i].want));
        after = dfx_snapshot(f->v.db);
        assert_string_equal(after, before);
        free(after);
    }
    free(before);
    assert_int_equal(f->v.metrics.telemetry_stored, 0);
    assert_int_equal(f->v.metrics.status_updates, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_telemetry_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_online_offline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_changes_nothing, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
