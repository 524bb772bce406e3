/*
 * it_bad_mqtt.c - bad input on every inbound topic (SPEC §3 last rule, §4 rules 2 and 6):
 * each message is rejected with a log line naming the reason, the /metrics rejection
 * counter for its topic and reason goes up by one, and no table changes (a full dump of
 * every row of every table before and after is identical). vendd serves afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

struct bad_case {
    const char *name;
    const char *topic;
    const char *payload; /* NULL: an oversize payload, 4097 bytes */
    const char *kind;    /* metric label topic= */
    const char *reason;  /* metric label reason= */
    const char *log1;    /* both must be on one new log line */
    const char *log2;
};

#define RESULT(order, slot, ok, drop)                                                              \
    "{\"orderId\":\"" order "\",\"slot\":" #slot ",\"success\":" #ok ",\"dropDetected\":" #drop    \
    ",\"durationMs\":1850,\"error\":null}"

static const struct bad_case cases[] = {
    /* vm/{id}/dispense_result */
    {"result: not JSON", "vm/VM01/dispense_result", "{\"orderId\":", "dispense_result", "SYNTAX",
     "rejected dispense_result from 'VM01'", "malformed JSON"},
    {"result: wrong type", "vm/VM01/dispense_result",
     "{\"orderId\":\"done-1\",\"slot\":\"1\",\"success\":true,\"dropDetected\":true,"
     "\"durationMs\":1850,\"error\":null}",
     "dispense_result", "TYPE", "rejected dispense_result from 'VM01'", "slot"},
    {"result: missing fields", "vm/VM01/dispense_result", "{\"orderId\":\"done-1\",\"slot\":1}",
     "dispense_result", "MISSING", "rejected dispense_result from 'VM01'",
     "required field missing"},
    {"result: 4097 bytes", "vm/VM01/dispense_result", NULL, "dispense_result", "TOOBIG",
     "rejected dispense_result from 'VM01'", "4097 bytes"},
    {"result: unknown machine", "vm/VM99/dispense_result", RESULT("done-1", 1, true, true),
     "dispense_result", "NOTFOUND", "from 'VM99'", "not registered"},
    {"result: unknown order", "vm/VM01/dispense_result", RESULT("nope-1", 1, true, true),
     "dispense_result", "NOTFOUND", "rejected dispense_result", "'nope-1'"},
    {"result: duplicate", "vm/VM01/dispense_result", RESULT("done-1", 1, true, true),
     "dispense_result", "CONFLICT", "'done-1'", "duplicate"},
    {"result: order not DISPENSING (PAID)", "vm/VM01/dispense_result",
     RESULT("paid-1", 1, true, true), "dispense_result", "STATE", "'paid-1' is PAID",
     "no command was sent"},
    {"result: failure after success", "vm/VM01/dispense_result", RESULT("done-1", 1, false, false),
     "dispense_result", "STATE", "'done-1'", "contradicts"},
    {"result: wrong slot", "vm/VM01/dispense_result", RESULT("disp-1", 1, true, true),
     "dispense_result", "STATE", "'disp-1'", "slot 2"},
    /* vm/{id}/telemetry */
    {"telemetry: not JSON", "vm/VM01/telemetry", "[1,", "telemetry", "SYNTAX",
     "rejected telemetry from 'VM01'", "malformed JSON"},
    {"telemetry: wrong type", "vm/VM01/telemetry",
     "{\"slots\":[{\"id\":1,\"level\":\"FULL\"}],\"temperature\":\"hot\"}", "telemetry", "TYPE",
     "rejected telemetry from 'VM01'", "temperature"},
    {"telemetry: missing fields", "vm/VM01/telemetry", "{\"temperature\":25.5}", "telemetry",
     "MISSING", "rejected telemetry from 'VM01'", "slots"},
    {"telemetry: 4097 bytes", "vm/VM01/telemetry", NULL, "telemetry", "TOOBIG",
     "rejected telemetry from 'VM01'", "4097 bytes"},
    {"telemetry: unknown machine", "vm/VM99/telemetry",
     "{\"slots\":[{\"id\":1,\"level\":\"FULL\"}],\"temperature\":25.5,\"door\":\"CLOSED\"}",
     "telemetry", "NOTFOUND", "from 'VM99'", "not registered"},
    /* vm/{id}/status */
    {"status: not JSON", "vm/VM01/status", "ONLINE", "status", "SYNTAX",
     "rejected status from 'VM01'", "malformed JSON"},
    {"status: wrong type", "vm/VM01/status", "{\"status\":\"ONLINE\",\"rssi\":\"-65\"}", "status",
     "TYPE", "rejected status from 'VM01'", "rssi"},
    {"status: missing fields", "vm/VM01/status", "{\"door\":\"CLOSED\"}", "status", "MISSING",
     "rejected status from 'VM01'", "status"},
    {"status: 4097 bytes", "vm/VM01/status", NULL, "status", "TOOBIG",
     "rejected status from 'VM01'", "4097 bytes"},
    {"status: unknown machine", "vm/VM99/status", "{\"status\":\"ONLINE\"}", "status", "NOTFOUND",
     "from 'VM99'", "not registered"},
};

/* Lines of the log holding both needles. */
static int log_count2(const struct harness *h, const char *a, const char *b)
{
    char line[8192];
    FILE *f = fopen(h->log_path, "r");
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, a) != NULL && strstr(line, b) != NULL)
            n++;
    }
    fclose(f);
    return n;
}

static int setup(void **state)
{
    /* Slot 2's long motor time keeps disp-1 DISPENSING for the whole test (no deadline). */
    static const struct harness_slot slots[] = {{1, 8, 2150}, {2, 8, 60000}, {0, 0, 0}};
    /* The machine client plays VM01 and strangers. */
    struct harness_fixture *f = harness_fixture_new(NULL, slots, "it-bad-machine");

    *state = f;
    if (f == NULL)
        return -1;
    /* done-1: COMPLETED; paid-1: PAID; disp-1: DISPENSING (unit 1 SENT). */
    if (harness_order(&f->h, "done-1", 1, 1) < 0 || harness_trigger(&f->h, "done-1", NULL) != 200 ||
        harness_answer(&f->machine, "done-1", 1, 0) < 0 ||
        harness_sql_wait(&f->h, "SELECT status FROM orders WHERE id = 'done-1'", "COMPLETED",
                         5000) < 0 ||
        harness_order(&f->h, "paid-1", 1, 1) < 0 || harness_order(&f->h, "disp-1", 2, 1) < 0 ||
        harness_trigger(&f->h, "disp-1", NULL) != 200)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void bad_input_is_rejected_without_a_trace(void **state)
{
    struct harness_fixture *f = *state;
    char series[160], *big, *before, *after;
    long long was, now;
    int lines;

    big = malloc(4097);
    assert_non_null(big);
    /* Valid-looking JSON, 4097 bytes: only the size is wrong. */
    memset(big, ' ', 4097);
    memcpy(big, "{\"status\":\"ONLINE\"}", 19);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *c = &cases[i];
        const char *payload = c->payload != NULL ? c->payload : big;
        size_t len = c->payload != NULL ? strlen(c->payload) : 4097;
        uint64_t deadline;

        print_message("case: %s\n", c->name);
        snprintf(series, sizeof(series), "vendd_mqtt_rejected_total{topic=\"%s\",reason=\"%s\"}",
                 c->kind, c->reason);
        was = harness_metric(&f->h, series);
        assert_true(was >= 0);
        lines = log_count2(&f->h, c->log1, c->log2);
        before = harness_db_dump(&f->h);
        assert_non_null(before);

        assert_int_equal(harness_mqtt_publish(&f->machine, c->topic, payload, len), 0);
        deadline = harness_now_ms() + 5000;
        do {
            harness_sleep_ms(10);
            now = harness_metric(&f->h, series);
        } while (now == was && harness_now_ms() < deadline);
        if (now != was + 1)
            fail_msg("%s: %s went from %lld to %lld, expected +1", c->name, series, was, now);
        if (log_count2(&f->h, c->log1, c->log2) != lines + 1)
            fail_msg("%s: no new log line with '%s' and '%s' (log: %s)", c->name, c->log1, c->log2,
                     f->h.log_path);
        after = harness_db_dump(&f->h);
        assert_non_null(after);
        if (strcmp(before, after) != 0)
            fail_msg("%s: the database changed:\n--- before\n%s\n--- after\n%s", c->name, before,
                     after);
        free(before);
        free(after);
        assert_true(harness_vendd_alive(&f->h));
    }
    free(big);

    /* Still serving: a new order goes the whole way. */
    assert_int_equal(harness_order(&f->h, "after-1", 1, 1), 0);
    assert_int_equal(harness_call(&f->h, "GET", "/health", NULL, NULL), 200);
    assert_int_equal(harness_vendd_term(&f->h), 0);
    assert_int_equal(harness_check(&f->h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_input_is_rejected_without_a_trace),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
