/*
 * test_session.c - the operator's session cookie and CSRF token (daemon/src/core/session.c):
 * a cookie it issues is valid until it expires and not a second after; any change to any
 * part of it, a cookie of another API token, and every shape it does not write are refused;
 * the CSRF token belongs to one cookie; the token check is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "session.h"
#include "vend/err.h"

#define TOKEN "operator-token-0123456789"
#define NOW   1790000000

static void issue(const struct session *s, int64_t now, char cookie[SESSION_COOKIE_SIZE])
{
    int64_t expires = 0;

    assert_int_equal(session_issue(s, now, cookie, &expires), VEND_OK);
    assert_int_equal(expires, now + SESSION_TTL_S);
}

static void cookie_valid_until_expiry(void **state)
{
    struct session s;
    char cookie[SESSION_COOKIE_SIZE];
    char want_prefix[32];

    (void)state;
    session_init(&s, TOKEN);
    issue(&s, NOW, cookie);
    snprintf(want_prefix, sizeof(want_prefix), "v1.%d.", NOW + SESSION_TTL_S);
    assert_memory_equal(cookie, want_prefix, strlen(want_prefix));
    assert_int_equal(strlen(cookie), strlen(want_prefix) + 32 + 1 + 64);
    assert_true(session_valid(&s, cookie, NOW));
    assert_true(session_valid(&s, cookie, NOW + SESSION_TTL_S - 1));
    assert_false(session_valid(&s, cookie, NOW + SESSION_TTL_S));
    assert_false(session_valid(&s, cookie, NOW + SESSION_TTL_S + 3600));
    session_clear(&s);
}

static void two_cookies_differ(void **state)
{
    struct session s;
    char a[SESSION_COOKIE_SIZE], b[SESSION_COOKIE_SIZE];

    (void)state;
    session_init(&s, TOKEN);
    issue(&s, NOW, a);
    issue(&s, NOW, b);
    assert_string_not_equal(a, b); /* the random part */
    session_clear(&s);
}

/* Every byte of the cookie matters: each one changed (to another character of its kind) is
 * refused, so neither the expiry nor the random part can be moved under the MAC. */
static void any_change_refused(void **state)
{
    struct session s;
    char cookie[SESSION_COOKIE_SIZE], bad[SESSION_COOKIE_SIZE];
    size_t n;

    (void)state;
    session_init(&s, TOKEN);
    issue(&s, NOW, cookie);
    n = strlen(cookie);
    for (size_t i = 0; i < n; i++) {
        memcpy(bad, cookie, n + 1);
        if (bad[i] >= '0' && bad[i] <= '8')
            bad[i]++;
        else if (bad[i] == '9')
            bad[i] = '0';
        else if (bad[i] >= 'a' && bad[i] <= 'e')
            bad[i]++;
        else if (bad[i] == 'f')
            bad[i] = 'a';
        else
            bad[i] = 'x'; /* the dots, the 'v' */
        if (session_valid(&s, bad, NOW))
            fail_msg("cookie with byte %zu changed ('%c' -> '%c') is accepted", i, cookie[i],
                     bad[i]);
    }
    session_clear(&s);
}

/* A later expiry written in by hand is refused: the MAC covers it. */
static void extended_expiry_refused(void **state)
{
    struct session s;
    char cookie[SESSION_COOKIE_SIZE], later[SESSION_COOKIE_SIZE + 8];
    const char *rest;

    (void)state;
    session_init(&s, TOKEN);
    issue(&s, NOW - SESSION_TTL_S - 10, cookie); /* expired */
    assert_false(session_valid(&s, cookie, NOW));
    rest = strchr(cookie + 3, '.');
    snprintf(later, sizeof(later), "v1.%d%s", NOW + 999, rest);
    assert_false(session_valid(&s, later, NOW));
    session_clear(&s);
}

/* A new API_TOKEN signs everyone out: the old cookies and CSRF tokens are refused. */
static void other_token_refused(void **state)
{
    struct session s, t;
    char cookie[SESSION_COOKIE_SIZE], csrf[SESSION_CSRF_SIZE];

    (void)state;
    session_init(&s, TOKEN);
    session_init(&t, TOKEN "x");
    issue(&s, NOW, cookie);
    session_csrf(&s, cookie, csrf);
    assert_true(session_valid(&s, cookie, NOW));
    assert_false(session_valid(&t, cookie, NOW));
    assert_false(session_csrf_valid(&t, cookie, csrf));
    /* The same token derives the same keys: a restart keeps everyone signed in. */
    session_clear(&t);
    session_init(&t, TOKEN);
    assert_true(session_valid(&t, cookie, NOW));
    assert_true(session_csrf_valid(&t, cookie, csrf));
    session_clear(&s);
    session_clear(&t);
}

static void bad_shapes_refused(void **state)
{
    struct session s;
    char cookie[SESSION_COOKIE_SIZE], buf[256];
    const char *mac, *nonce;
    static const char *const shapes[] = {
        "",
        "v1",
        "v1.",
        "v1..",
        "v1.1800000000",
        "v1.1800000000.",
        "v2.1800000000.00112233445566778899aabbccddeeff."
        "0000000000000000000000000000000000000000000000000000000000000000",
        "v1.-1.00112233445566778899aabbccddeeff."
        "0000000000000000000000000000000000000000000000000000000000000000",
        "v1.1800000000000.00112233445566778899aabbccddeeff."
        "0000000000000000000000000000000000000000000000000000000000000000",
    };

    (void)state;
    session_init(&s, TOKEN);
    assert_false(session_valid(&s, NULL, NOW));
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        if (session_valid(&s, shapes[i], NOW))
            fail_msg("'%s' is accepted", shapes[i]);
    }
    issue(&s, NOW, cookie);
    nonce = strchr(cookie + 3, '.') + 1;
    mac = strrchr(cookie, '.') + 1;
    /* Trailing bytes, a truncated MAC, upper-case hex (not what we write). */
    snprintf(buf, sizeof(buf), "%s0", cookie);
    assert_false(session_valid(&s, buf, NOW));
    snprintf(buf, sizeof(buf), "%.*s", (int)strlen(cookie) - 1, cookie);
    assert_false(session_valid(&s, buf, NOW));
    snprintf(buf, sizeof(buf), "%s", cookie);
    for (char *p = buf + (mac - cookie); *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    }
    if (strcmp(buf, cookie) != 0)
        assert_false(session_valid(&s, buf, NOW));
    /* A short random part with the rest shifted along. */
    snprintf(buf, sizeof(buf), "%.*s%s", (int)(nonce - cookie), cookie, nonce + 2);
    assert_false(session_valid(&s, buf, NOW));
    session_clear(&s);
}

static void csrf_belongs_to_its_cookie(void **state)
{
    struct session s;
    char a[SESSION_COOKIE_SIZE], b[SESSION_COOKIE_SIZE];
    char ca[SESSION_CSRF_SIZE], cb[SESSION_CSRF_SIZE], bad[SESSION_CSRF_SIZE + 1];

    (void)state;
    session_init(&s, TOKEN);
    issue(&s, NOW, a);
    issue(&s, NOW, b);
    session_csrf(&s, a, ca);
    session_csrf(&s, b, cb);
    assert_int_equal(strlen(ca), SESSION_CSRF_SIZE - 1);
    assert_string_not_equal(ca, cb);
    assert_true(session_csrf_valid(&s, a, ca));
    assert_false(session_csrf_valid(&s, a, cb));
    assert_false(session_csrf_valid(&s, b, ca));
    assert_false(session_csrf_valid(&s, a, NULL));
    assert_false(session_csrf_valid(&s, a, ""));
    /* Not the cookie's MAC, nor a prefix, nor the token with a byte more. */
    assert_false(session_csrf_valid(&s, a, strrchr(a, '.') + 1));
    snprintf(bad, sizeof(bad), "%.63s", ca);
    assert_false(session_csrf_valid(&s, a, bad));
    snprintf(bad, sizeof(bad), "%s0", ca);
    assert_false(session_csrf_valid(&s, a, bad));
    session_clear(&s);
}

static void token_check_is_exact(void **state)
{
    struct session s;

    (void)state;
    session_init(&s, TOKEN);
    assert_true(session_token_valid(&s, TOKEN));
    assert_false(session_token_valid(&s, NULL));
    assert_false(session_token_valid(&s, ""));
    assert_false(session_token_valid(&s, TOKEN "0"));
    assert_false(session_token_valid(&s, "operator-token-012345678"));
    session_clear(&s);
    /* Cleared: nothing of the token is left to match. */
    assert_false(session_token_valid(&s, TOKEN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cookie_valid_until_expiry),  cmocka_unit_test(two_cookies_differ),
        cmocka_unit_test(any_change_refused),         cmocka_unit_test(extended_expiry_refused),
        cmocka_unit_test(other_token_refused),        cmocka_unit_test(bad_shapes_refused),
        cmocka_unit_test(csrf_belongs_to_its_cookie), cmocka_unit_test(token_check_is_exact),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
