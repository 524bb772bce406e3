/*
 * test_broker_stats.c - the broker's $SYS counters (broker_stats.c): gauges as read, the
 * first reading taken as history, a rise as one open BROKER_DROPPED alert restated with the
 * count, and anything that is not a count ignored without a change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker_stats.h"
#include "fixture.h"

static int64_t s_mono;

static int64_t mono_ms(void)
{
    return s_mono;
}

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_clock_set(1764235800000);
    dfx_open(f);
    s_mono = 1000000;
    f->v.mono_ms = mono_ms;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    dfx_close(*state);
    free(*state);
    return 0;
}

static void sys(struct dfx *f, const char *topic, const char *value)
{
    broker_stats_message(&f->v, topic, value, strlen(value));
}

static void gauges_follow_the_broker(void **state)
{
    struct dfx *f = *state;

    sys(f, "$SYS/broker/store/messages/count", "1234");
    sys(f, "$SYS/broker/clients/connected", "101");
    assert_int_equal(f->v.metrics.broker_messages_stored, 1234);
    assert_int_equal(f->v.metrics.broker_clients_connected, 101);
    sys(f, "$SYS/broker/store/messages/count", "12");
    assert_int_equal(f->v.metrics.broker_messages_stored, 12);
    /* Topics vendd does not read change nothing. */
    sys(f, "$SYS/broker/uptime", "77 seconds");
    assert_true(broker_stats_topic("$SYS/broker/uptime"));
    assert_false(broker_stats_topic("vm/VM01/status"));
    assert_non_null(broker_stats_filter(0));
    assert_null(broker_stats_filter(3));
}

static void drops_raise_one_alert_restated_with_the_count(void **state)
{
    struct dfx *f = *state;
    char msg[512];

    /* What the broker dropped before vendd started is its history, not news. */
    sys(f, "$SYS/broker/publish/messages/dropped", "40");
    assert_int_equal(f->v.metrics.broker_messages_dropped, 40);
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 0);
    sys(f, "$SYS/broker/publish/messages/dropped", "40");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 0);
    sys(f, "$SYS/broker/publish/messages/dropped", "45");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts WHERE kind = 'BROKER_DROPPED' "
                                      "AND resolved_at IS NULL"),
                     1);
    sys(f, "$SYS/broker/publish/messages/dropped", "90");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 1);
    dfx_text(f->v.db, "SELECT message FROM alerts", msg, sizeof(msg));
    assert_non_null(strstr(msg, "dropped 90 message(s)"));
}

static void what_is_not_a_count_changes_nothing(void **state)
{
    static const char *const bad[] = {"", "-1", "1e3", "12 ", "99999999999999999999", "0x10"};
    struct dfx *f = *state;

    sys(f, "$SYS/broker/publish/messages/dropped", "7");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sys(f, "$SYS/broker/publish/messages/dropped", bad[i]);
        assert_int_equal(f->v.metrics.broker_messages_dropped, 7);
    }
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM alerts"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(gauges_follow_the_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(drops_raise_one_alert_restated_with_the_count, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(what_is_not_a_count_changes_nothing, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
