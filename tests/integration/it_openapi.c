/*
 * it_openapi.c - GET /api/openapi.json over real HTTP against the real vendd: 200,
 * Content-Type application/json, and exactly the bytes of daemon/openapi/openapi.json (the
 * file ctest names in $OPENAPI_JSON), so what is compiled in is what is in the tree. The
 * route is public: it answers without a token while API_TOKEN is set, when an operator route
 * (/metrics) answers 401. Another method is 405. vendd then stops with status 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define TOKEN    "it-openapi-token"
#define BODY_MAX (1024 * 1024) /* the description is ~80 KiB */

struct buf {
    char *data;
    size_t len;
};

static int setup(void **state)
{
    static const char *const env[] = {"API_TOKEN=" TOKEN, NULL};
    struct harness *h = calloc(1, sizeof(*h));

    if (h == NULL || harness_start(h, env) < 0) {
        free(h);
        return -1;
    }
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    if (*state == NULL)
        return 0; /* the group's setup failed and said why; cmocka still calls this */
    harness_stop(*state);
    free(*state);
    return 0;
}

static size_t take(char *ptr, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t add = size * n;

    if (b->len + add > BODY_MAX)
        return 0; /* fails the transfer */
    memcpy(b->data + b->len, ptr, add);
    b->len += add;
    return add;
}

/* The whole file at path into b; fails the test if it cannot. */
static void read_file(const char *path, struct buf *b)
{
    FILE *f = fopen(path, "rb");

    if (f == NULL)
        fail_msg("cannot open '%s'", path);
    b->data = malloc(BODY_MAX);
    assert_non_null(b->data);
    b->len = fread(b->data, 1, BODY_MAX, f);
    assert_false(ferror(f));
    assert_true(feof(f));
    fclose(f);
}

static void served_as_built(void **state)
{
    struct harness *h = *state;
    const char *path = getenv("OPENAPI_JSON");
    struct buf want = {0}, got = {0};
    char url[128];
    char *ctype = NULL;
    long status = 0;
    json_t *doc;
    CURL *c;

    if (path == NULL)
        fail_msg("OPENAPI_JSON is not set (ctest sets it to daemon/openapi/openapi.json)");
    read_file(path, &want);
    got.data = malloc(BODY_MAX);
    assert_non_null(got.data);

    c = curl_easy_init();
    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/openapi.json", (unsigned)h->http_port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)HARNESS_HTTP_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
    assert_int_equal(status, 200);
    assert_non_null(ctype);
    /* "application/json", a parameter (charset) allowed. */
    if (strncmp(ctype, "application/json", 16) != 0 || (ctype[16] != '\0' && ctype[16] != ';'))
        fail_msg("Content-Type '%s', expected application/json", ctype);
    if (got.len != want.len || memcmp(got.data, want.data, want.len) != 0)
        fail_msg("GET /api/openapi.json answered %zu bytes that are not the %zu of '%s'", got.len,
                 want.len, path);
    curl_easy_cleanup(c);

    doc = json_loadb(got.data, got.len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(doc);
    assert_non_null(json_object_get(json_object_get(doc, "paths"), "/api/openapi.json"));
    json_decref(doc);
    free(got.data);
    free(want.data);
}

/* Public, while the operator's routes want the token; GET only. */
static void public_and_get_only(void **state)
{
    struct harness *h = *state;
    struct harness_reply r;

    h->bearer[0] = '\0';
    assert_int_equal(harness_call(h, "GET", "/api/openapi.json", NULL, NULL), 200);
    assert_int_equal(harness_call(h, "GET", "/metrics", NULL, NULL), 401);
    snprintf(h->bearer, sizeof(h->bearer), "%s", TOKEN);
    assert_int_equal(harness_call(h, "GET", "/metrics", NULL, NULL), 200);
    assert_int_equal(harness_call(h, "GET", "/api/openapi.json", NULL, NULL), 200);
    assert_int_equal(harness_call(h, "POST", "/api/openapi.json", "{}", &r), 405);
    assert_string_equal(harness_reply_str(&r, "error.code"), "METHOD_NOT_ALLOWED");
    harness_reply_free(&r);
    assert_int_equal(harness_vendd_term(h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(served_as_built),
        cmocka_unit_test(public_and_get_only),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
