/*
 * test_http.c - the HTTP server over real loopback sockets: the server's
 * loop runs in a second thread, the test thread is a libcurl client. The
 * loop is stopped through a pipe, so only the loop thread touches it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "http.h"
#include "log.h"
#include "loop.h"
#include "vend/err.h"

#define TOKEN "s3cret-Token-0123456789"

/* ---- handlers ---------------------------------------------------------- */

static void h_ping(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    http_reply_json(res, 200, json_pack("{s:b}", "ok", 1));
}

static void h_order(void *ctx, const struct http_request *req, struct http_response *res)
{
    const char *q = http_query(req, "q");
    (void)ctx;
    http_reply_json(res, 200,
                    json_pack("{s:s,s:s?,s:s?,s:i}", "id", req->params[0], "byname",
                              http_param(req, "id"), "q", q, "n", (int)req->nparams));
}

static void h_slot(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    http_reply_json(res, 200,
                    json_pack("{s:s,s:s,s:s?}", "mid", http_param(req, "mid"), "slot",
                              http_param(req, "slot"), "nope", http_param(req, "nope")));
}

static void h_echo(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    if (req->json == NULL) {
        http_reply_error(res, 500, "TEST", "echo got no JSON");
        return;
    }
    http_reply_json(res, req->method == HTTP_PUT ? 201 : 200, json_incref(req->json));
}

static void h_admin(void *ctx, const struct http_request *req, struct http_response *res)
{
    int *calls = ctx;
    (*calls)++;
    http_reply_json(res, 200, json_pack("{s:b,s:b}", "admin", 1, "loopback", req->loopback));
}

static void h_silent(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    (void)res;
}

static void h_optional(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    http_reply_json(res, 200, json_pack("{s:b}", "json", req->json != NULL));
}

static void h_badjson(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    http_reply_json(res, 200, json_pack("{s:s}", "bad", "\xff")); /* json_pack fails */
}

static void h_remote(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    http_reply_json(res, 200, json_pack("{s:s}", "remote", req->remote_addr));
}

static const struct http_route s_routes[] = {
    {HTTP_GET, "/api/ping", HTTP_PUBLIC, h_ping},
    {HTTP_GET, "/api/remote", HTTP_PUBLIC, h_remote},
    {HTTP_GET, "/api/orders/{id}", HTTP_PUBLIC, h_order},
    {HTTP_GET, "/api/machines/{mid}/slots/{slot}", HTTP_PUBLIC, h_slot},
    {HTTP_POST, "/api/echo", HTTP_PUBLIC, h_echo},
    {HTTP_PUT, "/api/echo", HTTP_PUBLIC, h_echo},
    {HTTP_GET, "/api/admin", HTTP_OPERATOR, h_admin},
    {HTTP_GET, "/api/silent", HTTP_PUBLIC, h_silent},
    {HTTP_GET, "/api/badjson", HTTP_PUBLIC, h_badjson},
    {HTTP_POST, "/api/optional", HTTP_BODY_OPTIONAL, h_optional},
};
#define NROUTES (sizeof(s_routes) / sizeof(s_routes[0]))

/* ---- the server fixture ------------------------------------------------- */

struct fixture {
    struct loop *loop;
    struct http_server *http;
    pthread_t thread;
    int pipefd[2];
    int admin_calls;
    char base[64];
    CURL *curl;
};

static void on_stop(void *arg, int fd, unsigned events)
{
    (void)fd;
    (void)events;
    loop_stop(arg);
}

static void *loop_thread(void *arg)
{
    struct fixture *f = arg;
    /* cmocka's asserts must not run off the test thread. */
    if (loop_run(f->loop) != VEND_OK)
        abort();
    return NULL;
}

static struct fixture *fixture_start(const char *host, const char *token, size_t body_max)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct http_config cfg = {.host = host, .port = 0, .api_token = token, .body_max = body_max};
    bool v6;

    assert_non_null(f);
    f->loop = loop_new();
    assert_non_null(f->loop);
    assert_int_equal(http_server_start(&f->http, f->loop, &cfg, s_routes, NROUTES, &f->admin_calls),
                     VEND_OK);
    assert_non_null(f->http);
    assert_true(http_server_port(f->http) > 0);
    v6 = strchr(host, ':') != NULL;
    snprintf(f->base, sizeof(f->base), "http://%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
             (unsigned)http_server_port(f->http));
    assert_int_equal(pipe(f->pipefd), 0);
    assert_int_equal(loop_io_add(f->loop, f->pipefd[0], LOOP_READ, on_stop, f->loop), VEND_OK);
    assert_int_equal(pthread_create(&f->thread, NULL, loop_thread, f), 0);
    f->curl = curl_easy_init();
    assert_non_null(f->curl);
    return f;
}

static void fixture_stop(struct fixture *f)
{
    assert_int_equal(write(f->pipefd[1], "x", 1), 1);
    assert_int_equal(pthread_join(f->thread, NULL), 0);
    curl_easy_cleanup(f->curl);
    http_server_free(f->http);
    loop_io_del(f->loop, f->pipefd[0]);
    close(f->pipefd[0]);
    close(f->pipefd[1]);
    loop_free(f->loop);
    free(f);
}

/* ---- the client ----------------------------------------------------------- */

struct reply {
    long status;
    char body[128 * 1024];
    size_t body_len;
    char headers[4096];
    size_t headers_len;
    long num_connects;
    json_t *json;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    if (len > sizeof(r->body) - 1 - r->body_len)
        return 0;
    memcpy(r->body + r->body_len, p, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    if (len > sizeof(r->headers) - 1 - r->headers_len)
        return 0;
    memcpy(r->headers + r->headers_len, p, len);
    r->headers_len += len;
    r->headers[r->headers_len] = '\0';
    return len;
}

struct upload {
    const char *data;
    size_t len, pos;
};

static size_t on_read(char *p, size_t size, size_t n, void *arg)
{
    struct upload *u = arg;
    size_t len = size * n;
    if (len > u->len - u->pos)
        len = u->len - u->pos;
    memcpy(p, u->data + u->pos, len);
    u->pos += len;
    return len;
}

/*
 * One request on f->curl (so connections are reused). body NULL: no body.
 * hdr: an extra header line or NULL. chunked: send the body with
 * Transfer-Encoding: chunked (no Content-Length).
 */
static struct reply *request_ex(struct fixture *f, const char *method, const char *path,
                                const char *ctype, const char *body, size_t body_len,
                                const char *hdr, bool chunked)
{
    struct reply *r = calloc(1, sizeof(*r));
    struct curl_slist *hl = NULL;
    struct upload up = {body, body_len, 0};
    char url[512], line[256];
    CURLcode cc;
    CURL *c = f->curl;

    assert_non_null(r);
    curl_easy_reset(c);
    snprintf(url, sizeof(url), "%s%s", f->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        if (chunked) {
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, &up);
            hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
        snprintf(line, sizeof(line), "Content-Type:%s%s", ctype != NULL ? " " : "",
                 ctype != NULL ? ctype : "");
        hl = curl_slist_append(hl, line);
    }
    if (hdr != NULL)
        hl = curl_slist_append(hl, hdr);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->num_connects);
    curl_slist_free_all(hl);
    r->json = json_loadb(r->body, r->body_len, 0, NULL);
    return r;
}

static struct reply *request(struct fixture *f, const char *method, const char *path,
                             const char *body, const char *hdr)
{
    return request_ex(f, method, path, body != NULL ? "application/json" : NULL, body,
                      body != NULL ? strlen(body) : 0, hdr, false);
}

static void reply_free(struct reply *r)
{
    json_decref(r->json);
    free(r);
}

static const char *json_str(json_t *j, const char *path1, const char *path2)
{
    json_t *v = json_object_get(j, path1);
    if (path2 != NULL)
        v = json_object_get(v, path2);
    return json_string_value(v);
}

/* Asserts an error reply: status, content type and {"error":{code,message}}. */
static void assert_error(struct reply *r, long status, const char *code)
{
    assert_int_equal(r->status, status);
    assert_non_null(strcasestr(r->headers, "Content-Type: application/json"));
    assert_non_null(r->json);
    assert_string_equal(json_str(r->json, "error", "code"), code);
    assert_non_null(json_str(r->json, "error", "message"));
}

/* ---- tests ------------------------------------------------------------- */

/* The client's address as handlers see it (logs, rate limits): IPv4 is written without
 * inet_ntop(), so every digit count of a byte is checked, from loopback sources. */
static void test_remote_addr(void **state)
{
    static const char *const sources[] = {"127.0.0.1", "127.10.200.5", "127.255.0.99",
                                          "127.100.9.10"};
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);

    (void)state;
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
        struct reply *r = calloc(1, sizeof(*r));
        CURL *c = curl_easy_init();
        char url[128];

        assert_non_null(r);
        assert_non_null(c);
        snprintf(url, sizeof(url), "%s/api/remote", f->base);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_INTERFACE, sources[i]);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (curl_easy_perform(c) != CURLE_OK)
            fail_msg("GET /api/remote from %s failed", sources[i]);
        curl_easy_cleanup(c);
        r->json = json_loadb(r->body, r->body_len, 0, NULL);
        assert_string_equal(json_str(r->json, "remote", NULL), sources[i]);
        reply_free(r);
    }
    fixture_stop(f);
}

static void test_json_round_trip(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    struct reply *r;
    json_t *want =
        json_pack("{s:i,s:s,s:[i,i],s:{s:n}}", "a", 1, "b", "x\u00e9", "c", 1, 2, "d", "e");
    (void)state;

    r = request(f, "POST", "/api/echo",
                "{\"a\":1,\"b\":\"x\\u00e9\",\"c\":[1,2],\"d\":{\"e\":null}}", NULL);
    assert_int_equal(r->status, 200);
    assert_non_null(strcasestr(r->headers, "Content-Type: application/json"));
    assert_non_null(r->json);
    assert_true(json_equal(r->json, want));
    reply_free(r);

    r = request(f, "PUT", "/api/echo", "{\"k\":true}", NULL);
    assert_int_equal(r->status, 201);
    assert_true(json_is_true(json_object_get(r->json, "k")));
    reply_free(r);

    r = request(f, "GET", "/api/ping", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(r->body, "{\"ok\":true}");
    reply_free(r);
    json_decref(want);
    fixture_stop(f);
}

static void test_params(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    struct reply *r;
    char path[256], id[70];
    (void)state;

    r = request(f, "GET", "/api/orders/ORD-1.x_~9?q=hello%20world", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(json_str(r->json, "id", NULL), "ORD-1.x_~9");
    assert_string_equal(json_str(r->json, "byname", NULL), "ORD-1.x_~9");
    assert_string_equal(json_str(r->json, "q", NULL), "hello world");
    assert_int_equal(json_integer_value(json_object_get(r->json, "n")), 1);
    reply_free(r);

    r = request(f, "GET", "/api/machines/VM01/slots/3", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(json_str(r->json, "mid", NULL), "VM01");
    assert_string_equal(json_str(r->json, "slot", NULL), "3");
    assert_true(json_is_null(json_object_get(r->json, "nope"))); /* no such capture */
    reply_free(r);

    /* Percent-decoded before matching: "abc" is a valid id, "a!b" is not. */
    r = request(f, "GET", "/api/orders/%61bc", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(json_str(r->json, "id", NULL), "abc");
    reply_free(r);
    r = request(f, "GET", "/api/orders/a%21b", NULL, NULL);
    assert_error(r, 400, "BAD_PARAM");
    assert_non_null(strstr(json_str(r->json, "error", "message"), "'id'"));
    reply_free(r);

    /* 64 bytes is the limit. */
    memset(id, 'x', 64);
    id[64] = '\0';
    snprintf(path, sizeof(path), "/api/orders/%s", id);
    r = request(f, "GET", path, NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(json_str(r->json, "id", NULL), id);
    reply_free(r);
    snprintf(path, sizeof(path), "/api/orders/%sy", id);
    r = request(f, "GET", path, NULL, NULL);
    assert_error(r, 400, "BAD_PARAM");
    reply_free(r);
    fixture_stop(f);
}

/*
 * A percent-encoded NUL must not cut the path short ("/api/orders/N1%00x" is not order N1,
 * "/api/ping%00" is not /api/ping), and no other control character gets into a path either:
 * 400 BAD_PATH, before any route, auth or handler sees it.
 */
static void test_control_characters_in_path(void **state)
{
    static const char *const bad[] = {
        "/api/orders/N1%00x",
        "/api/orders/N1%00",
        "/api/orders/%00",
        "/api/ping%00",
        "/api/ping%00/x",
        "/api/orders/a%0Ab",
        "/api/pi%09ng",
        "/api/orders/a%7Fb",
        "/api/orders/a%1fb",
        "/api/admin%00",
        "/%00",
    };
    struct fixture *f = fixture_start("127.0.0.1", TOKEN, 0);
    struct reply *r;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = request(f, "GET", bad[i], NULL, NULL);
        if (r->status != 400)
            fail_msg("GET %s: HTTP %ld, expected 400: %s", bad[i], r->status, r->body);
        assert_error(r, 400, "BAD_PATH");
        assert_non_null(strstr(json_str(r->json, "error", "message"), "control character"));
        reply_free(r);
    }
    assert_int_equal(f->admin_calls, 0);
    /* A NUL in a query value is not cut either: the handler sees that something is there. */
    r = request(f, "GET", "/api/orders/N1?q=a%00b", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_string_equal(json_str(r->json, "id", NULL), "N1");
    assert_int_not_equal(strcmp(json_str(r->json, "q", NULL), "a"), 0);
    assert_int_equal(strlen(json_str(r->json, "q", NULL)), 3);
    reply_free(r);
    /* Neighbours of the control range are ordinary (404 or 400 BAD_PARAM, not BAD_PATH). */
    r = request(f, "GET", "/api/orders/a%20b", NULL, NULL);
    assert_error(r, 400, "BAD_PARAM");
    reply_free(r);
    r = request(f, "GET", "/api/orders/N1", NULL, NULL);
    assert_int_equal(r->status, 200);
    reply_free(r);
    fixture_stop(f);
}

static void test_not_found_and_method(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    struct reply *r;
    (void)state;

    r = request(f, "GET", "/api/nope", NULL, NULL);
    assert_error(r, 404, "NOT_FOUND");
    reply_free(r);
    /* An empty segment (a capture left empty, a trailing '/') is no route's: refused as a
     * path, before any route (tests/integration/it_odd_paths.c has the rest of that rule). */
    r = request(f, "GET", "/api/orders/", NULL, NULL);
    assert_error(r, 400, "BAD_PATH");
    reply_free(r);
    r = request(f, "GET", "/api/ping/", NULL, NULL);
    assert_error(r, 400, "BAD_PATH");
    reply_free(r);
    /* The message quotes the path; bytes that are not UTF-8 must not break the JSON. */
    r = request(f, "GET", "/api/%FF%FE", NULL, NULL);
    assert_error(r, 404, "NOT_FOUND");
    assert_string_equal(json_str(r->json, "error", "message"), "no resource at '/api/?"
                                                               "?'");
    reply_free(r);
    r = request(f, "PATCH", "/api/nope", NULL, NULL);
    assert_error(r, 404, "NOT_FOUND");
    reply_free(r);

    r = request(f, "GET", "/api/echo", NULL, NULL);
    assert_error(r, 405, "METHOD_NOT_ALLOWED");
    assert_non_null(strcasestr(r->headers, "Allow: POST, PUT\r\n"));
    reply_free(r);
    r = request(f, "DELETE", "/api/ping", NULL, NULL);
    assert_error(r, 405, "METHOD_NOT_ALLOWED");
    assert_non_null(strcasestr(r->headers, "Allow: GET\r\n"));
    reply_free(r);
    r = request(f, "OPTIONS", "/api/ping", NULL, NULL);
    assert_error(r, 405, "METHOD_NOT_ALLOWED");
    reply_free(r);
    fixture_stop(f);
}

/* A JSON object of exactly len bytes: {"pad":"xxx..."}. */
static char *json_of_size(size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    assert_true(len >= 10);
    memcpy(s, "{\"pad\":\"", 8);
    memset(s + 8, 'x', len - 10);
    memcpy(s + len - 2, "\"}", 3);
    return s;
}

static void test_body_limits(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    size_t max = HTTP_BODY_MAX_DEFAULT;
    char *exact = json_of_size(max), *over = json_of_size(max + 1);
    struct reply *r;
    (void)state;

    r = request_ex(f, "POST", "/api/echo", "application/json", exact, max, NULL, false);
    assert_int_equal(r->status, 200);
    assert_int_equal(strlen(json_str(r->json, "pad", NULL)), max - 10);
    reply_free(r);

    r = request_ex(f, "POST", "/api/echo", "application/json", over, max + 1, NULL, false);
    assert_error(r, 413, "TOO_LARGE");
    reply_free(r);

    /* Without Content-Length the limit is found while reading. */
    r = request_ex(f, "POST", "/api/echo", "application/json", exact, max, NULL, true);
    assert_int_equal(r->status, 200);
    reply_free(r);
    r = request_ex(f, "POST", "/api/echo", "application/json", over, max + 1, NULL, true);
    assert_error(r, 413, "TOO_LARGE");
    reply_free(r);

    /* The server is still fine. */
    r = request(f, "GET", "/api/ping", NULL, NULL);
    assert_int_equal(r->status, 200);
    reply_free(r);
    free(exact);
    free(over);
    fixture_stop(f);
}

static void test_small_body_max(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 100);
    char *exact = json_of_size(100), *over = json_of_size(101);
    struct reply *r;
    (void)state;

    r = request_ex(f, "POST", "/api/echo", "application/json", exact, 100, NULL, false);
    assert_int_equal(r->status, 200);
    reply_free(r);
    r = request_ex(f, "POST", "/api/echo", "application/json", over, 101, NULL, true);
    assert_error(r, 413, "TOO_LARGE");
    reply_free(r);
    /* Small enough for curl to send without "Expect: 100-continue". */
    r = request_ex(f, "POST", "/api/echo", "application/json", over, 101, NULL, false);
    assert_error(r, 413, "TOO_LARGE");
    reply_free(r);
    free(exact);
    free(over);
    fixture_stop(f);
}

static void test_content_type(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    static const char body[] = "{\"a\":1}";
    struct reply *r;
    (void)state;

    r = request_ex(f, "POST", "/api/echo", "text/plain", body, strlen(body), NULL, false);
    assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE");
    reply_free(r);
    r = request_ex(f, "POST", "/api/echo", NULL, body, strlen(body), NULL, false);
    assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE");
    reply_free(r);
    r = request_ex(f, "POST", "/api/echo", "application/jsonx", body, strlen(body), NULL, false);
    assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE");
    reply_free(r);
    r = request_ex(f, "POST", "/api/echo", "Application/JSON; charset=utf-8", body, strlen(body),
                   NULL, false);
    assert_int_equal(r->status, 200);
    reply_free(r);

    /* No body where one is optional: the handler sees json == NULL. */
    r = request_ex(f, "POST", "/api/optional", NULL, "", 0, NULL, false);
    assert_int_equal(r->status, 200);
    assert_true(json_is_false(json_object_get(r->json, "json")));
    reply_free(r);
    r = request(f, "POST", "/api/optional", body, NULL);
    assert_int_equal(r->status, 200);
    assert_true(json_is_true(json_object_get(r->json, "json")));
    reply_free(r);
    fixture_stop(f);
}

static void test_malformed(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    struct reply *r;
    (void)state;

    r = request(f, "POST", "/api/echo", "{\"a\":", NULL);
    assert_error(r, 400, "MALFORMED");
    assert_non_null(strstr(json_str(r->json, "error", "message"), "line 1, column"));
    reply_free(r);
    r = request(f, "POST", "/api/echo", "[1,2]", NULL);
    assert_error(r, 400, "MALFORMED");
    assert_non_null(strstr(json_str(r->json, "error", "message"), "JSON object"));
    reply_free(r);
    r = request(f, "POST", "/api/echo", "{\"a\":1,\"a\":2}", NULL);
    assert_error(r, 400, "MALFORMED");
    assert_non_null(strstr(json_str(r->json, "error", "message"), "duplicate"));
    reply_free(r);
    r = request(f, "POST", "/api/echo", "{} x", NULL);
    assert_error(r, 400, "MALFORMED");
    reply_free(r);
    r = request_ex(f, "POST", "/api/echo", "application/json", "", 0, NULL, false);
    assert_error(r, 400, "MALFORMED");
    assert_non_null(strstr(json_str(r->json, "error", "message"), "empty"));
    reply_free(r);
    fixture_stop(f);
}

static void test_keepalive(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    struct reply *r;
    (void)state;

    r = request(f, "GET", "/api/ping", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->num_connects, 1);
    assert_null(strcasestr(r->headers, "Connection: close"));
    reply_free(r);
    r = request(f, "GET", "/api/ping", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->num_connects, 0);
    reply_free(r);
    /* Bodies and server-made errors keep the connection too. */
    r = request(f, "POST", "/api/echo", "{\"a\":1}", NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->num_connects, 0);
    reply_free(r);
    r = request(f, "GET", "/api/nope", NULL, NULL);
    assert_int_equal(r->status, 404);
    assert_int_equal(r->num_connects, 0);
    reply_free(r);
    r = request(f, "POST", "/api/echo", "[]", NULL);
    assert_int_equal(r->status, 400);
    assert_int_equal(r->num_connects, 0);
    reply_free(r);
    r = request(f, "GET", "/api/ping", NULL, NULL);
    assert_int_equal(r->num_connects, 0);
    reply_free(r);
    fixture_stop(f);
}

static void test_dev_mode_loopback(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    struct reply *r;
    (void)state;

    r = request(f, "GET", "/api/admin", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_true(json_is_true(json_object_get(r->json, "loopback")));
    reply_free(r);
    /* A token is not needed, and not checked, in development mode. */
    r = request(f, "GET", "/api/admin", NULL, "Authorization: Bearer whatever");
    assert_int_equal(r->status, 200);
    reply_free(r);
    assert_int_equal(f->admin_calls, 2);
    fixture_stop(f);
}

static void test_dev_mode_ipv6_loopback(void **state)
{
    struct fixture *f;
    struct reply *r;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    (void)state;

    if (fd < 0)
        skip();
    close(fd);
    f = fixture_start("::1", NULL, 0);
    r = request(f, "GET", "/api/admin", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_true(json_is_true(json_object_get(r->json, "loopback")));
    reply_free(r);
    fixture_stop(f);
}

static void test_addr_is_loopback(void **state)
{
    static const struct {
        const char *addr;
        bool loopback;
    } cases[] = {
        {"127.0.0.1", true},
        {"127.255.254.1", true},
        {"127.0.0.0", true},
        {"128.0.0.1", false},
        {"126.255.255.255", false},
        {"10.0.0.1", false},
        {"0.0.0.0", false},
        {"::1", true},
        {"::", false},
        {"::2", false},
        {"::ffff:127.0.0.1", true},
        {"::ffff:127.9.8.7", true},
        {"::ffff:10.0.0.1", false},
        {"::127.0.0.1", false},
        {"2001:db8::1", false},
        {"fe80::1", false},
        {"::1:0:0:1", false},
    };
    struct sockaddr_un un;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if (strchr(cases[i].addr, ':') != NULL) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            in6->sin6_family = AF_INET6;
            assert_int_equal(inet_pton(AF_INET6, cases[i].addr, &in6->sin6_addr), 1);
        } else {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            in->sin_family = AF_INET;
            assert_int_equal(inet_pton(AF_INET, cases[i].addr, &in->sin_addr), 1);
        }
        if (http_addr_is_loopback((struct sockaddr *)&ss) != cases[i].loopback)
            fail_msg("http_addr_is_loopback(%s) != %d", cases[i].addr, cases[i].loopback);
    }
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    assert_false(http_addr_is_loopback((struct sockaddr *)&un));
    assert_false(http_addr_is_loopback(NULL));
}

static void test_token_mode(void **state)
{
    FILE *logf = tmpfile();
    struct fixture *f;
    struct reply *r;
    char logbuf[16384];
    size_t n;
    (void)state;

    assert_non_null(logf);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_DEBUG, logf);
    f = fixture_start("127.0.0.1", TOKEN, 0);

    r = request(f, "GET", "/api/admin", NULL, NULL);
    assert_error(r, 401, "UNAUTHORIZED");
    assert_non_null(strcasestr(r->headers, "WWW-Authenticate: Bearer\r\n"));
    reply_free(r);
    r = request(f, "GET", "/api/admin", NULL, "Authorization: Bearer wrong-token");
    assert_error(r, 401, "UNAUTHORIZED");
    assert_non_null(strcasestr(r->headers, "WWW-Authenticate: Bearer"));
    reply_free(r);
    r = request(f, "GET", "/api/admin", NULL, "Authorization: Bearer s3cret-Token-012345678");
    assert_error(r, 401, "UNAUTHORIZED"); /* a prefix */
    reply_free(r);
    r = request(f, "GET", "/api/admin", NULL, "Authorization: Basic " TOKEN);
    assert_error(r, 401, "UNAUTHORIZED");
    reply_free(r);
    assert_int_equal(f->admin_calls, 0);

    r = request(f, "GET", "/api/admin", NULL, "Authorization: Bearer " TOKEN);
    assert_int_equal(r->status, 200);
    assert_true(json_is_true(json_object_get(r->json, "admin")));
    reply_free(r);
    r = request(f, "GET", "/api/admin", NULL, "Authorization: bearer " TOKEN);
    assert_int_equal(r->status, 200);
    reply_free(r);
    assert_int_equal(f->admin_calls, 2);

    /* Public routes need no token. */
    r = request(f, "GET", "/api/ping", NULL, NULL);
    assert_int_equal(r->status, 200);
    reply_free(r);
    fixture_stop(f);

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
    rewind(logf);
    n = fread(logbuf, 1, sizeof(logbuf) - 1, logf);
    logbuf[n] = '\0';
    fclose(logf);
    /* One access line per request, never the token. */
    assert_non_null(strstr(logbuf, "GET /api/admin 401"));
    assert_non_null(strstr(logbuf, "GET /api/admin 200"));
    assert_non_null(strstr(logbuf, "GET /api/ping 200"));
    assert_null(strstr(logbuf, TOKEN));
    assert_null(strstr(logbuf, "wrong-token"));
}

static void test_handler_no_response(void **state)
{
    struct fixture *f = fixture_start("127.0.0.1", NULL, 0);
    struct reply *r;
    (void)state;

    r = request(f, "GET", "/api/silent", NULL, NULL);
    assert_error(r, 500, "INTERNAL");
    reply_free(r);
    r = request(f, "GET", "/api/badjson", NULL, NULL);
    assert_error(r, 500, "INTERNAL");
    reply_free(r);
    r = request(f, "GET", "/api/ping", NULL, NULL);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->num_connects, 0);
    reply_free(r);
    fixture_stop(f);
}

static void noop(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    (void)req;
    (void)res;
}

static void test_start_errors(void **state)
{
    static const char *const bad_patterns[] = {
        "api/x",   "/api//x", "/api/{}", "/api/{a-b}", "/api/x{id}", "/api/{a}/{b}/{c}/{d}/{e}",
        "/api/x/",
    };
    struct loop *loop = loop_new();
    /* Not NULL, so the tests see that a failed start resets it. */
    struct http_server *s = (struct http_server *)&s, *s2 = (struct http_server *)&s;
    struct http_config cfg = {.host = "127.0.0.1"};
    struct http_route route = {HTTP_GET, "/ok/{id}", HTTP_PUBLIC, noop};
    (void)state;

    assert_non_null(loop);
    for (size_t i = 0; i < sizeof(bad_patterns) / sizeof(bad_patterns[0]); i++) {
        struct http_route bad = {HTTP_GET, bad_patterns[i], HTTP_PUBLIC, noop};
        assert_int_equal(http_server_start(&s, loop, &cfg, &bad, 1, NULL), VEND_EINVAL);
        assert_null(s);
    }
    route.fn = NULL;
    assert_int_equal(http_server_start(&s, loop, &cfg, &route, 1, NULL), VEND_EINVAL);
    route.fn = noop;

    cfg.api_token = "";
    assert_int_equal(http_server_start(&s, loop, &cfg, &route, 1, NULL), VEND_EINVAL);
    cfg.api_token = NULL;
    cfg.host = "no-such-host.invalid";
    assert_int_equal(http_server_start(&s, loop, &cfg, &route, 1, NULL), VEND_EIO);
    assert_null(s);

    /* A port in use. */
    cfg.host = "localhost";
    assert_int_equal(http_server_start(&s, loop, &cfg, &route, 1, NULL), VEND_OK);
    cfg.port = http_server_port(s);
    assert_int_equal(http_server_start(&s2, loop, &cfg, &route, 1, NULL), VEND_EIO);
    assert_null(s2);
    http_server_free(s);
    http_server_free(NULL);
    loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_is_loopback),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_remote_addr),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_control_characters_in_path),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_small_body_max),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_dev_mode_loopback),
        cmocka_unit_test(test_dev_mode_ipv6_loopback),
        cmocka_unit_test(test_token_mode),
        cmocka_unit_test(test_handler_no_response),
        cmocka_unit_test(test_start_errors),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
