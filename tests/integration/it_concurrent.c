/*
 * it_concurrent.c - concurrent triggers (SPEC §4 rules 1, 2, 5 and 10), all in flight together
 * through harness_http_parallel():
 *
 *   - 100 triggers of one PAID order: one 200, 99 x 409, exactly ONE command; the machine
 *     answers and the order completes with one unit out of the stock;
 *   - 100 orders on two machines triggered at once: every trigger 200, every order COMPLETED,
 *     one command per unit, never a second command to a machine before it answered the
 *     first, and the stock exactly 100 lower across the slots.
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

#define N_TRIGGERS 100
#define N_ORDERS   100
#define N_MACHINES 2
#define HOLD_MS    5 /* a machine holds its answer this long: time for a second command */
#define WAIT_MS    30000

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 30, 2150}, {2, 30, 2150}, {0, 0, 0}};

    *state = harness_fixture_new(NULL, slots, NULL);
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static long long sql_int(struct harness *h, const char *sql)
{
    long long v = -1;

    if (harness_sql_int(h, sql, &v) != 1)
        fail_msg("no row for: %s", sql);
    return v;
}

/* 100 triggers of one order: exactly one command, and the order completes once. */
static void hundred_triggers_of_one_order_send_one_command(void **state)
{
    static struct harness_autoanswer machine = {.mu = PTHREAD_MUTEX_INITIALIZER};
    static const char body[] = "{\"order_id\":\"race-1\"}";
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_request reqs[N_TRIGGERS];
    struct harness_mqtt sub;
    long long stock = sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1");
    int ok = 0, conflict = 0, other = 0;

    assert_int_equal(harness_order(h, "race-1", 1, 1), 0);
    assert_int_equal(harness_mqtt_open(&sub, h->broker.port, "it-race-machine", "vm/VM01/command",
                                       harness_autoanswer, &machine),
                     0);
    for (int i = 0; i < N_TRIGGERS; i++)
        reqs[i] = (struct harness_request){"POST", "/api/dispense/trigger", body, 0, NULL};
    assert_int_equal(harness_http_parallel(h, reqs, N_TRIGGERS, WAIT_MS), N_TRIGGERS);
    for (int i = 0; i < N_TRIGGERS; i++) {
        if (reqs[i].status == 200)
            ok++;
        else if (reqs[i].status == 409 && strstr(reqs[i].answer, "WRONG_STATE") != NULL)
            conflict++;
        else
            other++;
    }
    harness_requests_free(reqs, N_TRIGGERS);
    assert_int_equal(other, 0);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, N_TRIGGERS - 1);

    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'race-1'", "COMPLETED", 5000), 0);
    /* The one command, and no second one even after a while. */
    assert_int_equal(harness_mqtt_wait(&sub, 2, 1000), 1);
    assert_string_equal(
        harness_mqtt_payload(&sub, 0),
        "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"race-1\",\"timeoutMs\":2150}");
    pthread_mutex_lock(&machine.mu);
    assert_int_equal(machine.answered, 1);
    pthread_mutex_unlock(&machine.mu);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM dispense_logs WHERE order_id = 'race-1'"), 1);
    assert_int_equal(sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1"),
                     stock - 1);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM stock_logs WHERE order_id = 'race-1' AND "
                                "change_type = 'DISPENSE'"),
                     1);
    harness_mqtt_set_handler(&sub, NULL, NULL);
    harness_mqtt_close(&sub);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* A machine served by the test's own thread: it answers its commands one by one, after
 * holding each HOLD_MS, and counts a command that came while one was unanswered. */
struct strict_machine {
    const char *id;
    struct harness_mqtt c;
    size_t answered;
    int overlaps;
};

/* Answer the next command if there is one; 1 if answered, 0 if none waiting. */
static int serve(struct strict_machine *m)
{
    char order_id[80], topic[64], res[256];
    int slot = 0, unit = 0;

    if (harness_mqtt_wait(&m->c, m->answered + 1, 0) < m->answered + 1)
        return 0;
    harness_sleep_ms(HOLD_MS);
    if (harness_mqtt_wait(&m->c, 0, 0) > m->answered + 1)
        m->overlaps++;
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&m->c, m->answered), order_id,
                                           sizeof(order_id), &slot, &unit),
                     0);
    snprintf(topic, sizeof(topic), "vm/%s/dispense_result", m->id);
    snprintf(res, sizeof(res),
             "{\"orderId\":\"%s\",\"slot\":%d,\"success\":true,\"dropDetected\":true,"
             "\"durationMs\":850,\"error\":null}",
             order_id, slot);
    assert_int_equal(harness_mqtt_publish(&m->c, topic, res, strlen(res)), 0);
    m->answered++;
    return 1;
}

/* 100 orders on two machines, their triggers all at once. */
static void hundred_orders_triggered_at_once_dispense_once_each(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    static struct strict_machine machines[N_MACHINES] = {{.id = "VM01"}, {.id = "VM02"}};
    static struct harness_request reqs[N_ORDERS];
    static char bodies[N_ORDERS][64];
    char body[256], want[32];
    long long stock;
    size_t total = 0;
    uint64_t deadline;

    /* VM02 beside VM01, two slots each: 120 units in four slots. */
    assert_int_equal(harness_call(h, "POST", "/api/machines", "{\"id\":\"VM02\"}", NULL), 201);
    for (int s = 1; s <= 2; s++) {
        char path[64];

        snprintf(path, sizeof(path), "/api/machines/VM02/slots/%d", s);
        assert_int_equal(harness_call(h, "PUT", path,
                                      "{\"product_name\":\"Coca Cola\",\"price\":8000,"
                                      "\"capacity\":30,\"current_stock\":30,"
                                      "\"motor_duration_ms\":2150}",
                                      NULL),
                         201);
    }
    stock = sql_int(h, "SELECT sum(current_stock) FROM slots");
    assert_int_equal(stock, 120);
    for (int m = 0; m < N_MACHINES; m++) {
        char client[32], filter[32];

        snprintf(client, sizeof(client), "it-strict-%s", machines[m].id);
        snprintf(filter, sizeof(filter), "vm/%s/command", machines[m].id);
        assert_int_equal(
            harness_mqtt_open(&machines[m].c, h->broker.port, client, filter, NULL, NULL), 0);
    }
    for (int i = 0; i < N_ORDERS; i++) {
        snprintf(body, sizeof(body),
                 "{\"id\":\"many-%03d\",\"machine_id\":\"%s\",\"slot\":%d,"
                 "\"payment_method\":\"manual\"}",
                 i, machines[i % N_MACHINES].id, 1 + (i / N_MACHINES) % 2);
        assert_int_equal(harness_call(h, "POST", "/api/orders", body, NULL), 201);
        snprintf(bodies[i], sizeof(bodies[i]), "{\"order_id\":\"many-%03d\"}", i);
        reqs[i] = (struct harness_request){"POST", "/api/dispense/trigger", bodies[i], 0, NULL};
    }

    assert_int_equal(harness_http_parallel(h, reqs, N_ORDERS, WAIT_MS), N_ORDERS);
    for (int i = 0; i < N_ORDERS; i++) {
        if (reqs[i].status != 200)
            fail_msg("trigger %d: HTTP %ld: %s", i, reqs[i].status,
                     reqs[i].answer != NULL ? reqs[i].answer : "");
    }
    harness_requests_free(reqs, N_ORDERS);

    deadline = harness_now_ms() + WAIT_MS;
    while (total < N_ORDERS && harness_now_ms() < deadline) {
        int served = 0;

        total = 0;
        for (int m = 0; m < N_MACHINES; m++) {
            served += serve(&machines[m]);
            total += machines[m].answered;
        }
        if (served == 0)
            harness_sleep_ms(1);
    }
    assert_int_equal(total, N_ORDERS);
    snprintf(want, sizeof(want), "%d", N_ORDERS);
    assert_int_equal(
        harness_sql_wait(h, "SELECT count(*) FROM orders WHERE status = 'COMPLETED'", want, 5000),
        0);
    /* No command beyond one per unit, none while another was unanswered. */
    for (int m = 0; m < N_MACHINES; m++) {
        assert_int_equal(harness_mqtt_wait(&machines[m].c, machines[m].answered + 1, 500),
                         N_ORDERS / N_MACHINES);
        assert_int_equal(machines[m].overlaps, 0);
        harness_mqtt_close(&machines[m].c);
    }
    assert_int_equal(sql_int(h, "SELECT count(*) FROM dispense_logs"), N_ORDERS);
    assert_int_equal(sql_int(h, "SELECT count(DISTINCT order_id) FROM dispense_logs"), N_ORDERS);
    assert_int_equal(sql_int(h, "SELECT sum(current_stock) FROM slots"), stock - N_ORDERS);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM stock_logs WHERE change_type = 'DISPENSE'"),
                     N_ORDERS);
    /* Exact per slot: 25 from each of the four. */
    assert_int_equal(sql_int(h, "SELECT count(*) FROM slots WHERE current_stock = 5"), 4);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(hundred_triggers_of_one_order_send_one_command, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(hundred_orders_triggered_at_once_dispense_once_each, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
