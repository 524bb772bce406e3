/*
 * api_session.c - the operator's sign-in for the dashboard (docs/HTTP-API.md, "Sign-in"):
 * GET /api/session says who the browser is, POST /api/session trades the API token for the
 * session cookie and its CSRF token (session.h), DELETE /api/session clears the cookie.
 *
 * All three are public: they are how one becomes an operator. A sign-in is rate limited per
 * client address, so the token cannot be guessed at the speed of the network. Development mode
 * (no API_TOKEN) has no sign-in: a loopback browser is the operator, as for the API.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api.h"
#include "conf.h"
#include "log.h"
#include "ratelimit.h"
#include "session.h"
#include "store.h"
#include "vend/err.h"
#include "vendd.h"

/* HttpOnly: no script reads it (the CSRF token is what the page holds); Secure: never sent
 * in clear (browsers treat http://localhost as secure); SameSite=Strict: never sent with a
 * request another site starts. */
#define COOKIE_ATTRS "; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age="

void api_session_get(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const struct session *s = http_session(req);
    const char *cookie;
    char csrf[SESSION_CSRF_SIZE];
    bool valid;

    if (s == NULL) {
        http_reply_json(res, 200,
                        json_pack("{s:s, s:b, s:n}", "mode", "development", "signed_in",
                                  http_is_operator(req), "csrf"));
        return;
    }
    cookie = http_cookie(req, SESSION_COOKIE);
    valid = cookie != NULL && session_valid(s, cookie, v->now_ms() / 1000);
    if (valid)
        session_csrf(s, cookie, csrf);
    /* A bearer token signs a request in too (a script, not a browser): no CSRF token then. */
    http_reply_json(res, 200,
                    json_pack("{s:s, s:b, s:s?}", "mode", "token", "signed_in",
                              valid || http_is_operator(req), "csrf", valid ? csrf : NULL));
    OPENSSL_cleanse(csrf, sizeof(csrf));
}

void api_session_create(void *ctx, const struct http_request *req, struct http_response *res)
{
    static const char *const fields[] = {"token", NULL};
    struct vendd *v = ctx;
    const struct session *s = http_session(req);
    char token[CONF_SECRET_MAX + 1] = "", cookie[SESSION_COOKIE_SIZE], csrf[SESSION_CSRF_SIZE];
    char header[SESSION_COOKIE_SIZE + sizeof(SESSION_COOKIE) + sizeof(COOKIE_ATTRS) + 16];
    char expires_iso[STORE_ISO_SIZE];
    int64_t expires = 0;

    if (s == NULL) {
        /* Nothing to sign in to: a loopback browser is the operator already. */
        http_reply_json(
            res, 200,
            json_pack("{s:b, s:n, s:n}", "signed_in", http_is_operator(req), "csrf", "expires_at"));
        return;
    }
    if (!ratelimit_take(v->signin_limit, req->remote_addr, v->mono_ms())) {
        http_reply_error(res, 429, "TOO_MANY_REQUESTS",
                         "more than %d sign-ins a minute from this address", API_SIGNIN_PER_MIN);
        return;
    }
    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "token", true, CONF_SECRET_MAX, token, sizeof(token), res))
        goto out;
    if (!session_token_valid(s, token)) {
        log_warnx("sign-in refused from %s: wrong token", req->remote_addr);
        http_reply_error(res, 401, "UNAUTHORIZED", "wrong token");
        goto out;
    }
    if (session_issue(s, v->now_ms() / 1000, cookie, &expires) < 0) {
        log_warnx("cannot sign in %s: the random generator failed", req->remote_addr);
        http_reply_error(res, 500, "INTERNAL", "cannot make a session");
        goto out;
    }
    session_csrf(s, cookie, csrf);
    db_iso_time(expires_iso, sizeof(expires_iso), expires * 1000);
    snprintf(header, sizeof(header), "%s=%s" COOKIE_ATTRS "%d", SESSION_COOKIE, cookie,
             SESSION_TTL_S);
    http_reply_header(res, "Set-Cookie", header);
    http_reply_json(
        res, 200,
        json_pack("{s:b, s:s, s:s}", "signed_in", true, "csrf", csrf, "expires_at", expires_iso));
    log_info("operator signed in from %s until %s", req->remote_addr, expires_iso);
    OPENSSL_cleanse(cookie, sizeof(cookie));
    OPENSSL_cleanse(csrf, sizeof(csrf));
    OPENSSL_cleanse(header, sizeof(header));
out:
    OPENSSL_cleanse(token, sizeof(token));
}

void api_session_delete(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    /* The cookie carries no server state: signing out is the browser forgetting it. A copy
     * kept elsewhere stays valid until it expires, or until API_TOKEN changes. */
    http_reply_header(res, "Set-Cookie", SESSION_COOKIE "=" COOKIE_ATTRS "0");
    res->status = 204;
}
