/*
 * session.h - the operator's browser session: a signed cookie that needs no server state, and
 * the CSRF token that goes with it (docs/HTTP-API.md, "Sign-in").
 *
 * A cookie is "v1.<expiry, unix seconds>.<16 random bytes, hex>.<HMAC-SHA256, hex>", the HMAC
 * over everything before its last dot. The HMAC key is derived from API_TOKEN, so a new token
 * signs everyone out, and it is the only way to: nothing is stored per session. The CSRF token
 * of a cookie is HMAC(key, "csrf" || cookie) in hex: a page that can read it (the dashboard,
 * from GET /api/session) is same-origin; another site can neither read the cookie nor derive it.
 *
 * Every comparison of a secret (the token, a MAC, a CSRF token) takes the same time whatever
 * the guess (CRYPTO_memcmp over fixed lengths). struct session holds secrets: session_clear()
 * wipes it.
 */
#ifndef VENDD_SESSION_H
#define VENDD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The cookie's name, and how long a sign-in lasts (its Max-Age). */
#define SESSION_COOKIE "__Host-vendd_session"
#define SESSION_TTL_S  43200
/* "v1." + 12 digits + "." + 32 hex + "." + 64 hex + NUL, at most. */
#define SESSION_COOKIE_SIZE 114
/* 64 hex + NUL. */
#define SESSION_CSRF_SIZE 65

struct session {
    unsigned char key[32];          /* HMAC key, derived from the token */
    unsigned char token_digest[32]; /* SHA-256 of the token */
};

/* Derive s from api_token (not NULL, not empty). */
void session_init(struct session *s, const char *api_token);
/* Wipe the secrets. */
void session_clear(struct session *s);

/* token (NULL: false) is the API token: compared by SHA-256, in constant time. */
bool session_token_valid(const struct session *s, const char *token);

/*
 * A new cookie value valid until now_s + SESSION_TTL_S, in cookie; *expires_s gets that time.
 * Returns VEND_OK, or VEND_EIO when the random generator fails (cookie is then "").
 */
int session_issue(const struct session *s, int64_t now_s, char cookie[SESSION_COOKIE_SIZE],
                  int64_t *expires_s);

/* cookie (NULL: false) is one of ours, unchanged, and not expired at now_s. */
bool session_valid(const struct session *s, const char *cookie, int64_t now_s);

/* The CSRF token of cookie (a valid one: the caller checked it). */
void session_csrf(const struct session *s, const char *cookie, char csrf[SESSION_CSRF_SIZE]);
/* csrf (NULL: false) is cookie's CSRF token. */
bool session_csrf_valid(const struct session *s, const char *cookie, const char *csrf);

#endif
