/*
 * test_crashpoint.c - VENDD_CRASH_AT is read strictly (crashpoint.h): a name vendd does not
 * have, or a bad count, is refused with its reason, so a crash test never passes by crashing
 * nowhere; nothing set arms nothing. The SIGKILL itself is it_crash_matrix's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crashpoint.h"

static void nothing_set_arms_nothing(void **state)
{
    struct crashpoint cp;
    char why[160] = "";

    (void)state;
    assert_int_equal(crashpoint_init(&cp, NULL, why, sizeof(why)), 0);
    assert_false(cp.armed);
    assert_int_equal(crashpoint_init(&cp, "", why, sizeof(why)), 0);
    assert_false(cp.armed);
    /* Passing a point unarmed does nothing (this process would die otherwise). */
    crashpoint(&cp, CRASH_PAYMENT_COMMITTED);
}

static void a_name_and_a_count(void **state)
{
    struct crashpoint cp;
    char why[160] = "";

    (void)state;
#ifdef VEND_CRASH_POINTS
    assert_int_equal(crashpoint_init(&cp, "result_committed", why, sizeof(why)), 0);
    assert_true(cp.armed);
    assert_int_equal(cp.id, CRASH_RESULT_COMMITTED);
    assert_int_equal(cp.nth, 1);
    assert_int_equal(crashpoint_init(&cp, "command_published:2", why, sizeof(why)), 0);
    assert_int_equal(cp.id, CRASH_COMMAND_PUBLISHED);
    assert_int_equal(cp.nth, 2);
    /* Another point, or the armed one before its count, passes by. */
    crashpoint(&cp, CRASH_RESULT_COMMITTED);
    crashpoint(&cp, CRASH_COMMAND_PUBLISHED);
    assert_int_equal(cp.hits, 1);
#else
    assert_int_equal(crashpoint_init(&cp, "result_committed", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "built without crash points"));
#endif
    assert_string_equal(crashpoint_name(CRASH_REFUND_ANSWERED), "refund_answered");
    assert_string_equal(crashpoint_name(CRASHPOINT_COUNT), "?");
}

static void bad_specs_are_refused_with_why(void **state)
{
    static const char *const bad[] = {"result_commited",
                                      "result_committed:",
                                      "result_committed:0",
                                      "result_committed:x",
                                      "result_committed:2x",
                                      "result_committed:1000001",
                                      ":1",
                                      "result",
                                      "result_committed_extra"};
    struct crashpoint cp;
    char why[160];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(crashpoint_init(&cp, bad[i], why, sizeof(why)), -1);
        assert_false(cp.armed);
        assert_non_null(strstr(why, "VENDD_CRASH_AT"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_set_arms_nothing),
        cmocka_unit_test(a_name_and_a_count),
        cmocka_unit_test(bad_specs_are_refused_with_why),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
