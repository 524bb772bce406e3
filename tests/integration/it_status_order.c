/*
 * it_status_order.c - a machine's status changes, spread over two vendd of one shared group,
 * end in the database as the machine last said, whichever instance is slow.
 *
 * A machine that drops off and comes back publishes OFFLINE (its will) and then ONLINE. With
 * the status topic shared, the broker hands the two to different instances; if the one holding
 * OFFLINE commits last, the machine stays OFFLINE (no sales) until it next changes. Instance 1
 * is stopped (SIGSTOP: a slow host) while the pair is published, then let go; each round must
 * end ONLINE. Six rounds: a broker that alternates the pair between two members leaves OFFLINE
 * on the slow one in about every other round.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define ROUNDS 6

static const char s_offline[] = "{\"status\":\"OFFLINE\"}";
static const char s_online[] =
    "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-60,\"fw\":\"1.0.0\"}";

static void last_status_wins_across_instances(void **state)
{
    struct harness_fleet fleet = {0};
    struct harness_mqtt vm = {0};
    struct harness *h;

    (void)state;
    assert_int_equal(harness_fleet_start(&fleet, 2, NULL, false), 0);
    h = &fleet.vendd[0];
    assert_int_equal(harness_put_slot(h, 1, 5, 1500), 0);
    assert_int_equal(harness_mqtt_open(&vm, h->broker.port, "it-status-vm", NULL, NULL, NULL), 0);
    assert_int_equal(harness_machine_online(h, &vm), 0);
    for (int round = 0; round < ROUNDS; round++) {
        pid_t slow = fleet.vendd[round % 2].pid;

        assert_int_equal(kill(slow, SIGSTOP), 0);
        assert_int_equal(harness_mqtt_publish(&vm, "vm/VM01/status", s_offline, strlen(s_offline)),
                         0);
        assert_int_equal(harness_mqtt_publish(&vm, "vm/VM01/status", s_online, strlen(s_online)),
                         0);
        harness_sleep_ms(400); /* instance 2 applies what it was handed */
        assert_int_equal(kill(slow, SIGCONT), 0);
        harness_sleep_ms(600); /* instance 1 applies what it was handed */
        if (harness_sql_wait(h, "SELECT status FROM machines WHERE id = 'VM01'", "ONLINE", 2000) <
            0)
            fail_msg("round %d: VM01 said OFFLINE then ONLINE, the database keeps OFFLINE", round);
    }
    harness_mqtt_close(&vm);
    harness_fleet_stop(&fleet);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(last_status_wins_across_instances),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
