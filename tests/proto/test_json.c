/* test_json.c - the strict JSON layer under the codec (proto/src/json.h, internal). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "json.h"
#include "vend/err.h"

static int validate(const char *s)
{
    return json_validate(s, strlen(s), 8);
}

static void validate_cases(void **state)
{
    static const struct {
        const char *json;
        int err;
    } cases[] = {
        {"{}", VEND_OK},
        {" \t\r\n{ } \n", VEND_OK},
        {"{\"a\":[1,-2,3.5,-0.0e+1,1E-2,true,false,null,\"x\",{},[]]}", VEND_OK},
        {"", VEND_ESYNTAX},
        {"   ", VEND_ESYNTAX},
        {"[]", VEND_ESYNTAX},
        {"\"a\"", VEND_ESYNTAX},
        {"1", VEND_ESYNTAX},
        {"{", VEND_ESYNTAX},
        {"{\"a\"}", VEND_ESYNTAX},
        {"{\"a\":}", VEND_ESYNTAX},
        {"{\"a\":1,}", VEND_ESYNTAX},
        {"{\"a\":1 \"b\":2}", VEND_ESYNTAX},
        {"{\"a\":[1,]}", VEND_ESYNTAX},
        {"{\"a\":[,1]}", VEND_ESYNTAX},
        {"{a:1}", VEND_ESYNTAX},
        {"{'a':1}", VEND_ESYNTAX},
        {"{\"a\":01}", VEND_ESYNTAX},
        {"{\"a\":+1}", VEND_ESYNTAX},
        {"{\"a\":.5}", VEND_ESYNTAX},
        {"{\"a\":1.}", VEND_ESYNTAX},
        {"{\"a\":1e}", VEND_ESYNTAX},
        {"{\"a\":-}", VEND_ESYNTAX},
        {"{\"a\":NaN}", VEND_ESYNTAX},
        {"{\"a\":Infinity}", VEND_ESYNTAX},
        {"{\"a\":-Infinity}", VEND_ESYNTAX},
        {"{\"a\":tru}", VEND_ESYNTAX},
        {"{\"a\":truex}", VEND_ESYNTAX},
        {"{\"a\":\"\\x\"}", VEND_ESYNTAX},
        {"{\"a\":\"\\u12\"}", VEND_ESYNTAX},
        {"{\"a\":\"\\u12G4\"}", VEND_ESYNTAX},
        {"{\"a\":\"\\ud83d\"}", VEND_ESYNTAX},        /* lone high surrogate */
        {"{\"a\":\"\\ude00\"}", VEND_ESYNTAX},        /* lone low surrogate */
        {"{\"a\":\"\\ud83d\\u0041\"}", VEND_ESYNTAX}, /* high + non-low */
        {"{\"a\":\"\\ud83d\\ude00\"}", VEND_OK},
        {"{\"a\":\"\t\"}", VEND_ESYNTAX},               /* raw control character */
        {"{\"a\":\"\xc3\xa9\"}", VEND_OK},              /* U+00E9 */
        {"{\"a\":\"\xc3\"}", VEND_ESYNTAX},             /* truncated */
        {"{\"a\":\"\xc0\xaf\"}", VEND_ESYNTAX},         /* overlong */
        {"{\"a\":\"\xed\xa0\x80\"}", VEND_ESYNTAX},     /* encoded surrogate */
        {"{\"a\":\"\xf4\x90\x80\x80\"}", VEND_ESYNTAX}, /* > U+10FFFF */
        {"{\"a\":\"\xff\"}", VEND_ESYNTAX},
        {"{\"a\":\"x}", VEND_ESYNTAX},
        {"{} x", VEND_ETRAILING},
        {"{}{}", VEND_ETRAILING},
        {"{}}", VEND_ETRAILING},
        {"{\"a\":[[[[[[[1]]]]]]]}", VEND_OK},       /* depth 8 */
        {"{\"a\":[[[[[[[[1]]]]]]]]}", VEND_EDEPTH}, /* depth 9 */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = validate(cases[i].json);

        if (rc != cases[i].err)
            fail_msg("case %zu '%s': got %d, want %d", i, cases[i].json, rc, cases[i].err);
    }
    /* A NUL byte is not whitespace. */
    assert_int_equal(json_validate("{}\0", 3, 8), VEND_ETRAILING);
}

static void unescape(void **state)
{
    static const struct {
        const char *raw;
        const char *want;
    } cases[] = {
        {"plain", "plain"},
        {"\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t"},
        {"\\u0041\\u00e9\\u20AC", "A\xc3\xa9\xe2\x82\xac"},
        {"\\ud83d\\ude00", "\xf0\x9f\x98\x80"},
        {"\\uDBFF\\uDFFF", "\xf4\x8f\xbf\xbf"},
        {"a\xc3\xa9z", "a\xc3\xa9z"},
    };
    char out[32];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(json_str_decode(cases[i].raw, strlen(cases[i].raw), out, 31, &n), VEND_OK);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, n);
        assert_int_equal(out[n], '\0');
    }
    /* \u0000 decodes to a real NUL byte; the length says so. */
    assert_int_equal(json_str_decode("a\\u0000b", 8, out, 31, &n), VEND_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "a\0b", 3);
    /* Capacity counts decoded bytes, not raw ones. */
    assert_int_equal(json_str_decode("\\u00e9", 6, out, 2, &n), VEND_OK);
    assert_int_equal(json_str_decode("\\u20ac", 6, out, 2, &n), VEND_ERANGE);
    assert_int_equal(json_str_decode("abc", 3, out, 3, &n), VEND_OK);
    assert_int_equal(json_str_decode("abcd", 4, out, 3, &n), VEND_ERANGE);
}

static void string_equality(void **state)
{
    (void)state;
    assert_true(json_str_eq("slot", 4, "sl\\u006ft", 9));
    assert_true(json_str_eq_lit("\\u0073lot", 9, "slot"));
    assert_false(json_str_eq_lit("\\u0073lots", 10, "slot"));
    assert_false(json_str_eq_lit("slo", 3, "slot"));
    assert_true(json_str_eq("\\/", 2, "/", 1));
    assert_false(json_str_eq("a", 1, "b", 1));
}

static void integers(void **state)
{
    static const struct {
        const char *s;
        int err;
        int64_t v;
    } cases[] = {
        {"0", VEND_OK, 0},
        {"7", VEND_OK, 7},
        {"-65", VEND_OK, -65},
        {"86400000", VEND_OK, 86400000},
        {"1000000000000000", VEND_OK, 1000000000000000LL},
        {"1000000000000001", VEND_ERANGE, 0},
        {"99999999999999999999999", VEND_ERANGE, 0},
        {"-99999999999999999999999", VEND_ERANGE, 0},
        {"-0", VEND_ETYPE, 0},
        {"1.5", VEND_ETYPE, 0},
        {"1.0", VEND_ETYPE, 0},
        {"1e3", VEND_ETYPE, 0},
        {"1E3", VEND_ETYPE, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = -1;

        assert_int_equal(json_int_parse(cases[i].s, strlen(cases[i].s), &v), cases[i].err);
        if (cases[i].err == VEND_OK)
            assert_true(v == cases[i].v);
    }
}

static void hundredths(void **state)
{
    static const struct {
        const char *s;
        int err;
        int32_t v;
    } cases[] = {
        {"25.5", VEND_OK, 2550},
        {"0", VEND_OK, 0},
        {"-0", VEND_OK, 0},
        {"-0.004", VEND_OK, 0},
        {"0.005", VEND_OK, 1},
        {"-0.005", VEND_OK, -1},
        {"25.555", VEND_OK, 2556},
        {"25.554999", VEND_OK, 2555},
        {"2.55e1", VEND_OK, 2550},
        {"2550e-2", VEND_OK, 2550},
        {"0.000255e5", VEND_OK, 2550},
        {"150", VEND_OK, 15000},
        {"-60", VEND_OK, -6000},
        {"999.99", VEND_OK, 99999},
        {"999.995", VEND_OK, 100000},
        {"1000", VEND_ERANGE, 0},
        {"1e3", VEND_ERANGE, 0},
        {"1e999999999", VEND_ERANGE, 0},
        {"1e-999999999", VEND_OK, 0},
        {"-1e2", VEND_OK, -10000},
        {"0.0000000000000000000000009", VEND_OK, 0},
        {"100.0000000000000000000000001", VEND_OK, 10000},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int32_t v = -1;
        int rc = json_centi_parse(cases[i].s, strlen(cases[i].s), &v);

        if (rc != cases[i].err || (rc == VEND_OK && v != cases[i].v))
            fail_msg("'%s': rc %d v %d", cases[i].s, rc, (int)v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(validate_cases),  cmocka_unit_test(unescape),
        cmocka_unit_test(string_equality), cmocka_unit_test(integers),
        cmocka_unit_test(hundredths),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
