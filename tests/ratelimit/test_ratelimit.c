/* test_ratelimit.c - the per-address token buckets: burst, refill, separate addresses, and a
 * flood of addresses that cannot grow the table or lock out the ones already in it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "ratelimit.h"

static void burst_then_refill(void **state)
{
    struct ratelimit *rl = ratelimit_new(6); /* one token every 10 s */
    int64_t t = 1000000;

    (void)state;
    for (int i = 0; i < 6; i++)
        assert_true(ratelimit_take(rl, "192.0.2.1", t));
    assert_false(ratelimit_take(rl, "192.0.2.1", t));
    assert_false(ratelimit_take(rl, "192.0.2.1", t + 9999));
    assert_true(ratelimit_take(rl, "192.0.2.1", t + 10000));
    assert_false(ratelimit_take(rl, "192.0.2.1", t + 10000));
    /* Another address has its own bucket. */
    assert_true(ratelimit_take(rl, "192.0.2.2", t));
    /* A long pause refills to the burst, not beyond. */
    t += 3600 * 1000;
    for (int i = 0; i < 6; i++)
        assert_true(ratelimit_take(rl, "192.0.2.1", t));
    assert_false(ratelimit_take(rl, "192.0.2.1", t));
    ratelimit_free(rl);
}

static void flood_of_addresses_stays_bounded(void **state)
{
    struct ratelimit *rl = ratelimit_new(2);
    char addr[48];

    (void)state;
    assert_true(ratelimit_take(rl, "198.51.100.7", 0));
    assert_true(ratelimit_take(rl, "198.51.100.7", 0));
    assert_false(ratelimit_take(rl, "198.51.100.7", 0));
    /* Ten times the table in new addresses: each gets its burst, the table does not grow. */
    for (int i = 0; i < 10 * RATELIMIT_ENTRIES; i++) {
        snprintf(addr, sizeof(addr), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_true(ratelimit_take(rl, addr, 1));
    }
    /* An address longer than any numeric one is refused, never truncated into another's. */
    assert_false(ratelimit_take(rl, "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa", 1));
    ratelimit_free(rl);
}

/* allows() looks without taking: only the takes count against the burst. */
static void allows_takes_nothing(void **state)
{
    struct ratelimit *rl = ratelimit_new(2);

    (void)state;
    for (int i = 0; i < 5; i++)
        assert_true(ratelimit_allows(rl, "203.0.113.9", 0));
    assert_true(ratelimit_take(rl, "203.0.113.9", 0));
    assert_true(ratelimit_allows(rl, "203.0.113.9", 0));
    assert_true(ratelimit_take(rl, "203.0.113.9", 0));
    assert_false(ratelimit_allows(rl, "203.0.113.9", 0));
    assert_true(ratelimit_allows(rl, "203.0.113.9", 30000)); /* one token back after 30 s */
    assert_false(ratelimit_allows(rl, "1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa", 0));
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_refill),
        cmocka_unit_test(flood_of_addresses_stays_bounded),
        cmocka_unit_test(allows_takes_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
