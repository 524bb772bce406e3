/*
 * it_pair_crash.c - instance 1 of two dies (a crash point: _exit at once) on the dispense
 * path while instance 2 runs: every order ends (COMPLETED, or FAILED with its refund), no unit
 * gets two commands, and vend-check finds SPEC §4 kept.
 *
 * Per crash point a fresh pair; orders made on instance 2 and triggered on instance 1 until
 * instance 1 dies (results go to either, so a point on the result path may take a few).
 * VM01 answers every command at once (success, drop). Skipped without crash points.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define ORDERS_MAX 6
#define WAIT_MS    12000

static const char *const s_points[] = {"trigger_committed", "command_published", "result_received",
                                       "result_committed"};

/* Commands seen on vm/VM01/command carrying "orderId":"<id>". */
static int commands_for(struct harness_mqtt *watch, const char *id)
{
    char needle[128];
    int n = 0;

    snprintf(needle, sizeof(needle), "\"orderId\":\"%s\"", id);
    for (size_t i = 0; i < harness_mqtt_wait(watch, 0, 0); i++)
        if (strstr(harness_mqtt_payload(watch, i), needle) != NULL &&
            strstr(harness_mqtt_payload(watch, i), "\"dispense\"") != NULL)
            n++;
    return n;
}

static void one_point(const char *point)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", NULL};
    struct harness_fleet fleet = {0};
    struct harness_mqtt vm = {0}, watch = {0};
    struct harness_autoanswer answer = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct harness *doomed = &fleet.vendd[0], *h = &fleet.vendd[1];
    char kv[64], ids[ORDERS_MAX][16], sql[192];
    int n = 0;

    assert_int_equal(harness_fleet_start(&fleet, 2, env, false), 0);
    assert_int_equal(harness_put_slot(h, 1, 20, 1500), 0);
    assert_int_equal(
        harness_mqtt_open(&watch, h->broker.port, "it-pc-watch", "vm/VM01/command", NULL, NULL), 0);
    assert_int_equal(harness_mqtt_open(&vm, h->broker.port, "it-pc-vm", "vm/VM01/command",
                                       harness_autoanswer, &answer),
                     0);
    assert_int_equal(harness_vendd_term(doomed), 0);
    snprintf(kv, sizeof(kv), "VENDD_CRASH_AT=%s", point);
    assert_int_equal(harness_env_set(doomed, kv), 0);
    assert_int_equal(harness_vendd_start(doomed), 0);
    while (harness_vendd_alive(doomed) && n < ORDERS_MAX) {
        snprintf(ids[n], sizeof(ids[n]), "pc-%d", n);
        assert_int_equal(harness_order(h, ids[n], 1, 1), 0);
        harness_trigger(doomed, ids[n], NULL); /* may die answering */
        n++;
        snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", ids[n - 1]);
        for (uint64_t t0 = harness_now_ms();
             harness_vendd_alive(doomed) && harness_now_ms() - t0 < 3000; harness_sleep_ms(20)) {
            char st[32] = "";

            if (harness_sql_text(h, sql, st, sizeof(st)) == 1 && strcmp(st, "COMPLETED") == 0)
                break;
        }
    }
    if (harness_vendd_alive(doomed))
        fail_msg("%s: instance 1 never reached it in %d orders", point, n);
    assert_true(harness_vendd_wait_death(doomed, 0) >= 0);
    /* A trigger instance 1 died answering is sent again to instance 2, as an operator would. */
    for (int i = 0; i < n; i++) {
        char st[32] = "";

        snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", ids[i]);
        if (harness_sql_text(h, sql, st, sizeof(st)) == 1 && strcmp(st, "PAID") == 0)
            assert_int_equal(harness_trigger(h, ids[i], NULL), 200);
    }
    if (harness_sql_wait(h,
                         "SELECT count(*) FROM orders WHERE status NOT IN ('COMPLETED', 'FAILED')",
                         "0", WAIT_MS) < 0) {
        char units[512] = "";

        harness_sql_text(
            h,
            "SELECT string_agg(o.id || ' ' || o.status || ' unit ' || coalesce(l.status, "
            "'-') || ' deadline ' || coalesce(l.deadline_at, '-'), ', ' ORDER BY o.id) "
            "FROM orders o LEFT JOIN dispense_logs l ON l.order_id = o.id",
            units, sizeof(units));
        fail_msg("%s: an order left hanging: %s (logs: %s, %s)", point, units, doomed->log_path,
                 h->log_path);
    }
    for (int i = 0; i < n; i++) {
        int c = commands_for(&watch, ids[i]);

        if (c > 1)
            fail_msg("%s: order %s got %d commands", point, ids[i], c);
    }
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT count(*) FROM orders o WHERE o.status = 'FAILED' AND "
                                      "NOT EXISTS (SELECT 1 FROM refunds f WHERE f.order_id = "
                                      "o.id)",
                                      "0", WAIT_MS),
                     0);
    assert_int_equal(harness_check(h, NULL), 0);
    harness_sql_text(h, "SELECT string_agg(id || ' ' || status, ', ' ORDER BY id) FROM orders", sql,
                     sizeof(sql));
    print_message("%s: instance 1 died; %s\n", point, sql);
    harness_mqtt_close(&vm);
    harness_mqtt_close(&watch);
    harness_fleet_stop(&fleet);
}

static void instance_dies_at_each_point(void **state)
{
    (void)state;
    if (getenv("VEND_CRASH_POINTS") == NULL)
        skip();
    for (size_t i = 0; i < sizeof(s_points) / sizeof(s_points[0]); i++)
        one_point(s_points[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(instance_dies_at_each_point),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
