/* test_topic.c - topics, filters, and the identifier rules checked against their pattern texts. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"

static void parse_good(void **state)
{
    static const struct {
        const char *topic;
        const char *id;
        enum vend_topic_kind kind;
    } cases[] = {
        {"vm/VM01/command", "VM01", VEND_TOPIC_COMMAND},
        {"vm/VM01/dispense_result", "VM01", VEND_TOPIC_DISPENSE_RESULT},
        {"vm/VM01/telemetry", "VM01", VEND_TOPIC_TELEMETRY},
        {"vm/a/status", "a", VEND_TOPIC_STATUS},
        {"vm/Z_9-x/config", "Z_9-x", VEND_TOPIC_CONFIG},
        {"vm/abcdefghijklmnopqrstuvwxyz012345/status", "abcdefghijklmnopqrstuvwxyz012345",
         VEND_TOPIC_STATUS},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vend_topic t;

        memset(&t, 0x55, sizeof(t));
        assert_int_equal(vend_topic_parse(cases[i].topic, strlen(cases[i].topic), &t), VEND_OK);
        assert_string_equal(t.machine_id, cases[i].id);
        assert_int_equal(t.kind, cases[i].kind);
    }
}

static void parse_without_nul(void **state)
{
    /* The length bounds the topic: the bytes after it must not matter. */
    const char buf[] = "vm/VM01/statusXYZ";
    struct vend_topic t;

    (void)state;
    assert_int_equal(vend_topic_parse(buf, 14, &t), VEND_OK);
    assert_string_equal(t.machine_id, "VM01");
    assert_int_equal(t.kind, VEND_TOPIC_STATUS);
    assert_int_equal(vend_topic_parse(buf, 13, &t), VEND_ETOPIC);
}

static void parse_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "vm",
        "vm/",
        "vm//command",
        "vm/VM01",
        "vm/VM01/",
        "vm/VM01/commands",
        "vm/VM01/Command",
        "vm/VM01/command/",
        "vm/VM01/command/x",
        "vm/+/command",
        "vm/#",
        "vm/VM01/#",
        "vm/VM01/+",
        "vm/VM 01/status",
        "vm/VM.01/status",
        "VM/VM01/status",
        "/vm/VM01/status",
        "$share/vendd/vm/VM01/status",
        "vm/abcdefghijklmnopqrstuvwxyz0123456/status", /* 33 characters */
        "vm/V\xc3\xa9/status",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vend_topic t;

        assert_int_equal(vend_topic_parse(bad[i], strlen(bad[i]), &t), VEND_ETOPIC);
    }
    /* An embedded NUL is a bad byte, not an end. */
    {
        struct vend_topic t;

        assert_int_equal(vend_topic_parse("vm/VM01\0/status", 15, &t), VEND_ETOPIC);
        assert_int_equal(vend_topic_parse("vm/VM01/status\0", 15, &t), VEND_ETOPIC);
        assert_int_equal(vend_topic_parse(NULL, 0, &t), VEND_EINVAL);
    }
}

static void format_good_and_bad(void **state)
{
    char buf[VEND_TOPIC_MAX + 1];
    char id33[34];
    int n;

    (void)state;
    n = vend_topic_format(buf, sizeof(buf), "VM01", VEND_TOPIC_COMMAND);
    assert_int_equal(n, 15);
    assert_string_equal(buf, "vm/VM01/command");
    memset(id33, 'a', 32);
    id33[32] = '\0';
    n = vend_topic_format(buf, sizeof(buf), id33, VEND_TOPIC_DISPENSE_RESULT);
    assert_int_equal(n, VEND_TOPIC_MAX);
    assert_int_equal(strlen(buf), VEND_TOPIC_MAX);
    /* Exactly enough room, then one byte short. */
    assert_int_equal(vend_topic_format(buf, 16, "VM01", VEND_TOPIC_COMMAND), 15);
    assert_int_equal(vend_topic_format(buf, 15, "VM01", VEND_TOPIC_COMMAND), VEND_ENOSPACE);
    assert_int_equal(vend_topic_format(NULL, 0, "VM01", VEND_TOPIC_COMMAND), VEND_ENOSPACE);
    id33[32] = 'a';
    id33[33] = '\0';
    assert_int_equal(vend_topic_format(buf, sizeof(buf), id33, VEND_TOPIC_STATUS), VEND_ETOPIC);
    assert_int_equal(vend_topic_format(buf, sizeof(buf), "", VEND_TOPIC_STATUS), VEND_ETOPIC);
    assert_int_equal(vend_topic_format(buf, sizeof(buf), "+", VEND_TOPIC_STATUS), VEND_ETOPIC);
    assert_int_equal(vend_topic_format(buf, sizeof(buf), NULL, VEND_TOPIC_STATUS), VEND_ETOPIC);
    assert_int_equal(vend_topic_format(buf, sizeof(buf), "VM01", VEND_TOPIC_KIND_COUNT),
                     VEND_ETOPIC);
}

static void format_parse_round_trip(void **state)
{
    char buf[VEND_TOPIC_MAX + 1];
    struct vend_topic t;
    int k, n;

    (void)state;
    for (k = 0; k < VEND_TOPIC_KIND_COUNT; k++) {
        n = vend_topic_format(buf, sizeof(buf), "m-1_X", (enum vend_topic_kind)k);
        assert_true(n > 0);
        assert_int_equal(vend_topic_parse(buf, (size_t)n, &t), VEND_OK);
        assert_string_equal(t.machine_id, "m-1_X");
        assert_int_equal(t.kind, k);
        assert_string_equal(buf + 3 + 5 + 1, vend_topic_kind_name((enum vend_topic_kind)k));
    }
    assert_null(vend_topic_kind_name(VEND_TOPIC_KIND_COUNT));
}

static void id_validators(void **state)
{
    char long_id[70];

    (void)state;
    assert_true(vend_machine_id_valid("VM01"));
    assert_true(vend_machine_id_valid("a_b-C"));
    assert_false(vend_machine_id_valid(""));
    assert_false(vend_machine_id_valid(NULL));
    assert_false(vend_machine_id_valid("a.b"));
    assert_false(vend_machine_id_valid("a/b"));
    memset(long_id, 'x', sizeof(long_id));
    long_id[32] = '\0';
    assert_true(vend_machine_id_valid(long_id));
    long_id[32] = 'x';
    long_id[33] = '\0';
    assert_false(vend_machine_id_valid(long_id));

    assert_true(vend_order_id_valid("ORD123456"));
    assert_true(vend_order_id_valid("test-order-123"));
    assert_true(vend_order_id_valid("a.b~c_d-E"));
    assert_false(vend_order_id_valid(""));
    assert_false(vend_order_id_valid(NULL));
    assert_false(vend_order_id_valid("a b"));
    assert_false(vend_order_id_valid("a\"b"));
    assert_false(vend_order_id_valid("a/b"));
    memset(long_id, 'x', sizeof(long_id));
    long_id[64] = '\0';
    assert_true(vend_order_id_valid(long_id));
    long_id[64] = 'x';
    long_id[65] = '\0';
    assert_false(vend_order_id_valid(long_id));
}

/* pattern as a whole-string POSIX ERE, the way a user reads it in an error message. */
static bool pattern_match(const regex_t *re, const char *s)
{
    return regexec(re, s, 0, NULL, 0) == 0;
}

static void compile(regex_t *re, const char *pattern)
{
    char anchored[128];

    snprintf(anchored, sizeof(anchored), "^%s$", pattern);
    assert_int_equal(regcomp(re, anchored, REG_EXTENDED | REG_NOSUB), 0);
}

/*
 * The rule exists once: the text every error message prints and the validator agree on
 * every byte value and on the length bounds, in both the NUL-terminated and the counted form.
 */
static void id_patterns_are_the_validators(void **state)
{
    static const struct {
        const char *pattern;
        size_t max;
        bool (*valid)(const char *);
        bool (*valid_len)(const char *, size_t);
    } rules[] = {
        {VEND_MACHINE_ID_PATTERN, VEND_MACHINE_ID_MAX, vend_machine_id_valid,
         vend_machine_id_valid_len},
        {VEND_ORDER_ID_PATTERN, VEND_ORDER_ID_MAX, vend_order_id_valid, vend_order_id_valid_len},
    };
    char s[VEND_ORDER_ID_MAX + 2];
    regex_t re;

    (void)state;
    assert_string_equal(VEND_MACHINE_ID_PATTERN, "[A-Za-z0-9_-]{1,32}");
    assert_string_equal(VEND_ORDER_ID_PATTERN, "[A-Za-z0-9_.~-]{1,64}");
    for (size_t r = 0; r < sizeof(rules) / sizeof(rules[0]); r++) {
        compile(&re, rules[r].pattern);
        for (int c = 1; c < 256; c++) {
            s[0] = 'a';
            s[1] = (char)c;
            s[2] = '\0';
            if (pattern_match(&re, s) != rules[r].valid(s) ||
                pattern_match(&re, s) != rules[r].valid_len(s, 2))
                fail_msg("%s and its validator disagree on byte 0x%02x", rules[r].pattern, c);
        }
        for (size_t len = 0; len <= rules[r].max + 1; len++) {
            memset(s, 'x', len);
            s[len] = '\0';
            assert_int_equal(pattern_match(&re, s), len >= 1 && len <= rules[r].max);
            assert_int_equal(rules[r].valid(s), len >= 1 && len <= rules[r].max);
            assert_int_equal(rules[r].valid_len(s, len), len >= 1 && len <= rules[r].max);
        }
        /* The counted form never reads a NUL as the end. */
        assert_false(rules[r].valid_len("ab\0c", 4));
        regfree(&re);
    }
}

static void filters(void **state)
{
    static const struct {
        enum vend_topic_kind kind;
        const char *filter;
    } cases[] = {
        {VEND_TOPIC_COMMAND, "vm/+/command"},
        {VEND_TOPIC_DISPENSE_RESULT, "vm/+/dispense_result"},
        {VEND_TOPIC_TELEMETRY, "vm/+/telemetry"},
        {VEND_TOPIC_STATUS, "vm/+/status"},
        {VEND_TOPIC_CONFIG, "vm/+/config"},
    };
    char buf[VEND_TOPIC_FILTER_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, 0x55, sizeof(buf));
        assert_int_equal(vend_topic_filter(buf, sizeof(buf), cases[i].kind),
                         (int)strlen(cases[i].filter));
        assert_string_equal(buf, cases[i].filter);
    }
    assert_int_equal(vend_topic_filter(buf, sizeof(buf), VEND_TOPIC_DISPENSE_RESULT),
                     VEND_TOPIC_FILTER_MAX);
    assert_int_equal(vend_topic_filter(buf, VEND_TOPIC_FILTER_MAX, VEND_TOPIC_DISPENSE_RESULT),
                     VEND_ENOSPACE);
    assert_int_equal(vend_topic_filter(NULL, 0, VEND_TOPIC_STATUS), VEND_ENOSPACE);
    assert_int_equal(vend_topic_filter(buf, sizeof(buf), VEND_TOPIC_KIND_COUNT), VEND_ETOPIC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_good),
        cmocka_unit_test(parse_without_nul),
        cmocka_unit_test(parse_bad),
        cmocka_unit_test(format_good_and_bad),
        cmocka_unit_test(format_parse_round_trip),
        cmocka_unit_test(id_validators),
        cmocka_unit_test(id_patterns_are_the_validators),
        cmocka_unit_test(filters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
