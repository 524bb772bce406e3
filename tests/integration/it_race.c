/*
 * it_race.c - two vendd of one group answer the same Midtrans event at once: the payment is
 * applied once, and a customer's cancel racing its payment ends one way with the money exact.
 *
 * 1. One settlement, eight copies (a replay) sent at once, four to each instance: the order
 *    is dispensed once, nothing refunded.
 * 2. Five orders, each cancelled on one instance while its settlement reaches the other at
 *    the same moment: each ends COMPLETED with no refund, or CANCELLED with one refund of its
 *    whole amount; never both, never a dispense of a cancelled order.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define WAIT_MS 10000
#define RACES   5

struct race {
    struct harness_fleet fleet;
    struct harness_mqtt vm;
    struct harness_autoanswer answer;
};

static int setup(void **state)
{
    static struct race r;

    memset(&r, 0, sizeof(r));
    pthread_mutex_init(&r.answer.mu, NULL);
    if (harness_fleet_start(&r.fleet, 2, NULL, true) < 0 ||
        harness_put_slot(&r.fleet.vendd[0], 1, 20, 1500) < 0 ||
        harness_mqtt_open(&r.vm, r.fleet.vendd[0].broker.port, "it-race-vm", "vm/VM01/command",
                          harness_autoanswer, &r.answer) < 0 ||
        harness_machine_online(&r.fleet.vendd[0], &r.vm) < 0) {
        harness_fleet_stop(&r.fleet);
        return -1;
    }
    *state = &r;
    return 0;
}

static int teardown(void **state)
{
    struct race *r = *state;

    if (r == NULL)
        return 0; /* the group's setup failed and said why; cmocka still calls this */
    harness_mqtt_close(&r->vm);
    harness_fleet_stop(&r->fleet);
    return 0;
}

/* The count (or sum) of what of table belongs to order id. */
static long long sql_int(struct harness *h, const char *what, const char *table, const char *id)
{
    char sql[256];
    long long n = -1;

    snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE order_id = '%s'", what, table, id);
    assert_int_equal(harness_sql_int(h, sql, &n), 1);
    return n;
}

static void a_replayed_settlement_is_applied_once(void **state)
{
    struct race *r = *state;
    struct harness *h = &r->fleet.vendd[0];
    struct harness_request reqs[8];
    uint16_t ports[8];
    char id[64], body[2048], sql[160];

    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, sizeof(id), NULL),
        201);
    assert_int_equal(
        harness_notification(id, "settlement", "8000.00", HARNESS_FAKE_KEY, body, sizeof(body)), 0);
    for (size_t i = 0; i < 8; i++) {
        reqs[i] = (struct harness_request){"POST", "/api/payments/webhook", body, 0, NULL};
        ports[i] = r->fleet.vendd[i % 2].http_port;
    }
    assert_int_equal(harness_http_parallel_at(h, reqs, ports, 8, WAIT_MS), 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(reqs[i].status, 200);
    harness_requests_free(reqs, 8);
    snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", id);
    assert_int_equal(harness_sql_wait(h, sql, "COMPLETED", WAIT_MS), 0);
    harness_sleep_ms(500);
    assert_int_equal(sql_int(h, "count(*)", "dispense_logs", id), 1);
    assert_int_equal(sql_int(h, "count(*)", "refunds", id), 0);
}

static void a_cancel_racing_the_payment_ends_one_way(void **state)
{
    struct race *r = *state;
    struct harness *h = &r->fleet.vendd[0];
    int cancelled = 0, completed = 0;

    for (int i = 0; i < RACES; i++) {
        struct harness_request reqs[2];
        uint16_t ports[2] = {r->fleet.vendd[i % 2].http_port, r->fleet.vendd[1 - i % 2].http_port};
        char id[64], body[2048], path[128], sql[320], status[32] = "";

        assert_int_equal(harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id,
                                                sizeof(id), NULL),
                         201);
        assert_int_equal(
            harness_notification(id, "settlement", "8000.00", HARNESS_FAKE_KEY, body, sizeof(body)),
            0);
        snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
        reqs[0] = (struct harness_request){"POST", path, NULL, 0, NULL};
        reqs[1] = (struct harness_request){"POST", "/api/payments/webhook", body, 0, NULL};
        assert_int_equal(harness_http_parallel_at(h, reqs, ports, 2, WAIT_MS), 2);
        print_message("race %d: cancel %ld, settlement %ld\n", i, reqs[0].status, reqs[1].status);
        harness_requests_free(reqs, 2);
        /* Settled: COMPLETED, or CANCELLED with its refund sent (OPERATOR or DONE). */
        snprintf(sql, sizeof(sql),
                 "SELECT o.status FROM orders o WHERE o.id = '%s' AND (o.status = 'COMPLETED' OR "
                 "(o.status = 'CANCELLED' AND (SELECT count(*) FROM refunds f WHERE f.order_id = "
                 "o.id) = 1))",
                 id);
        for (uint64_t t0 = harness_now_ms(); harness_now_ms() - t0 < WAIT_MS; harness_sleep_ms(50))
            if (harness_sql_text(h, sql, status, sizeof(status)) == 1)
                break;
        if (strcmp(status, "COMPLETED") == 0) {
            completed++;
            assert_int_equal(sql_int(h, "count(*)", "refunds", id), 0);
            assert_int_equal(sql_int(h, "count(*)", "dispense_logs", id), 1);
        } else if (strcmp(status, "CANCELLED") == 0) {
            cancelled++;
            assert_int_equal(sql_int(h, "count(*)", "dispense_logs", id), 0);
            assert_int_equal(sql_int(h, "coalesce(sum(amount), 0)", "refunds", id), 8000);
        } else {
            fail_msg("order %s neither COMPLETED nor CANCELLED with one refund", id);
        }
    }
    print_message("%d completed, %d cancelled\n", completed, cancelled);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_replayed_settlement_is_applied_once),
        cmocka_unit_test(a_cancel_racing_the_payment_ends_one_way),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
