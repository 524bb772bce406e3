/*
 * it_broker_down.c - the broker goes away (SPEC §4 rule 3, §5 503, §8 reconnect): a
 * trigger while it is down answers 503 and leaves the order PAID with no dispense row;
 * when the broker is back vendd reconnects by itself (logged, counted in /metrics) and the
 * trigger works.
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

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 5, 2150}, {0, 0, 0}};
    struct harness_fixture *f = harness_fixture_new(NULL, slots, NULL);

    *state = f;
    return f == NULL || harness_order(&f->h, "down-1", 1, 1) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

/* /health's mqtt_connected and mqtt_telemetry_connected (both sessions) equal want within
 * timeout_ms. */
static bool health_mqtt(struct harness *h, bool want, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    struct harness_reply r;
    bool got = !want;

    do {
        if (harness_call(h, "GET", "/health", NULL, &r) == 200)
            got = json_is_true(json_object_get(r.json, "mqtt_connected")) == want &&
                          json_is_true(json_object_get(r.json, "mqtt_telemetry_connected")) == want
                      ? want
                      : !want;
        harness_reply_free(&r);
        if (got == want)
            return true;
        harness_sleep_ms(20);
    } while (harness_now_ms() < deadline);
    return false;
}

static void trigger_waits_for_the_broker(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_mqtt sub;
    struct harness_reply r;
    int connects = harness_log_count(h, "MQTT connected to broker");

    assert_int_equal(connects, 1);
    assert_int_equal(test_broker_kill(&h->broker), 0);
    assert_true(health_mqtt(h, false, 5000));
    assert_true(harness_log_wait(h, "MQTT connection to broker lost", 1, 5000) >= 1);

    assert_int_equal(harness_trigger(h, "down-1", &r), 503);
    assert_non_null(harness_reply_str(&r, "error.code"));
    harness_reply_free(&r);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'down-1'", "PAID", 0), 0);
    assert_int_equal(harness_sql_wait(h, "SELECT count(*) FROM dispense_logs", "0", 0), 0);

    /* Back: vendd reconnects and resubscribes on its own (backoff is at most a few s here). */
    assert_int_equal(test_broker_restart(&h->broker), 0);
    assert_true(harness_log_wait(h, "MQTT connected to broker", 2, 15000) >= 2);
    assert_true(harness_log_wait(h, "Subscribed to vm/+/status", 2, 5000) >= 2);
    assert_true(health_mqtt(h, true, 5000));
    /* The operator sees the flap in /metrics, not only in the log: once per session. */
    assert_int_equal(harness_metric(h, "vendd_mqtt_reconnects_total"), 2);
    assert_int_equal(harness_metric_present(h, "vendd_mqtt_publish_failed_total"), 1);

    assert_int_equal(
        harness_mqtt_open(&sub, h->broker.port, "it-down-sub", "vm/VM01/command", NULL, NULL), 0);
    assert_int_equal(harness_trigger(h, "down-1", &r), 200);
    assert_non_null(harness_reply_str(&r, "status"));
    assert_string_equal(harness_reply_str(&r, "status"), "DISPENSING");
    assert_true(json_is_true(json_object_get(r.json, "command_sent")));
    harness_reply_free(&r);
    assert_int_equal(harness_mqtt_wait(&sub, 1, 5000), 1);
    assert_non_null(strstr(harness_mqtt_payload(&sub, 0), "\"orderId\":\"down-1\""));
    harness_mqtt_close(&sub);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trigger_waits_for_the_broker),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
