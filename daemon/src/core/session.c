/*
 * session.c - the operator's signed session cookie and its CSRF token; see session.h.
 */
#include "session.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "vend/err.h"

#define NONCE_BYTES 16
#define MAC_BYTES   32
/* Expiry digits: unix seconds have 10 until the year 2286; 12 bounds the parse. */
#define EXPIRY_DIGITS_MAX 12
/* What the key is derived for: another use of the token would use another label. */
static const char s_key_label[] = "vendd session key v1";

static void hex(char *out, const unsigned char *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 0xf];
    }
    out[2 * n] = '\0';
}

static bool is_hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* HMAC-SHA256(key, prefix || data[0..n)) in hex (64 digits + NUL). */
static void mac_hex(const struct session *s, const char *prefix, const char *data, size_t n,
                    char out[2 * MAC_BYTES + 1])
{
    unsigned char mac[MAC_BYTES];
    unsigned int len = sizeof(mac);
    unsigned char buf[8 + SESSION_COOKIE_SIZE];
    size_t plen = strlen(prefix);

    /* Our own inputs: a prefix of a few bytes and a cookie the callers bounded. */
    assert(plen + n <= sizeof(buf));
    memcpy(buf, prefix, plen);
    memcpy(buf + plen, data, n);
    HMAC(EVP_sha256(), s->key, sizeof(s->key), buf, plen + n, mac, &len);
    hex(out, mac, sizeof(mac));
    OPENSSL_cleanse(mac, sizeof(mac));
}

void session_init(struct session *s, const char *api_token)
{
    unsigned int len = sizeof(s->key);

    HMAC(EVP_sha256(), api_token, (int)strlen(api_token), (const unsigned char *)s_key_label,
         sizeof(s_key_label) - 1, s->key, &len);
    SHA256((const unsigned char *)api_token, strlen(api_token), s->token_digest);
}

void session_clear(struct session *s)
{
    OPENSSL_cleanse(s, sizeof(*s));
}

bool session_token_valid(const struct session *s, const char *token)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    if (token == NULL)
        return false;
    /* Hashing first makes the comparison constant-time over equal lengths, whatever the
     * length or content of the guess. */
    SHA256((const unsigned char *)token, strlen(token), digest);
    return CRYPTO_memcmp(digest, s->token_digest, sizeof(digest)) == 0;
}

int session_issue(const struct session *s, int64_t now_s, char cookie[SESSION_COOKIE_SIZE],
                  int64_t *expires_s)
{
    unsigned char nonce[NONCE_BYTES];
    char nonce_hex[2 * NONCE_BYTES + 1], mac[2 * MAC_BYTES + 1];
    int n;

    cookie[0] = '\0';
    *expires_s = now_s + SESSION_TTL_S;
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return VEND_EIO;
    hex(nonce_hex, nonce, sizeof(nonce));
    n = snprintf(cookie, SESSION_COOKIE_SIZE, "v1.%" PRId64 ".%s", *expires_s, nonce_hex);
    if (n < 0 || (size_t)n + 1 + 2 * MAC_BYTES >= SESSION_COOKIE_SIZE) {
        cookie[0] = '\0';
        return VEND_EINVAL;
    }
    mac_hex(s, "", cookie, (size_t)n, mac);
    snprintf(cookie + n, SESSION_COOKIE_SIZE - (size_t)n, ".%s", mac);
    return VEND_OK;
}

bool session_valid(const struct session *s, const char *cookie, int64_t now_s)
{
    char want[2 * MAC_BYTES + 1];
    const char *p;
    int64_t expiry = 0;
    size_t digits = 0, signed_len;

    if (cookie == NULL || strncmp(cookie, "v1.", 3) != 0)
        return false;
    /* Strictly the shape we write, before any crypto: untrusted input, any length. */
    for (p = cookie + 3; *p >= '0' && *p <= '9' && digits < EXPIRY_DIGITS_MAX; p++, digits++)
        expiry = expiry * 10 + (*p - '0');
    if (digits == 0 || *p != '.' || strnlen(p + 1, 2 * NONCE_BYTES + 1) < 2 * NONCE_BYTES ||
        !is_hex_lower(p + 1, 2 * NONCE_BYTES))
        return false;
    p += 1 + 2 * NONCE_BYTES;
    if (*p != '.' || strnlen(p + 1, 2 * MAC_BYTES + 1) != 2 * MAC_BYTES ||
        !is_hex_lower(p + 1, 2 * MAC_BYTES))
        return false;
    signed_len = (size_t)(p - cookie);
    mac_hex(s, "", cookie, signed_len, want);
    if (CRYPTO_memcmp(want, p + 1, 2 * MAC_BYTES) != 0)
        return false;
    return expiry > now_s;
}

void session_csrf(const struct session *s, const char *cookie, char csrf[SESSION_CSRF_SIZE])
{
    mac_hex(s, "csrf", cookie, strnlen(cookie, SESSION_COOKIE_SIZE), csrf);
}

bool session_csrf_valid(const struct session *s, const char *cookie, const char *csrf)
{
    char want[SESSION_CSRF_SIZE];
    bool ok;

    if (cookie == NULL || csrf == NULL || strnlen(csrf, SESSION_CSRF_SIZE) != SESSION_CSRF_SIZE - 1)
        return false;
    session_csrf(s, cookie, want);
    ok = CRYPTO_memcmp(want, csrf, SESSION_CSRF_SIZE - 1) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    return ok;
}
