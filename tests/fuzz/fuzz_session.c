/*
 * fuzz_session.c - the operator's session cookie, its CSRF token and the API token as a
 * browser or an attacker sends them (session.h). The input is three lines: a cookie, a CSRF
 * token and an API token. A '*' at position i of a line stands for byte i of the real one
 * (a cookie issued at start, its CSRF token, the token), so the fuzzer works near the valid
 * values as well as far from them. Never a crash, and nothing is accepted but the exact real
 * value: any other cookie, CSRF token or API token that passes is a forgery.
 */
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "session.h"
#include "vend/err.h"

#define TOKEN     "fuzz-session-token-0123456789"
#define LINE_SIZE 512

static struct {
    struct session s;
    char cookie[SESSION_COOKIE_SIZE];
    char csrf[SESSION_CSRF_SIZE];
    int64_t now_s;
    bool ready;
} s_fx;

static void setup(void)
{
    int64_t expires;

    session_init(&s_fx.s, TOKEN);
    s_fx.now_s = (int64_t)time(NULL);
    FUZZ_CHECK(session_issue(&s_fx.s, s_fx.now_s, s_fx.cookie, &expires) == VEND_OK);
    session_csrf(&s_fx.s, s_fx.cookie, s_fx.csrf);
    s_fx.ready = true;
}

/* Line k (0-based) of the input into out, NUL-terminated, with '*' replaced from real. */
static void take_line(const uint8_t *data, size_t size, size_t k, const char *real,
                      char out[LINE_SIZE])
{
    const uint8_t *p = data, *end = data + size, *nl;
    size_t n, rlen = strlen(real);

    for (; k > 0 && p < end; k--) {
        nl = memchr(p, '\n', (size_t)(end - p));
        p = nl != NULL ? nl + 1 : end;
    }
    nl = memchr(p, '\n', (size_t)(end - p));
    n = (size_t)((nl != NULL ? nl : end) - p);
    if (n > LINE_SIZE - 1)
        n = LINE_SIZE - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = p[i] == '*' && i < rlen ? real[i] : (char)p[i];
    out[n] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char cookie[LINE_SIZE], csrf[LINE_SIZE], token[LINE_SIZE];
    bool cookie_ok;

    if (!s_fx.ready)
        setup();
    take_line(data, size, 0, s_fx.cookie, cookie);
    take_line(data, size, 1, s_fx.csrf, csrf);
    take_line(data, size, 2, TOKEN, token);

    cookie_ok = session_valid(&s_fx.s, cookie, s_fx.now_s);
    FUZZ_CHECK(cookie_ok == (strcmp(cookie, s_fx.cookie) == 0));
    /* Expired is expired, however good the MAC. */
    FUZZ_CHECK(!session_valid(&s_fx.s, cookie, s_fx.now_s + SESSION_TTL_S));
    /* The server asks for the CSRF token only of a valid cookie. */
    if (cookie_ok)
        FUZZ_CHECK(session_csrf_valid(&s_fx.s, cookie, csrf) == (strcmp(csrf, s_fx.csrf) == 0));
    FUZZ_CHECK(session_csrf_valid(&s_fx.s, s_fx.cookie, csrf) == (strcmp(csrf, s_fx.csrf) == 0));
    FUZZ_CHECK(session_token_valid(&s_fx.s, token) == (strcmp(token, TOKEN) == 0));
    return 0;
}
