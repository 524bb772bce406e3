/*
 * it_web.c - the pages vendd serves and the operator's browser sign-in, black-box over TCP
 * against the real vendd (docs/HTTP-API.md, "Pages" and "Sign-in"):
 *
 *   - GET /, /assets/{name} and /buy/{machine_id} answer the files of daemon/web/ (and
 *     Debian's qrcode.js) byte for byte, with an ETag, 304 on If-None-Match, and the security
 *     headers; a page under /assets/ and an unknown asset are 404;
 *   - token mode: POST /api/session trades API_TOKEN for the cookie and its CSRF token; the
 *     cookie reads operator routes (the event stream too); a write with it needs X-CSRF-Token
 *     (403 CSRF without, nothing changed); a tampered, expired or foreign cookie is 401;
 *     a bearer token wins over a cookie; signing out clears the cookie;
 *   - a write whose Origin is another origin is 403 CSRF with a bearer token, a cookie, on a
 *     public route, and in development mode; the same origin passes;
 *   - the same API_TOKEN after a restart keeps a cookie valid, another one signs it out;
 *   - sign-ins are rate limited per address;
 *   - development mode: GET/POST /api/session say so, no cookie, loopback writes as the API;
 *     a request addressed to another name (DNS rebinding) is not the operator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"
#include "http.h"
#include "session.h"

#define TOKEN "it-web-operator-token-0123456789"
#define CSP                                                                                        \
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "          \
    "form-action 'self'"
#define COOKIE_TAIL "; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=43200"

struct reply {
    long status;
    char *body;
    size_t len;
    char *head; /* the response's header lines, as received */
    size_t hlen;
    json_t *json;
    bool stream; /* stop after the first bytes of the body (an event stream) */
};

static void reply_free(struct reply *r)
{
    free(r->body);
    free(r->head);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static size_t append(char **p, size_t *len, const char *data, size_t n)
{
    char *q = realloc(*p, *len + n + 1);

    if (q == NULL)
        return 0;
    memcpy(q + *len, data, n);
    *len += n;
    q[*len] = '\0';
    *p = q;
    return n;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t got = append(&r->body, &r->len, data, size * n);

    /* A stream lasts: its first bytes are enough, and 0 makes curl stop. */
    return r->stream && r->len > 0 ? 0 : got;
}

static size_t on_head(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;

    return append(&r->head, &r->hlen, data, size * n);
}

/* method path on h's vendd with the extra header lines (NULL-terminated, may be NULL) and a
 * JSON body (NULL: none). Returns the status, or -1 without an answer. */
static long req(struct harness *h, const char *method, const char *path, const char *body,
                const char *const *headers, struct reply *r)
{
    char url[512];
    struct curl_slist *hl = NULL;
    CURL *c = curl_easy_init();
    CURLcode rc;
    bool stream = r->stream;

    memset(r, 0, sizeof(*r));
    r->stream = stream;
    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)h->http_port, path);
    hl = curl_slist_append(hl, "Expect:");
    if (body != NULL)
        hl = curl_slist_append(hl, "Content-Type: application/json");
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)HARNESS_HTTP_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    rc = curl_easy_perform(c);
    r->status = -1;
    if (rc == CURLE_OK || (r->stream && rc == CURLE_WRITE_ERROR))
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (r->body != NULL)
        r->json = json_loadb(r->body, r->len, 0, NULL);
    return r->status;
}

/* The value of header name in r (the first one), into out; NULL when absent. */
static const char *header(const struct reply *r, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);

    for (const char *p = r->head; p != NULL && *p != '\0';) {
        const char *end = strstr(p, "\r\n");
        size_t line = end != NULL ? (size_t)(end - p) : strlen(p);

        if (line > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;

            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)(line - (size_t)(v - p)), v);
            return out;
        }
        p += line + (end != NULL ? 2 : 0);
    }
    return NULL;
}

/* The wall clock's second as vendd reads it (CLOCK_REALTIME). Not time(NULL): glibc's reads the
 * coarse clock, which lags by up to a tick, so just past a second's turn it says the second
 * before the one vendd stamped (seen in CI: an expiry one second "in the future"). */
static int64_t wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* "2026-11-27T09:30:00.000Z" to epoch seconds; 0, or -1 if it is not that. */
static int iso_epoch(const char *iso, int64_t *out)
{
    struct tm tm = {0};
    const char *end = iso != NULL ? strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;

    if (end == NULL || strcmp(end, ".000Z") != 0)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

static const char *error_code(const struct reply *r)
{
    return json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
}

/* The file's bytes (malloc'd) and length; fails the test if it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    size_t n = 0;
    char buf[4096];
    size_t got;

    if (f == NULL)
        fail_msg("cannot open '%s'", path);
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        append(&p, &n, buf, got);
    fclose(f);
    *len = n;
    return p;
}

static void expect_page_headers(const struct reply *r, const char *csp)
{
    char v[512];

    assert_non_null(header(r, "ETag", v, sizeof(v)));
    assert_true(strlen(v) == 18 && v[0] == '"' && v[17] == '"');
    assert_string_equal(header(r, "Cache-Control", v, sizeof(v)), "no-cache");
    assert_string_equal(header(r, "Content-Security-Policy", v, sizeof(v)), csp);
    assert_string_equal(header(r, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
    assert_string_equal(header(r, "Referrer-Policy", v, sizeof(v)), "no-referrer");
}

/* path answers 200 with the bytes of file, type ctype and the page headers. */
static void expect_file(struct harness *h, const char *path, const char *file, const char *ctype)
{
    struct reply r = {0};
    size_t len = 0;
    char *want = slurp(file, &len);
    char v[256];

    assert_int_equal(req(h, "GET", path, NULL, NULL, &r), 200);
    assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), ctype);
    expect_page_headers(&r, CSP);
    if (r.len != len || memcmp(r.body, want, len) != 0)
        fail_msg("%s: not the bytes of %s (%zu bytes, want %zu)", path, file, r.len, len);
    free(want);
    reply_free(&r);
}

static void web_file(char *out, size_t size, const char *name)
{
    const char *dir = getenv("WEB_DIR");

    assert_non_null(dir);
    snprintf(out, size, "%s/%s", dir, name);
}

/* ---- token mode ------------------------------------------------------------------------- */

static const char *const token_env[] = {"API_TOKEN=" TOKEN, NULL};

static int setup_token(void **state)
{
    struct harness *h = calloc(1, sizeof(*h));

    if (h == NULL || harness_start(h, token_env) < 0) {
        free(h);
        return -1;
    }
    *state = h;
    return 0;
}

/* vendd must stop cleanly: under ASan a leak or an error at exit is a failure here. */
static int teardown(void **state)
{
    struct harness *h = *state;
    int rc = harness_vendd_term(h);

    if (rc != 0)
        fprintf(stderr, "vendd exited %d (log: %s)\n", rc, h->log_path);
    harness_stop(h);
    free(h);
    return rc == 0 ? 0 : -1;
}

static void pages_served_with_headers(void **state)
{
    struct harness *h = *state;
    static const struct {
        const char *path, *file, *ctype;
    } files[] = {
        {"/", "index.html", "text/html; charset=utf-8"},
        {"/buy/VM01", "buy.html", "text/html; charset=utf-8"},
        {"/assets/app.js", "app.js", "text/javascript; charset=utf-8"},
        {"/assets/app.css", "app.css", "text/css; charset=utf-8"},
        {"/assets/buy.js", "buy.js", "text/javascript; charset=utf-8"},
    };
    static const char *const missing[] = {"/assets/index.html", "/assets/buy.html",
                                          "/assets/nothing.js", "/assets/app.js.map"};
    struct reply r = {0};
    char path[512];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        web_file(path, sizeof(path), files[i].file);
        expect_file(h, files[i].path, path, files[i].ctype);
    }
    assert_non_null(getenv("QRCODE_JS"));
    expect_file(h, "/assets/qrcode.js", getenv("QRCODE_JS"), "text/javascript; charset=utf-8");
    /* The same page for any machine: the page reads the id from its path. */
    web_file(path, sizeof(path), "buy.html");
    expect_file(h, "/buy/ANY-machine_9", path, "text/html; charset=utf-8");
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        assert_int_equal(req(h, "GET", missing[i], NULL, NULL, &r), 404);
        assert_string_equal(error_code(&r), "NOT_FOUND");
        reply_free(&r);
    }
    /* Public even in token mode: no credentials were sent above. A write is not a page. */
    assert_int_equal(req(h, "POST", "/assets/app.js", "{}", NULL, &r), 405);
    reply_free(&r);
}

static void etag_answers_304(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    char etag[64], v[512], inm[160];
    const char *hdrs[2] = {inm, NULL};

    assert_int_equal(req(h, "GET", "/assets/app.js", NULL, NULL, &r), 200);
    assert_non_null(header(&r, "ETag", etag, sizeof(etag)));
    reply_free(&r);

    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    assert_int_equal(req(h, "GET", "/assets/app.js", NULL, hdrs, &r), 304);
    assert_int_equal(r.len, 0);
    assert_string_equal(header(&r, "ETag", v, sizeof(v)), etag);
    expect_page_headers(&r, CSP);
    reply_free(&r);
    /* In a list, weak, or "*". */
    snprintf(inm, sizeof(inm), "If-None-Match: \"0000000000000000\", %s", etag);
    assert_int_equal(req(h, "GET", "/assets/app.js", NULL, hdrs, &r), 304);
    reply_free(&r);
    snprintf(inm, sizeof(inm), "If-None-Match: W/%s", etag);
    assert_int_equal(req(h, "GET", "/assets/app.js", NULL, hdrs, &r), 304);
    reply_free(&r);
    snprintf(inm, sizeof(inm), "If-None-Match: *");
    assert_int_equal(req(h, "GET", "/assets/app.js", NULL, hdrs, &r), 304);
    reply_free(&r);
    /* Another file's ETag, or a stale one: the file. */
    snprintf(inm, sizeof(inm), "If-None-Match: \"0000000000000000\"");
    assert_int_equal(req(h, "GET", "/assets/app.js", NULL, hdrs, &r), 200);
    assert_true(r.len > 0);
    reply_free(&r);
    snprintf(inm, sizeof(inm), "If-None-Match: %s", etag);
    assert_int_equal(req(h, "GET", "/assets/app.css", NULL, hdrs, &r), 200);
    assert_true(r.len > 0);
    reply_free(&r);
}

/* POST /api/session with TOKEN: the cookie value into cookie, the CSRF token into csrf. */
static void sign_in(struct harness *h, char *cookie, size_t cookie_size, char *csrf,
                    size_t csrf_size)
{
    struct reply r = {0};
    char v[512];
    const char *end;

    assert_int_equal(req(h, "POST", "/api/session", "{\"token\":\"" TOKEN "\"}", NULL, &r), 200);
    assert_true(json_is_true(json_object_get(r.json, "signed_in")));
    assert_non_null(header(&r, "Set-Cookie", v, sizeof(v)));
    assert_memory_equal(v, SESSION_COOKIE "=", strlen(SESSION_COOKIE "="));
    /* The prefix: a browser takes it only Secure, Path=/ and without Domain, so a sibling
     * subdomain cannot plant one (cookie tossing). */
    assert_memory_equal(v, "__Host-", 7);
    end = strchr(v, ';');
    assert_non_null(end);
    assert_string_equal(end, COOKIE_TAIL);
    snprintf(cookie, cookie_size, "%.*s", (int)(end - v), v);
    assert_non_null(json_string_value(json_object_get(r.json, "csrf")));
    snprintf(csrf, csrf_size, "%s", json_string_value(json_object_get(r.json, "csrf")));
    assert_int_equal(strlen(csrf), 64);
    reply_free(&r);
}

static long with_cookie(struct harness *h, const char *method, const char *path, const char *body,
                        const char *cookie, const char *csrf, struct reply *r)
{
    char ch[320], xh[128];
    const char *hdrs[3] = {ch, NULL, NULL};

    snprintf(ch, sizeof(ch), "Cookie: %s", cookie);
    if (csrf != NULL) {
        snprintf(xh, sizeof(xh), "X-CSRF-Token: %s", csrf);
        hdrs[1] = xh;
    }
    return req(h, method, path, body, hdrs, r);
}

/* GET /api/machines/{id} with the bearer token: its status (200 or 404). */
static long machine_status(struct harness *h, const char *id)
{
    struct reply r = {0};
    char path[128];
    const char *hdrs[] = {"Authorization: Bearer " TOKEN, NULL};
    long st;

    snprintf(path, sizeof(path), "/api/machines/%s", id);
    st = req(h, "GET", path, NULL, hdrs, &r);
    reply_free(&r);
    return st;
}

static void sign_in_cookie_and_csrf(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    char cookie[256], csrf[80], v[512];
    int64_t before = wall_s();
    int64_t expires = 0;

    /* Not signed in: no access, and GET /api/session says so. */
    assert_int_equal(req(h, "GET", "/api/session", NULL, NULL, &r), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "mode")), "token");
    assert_true(json_is_false(json_object_get(r.json, "signed_in")));
    assert_true(json_is_null(json_object_get(r.json, "csrf")));
    reply_free(&r);
    assert_int_equal(req(h, "GET", "/api/machines", NULL, NULL, &r), 401);
    reply_free(&r);
    /* A wrong token: 401, no cookie. */
    assert_int_equal(req(h, "POST", "/api/session", "{\"token\":\"" TOKEN "x\"}", NULL, &r), 401);
    assert_string_equal(error_code(&r), "UNAUTHORIZED");
    assert_null(header(&r, "Set-Cookie", v, sizeof(v)));
    reply_free(&r);
    assert_int_equal(req(h, "POST", "/api/session", "{}", NULL, &r), 422);
    reply_free(&r);

    sign_in(h, cookie, sizeof(cookie), csrf, sizeof(csrf));
    assert_int_equal(req(h, "POST", "/api/session", "{\"token\":\"" TOKEN "\"}", NULL, &r), 200);
    assert_int_equal(iso_epoch(json_string_value(json_object_get(r.json, "expires_at")), &expires),
                     0);
    assert_true(expires >= before + SESSION_TTL_S && expires <= wall_s() + SESSION_TTL_S);
    reply_free(&r);

    /* The cookie reads operator routes, and GET /api/session gives the same CSRF token. */
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, cookie, NULL, &r), 200);
    assert_non_null(json_object_get(r.json, "machines"));
    reply_free(&r);
    assert_int_equal(with_cookie(h, "GET", "/api/session", NULL, cookie, NULL, &r), 200);
    assert_true(json_is_true(json_object_get(r.json, "signed_in")));
    assert_string_equal(json_string_value(json_object_get(r.json, "csrf")), csrf);
    reply_free(&r);

    /* A write with the cookie alone: 403 CSRF, nothing made; a wrong token: the same. */
    assert_int_equal(with_cookie(h, "POST", "/api/machines", "{\"id\":\"WEB1\"}", cookie, NULL, &r),
                     403);
    assert_string_equal(error_code(&r), "CSRF");
    reply_free(&r);
    assert_int_equal(with_cookie(h, "POST", "/api/machines", "{\"id\":\"WEB1\"}", cookie,
                                 "00000000000000000000000000000000000000000000000000000000000000"
                                 "00",
                                 &r),
                     403);
    assert_string_equal(error_code(&r), "CSRF");
    reply_free(&r);
    assert_int_equal(machine_status(h, "WEB1"), 404);
    /* With it: done, as with the bearer token. */
    assert_int_equal(with_cookie(h, "POST", "/api/machines", "{\"id\":\"WEB1\"}", cookie, csrf, &r),
                     201);
    reply_free(&r);
    assert_int_equal(machine_status(h, "WEB1"), 200);
    assert_int_equal(with_cookie(h, "PUT", "/api/machines/WEB1/slots/1",
                                 "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10}",
                                 cookie, csrf, &r),
                     201);
    reply_free(&r);
    assert_int_equal(with_cookie(h, "DELETE", "/api/session", NULL, cookie, NULL, &r), 204);
    assert_non_null(header(&r, "Set-Cookie", v, sizeof(v)));
    assert_string_equal(v, SESSION_COOKIE "=; Path=/; HttpOnly; Secure; SameSite=Strict; "
                                          "Max-Age=0");
    reply_free(&r);
}

static void event_stream_with_cookie(void **state)
{
    struct harness *h = *state;
    struct reply r = {.stream = true};
    char cookie[256], csrf[80], v[128];

    sign_in(h, cookie, sizeof(cookie), csrf, sizeof(csrf));
    /* What an EventSource sends: the cookie, no CSRF token (a read). */
    assert_int_equal(with_cookie(h, "GET", "/api/events", NULL, cookie, NULL, &r), 200);
    assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "text/event-stream");
    reply_free(&r);
    r.stream = true;
    assert_int_equal(req(h, "GET", "/api/events", NULL, NULL, &r), 401);
    reply_free(&r);
}

static void bad_cookies_refused(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    struct session s;
    char cookie[256], csrf[80], bad[256], expired[SESSION_COOKIE_SIZE];
    char foreign[SESSION_COOKIE_SIZE];
    int64_t exp = 0;
    size_t n;
    const char *bearer_and_cookie[3];
    char ch[300];

    sign_in(h, cookie, sizeof(cookie), csrf, sizeof(csrf));
    /* The last digit of the MAC changed. */
    snprintf(bad, sizeof(bad), "%s", cookie);
    n = strlen(bad);
    bad[n - 1] = bad[n - 1] == '0' ? '1' : '0';
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, bad, NULL, &r), 401);
    assert_string_equal(error_code(&r), "UNAUTHORIZED");
    reply_free(&r);
    /* The expiry moved later. */
    snprintf(bad, sizeof(bad), SESSION_COOKIE "=v1.9%s", strchr(cookie, '.') + 1);
    bad[strlen(SESSION_COOKIE "=v1.")] = '9';
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, bad, NULL, &r), 401);
    reply_free(&r);
    /* Signed with the right key, but expired. */
    session_init(&s, TOKEN);
    assert_int_equal(session_issue(&s, wall_s() - SESSION_TTL_S - 5, expired, &exp), 0);
    snprintf(bad, sizeof(bad), SESSION_COOKIE "=%s", expired);
    session_csrf(&s, expired, csrf);
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, bad, NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(with_cookie(h, "POST", "/api/machines", "{\"id\":\"WEB2\"}", bad, csrf, &r),
                     401);
    reply_free(&r);
    /* ... and the control: the same key, not expired, works (the test can tell). */
    assert_int_equal(session_issue(&s, wall_s(), expired, &exp), 0);
    snprintf(bad, sizeof(bad), SESSION_COOKIE "=%s", expired);
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, bad, NULL, &r), 200);
    reply_free(&r);
    session_clear(&s);
    /* Another token's cookie. */
    session_init(&s, "another-token");
    assert_int_equal(session_issue(&s, wall_s(), foreign, &exp), 0);
    session_clear(&s);
    snprintf(bad, sizeof(bad), SESSION_COOKIE "=%s", foreign);
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, bad, NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(
        with_cookie(h, "GET", "/api/machines", NULL, SESSION_COOKIE "=garbage", NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(machine_status(h, "WEB2"), 404);
    /* A wrong bearer token is not excused by a good cookie. */
    snprintf(ch, sizeof(ch), "Cookie: %s", cookie);
    bearer_and_cookie[0] = ch;
    bearer_and_cookie[1] = "Authorization: Bearer nope";
    bearer_and_cookie[2] = NULL;
    assert_int_equal(req(h, "GET", "/api/machines", NULL, bearer_and_cookie, &r), 401);
    reply_free(&r);
}

static void cross_origin_writes_refused(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    char cookie[256], csrf[80], ch[300], xh[128], same[96];
    const char *bearer_evil[] = {"Authorization: Bearer " TOKEN, "Origin: http://evil.example",
                                 NULL};
    const char *bearer_null[] = {"Authorization: Bearer " TOKEN, "Origin: null", NULL};
    const char *bearer_port[4] = {"Authorization: Bearer " TOKEN, NULL, NULL};
    const char *cookie_evil[] = {ch, xh, "Origin: https://evil.example", NULL};
    const char *evil[] = {"Origin: http://evil.example", NULL};
    const char *bearer_same[] = {"Authorization: Bearer " TOKEN, same, NULL};
    char other_port[96];

    sign_in(h, cookie, sizeof(cookie), csrf, sizeof(csrf));
    snprintf(ch, sizeof(ch), "Cookie: %s", cookie);
    snprintf(xh, sizeof(xh), "X-CSRF-Token: %s", csrf);
    /* Another port of the same host is another origin. */
    snprintf(other_port, sizeof(other_port), "Origin: http://127.0.0.1:%u",
             (unsigned)h->http_port + 1);
    bearer_port[1] = other_port;

    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"WEB3\"}", bearer_evil, &r), 403);
    assert_string_equal(error_code(&r), "CSRF");
    reply_free(&r);
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"WEB3\"}", bearer_null, &r), 403);
    reply_free(&r);
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"WEB3\"}", bearer_port, &r), 403);
    reply_free(&r);
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"WEB3\"}", cookie_evil, &r), 403);
    assert_string_equal(error_code(&r), "CSRF");
    reply_free(&r);
    assert_int_equal(req(h, "DELETE", "/api/session", NULL, evil, &r), 403);
    reply_free(&r);
    /* Public writes too: a sign-in and a customer's order. */
    assert_int_equal(req(h, "POST", "/api/session", "{\"token\":\"" TOKEN "\"}", evil, &r), 403);
    assert_string_equal(error_code(&r), "CSRF");
    reply_free(&r);
    assert_int_equal(req(h, "POST", "/api/orders",
                         "{\"machine_id\":\"VM01\",\"slot\":1,\"payment_method\":\"qris\"}", evil,
                         &r),
                     403);
    assert_string_equal(error_code(&r), "CSRF");
    reply_free(&r);
    assert_int_equal(machine_status(h, "WEB3"), 404);
    /* A read from another origin is the browser's to block, not a change: served. */
    assert_int_equal(req(h, "GET", "/api/session", NULL, evil, &r), 200);
    reply_free(&r);
    /* The same origin (scheme aside, as behind a TLS proxy) writes. */
    snprintf(same, sizeof(same), "Origin: http://127.0.0.1:%u", (unsigned)h->http_port);
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"WEB3\"}", bearer_same, &r), 201);
    reply_free(&r);
}

/* The keys come from API_TOKEN: a restart with the same token keeps the cookie, another token
 * signs it out. The sign-in limit starts afresh with the process. */
static void token_change_signs_out(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    char cookie[256], csrf[80];

    sign_in(h, cookie, sizeof(cookie), csrf, sizeof(csrf));
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, cookie, NULL, &r), 200);
    reply_free(&r);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_env_set(h, "API_TOKEN=" TOKEN "-new"), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, cookie, NULL, &r), 401);
    reply_free(&r);
    assert_int_equal(with_cookie(h, "GET", "/api/session", NULL, cookie, NULL, &r), 200);
    assert_true(json_is_false(json_object_get(r.json, "signed_in")));
    reply_free(&r);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_env_set(h, "API_TOKEN=" TOKEN), 0);
    assert_int_equal(harness_vendd_start(h), 0);
}

/* A fresh vendd: API_SIGNIN_PER_MIN (10) sign-ins a minute from one address, then 429, even
 * with the right token. */
static void sign_in_rate_limited(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    int refused_at = 0;

    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    for (int i = 1; i <= 11 && refused_at == 0; i++) {
        long st = req(h, "POST", "/api/session", "{\"token\":\"wrong\"}", NULL, &r);

        if (st == 429) {
            assert_string_equal(error_code(&r), "TOO_MANY_REQUESTS");
            refused_at = i;
        } else {
            assert_int_equal(st, 401);
        }
        reply_free(&r);
    }
    assert_int_equal(refused_at, 11);
    assert_int_equal(req(h, "POST", "/api/session", "{\"token\":\"" TOKEN "\"}", NULL, &r), 429);
    reply_free(&r);
    /* The bearer token does not go through the sign-in: the API still answers. */
    assert_int_equal(machine_status(h, "VM01"), 200);
}

/* A fresh vendd: HTTP_BEARER_FAILS_PER_MIN (10) wrong bearer tokens a minute from one address,
 * then its bearer tokens are refused unchecked (429), the right one too: guessing the token
 * through the API is no faster than through the sign-in. A signed-in browser is not locked
 * out by a guesser behind the same address. */
static void bearer_guesses_rate_limited(void **state)
{
    struct harness *h = *state;
    const char *wrong[] = {"Authorization: Bearer it-web-wrong-token", NULL};
    char cookie[256], csrf[80];
    struct reply r = {0};
    int refused_at = 0;

    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    sign_in(h, cookie, sizeof(cookie), csrf, sizeof(csrf));
    for (int i = 1; i <= 11 && refused_at == 0; i++) {
        long st = req(h, "GET", "/api/machines", NULL, wrong, &r);

        if (st == 429) {
            assert_string_equal(error_code(&r), "TOO_MANY_REQUESTS");
            refused_at = i;
        } else {
            assert_int_equal(st, 401);
        }
        reply_free(&r);
    }
    assert_int_equal(refused_at, HTTP_BEARER_FAILS_PER_MIN + 1);
    assert_int_equal(machine_status(h, "VM01"), 429);
    assert_int_equal(with_cookie(h, "GET", "/api/machines", NULL, cookie, NULL, &r), 200);
    reply_free(&r);
}

/* ---- development mode ------------------------------------------------------------------- */

static int setup_dev(void **state)
{
    struct harness *h = calloc(1, sizeof(*h));

    if (h == NULL || harness_start(h, NULL) < 0) {
        free(h);
        return -1;
    }
    *state = h;
    return 0;
}

static void dev_mode_as_the_api(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    char v[256], same[96];
    const char *evil[] = {"Origin: http://evil.example", NULL};
    const char *same_origin[] = {same, NULL};

    assert_int_equal(req(h, "GET", "/api/session", NULL, NULL, &r), 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "mode")), "development");
    assert_true(json_is_true(json_object_get(r.json, "signed_in")));
    assert_true(json_is_null(json_object_get(r.json, "csrf")));
    reply_free(&r);
    assert_int_equal(req(h, "POST", "/api/session", "{}", NULL, &r), 200);
    assert_true(json_is_true(json_object_get(r.json, "signed_in")));
    assert_true(json_is_null(json_object_get(r.json, "csrf")));
    assert_true(json_is_null(json_object_get(r.json, "expires_at")));
    assert_null(header(&r, "Set-Cookie", v, sizeof(v)));
    reply_free(&r);
    /* A loopback write needs no token, no cookie, no CSRF token ... */
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"DEV1\"}", NULL, &r), 201);
    reply_free(&r);
    /* ... unless a browser on another site sends it: a page anywhere could reach localhost. */
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"DEV2\"}", evil, &r), 403);
    assert_string_equal(error_code(&r), "CSRF");
    reply_free(&r);
    assert_int_equal(req(h, "PUT", "/api/machines/DEV1/slots/1",
                         "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10}", evil, &r),
                     403);
    reply_free(&r);
    assert_int_equal(req(h, "GET", "/api/machines/DEV2", NULL, NULL, &r), 404);
    reply_free(&r);
    assert_int_equal(req(h, "GET", "/api/machines/DEV1", NULL, NULL, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "slots")), 0);
    reply_free(&r);
    snprintf(same, sizeof(same), "Origin: http://127.0.0.1:%u", (unsigned)h->http_port);
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"DEV2\"}", same_origin, &r), 201);
    reply_free(&r);
    /* The pages are the same in both modes. */
    assert_int_equal(req(h, "GET", "/", NULL, NULL, &r), 200);
    expect_page_headers(&r, CSP);
    reply_free(&r);
}

/* DNS rebinding: a page of evil.example whose name comes to resolve to 127.0.0.1 talks to a
 * loopback vendd as its own origin (Host and Origin both evil.example). Development mode must
 * not take it for the operator: only a request addressed to a loopback name is. */
static void dev_mode_refuses_foreign_host(void **state)
{
    struct harness *h = *state;
    struct reply r = {0};
    char host[96], origin[96], local[96], v6[96], upper[96];
    const char *rebound[] = {host, NULL};
    const char *rebound_write[] = {host, origin, NULL};
    static const char *const foreign[] = {
        "Host: evil.example",
        "Host: localhost.evil.example",
        "Host: 127.0.0.1.nip.io",
        "Host: 10.0.0.1",
        "Host: [::2]",
        "Host: localhost:80@evil",
        "Host: [::1].evil.example",
    };
    const char *locals[] = {local, v6, upper};

    snprintf(host, sizeof(host), "Host: evil.example:%u", (unsigned)h->http_port);
    snprintf(origin, sizeof(origin), "Origin: http://evil.example:%u", (unsigned)h->http_port);
    /* Reads: the fleet, the metrics, the event stream. */
    assert_int_equal(req(h, "GET", "/api/machines", NULL, rebound, &r), 403);
    assert_string_equal(error_code(&r), "FORBIDDEN");
    reply_free(&r);
    assert_int_equal(req(h, "GET", "/metrics", NULL, rebound, &r), 403);
    reply_free(&r);
    r.stream = true;
    assert_int_equal(req(h, "GET", "/api/events", NULL, rebound, &r), 403);
    reply_free(&r);
    /* A write whose Origin matches its Host passes the CSRF check: the Host check stops it. */
    assert_int_equal(req(h, "POST", "/api/machines", "{\"id\":\"REBIND1\"}", rebound_write, &r),
                     403);
    reply_free(&r);
    assert_int_equal(req(h, "GET", "/api/machines/REBIND1", NULL, NULL, &r), 404);
    reply_free(&r);
    /* The page is not told it is signed in. */
    assert_int_equal(req(h, "GET", "/api/session", NULL, rebound, &r), 200);
    assert_true(json_is_false(json_object_get(r.json, "signed_in")));
    reply_free(&r);
    for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        const char *hdrs[] = {foreign[i], NULL};

        if (req(h, "GET", "/api/machines", NULL, hdrs, &r) != 403)
            fail_msg("'%s': %ld, want 403", foreign[i], r.status);
        reply_free(&r);
    }
    /* Loopback names, with or without the port, any case: the operator, as before. */
    snprintf(local, sizeof(local), "Host: localhost:%u", (unsigned)h->http_port);
    snprintf(v6, sizeof(v6), "Host: [::1]:%u", (unsigned)h->http_port);
    snprintf(upper, sizeof(upper), "Host: LocalHost");
    for (size_t i = 0; i < sizeof(locals) / sizeof(locals[0]); i++) {
        const char *hdrs[] = {locals[i], NULL};

        if (req(h, "GET", "/api/machines", NULL, hdrs, &r) != 200)
            fail_msg("'%s': %ld, want 200", locals[i], r.status);
        reply_free(&r);
    }
    /* Public routes do not depend on the name: a page and the health check. */
    assert_int_equal(req(h, "GET", "/", NULL, rebound, &r), 200);
    reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest token_tests[] = {
        cmocka_unit_test(pages_served_with_headers),
        cmocka_unit_test(etag_answers_304),
        cmocka_unit_test(sign_in_cookie_and_csrf),
        cmocka_unit_test(event_stream_with_cookie),
        cmocka_unit_test(bad_cookies_refused),
        cmocka_unit_test(cross_origin_writes_refused),
        cmocka_unit_test(token_change_signs_out),
        cmocka_unit_test(sign_in_rate_limited),
        cmocka_unit_test(bearer_guesses_rate_limited),
    };
    const struct CMUnitTest dev_tests[] = {
        cmocka_unit_test(dev_mode_as_the_api),
        cmocka_unit_test(dev_mode_refuses_foreign_host),
    };
    int failed;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    failed = cmocka_run_group_tests_name("token mode", token_tests, setup_token, teardown);
    failed += cmocka_run_group_tests_name("development mode", dev_tests, setup_dev, teardown);
    curl_global_cleanup();
    return failed;
}
