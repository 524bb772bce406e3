/* test_msg.c - enum wire names, result error codes and the error enum texts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "vend/err.h"
#include "vend/msg.h"

static void level_names(void **state)
{
    static const char *const names[] = {"EMPTY", "LOW", "MEDIUM", "HIGH", "FULL"};
    enum vend_level l;
    int i;

    (void)state;
    for (i = 0; i < 5; i++) {
        assert_string_equal(vend_level_name((enum vend_level)i), names[i]);
        assert_int_equal(vend_level_parse(names[i], strlen(names[i]), &l), VEND_OK);
        assert_int_equal(l, i);
    }
    assert_null(vend_level_name((enum vend_level)5));
    l = VEND_LEVEL_HIGH;
    assert_int_equal(vend_level_parse("full", 4, &l), VEND_EENUM);
    assert_int_equal(vend_level_parse("FUL", 3, &l), VEND_EENUM);
    assert_int_equal(vend_level_parse("FULLY", 5, &l), VEND_EENUM);
    assert_int_equal(vend_level_parse("FULLY", 4, &l), VEND_OK); /* length-delimited */
    assert_int_equal(l, VEND_LEVEL_FULL);
    assert_true(VEND_LEVEL_LOW < VEND_LEVEL_MEDIUM && VEND_LEVEL_EMPTY < VEND_LEVEL_LOW);
}

static void door_presence_cmd_names(void **state)
{
    enum vend_door d = VEND_DOOR_UNKNOWN;
    enum vend_presence p = VEND_PRESENCE_OFFLINE;
    enum vend_cmd c;

    (void)state;
    assert_null(vend_door_name(VEND_DOOR_UNKNOWN));
    assert_string_equal(vend_door_name(VEND_DOOR_OPEN), "OPEN");
    assert_string_equal(vend_door_name(VEND_DOOR_CLOSED), "CLOSED");
    assert_int_equal(vend_door_parse("CLOSED", 6, &d), VEND_OK);
    assert_int_equal(d, VEND_DOOR_CLOSED);
    assert_int_equal(vend_door_parse("", 0, &d), VEND_EENUM);
    assert_int_equal(vend_door_parse("UNKNOWN", 7, &d), VEND_EENUM);
    assert_int_equal(d, VEND_DOOR_CLOSED); /* untouched on error */

    assert_string_equal(vend_presence_name(VEND_PRESENCE_ONLINE), "ONLINE");
    assert_string_equal(vend_presence_name(VEND_PRESENCE_OFFLINE), "OFFLINE");
    assert_int_equal(vend_presence_parse("ONLINE", 6, &p), VEND_OK);
    assert_int_equal(p, VEND_PRESENCE_ONLINE);
    assert_int_equal(vend_presence_parse("online", 6, &p), VEND_EENUM);

    assert_string_equal(vend_cmd_name(VEND_CMD_DISPENSE), "dispense");
    assert_int_equal(vend_cmd_parse("dispense", 8, &c), VEND_OK);
    assert_int_equal(c, VEND_CMD_DISPENSE);
    assert_int_equal(vend_cmd_parse("DISPENSE", 8, &c), VEND_EENUM);
    assert_string_equal(vend_cmd_name(VEND_CMD_SETTLE), "settle");
    assert_int_equal(vend_cmd_parse("settle", 6, &c), VEND_OK);
    assert_int_equal(c, VEND_CMD_SETTLE);
    assert_int_equal(vend_cmd_parse("Settle", 6, &c), VEND_EENUM);
    assert_null(vend_cmd_name((enum vend_cmd)2));
}

static void result_errors(void **state)
{
    static const char *const known[] = {
        "TIMEOUT", "NO_DROP",     "JAMMED",    "INVALID_SLOT", "BUSY",          "DOOR_OPEN",
        "EXPIRED", "MOTOR_FAULT", "CANCELLED", "POWER_LOSS",   "JOURNAL_FAULT",
    };
    enum vend_result_error e;
    int i;

    (void)state;
    assert_int_equal(sizeof(known) / sizeof(known[0]), VEND_RESULT_ERROR_COUNT);
    for (i = 0; i < VEND_RESULT_ERROR_COUNT; i++) {
        assert_true(vend_result_error_known(known[i]));
        assert_string_equal(vend_result_error_name((enum vend_result_error)i), known[i]);
        assert_int_equal(vend_result_error_parse(known[i], strlen(known[i]), &e), VEND_OK);
        assert_int_equal(e, i);
    }
    assert_false(vend_result_error_known("MACHINE_UNREACHABLE"));
    assert_false(vend_result_error_known("timeout"));
    assert_false(vend_result_error_known(""));
    assert_false(vend_result_error_known(NULL));
    assert_null(vend_result_error_name(VEND_RESULT_ERROR_COUNT));
}

static void strerror_texts(void **state)
{
    (void)state;
    assert_string_equal(vend_strerror(VEND_OK), "success");
    assert_string_equal(vend_strerror(VEND_ETOOBIG), "input too large");
    assert_string_equal(vend_strerror(VEND_EDUPKEY), "duplicate key");
    assert_string_equal(vend_strerror(VEND_EINTERNAL), "internal error");
    assert_string_equal(vend_strerror(1), "unknown error");
    assert_string_equal(vend_strerror(-1000), "unknown error");
    assert_string_equal(vend_errname(VEND_ETRAILING), "TRAILING");
    assert_string_equal(vend_errname(VEND_OK), "OK");
    assert_string_equal(vend_errname(-1000), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(level_names),
        cmocka_unit_test(door_presence_cmd_names),
        cmocka_unit_test(result_errors),
        cmocka_unit_test(strerror_texts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
