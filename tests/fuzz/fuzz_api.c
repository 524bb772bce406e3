/*
 * fuzz_api.c - the HTTP API as a client on the internet reaches it: vendd's real HTTP server
 * (libmicrohttpd, the route table, path and query decoding, auth, JSON bodies, the handlers
 * and the domain behind them) on a real SQLite database, in this process, over a loopback
 * TCP connection kept alive between inputs. The loop runs on this thread until the answer is
 * in, so each input is one request and its whole answer.
 *
 * Built once per target (tests/fuzz/CMakeLists.txt) with FUZZ_API_MODE:
 *   FUZZ_API_REQUEST  the input is "METHOD TARGET" LF BODY: any method, path and query;
 *   FUZZ_API_BODY     the input is the JSON body of FUZZ_API_METHOD FUZZ_API_PATH;
 *   FUZZ_API_QUERY    the input's first byte picks a route of s_query_routes, the rest is
 *                     its query string;
 *   FUZZ_API_HEADERS  the input's lines are the header lines of an operator's write (POST
 *                     /api/dispense/trigger), sent without the harness's bearer token: it
 *                     must reach the handler only with the token, and only from its origin.
 * Bytes that cannot stand in a request line (controls, space, DEL, non-ASCII) are sent
 * %-encoded, so they reach vendd's decoding rather than stopping at MHD's request parser.
 *
 * Every answer must be a status from 100 to 599 and never 500 (a request, however odd, is
 * refused with a 4xx that says why, or served); an error with a JSON body must be
 * {"error":{"code":"...","message":"..."}}. A hang is caught by libFuzzer's -timeout.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "api.h"
#include "checkout.h"
#include "db.h"
#include "events.h"
#include "fuzz.h"
#include "fuzz_vendd.h"
#include "http.h"
#include "httpc.h"
#include "loop.h"
#include "machines.h"
#include "ratelimit.h"
#include "vend/err.h"

#define FUZZ_API_REQUEST 1
#define FUZZ_API_BODY    2
#define FUZZ_API_QUERY   3
#define FUZZ_API_HEADERS 4

#ifndef FUZZ_API_MODE
#error "FUZZ_API_MODE must be FUZZ_API_REQUEST, FUZZ_API_BODY, FUZZ_API_QUERY or FUZZ_API_HEADERS"
#endif

#define TOKEN     "fuzz-api-token-0123456789abcdef"
#define REPLY_MAX (4u << 20)
#define INPUT_MAX (64u * 1024u)

/* The process's one server and connection: libFuzzer's entry point takes no context. */
static struct {
    struct fuzz_vendd f;
    uint16_t port;
    int fd;
    char *reply;
    size_t reply_len, reply_cap;
    char *req;
    size_t req_cap;
    bool ready;
    bool head; /* the last request was a HEAD */
    /* FUZZ_API_HEADERS: the request's header lines (CRLF each) instead of the bearer token */
    const char *headers;
    size_t headers_len;
} s_fx = {.fd = -1};

/* The broker seam: every publish succeeds and goes nowhere (the fuzz is of what comes in). */
static int seam_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                        bool retain, uint32_t expiry_s)
{
    (void)ctx, (void)topic, (void)payload, (void)len, (void)qos, (void)retain, (void)expiry_s;
    return VEND_OK;
}

static bool seam_up(void *ctx)
{
    (void)ctx;
    return true;
}

static void on_readable(void *arg, int fd, unsigned events)
{
    (void)fd, (void)events;
    loop_stop(arg);
}

static void conn_close(void)
{
    if (s_fx.fd < 0)
        return;
    loop_io_del(s_fx.f.v.loop, s_fx.fd);
    close(s_fx.fd);
    s_fx.fd = -1;
}

static void conn_open(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(s_fx.port)};
    /* Closed with a reset, not into TIME_WAIT: inputs that end their connection (a stream,
     * an error MHD closes on) would otherwise use up the ephemeral ports in seconds. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s_fx.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(s_fx.fd >= 0);
    FUZZ_CHECK(setsockopt(s_fx.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    /* Completes in the kernel's backlog; the server accepts on its next loop turn. */
    if (connect(s_fx.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("fuzz_api: connect");
        abort();
    }
    FUZZ_CHECK(loop_io_add(s_fx.f.v.loop, s_fx.fd, LOOP_READ, on_readable, s_fx.f.v.loop) ==
               VEND_OK);
}

static void req_reserve(size_t n)
{
    if (n <= s_fx.req_cap)
        return;
    s_fx.req = realloc(s_fx.req, n);
    FUZZ_CHECK(s_fx.req != NULL);
    s_fx.req_cap = n;
}

/* Appends the len bytes at s to out (room checked by the caller), %-encoding those that
 * cannot stand in a request line. */
static size_t put_target(char *out, const unsigned char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f) {
            out[o++] = '%';
            out[o++] = hex[s[i] >> 4];
            out[o++] = hex[s[i] & 15];
        } else {
            out[o++] = (char)s[i];
        }
    }
    return o;
}

/* The header of the answer in s_fx.reply, when it is all in: its length, else 0. */
static size_t header_len(void)
{
    for (size_t i = 3; i < s_fx.reply_len; i++) {
        if (memcmp(s_fx.reply + i - 3, "\r\n\r\n", 4) == 0)
            return i + 1;
    }
    return 0;
}

/* The value of header name in the answer's header (hlen bytes), or NULL; *vlen its length. */
static const char *reply_header(size_t hlen, const char *name, size_t *vlen)
{
    size_t n = strlen(name);

    for (const char *p = memchr(s_fx.reply, '\n', hlen); p != NULL && p + 1 < s_fx.reply + hlen;
         p = memchr(p + 1, '\n', hlen - (size_t)(p + 1 - s_fx.reply))) {
        const char *line = p + 1, *end = memchr(line, '\r', hlen - (size_t)(line - s_fx.reply));

        if (end != NULL && (size_t)(end - line) > n && strncasecmp(line, name, n) == 0 &&
            line[n] == ':') {
            line += n + 1;
            while (*line == ' ')
                line++;
            *vlen = (size_t)(end - line);
            return line;
        }
    }
    return NULL;
}

/* True when the answer is complete; *close when the connection cannot carry another. */
static bool reply_complete(bool head, bool *close)
{
    size_t hlen = header_len(), vlen;
    const char *v;

    if (hlen == 0)
        return false;
    v = reply_header(hlen, "Connection", &vlen);
    *close = v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0;
    if (head)
        return true;
    v = reply_header(hlen, "Content-Length", &vlen);
    if (v != NULL)
        return s_fx.reply_len >= hlen + strtoull(v, NULL, 10);
    /* A stream (the event stream, chunked): its head is all an input gets. */
    *close = true;
    return true;
}

/*
 * Sends the request (len bytes at s_fx.req) and reads its answer into s_fx.reply, running
 * the loop while nothing is there. Returns the HTTP status, or 0 when the server closed the
 * connection without an answer (MHD does for a request line it cannot parse).
 */
static int exchange(size_t len, bool head)
{
    bool close_after = false, resent = false;
    int status = 0;

    if (s_fx.fd < 0)
        conn_open();
    s_fx.reply_len = 0;
    for (size_t off = 0; off < len;) {
        ssize_t n = send(s_fx.fd, s_fx.req + off, len - off, MSG_NOSIGNAL);

        if (n < 0 && (errno == EPIPE || errno == ECONNRESET) && !resent && off == 0) {
            /* The server closed the kept-alive connection after the last answer. */
            conn_close();
            conn_open();
            resent = true;
            continue;
        }
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
    for (;;) {
        ssize_t n;

        if (s_fx.reply_cap - s_fx.reply_len < 65536) {
            FUZZ_CHECK(s_fx.reply_cap < REPLY_MAX);
            s_fx.reply_cap = s_fx.reply_cap != 0 ? s_fx.reply_cap * 2 : 131072;
            s_fx.reply = realloc(s_fx.reply, s_fx.reply_cap);
            FUZZ_CHECK(s_fx.reply != NULL);
        }
        n = recv(s_fx.fd, s_fx.reply + s_fx.reply_len, s_fx.reply_cap - s_fx.reply_len - 1,
                 MSG_DONTWAIT);
        if (n > 0) {
            s_fx.reply_len += (size_t)n;
            if (reply_complete(head, &close_after))
                break;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            close_after = true;
            if (s_fx.reply_len == 0)
                goto out;
            break;
        }
        FUZZ_CHECK(loop_run(s_fx.f.v.loop) == VEND_OK);
    }
    s_fx.reply[s_fx.reply_len] = '\0';
    FUZZ_CHECK(sscanf(s_fx.reply, "HTTP/1.%*1d %3d", &status) == 1);
out:
    if (close_after)
        conn_close();
    return status;
}

/* The answer's rules (top of file). */
static void check_reply(int status)
{
    size_t hlen, vlen;
    const char *ct;
    json_t *body, *err;

    if (status == 0)
        return;
    FUZZ_CHECK(status >= 100 && status <= 599);
    if (status == 500) {
        fprintf(stderr, "fuzz_api: answered 500:\n%.*s\n", (int)s_fx.reply_len, s_fx.reply);
        abort();
    }
    hlen = header_len();
    ct = reply_header(hlen, "Content-Type", &vlen);
    /* The answer to a HEAD has the head of the answer to a GET, and no body. */
    if (status < 400 || ct == NULL || strncmp(ct, "application/json", 16) != 0 ||
        reply_header(hlen, "Content-Length", &vlen) == NULL || s_fx.head)
        return;
    body = json_loadb(s_fx.reply + hlen, s_fx.reply_len - hlen, 0, NULL);
    err = json_object_get(body, "error");
    if (!json_is_string(json_object_get(err, "code")) ||
        !json_is_string(json_object_get(err, "message"))) {
        fprintf(stderr, "fuzz_api: an error without its code and message:\n%.*s\n",
                (int)s_fx.reply_len, s_fx.reply);
        abort();
    }
    json_decref(body);
}

/* method prefix target suffix (only target %-encoded), with a JSON body when body is not NULL.
 * Returns the status (0: closed). */
static int request(const char *method, const char *prefix, const unsigned char *target, size_t tlen,
                   const char *suffix, const char *body, size_t blen)
{
    size_t n;
    int len;

    req_reserve(strlen(method) + strlen(prefix) + 3 * tlen + strlen(suffix) + blen +
                s_fx.headers_len + 512);
    len = snprintf(s_fx.req, s_fx.req_cap, "%s %s", method, prefix);
    n = (size_t)len;
    n += put_target(s_fx.req + n, target, tlen);
    len = snprintf(s_fx.req + n, s_fx.req_cap - n, "%s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", suffix,
                   (unsigned)s_fx.port);
    n += (size_t)len;
    if (s_fx.headers != NULL) {
        memcpy(s_fx.req + n, s_fx.headers, s_fx.headers_len);
        n += s_fx.headers_len;
    } else {
        n +=
            (size_t)snprintf(s_fx.req + n, s_fx.req_cap - n, "Authorization: Bearer " TOKEN "\r\n");
    }
    if (body != NULL)
        len = snprintf(s_fx.req + n, s_fx.req_cap - n,
                       "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", blen);
    else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        len = snprintf(s_fx.req + n, s_fx.req_cap - n, "Content-Length: 0\r\n\r\n");
    else
        len = snprintf(s_fx.req + n, s_fx.req_cap - n, "\r\n");
    n += (size_t)len;
    if (body != NULL) {
        memcpy(s_fx.req + n, body, blen);
        n += blen;
    }
    s_fx.head = strcmp(method, "HEAD") == 0;
    return exchange(n, s_fx.head);
}

/* What the inputs find: VM01 with three stocked slots and a paid manual order "paid-1". */
static void seed(void)
{
    static const char *const slots[] = {
        "{\"product_name\":\"Coca Cola\",\"price\":8000,\"capacity\":10,\"current_stock\":10}",
        "{\"product_name\":\"Teh Botol\",\"price\":5000,\"capacity\":10,\"current_stock\":5}",
        "{\"product_name\":\"Aqua\",\"price\":3000,\"capacity\":10,\"current_stock\":0}"};
    static const char order[] = "{\"id\":\"paid-1\",\"machine_id\":\"VM01\",\"slot\":1,"
                                "\"quantity\":2,\"payment_method\":\"manual\"}";
    char path[64];

    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        int n = snprintf(path, sizeof(path), "/api/machines/VM01/slots/%zu", i + 1);

        FUZZ_CHECK(request("PUT", "", (const unsigned char *)path, (size_t)n, "", slots[i],
                           strlen(slots[i])) == 201);
    }
    FUZZ_CHECK(request("POST", "/api/orders", NULL, 0, "", order, strlen(order)) == 201);
}

/* Once per process, at the first input (the corpus driver has no other hook). */
static void setup(void)
{
    struct fuzz_vendd *f = &s_fx.f;
    struct vendd *v = &f->v;
    struct http_config hc = {.host = "127.0.0.1", .api_token = TOKEN};

    fuzz_vendd_open(f);
    snprintf(f->conf.api_token, sizeof(f->conf.api_token), "%s", TOKEN);
    f->conf.dev_mode = false;
    /* The limits are tested elsewhere (it_payments_limits); here they would only hide the
     * decoders behind a 429 after the first few inputs. */
    f->conf.order_rate_per_min = 1000000000;
    v->broker = (struct broker){.publish = seam_publish, .up = seam_up};
    v->order_limit = ratelimit_new(f->conf.order_rate_per_min);
    v->signin_limit = ratelimit_new(1000000000);
    FUZZ_CHECK(machines_register_default(v, "VM01") == VEND_OK);
    FUZZ_CHECK(events_start(v) == VEND_OK);
    FUZZ_CHECK(httpc_new(&v->httpc, v->loop) == VEND_OK);
    FUZZ_CHECK(checkout_new(&v->checkout) == VEND_OK);
    FUZZ_CHECK(http_server_start(&v->http, v->loop, &hc, api_routes, api_nroutes, v) == VEND_OK);
    s_fx.port = http_server_port(v->http);
    seed();
    s_fx.ready = true;
}

#if FUZZ_API_MODE == FUZZ_API_REQUEST

/* Known methods as sent; anything else that is a token of capitals goes as it is. */
static void read_method(const unsigned char *s, size_t n, char method[17])
{
    size_t i;

    for (i = 0; i < n && i < 16 && s[i] >= 'A' && s[i] <= 'Z'; i++)
        method[i] = (char)s[i];
    method[i] = '\0';
    if (i == 0 || i != n)
        memcpy(method, "GET", 4);
}

/*
 * A target whose path (before '?') holds "//" or an encoded slash or backslash is refused as
 * a path, whatever the route would have made of it (http.c, path_segments_ok() and on_uri()).
 */
static bool path_must_be_refused(const uint8_t *t, size_t n)
{
    for (size_t i = 0; i < n && t[i] != '?'; i++) {
        if (i + 1 < n && t[i] == '/' && t[i + 1] == '/')
            return true;
        if (i + 2 < n && t[i] == '%' &&
            ((t[i + 1] == '2' && (t[i + 2] | 0x20) == 'f') ||
             (t[i + 1] == '5' && (t[i + 2] | 0x20) == 'c')))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size), *sp;
    size_t line = nl != NULL ? (size_t)(nl - data) : size;
    char method[17];
    int status;

    if (size > INPUT_MAX)
        return 0;
    if (!s_fx.ready)
        setup();
    sp = memchr(data, ' ', line);
    read_method(data, sp != NULL ? (size_t)(sp - data) : 0, method);
    if (sp == NULL)
        sp = data - 1;
    status = request(method, "", sp + 1, line - (size_t)(sp + 1 - data), "",
                     nl != NULL ? (const char *)nl + 1 : NULL, nl != NULL ? size - line - 1 : 0);
    check_reply(status);
    /* MHD may refuse a request line first (no answer, or its own 4xx); vendd says 400. */
    if (path_must_be_refused(sp + 1, line - (size_t)(sp + 1 - data)) && status >= 200 &&
        status < 400) {
        fprintf(stderr, "fuzz_api: a path to refuse was served:\n%.*s\n", (int)s_fx.reply_len,
                s_fx.reply);
        abort();
    }
    return 0;
}

#elif FUZZ_API_MODE == FUZZ_API_BODY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    if (!s_fx.ready)
        setup();
    check_reply(request(FUZZ_API_METHOD, FUZZ_API_PATH, NULL, 0, "", (const char *)data, size));
    return 0;
}

#elif FUZZ_API_MODE == FUZZ_API_QUERY

/* Every route that reads its query string, or a number or an id from its path: the input
 * goes between prefix and suffix. */
static const struct {
    const char *method, *prefix, *suffix, *body;
} s_query_routes[] = {
    {"GET", "/api/orders?", "", NULL},
    {"GET", "/api/refunds?", "", NULL},
    {"GET", "/api/alerts?", "", NULL},
    {"GET", "/api/machines?", "", NULL},
    {"GET", "/api/machines/VM01/telemetry?", "", NULL},
    {"GET", "/api/dispense/logs/VM01?", "", NULL},
    {"GET", "/api/sales?", "", NULL},
    {"GET", "/api/buy/VM01?", "", NULL},
    {"GET", "/api/buy/orders/paid-1?", "", NULL},
    {"GET", "/api/events?", "", NULL},
    {"POST", "/api/orders/paid-1/cancel?", "", NULL},
    {"GET", "/api/orders/", "", NULL},
    {"POST", "/api/alerts/", "/resolve", NULL},
    {"POST", "/api/refunds/", "/done", "{\"note\":\"paid by hand\"}"},
    {"PUT", "/api/machines/VM01/slots/", "", "{\"price\":1000}"},
    {"GET", "/api/stock/", "", NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t r;
    const char *body;

    if (size == 0 || size > INPUT_MAX)
        return 0;
    if (!s_fx.ready)
        setup();
    r = data[0] % (sizeof(s_query_routes) / sizeof(s_query_routes[0]));
    body = s_query_routes[r].body;
    check_reply(request(s_query_routes[r].method, s_query_routes[r].prefix, data + 1, size - 1,
                        s_query_routes[r].suffix, body, body != NULL ? strlen(body) : 0));
    return 0;
}

#elif FUZZ_API_MODE == FUZZ_API_HEADERS

/* Framing is the harness's: these would only desynchronise its reading of the answer. */
static bool header_is_framing(const char *line, size_t n)
{
    static const char *const names[] = {
        "content-length:", "transfer-encoding:", "connection:", "expect:"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (n >= strlen(names[i]) && strncasecmp(line, names[i], strlen(names[i])) == 0)
            return true;
    }
    return false;
}

/* The value of the first header line named name (with its ':'), leading blanks skipped. */
static const char *header_value(const char *lines, const char *name, size_t *vlen)
{
    for (const char *p = lines; *p != '\0';) {
        const char *end = strstr(p, "\r\n");

        if (strncasecmp(p, name, strlen(name)) == 0) {
            p += strlen(name);
            while (*p == ' ' || *p == '\t')
                p++;
            *vlen = (size_t)(end - p);
            return p;
        }
        p = end + 2;
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char body[] = "{\"order_id\":\"nope\"}";
    static char lines[2 * INPUT_MAX + 1];
    size_t used = 0, vlen;
    const char *v;
    char origin[64];
    bool reached;
    int status;

    if (size > INPUT_MAX)
        return 0;
    if (!s_fx.ready)
        setup();
    for (size_t i = 0; i < size;) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t n = (nl != NULL ? (size_t)(nl - data) : size) - i;

        /* One line each: no CR, LF or NUL inside, none empty (that would end the head), and
         * none that starts with ':', which libmicrohttpd 0.9.75 takes for the end of the head
         * (docs/internals/http.md, "Framing"): vendd's code never sees that line. */
        if (n > 0 && data[i] != ':' && memchr(data + i, '\r', n) == NULL &&
            memchr(data + i, '\0', n) == NULL && !header_is_framing((const char *)data + i, n)) {
            memcpy(lines + used, data + i, n);
            used += n;
            lines[used++] = '\r';
            lines[used++] = '\n';
        }
        i += n + 1;
    }
    lines[used] = '\0';
    s_fx.headers = lines;
    s_fx.headers_len = used;
    status = request("POST", "/api/dispense/trigger", NULL, 0, "", body, sizeof(body) - 1);
    s_fx.headers = NULL;
    s_fx.headers_len = 0;
    check_reply(status);
    /* Past auth and CSRF, the handler looks for the order and answers 404. */
    reached = status == 404 && strstr(s_fx.reply, "'nope'") != NULL;
    if (!reached)
        return 0;
    v = header_value(lines, "authorization:", &vlen);
    if (v == NULL || vlen < strlen(TOKEN) || strstr(v, TOKEN) == NULL ||
        strstr(v, TOKEN) > v + vlen) {
        fprintf(stderr, "fuzz_api: an operator's write without the token:\n%s\n", lines);
        abort();
    }
    snprintf(origin, sizeof(origin), "//127.0.0.1:%u", (unsigned)s_fx.port);
    v = header_value(lines, "origin:", &vlen);
    if (v != NULL && (vlen < strlen(origin) ||
                      strncasecmp(v + vlen - strlen(origin), origin, strlen(origin)) != 0)) {
        fprintf(stderr, "fuzz_api: a write from another origin was served:\n%s\n", lines);
        abort();
    }
    return 0;
}

#endif
