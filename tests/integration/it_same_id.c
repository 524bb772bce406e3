/*
 * it_same_id.c - a second vendd on the same PostgreSQL database that would share a broker
 * session with the first is refused, wherever it runs (docs/SCALING.md): one in a group with
 * the first one's MQTT_CLIENT_ID, and one without a group at all. Each peer has a working
 * directory of its own, as on another host, so the results file's lock cannot tell.
 *
 * Fails today: both start, and the broker hands the session back and forth between them.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "harness.h"

#define WAIT_MS 5000

/* A peer of first started with extra_env: refused means it ends by itself. */
static void refused(struct harness *first, const char *const *extra_env)
{
    struct harness peer = {0};
    int started;

    assert_int_equal(harness_peer_prepare(&peer, first, extra_env), 0);
    started = harness_vendd_start(&peer);
    if (started == 0 && harness_vendd_wait_death(&peer, WAIT_MS) < 0) {
        harness_stop(&peer);
        fail_msg("a second vendd on one database sharing one broker session was not refused");
    }
    harness_stop(&peer);
}

static void one_session_one_vendd(void **state)
{
    struct harness_fleet fleet = {0};
    static const char *const same_id[] = {"MQTT_CLIENT_ID=vendd-1",
                                          "MQTT_SHARED_GROUP=" HARNESS_SHARED_GROUP, NULL};
    static const char *const alone[] = {"MQTT_CLIENT_ID=vendd-alone", NULL};
    struct harness single = {0};

    (void)state;
    assert_int_equal(harness_fleet_start(&fleet, 1, NULL, false), 0);
    refused(&fleet.vendd[0], same_id);
    harness_fleet_stop(&fleet);
    /* Without a group: a second one on the database, whatever its id. */
    assert_int_equal(harness_start(&single, (const char *const[]){"MQTT_CLIENT_ID=vendd-a", NULL}),
                     0);
    refused(&single, alone);
    harness_stop(&single);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_session_one_vendd),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
