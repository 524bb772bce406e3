/*
 * http.c - libmicrohttpd on the daemon's loop, the route table, JSON bodies
 * and the operator auth policy. See http.h for the contract and
 * docs/internals/http.md for the design.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "http_cache.h"
#include "log.h"
#include "loop.h"
#include "ratelimit.h"
#include "session.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "xmalloc.h"

/* A capture is an identifier: order ids are the widest rule, machine ids a subset of it. */
_Static_assert(HTTP_PARAM_MAX == VEND_ORDER_ID_MAX, "path parameters follow the order-id rule");

/* Idle connections are closed after this (MHD's own timeout, reset by any byte; the header
 * and body deadlines below are what a trickle cannot reset). */
#define CONN_TIMEOUT_S 30
/* MHD's per-connection pool holds the request line and headers only (bodies
 * go to our own buffer), so this bounds the header size. */
#define CONN_MEMORY 32768
/* A chunked body without Content-Length that outgrows body_max is read and
 * dropped so the 413 can be sent; past this many dropped bytes the
 * connection is closed instead. */
#define DISCARD_FACTOR 16
/* MHD_get_timeout can report "none"; we still run MHD at least this often. */
#define TIMER_MAX_MS 60000
#define MSG_MAX      256
#define LOG_PATH_MAX 128
/* MHD reads a stream into its per-connection write buffer (chunked on HTTP/1.1); this block
 * is the response's own buffer, used only for an HTTP/1.0 client. */
#define STREAM_BLOCK 4096
/* A stream's socket buffer in the kernel. Left to autotuning it grows to megabytes on a fast
 * link (loopback: 4 MiB), so a client that stops reading would tie that much up and look
 * healthy until it was full; streams are small and slow, and this is plenty for them. */
#define STREAM_SNDBUF (64 * 1024)

/* Where a connection is in its request, for the deadlines. */
enum conn_phase {
    PHASE_HEADERS, /* waiting for a request's headers: header deadline */
    PHASE_BODY,    /* headers in, body being read: body deadline */
    PHASE_ANSWER,  /* read in full, being answered (deferred, streamed): no deadline */
    PHASE_CLOSING, /* shut down by the sweep; MHD closes it on its next run */
};

/* A client address as the limits count it: the IPv4 address, or an IPv6 /64 (one host often
 * holds a whole /64), with a tag so neither aliases the other. */
#define ADDR_KEY_LEN 9

/* One TCP connection, MHD's socket_context, from accept to close. */
struct http_conn {
    struct http_conn *next, *prev;
    int fd;
    enum conn_phase phase;
    uint64_t deadline_ms; /* loop_now_ms() of the phase's deadline */
    bool local;           /* 127.0.0.1 or ::1: may use the reserve */
    unsigned char key[ADDR_KEY_LEN];
    /* The current request's path, as sent, holds an encoded slash or backslash (on_uri()). */
    bool encoded_sep;
};

struct http_server {
    struct loop *loop;
    struct MHD_Daemon *mhd;
    int epoll_fd;
    uint64_t timer_id; /* 0 = no timer armed */
    const struct http_route *routes;
    size_t nroutes;
    void *ctx;
    size_t body_max;
    bool token_mode;
    struct session session;         /* token mode: the token's digest and the sign-in keys */
    struct ratelimit *bearer_fails; /* token mode: wrong bearer tokens per client address */
    uint16_t port;
    struct http_call *deferred; /* answers a handler promised for later (http_defer) */
    struct http_cache *cache;   /* NULL without cfg->data_version */
    void (*data_version)(void *ctx, const char *pattern, uint64_t version[2]);
    bool resumed;                /* a deferred answer is ready: run MHD again at once */
    struct http_stream *streams; /* open streams (http_stream_start), ended on free */
    /* Connection limits (http_config) and the connections they count. */
    unsigned max_conns, local_reserve, per_addr_max;
    uint64_t header_ms, body_ms;
    struct http_conn *conns;
    unsigned nconns, npublic;    /* all; those not local */
    uint64_t sweep_id, sweep_at; /* the deadline timer (0 = none) and when it fires */
    bool stopping;               /* in MHD_stop_daemon(): no more timers */
    struct http_stats stats;
};

/* One streamed answer (http_stream_start): MHD's content reader argument, freed by MHD's
 * free callback when the response goes, which is when done_fn runs. */
struct http_stream {
    struct http_server *server;
    struct MHD_Connection *conn;
    http_stream_read_fn *read_fn;
    http_stream_done_fn *done_fn;
    void *arg;
    const char *content_type;
    bool asleep;  /* suspended by the reader: nothing to send until http_stream_wake() */
    bool ending;  /* http_stream_end(): the next read closes the connection */
    int fd;       /* the connection's socket, -1 if MHD does not tell */
    bool watched; /* fd is on the loop while asleep: a client that hangs up is seen at once */
    struct http_stream *next, *prev;
};

/* Per-request state, MHD's *con_cls: lives from the first handler call to
 * the completion callback. */
struct http_call {
    struct timespec start;
    const struct http_route *route;
    enum http_method method;
    char params[HTTP_PARAMS_MAX][HTTP_PARAM_MAX + 1];
    size_t nparams;
    char remote[INET6_ADDRSTRLEN];
    bool loopback;
    /* An error found before the body was read, answered on the last call. */
    int err_status;
    const char *err_code;
    char err_msg[MSG_MAX];
    const char *extra_header; /* Allow or WWW-Authenticate with err_status */
    char extra_value[64];
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    size_t discarded;
    /* http_defer(): the connection is suspended until http_deferred_reply() */
    struct http_server *server;
    struct MHD_Connection *conn;
    bool deferred, answered;
    struct http_response later;
    struct http_call *next_deferred;
    /* http_stream_start(): the stream to answer with once the handler returns */
    struct http_stream *stream;
};

static const char *const s_method_names[] = {
    [HTTP_GET] = "GET",     [HTTP_POST] = "POST",     [HTTP_PUT] = "PUT",
    [HTTP_PATCH] = "PATCH", [HTTP_DELETE] = "DELETE",
};
#define NMETHODS (sizeof(s_method_names) / sizeof(s_method_names[0]))

static int method_parse(const char *s)
{
    for (size_t i = 0; i < NMETHODS; i++) {
        if (strcmp(s, s_method_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

static bool method_has_body(enum http_method m)
{
    return m == HTTP_POST || m == HTTP_PUT || m == HTTP_PATCH;
}

static uint64_t elapsed_us(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t us =
        (int64_t)(now.tv_sec - start->tv_sec) * 1000000 + (now.tv_nsec - start->tv_nsec) / 1000;
    return us < 0 ? 0 : (uint64_t)us;
}

/* ---- loopback and auth ------------------------------------------------ */

bool http_addr_is_loopback(const struct sockaddr *sa)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return memcmp(b, v4mapped, sizeof(v4mapped)) == 0 && b[12] == 127;
    }
    return false;
}

/* What inet_ntop() writes for an IPv4 address, without its sprintf per byte: this runs for
 * every request. out has room for "255.255.255.255". */
static void ipv4_text(char *out, const void *addr)
{
    const unsigned char *b = addr;

    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];

        if (v >= 100)
            *out++ = (char)('0' + v / 100);
        if (v >= 10)
            *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

static void client_address(struct MHD_Connection *c, struct http_call *call)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    const void *addr = NULL;

    memcpy(call->remote, "?", 2);
    call->loopback = http_addr_is_loopback(sa);
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        ipv4_text(call->remote, &((const struct sockaddr_in *)(const void *)sa)->sin_addr);
        return;
    }
    if (sa->sa_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    if (addr != NULL && inet_ntop(sa->sa_family, addr, call->remote, sizeof(call->remote)) == NULL)
        memcpy(call->remote, "?", 2);
}

static void call_fail(struct http_call *call, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records the first error of a request; it is answered on the last call. */
static void call_fail(struct http_call *call, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    if (call->err_status != 0)
        return;
    call->err_status = status;
    call->err_code = code;
    va_start(ap, fmt);
    vsnprintf(call->err_msg, sizeof(call->err_msg), fmt, ap);
    va_end(ap);
}

/* What a request's operator credentials came to (operator_auth()). */
enum op_auth {
    OP_OK,
    OP_NOT_LOOPBACK,   /* development mode, another host */
    OP_NOT_LOCAL_NAME, /* development mode, addressed to a name that is not loopback's */
    OP_NONE,           /* token mode: neither a bearer token nor a session cookie */
    OP_BAD_BEARER,
    OP_BEARER_LIMITED, /* too many wrong bearer tokens from this address: not even checked */
    OP_BAD_SESSION,    /* the cookie is not ours, was changed, or has expired */
    OP_NO_CSRF,        /* a write with a good cookie but without its X-CSRF-Token */
};

/*
 * The Host a request was addressed to (NULL: none, not a browser) is loopback's own name:
 * "localhost", an address of 127.0.0.0/8 or [::1], with or without a port. A browser sends the
 * name of the page's origin, so a page of a name an attacker owns that resolves to 127.0.0.1
 * (DNS rebinding) sends that name: it is not the operator's dashboard.
 */
static bool host_is_local_name(const char *host)
{
    char name[64];
    struct in_addr a4;
    struct in6_addr a6;
    bool v6 = host != NULL && host[0] == '[';
    const char *port;
    size_t n;

    if (host == NULL)
        return true;
    host += v6;
    n = strcspn(host, v6 ? "]" : ":");
    port = host + n + (v6 && host[n] == ']');
    if (v6 && host[n] != ']')
        return false;
    if (*port == ':')
        port += 1 + strspn(port + 1, "0123456789");
    if (*port != '\0' || n == 0 || n >= sizeof(name))
        return false;
    memcpy(name, host, n);
    name[n] = '\0';
    if (v6)
        return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    if (strcasecmp(name, "localhost") == 0)
        return true;
    return inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/*
 * Development mode: loopback clients only, addressed to a loopback name (host_is_local_name).
 * Token mode: the bearer token, else the session
 * cookie (session.h), whose writes also carry its CSRF token; every secret is compared in
 * constant time. A bearer header wins over a cookie, so a wrong token is never excused.
 */
static enum op_auth operator_auth(const struct http_server *s, struct MHD_Connection *c,
                                  const char *remote, bool loopback, bool write)
{
    uint64_t now = loop_now_ms(s->loop);
    const char *v, *cookie;
    struct timespec wall;

    if (!s->token_mode) {
        if (!loopback)
            return OP_NOT_LOOPBACK;
        return host_is_local_name(
                   MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))
                   ? OP_OK
                   : OP_NOT_LOCAL_NAME;
    }
    v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (v != NULL && strncasecmp(v, "Bearer ", 7) == 0) {
        v += 7;
        while (*v == ' ')
            v++;
        /* The sign-in's rate, for the same secret: a guess is refused unchecked once an
         * address is over it, so a right one is not told apart from a wrong one. */
        if (!ratelimit_allows(s->bearer_fails, remote, (int64_t)now))
            return OP_BEARER_LIMITED;
        if (session_token_valid(&s->session, v))
            return OP_OK;
        ratelimit_take(s->bearer_fails, remote, (int64_t)now);
        return OP_BAD_BEARER;
    }
    cookie = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, SESSION_COOKIE);
    if (cookie == NULL)
        return OP_NONE;
    /* CLOCK_REALTIME, the clock the sign-in stamps the expiry with (app.c); time(NULL) reads
     * the coarse clock, a tick behind. */
    clock_gettime(CLOCK_REALTIME, &wall);
    if (!session_valid(&s->session, cookie, (int64_t)wall.tv_sec))
        return OP_BAD_SESSION;
    if (write &&
        !session_csrf_valid(&s->session, cookie,
                            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CSRF-Token")))
        return OP_NO_CSRF;
    return OP_OK;
}

static void auth_check(const struct http_server *s, struct MHD_Connection *c,
                       struct http_call *call)
{
    switch (operator_auth(s, c, call->remote, call->loopback, call->method != HTTP_GET)) {
    case OP_OK:
        return;
    case OP_NOT_LOOPBACK:
        call_fail(call, 403, "FORBIDDEN",
                  "operator endpoints answer only loopback clients in development mode");
        return;
    case OP_NOT_LOCAL_NAME:
        call_fail(call, 403, "FORBIDDEN",
                  "in development mode operator endpoints answer only requests addressed to "
                  "localhost, 127.0.0.1 or [::1] (Host '%.100s')",
                  MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST));
        return;
    case OP_NO_CSRF:
        call_fail(call, 403, "CSRF", "a write signed in by cookie needs its 'X-CSRF-Token' header");
        return;
    case OP_BEARER_LIMITED:
        log_warnx("bearer token from %s not checked: over %d wrong tokens a minute", call->remote,
                  HTTP_BEARER_FAILS_PER_MIN);
        call_fail(call, 429, "TOO_MANY_REQUESTS",
                  "more than %d wrong bearer tokens a minute from this address",
                  HTTP_BEARER_FAILS_PER_MIN);
        return;
    case OP_NONE:
        call_fail(call, 401, "UNAUTHORIZED",
                  "missing 'Authorization: Bearer' header (or a session: POST /api/session)");
        break;
    case OP_BAD_BEARER:
        call_fail(call, 401, "UNAUTHORIZED", "invalid bearer token");
        break;
    case OP_BAD_SESSION:
        call_fail(call, 401, "UNAUTHORIZED", "session cookie invalid or expired: sign in again");
        break;
    }
    call->extra_header = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
    memcpy(call->extra_value, "Bearer", sizeof("Bearer"));
}

/*
 * A browser sends Origin with every cross-site write; vendd serves no other site, so a write
 * from another origin is refused whoever it is (a loopback client in development mode, a
 * signed-in operator, a bearer token). Same origin: the Origin's host[:port] is the Host the
 * request was sent to (behind a proxy, the proxy must pass Host on). No Origin: not a browser's
 * cross-site request (curl, vendctl, Midtrans).
 */
static bool origin_ok(struct MHD_Connection *c)
{
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);

    if (origin == NULL)
        return true;
    if (host == NULL)
        return false;
    if (strncasecmp(origin, "http://", 7) == 0)
        origin += 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        origin += 8;
    else
        return false; /* "null" (a sandboxed or file: page), or another scheme */
    return strcasecmp(origin, host) == 0;
}

/* ---- routes ----------------------------------------------------------- */

static bool is_capture(const char *seg, size_t n)
{
    return n >= 2 && seg[0] == '{' && seg[n - 1] == '}';
}

/* The k-th {name} of pattern (without braces), or false if there is none. */
static bool pattern_capture(const char *pattern, size_t k, const char **name, size_t *len)
{
    const char *p = pattern;
    while (*p == '/') {
        p++;
        size_t n = strcspn(p, "/");
        if (is_capture(p, n)) {
            if (k == 0) {
                *name = p + 1;
                *len = n - 2;
                return true;
            }
            k--;
        }
        p += n;
    }
    return false;
}

struct span {
    const char *p;
    size_t n;
};

/* strcspn(s, "/") for the short segments of a path, without its set-up per call: every
 * request runs this for every route. */
static size_t seg_len(const char *s)
{
    size_t n = 0;

    while (s[n] != '\0' && s[n] != '/')
        n++;
    return n;
}

/* Segment-by-segment match; a capture takes any non-empty segment. A literal segment is
 * compared as it is walked, so most routes are left at their first differing byte. */
static bool path_match(const char *pattern, const char *path, struct span caps[HTTP_PARAMS_MAX],
                       size_t *ncaps)
{
    *ncaps = 0;
    while (*pattern == '/' && *path == '/') {
        pattern++;
        path++;
        /* pattern_ok(): a segment that starts with '{' is a capture. */
        size_t pn = *pattern == '{' ? seg_len(pattern) : 0;
        if (is_capture(pattern, pn)) {
            size_t sn = seg_len(path);
            if (sn == 0 || *ncaps == HTTP_PARAMS_MAX)
                return false;
            caps[*ncaps].p = path;
            caps[*ncaps].n = sn;
            (*ncaps)++;
            pattern += pn;
            path += sn;
            continue;
        }
        while (*pattern == *path && *pattern != '/' && *pattern != '\0') {
            pattern++;
            path++;
        }
        if ((*pattern != '/' && *pattern != '\0') || (*path != '/' && *path != '\0'))
            return false;
    }
    return *pattern == '\0' && *path == '\0';
}

/* C0 controls and DEL; a decoded %00 arrives as DEL (see unescape()). */
static bool is_control(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

static bool path_has_control(const char *path)
{
    for (; *path != '\0'; path++) {
        if (is_control((unsigned char)*path))
            return true;
    }
    return false;
}

/*
 * MHD's own %HH decoding (path and query arguments), except that a decoded NUL cannot end
 * the string early: handlers get C strings, so "/api/orders/N1%00x" would reach them as
 * order "N1". A NUL becomes DEL instead, a control character that on_access() refuses in a
 * path and that a query value keeps, visibly, instead of being cut.
 */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    size_t n = MHD_http_unescape(s);
    (void)cls;
    (void)c;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0')
            s[i] = 0x7f;
    }
    return n;
}

static struct http_conn *conn_of(struct MHD_Connection *c);

/*
 * The path's shape, before any route: no empty segment ("//", a trailing '/') and no "." or
 * ".." segment. No route has one, and a proxy or a cache in front may read such a path
 * otherwise than vendd does (normalising it, or not), so it is refused rather than matched
 * or left to a 404: the one rule every route gets, whatever its captures accept.
 */
static bool path_segments_ok(const char *path)
{
    if (strcmp(path, "/") == 0)
        return true;
    while (*path == '/') {
        size_t n = seg_len(++path);

        if (n == 0 || (n == 1 && path[0] == '.') || (n == 2 && path[0] == '.' && path[1] == '.'))
            return false;
        path += n;
    }
    return *path == '\0';
}

/* An encoded slash or backslash in the path part of a raw URI ("%2F", "%5c", ...). */
static bool raw_path_has_encoded_sep(const char *uri)
{
    for (; *uri != '\0' && *uri != '?'; uri++) {
        if (uri[0] == '%' && ((uri[1] == '2' && (uri[2] == 'f' || uri[2] == 'F')) ||
                              (uri[1] == '5' && (uri[2] == 'c' || uri[2] == 'C'))))
            return true;
    }
    return false;
}

/*
 * MHD's URI log callback: the request target as sent, before any decoding, which is the only
 * place an encoded slash can still be told from a real one. "/api/machines/VM01%2Fslots%2F1"
 * is one segment to a proxy routing on the raw path and the slot route once decoded: the
 * mark is read by on_access(). Returns NULL, the *con_cls on_access() expects first.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct http_conn *hc = conn_of(c);
    (void)cls;

    if (hc != NULL)
        hc->encoded_sep = raw_path_has_encoded_sep(uri);
    return NULL;
}

/* Finds the route for method+path, or records 404/405/400 in call. */
static void route_resolve(const struct http_server *s, const char *method_name, const char *path,
                          struct http_call *call)
{
    int method = method_parse(method_name);
    struct span caps[HTTP_PARAMS_MAX], found_caps[HTTP_PARAMS_MAX];
    size_t ncaps, nfound = 0;
    unsigned allow = 0;

    for (size_t i = 0; i < s->nroutes; i++) {
        const struct http_route *r = &s->routes[i];
        if (!path_match(r->pattern, path, caps, &ncaps))
            continue;
        allow |= 1u << r->method;
        if (call->route == NULL && method >= 0 && r->method == (enum http_method)method) {
            call->route = r;
            memcpy(found_caps, caps, sizeof(caps));
            nfound = ncaps;
        }
    }
    if (call->route == NULL) {
        if (allow == 0) {
            call_fail(call, 404, "NOT_FOUND", "no resource at '%.100s'", path);
            return;
        }
        call_fail(call, 405, "METHOD_NOT_ALLOWED", "method '%.16s' not allowed on '%.100s'",
                  method_name, path);
        call->extra_header = MHD_HTTP_HEADER_ALLOW;
        call->extra_value[0] = '\0';
        for (size_t m = 0; m < NMETHODS; m++) {
            size_t used = strlen(call->extra_value);
            if ((allow & (1u << m)) != 0)
                snprintf(call->extra_value + used, sizeof(call->extra_value) - used, "%s%s",
                         used > 0 ? ", " : "", s_method_names[m]);
        }
        return;
    }
    call->method = (enum http_method)method;
    for (size_t k = 0; k < nfound; k++) {
        if (!vend_order_id_valid_len(found_caps[k].p, found_caps[k].n)) {
            const char *name = "?";
            size_t len = 1;
            pattern_capture(call->route->pattern, k, &name, &len);
            call_fail(call, 400, "BAD_PARAM", "path parameter '%.*s' must match %s", (int)len, name,
                      VEND_ORDER_ID_PATTERN);
            return;
        }
        memcpy(call->params[k], found_caps[k].p, found_caps[k].n);
        call->params[k][found_caps[k].n] = '\0';
    }
    call->nparams = nfound;
}

/* A pattern is "/" or "/seg/seg...", each seg a literal without braces or
 * a {name} of [A-Za-z0-9_]; at most HTTP_PARAMS_MAX captures. */
static bool pattern_ok(const char *pattern)
{
    const char *p = pattern;
    size_t ncaps = 0;
    if (p == NULL || p[0] != '/')
        return false;
    if (strcmp(p, "/") == 0)
        return true;
    while (*p == '/') {
        p++;
        size_t n = strcspn(p, "/");
        if (n == 0)
            return false;
        if (is_capture(p, n)) {
            ncaps++;
            if (n == 2 || ncaps > HTTP_PARAMS_MAX)
                return false;
            for (size_t i = 1; i + 1 < n; i++) {
                unsigned char ch = (unsigned char)p[i];
                if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= '0' && ch <= '9') || ch == '_'))
                    return false;
            }
        } else if (memchr(p, '{', n) != NULL || memchr(p, '}', n) != NULL) {
            return false;
        }
        p += n;
    }
    return *p == '\0';
}

/* ---- responses -------------------------------------------------------- */

/* One extra header of an answer (http_reply_header()): name and value follow the struct. */
struct http_header_line {
    struct http_header_line *next;
    const char *name, *value;
};

void http_reply_header(struct http_response *res, const char *name, const char *value)
{
    size_t nn = strlen(name) + 1, vn = strlen(value) + 1;
    struct http_header_line *h = xmalloc(sizeof(*h) + nn + vn), **tail = &res->headers;
    char *p = (char *)(h + 1);

    assert(strpbrk(name, "\r\n:") == NULL && strpbrk(value, "\r\n") == NULL);
    memcpy(p, name, nn);
    memcpy(p + nn, value, vn);
    h->name = p;
    h->value = p + nn;
    h->next = NULL;
    /* In the order given: a reader of the answer sees what the handler wrote. */
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = h;
}

static void headers_free(struct http_response *res)
{
    while (res->headers != NULL) {
        struct http_header_line *h = res->headers;

        res->headers = h->next;
        free(h);
    }
}

void http_reply_json(struct http_response *res, int status, json_t *body)
{
    char *buf;

    /* A failed json_pack() in a handler (e.g. a string that is not UTF-8). */
    if (body == NULL) {
        log_warnx("HTTP handler built no JSON body for status %d", status);
        http_reply_error(res, 500, "INTERNAL", "the handler could not build its response");
        return;
    }
    /* One pass: json_dumpb() twice (to size, then to fill) serialised every body twice,
     * the largest cost of a read. jansson allocates with malloc, as res->body wants. */
    buf = json_dumps(body, JSON_COMPACT);
    if (buf == NULL)
        fatalx("cannot serialise JSON response");
    json_decref(body);
    free(res->body);
    res->status = status;
    res->body = buf;
    res->content_type = NULL;
}

void http_reply_error(struct http_response *res, int status, const char *code, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    json_t *j;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote client input (paths are percent-decoded to any byte);
     * jansson refuses strings that are not UTF-8, so keep printable ASCII. */
    for (char *p = msg; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    }
    j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    if (j == NULL)
        fatalx("cannot build JSON error response");
    http_reply_json(res, status, j);
}

/* The path as it may appear in a log line: printable ASCII, truncated. */
static void log_safe(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < size; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[i] = '\0';
}

/* Queues res (taking its body) and writes the access log line. */
static enum MHD_Result respond(struct MHD_Connection *c, struct http_call *call, const char *method,
                               const char *url, struct http_response *res)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    char path[LOG_PATH_MAX];

    if (res->body != NULL)
        r = MHD_create_response_from_buffer_with_free_callback(strlen(res->body), res->body, free);
    else
        r = MHD_create_response_from_buffer(res->static_len, (void *)(uintptr_t)res->static_body,
                                            MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(res->body);
        res->body = NULL;
        headers_free(res);
        log_warnx("cannot create HTTP response for '%s'", method);
        return MHD_NO;
    }
    if (res->body != NULL || res->static_body != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                res->content_type != NULL ? res->content_type : "application/json");
    res->body = NULL;
    if (call->extra_header != NULL && res->status == call->err_status)
        MHD_add_response_header(r, call->extra_header, call->extra_value);
    for (const struct http_header_line *h = res->headers; h != NULL; h = h->next)
        MHD_add_response_header(r, h->name, h->value);
    headers_free(res);
    ret = MHD_queue_response(c, (unsigned)res->status, r);
    MHD_destroy_response(r);
    log_safe(path, sizeof(path), url);
    log_debug("http %s %s %s %d %lluus", call->remote, method, path, res->status,
              (unsigned long long)elapsed_us(&call->start));
    return ret;
}

/* ---- streams: MHD's side ---------------------------------------------- */

static void stream_unwatch(struct http_stream *st)
{
    if (!st->watched)
        return;
    loop_io_del(st->server->loop, st->fd);
    st->watched = false;
}

/*
 * A suspended connection is out of MHD's sight, so a client that closes its end would hold
 * the stream until the next wake. Its socket turns readable then (a listening client sends
 * nothing after its request): end the stream at once. Bytes from the client are MHD's
 * business once the stream wakes; stop watching so they do not spin the loop.
 */
static void on_stream_fd(void *arg, int fd, unsigned events)
{
    struct http_stream *st = arg;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

    (void)events;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    stream_unwatch(st);
    if (n <= 0)
        http_stream_end(st);
}

/* MHD's content reader. Nothing to send: suspend, so MHD neither spins on the reader nor
 * times the connection out, until http_stream_wake() resumes it. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_stream *st = cls;
    long n;

    (void)pos;
    if (st->ending)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    n = st->read_fn(st->arg, buf, max);
    if (n < 0 || (size_t)n > max) {
        st->ending = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (n > 0)
        return (ssize_t)n;
    st->asleep = true;
    MHD_suspend_connection(st->conn);
    if (st->fd >= 0 && loop_io_add(st->server->loop, st->fd, LOOP_READ, on_stream_fd, st) == 0)
        st->watched = true;
    return 0;
}

/* MHD's free callback for the response: the stream is over. */
static void stream_free(void *cls)
{
    struct http_stream *st = cls;
    struct http_server *s = st->server;

    stream_unwatch(st);
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    st->done_fn(st->arg);
    free(st);
}

/* Queues the stream the handler started, as respond() queues a body. */
static enum MHD_Result respond_stream(struct MHD_Connection *c, struct http_call *call,
                                      const char *method, const char *url)
{
    struct http_stream *st = call->stream;
    struct http_response res = {0};
    struct MHD_Response *r;
    enum MHD_Result ret;
    char path[LOG_PATH_MAX];

    call->stream = NULL;
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, st,
                                          stream_free);
    if (r == NULL) {
        log_warnx("cannot create HTTP stream response for '%s'", call->route->pattern);
        stream_free(st);
        http_reply_error(&res, 500, "INTERNAL", "cannot start the stream");
        return respond(c, call, method, url, &res);
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, st->content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    /* A reverse proxy (nginx) would otherwise hold the events back to fill its buffer. */
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    /* MHD owns st from here: a failed queue frees the response, and stream_free runs. */
    ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    log_safe(path, sizeof(path), url);
    log_debug("http %s %s %s 200 stream %lluus", call->remote, method, path,
              (unsigned long long)elapsed_us(&call->start));
    return ret;
}

/* ---- request processing ----------------------------------------------- */

static bool content_type_is_json(const char *ct)
{
    static const char want[] = "application/json";
    size_t n = sizeof(want) - 1;
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

/* Appends upload data to the body, or drops it once the request failed. */
static enum MHD_Result body_append(const struct http_server *s, struct http_call *call,
                                   const char *data, size_t n)
{
    if (call->err_status == 0 && !call->too_large && n > s->body_max - call->body_len)
        call->too_large = true;
    if (call->err_status != 0 || call->too_large) {
        call->discarded += n;
        if (call->discarded / DISCARD_FACTOR > s->body_max) {
            log_warnx("closing HTTP connection from %s: request body far over %zu bytes",
                      call->remote, s->body_max);
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (call->body_len + n + 1 > call->body_cap) {
        size_t cap = call->body_cap != 0 ? call->body_cap : 1024;
        while (cap < call->body_len + n + 1)
            cap *= 2;
        if (cap > s->body_max + 1)
            cap = s->body_max + 1;
        call->body = xrealloc(call->body, cap);
        call->body_cap = cap;
    }
    memcpy(call->body + call->body_len, data, n);
    call->body_len += n;
    call->body[call->body_len] = '\0';
    return MHD_YES;
}

/* Body checks for POST/PUT/PATCH; on success *json is the object or NULL. */
static void body_parse(struct MHD_Connection *c, struct http_call *call, json_t **json)
{
    json_error_t jerr;
    json_t *j;

    *json = NULL;
    if (call->body_len == 0) {
        if ((call->route->flags & HTTP_BODY_OPTIONAL) == 0)
            call_fail(call, 400, "MALFORMED", "request body is empty; expected a JSON object");
        return;
    }
    if (!content_type_is_json(
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE))) {
        call_fail(call, 415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json");
        return;
    }
    j = json_loadb(call->body, call->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        call_fail(call, 400, "MALFORMED", "invalid JSON body at line %d, column %d: %s", jerr.line,
                  jerr.column, jerr.text);
        return;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        call_fail(call, 400, "MALFORMED", "request body must be a JSON object");
        return;
    }
    *json = j;
}

static void handler_run(struct http_server *s, struct MHD_Connection *c, struct http_call *call,
                        const char *url, struct http_response *res)
{
    struct http_request req;
    json_t *json = NULL;
    uint64_t version[2];
    bool cached;

    if (method_has_body(call->method)) {
        body_parse(c, call, &json);
        if (call->err_status != 0)
            return;
    }
    memset(&req, 0, sizeof(req));
    req.method = call->method;
    req.path = url;
    for (size_t k = 0; k < call->nparams; k++)
        req.params[k] = call->params[k];
    req.nparams = call->nparams;
    req.body = call->body != NULL ? call->body : "";
    req.body_len = call->body_len;
    req.json = json;
    req.loopback = call->loopback;
    req.remote_addr = call->remote;
    req.pattern_ = call->route->pattern;
    req.conn_ = c;
    req.call_ = call;

    cached = s->cache != NULL && (call->route->flags & HTTP_CACHED) != 0 &&
             call->method == HTTP_GET &&
             MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, NULL, NULL) == 0;
    if (cached) {
        s->data_version(s->ctx, call->route->pattern, version);
        res->body = http_cache_get(s->cache, url, version);
        if (res->body != NULL) {
            res->status = 200;
            json_decref(json);
            return;
        }
    }
    call->route->fn(s->ctx, &req, res);
    if (cached && !call->deferred && res->status == 200 && res->body != NULL &&
        res->content_type == NULL)
        http_cache_put(s->cache, url, version, res->body);
    json_decref(json);
    if (call->deferred || call->stream != NULL) {
        headers_free(res); /* http.h: headers go with an answer given now */
        return;            /* answered later through http_deferred_reply(), or streamed */
    }
    if (res->status < 100 || res->status > 599) {
        log_warnx("handler for '%s' %s set no valid response (status %d)", call->route->pattern,
                  s_method_names[call->method], res->status);
        http_reply_error(res, 500, "INTERNAL", "the handler produced no response");
    }
}

/* ---- connection limits and deadlines ---------------------------------- */

/* The limits' key of sa (see ADDR_KEY_LEN) and whether it is the host's own address. */
static void addr_key(const struct sockaddr *sa, unsigned char key[ADDR_KEY_LEN], bool *local)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char v4local[4] = {127, 0, 0, 1};

    memset(key, 0, ADDR_KEY_LEN);
    *local = false;
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        key[0] = 4;
        memcpy(key + 1, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        if (memcmp(b, v4mapped, sizeof(v4mapped)) == 0) {
            key[0] = 4;
            memcpy(key + 1, b + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, b, 8);
            *local = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
            return;
        }
    }
    *local = key[0] == 4 && memcmp(key + 1, v4local, 4) == 0;
}

static void on_sweep(void *arg);

/* Make sure the sweep runs by at_ms. */
static void sweep_by(struct http_server *s, uint64_t at_ms)
{
    uint64_t now = loop_now_ms(s->loop);

    if (s->sweep_id != 0 && s->sweep_at <= at_ms)
        return;
    loop_timer_del(s->loop, s->sweep_id);
    s->sweep_at = at_ms;
    s->sweep_id = loop_timer_add(s->loop, at_ms > now ? at_ms - now : 0, on_sweep, s);
}

static void conn_phase(struct http_server *s, struct http_conn *hc, enum conn_phase phase)
{
    if (hc == NULL || hc->phase == PHASE_CLOSING || s->stopping)
        return;
    hc->phase = phase;
    if (phase != PHASE_HEADERS && phase != PHASE_BODY)
        return;
    hc->deadline_ms = loop_now_ms(s->loop) + (phase == PHASE_HEADERS ? s->header_ms : s->body_ms);
    sweep_by(s, hc->deadline_ms);
}

/*
 * Closes the connections past their phase's deadline. MHD 0.9 has no call that closes a
 * connection from outside its handlers, so the socket is shut down (not closed: the fd stays
 * MHD's): MHD sees the end of the stream on its next run and closes the connection itself.
 */
static void on_sweep(void *arg)
{
    struct http_server *s = arg;
    uint64_t now = loop_now_ms(s->loop), next = UINT64_MAX;

    s->sweep_id = 0;
    for (struct http_conn *hc = s->conns; hc != NULL; hc = hc->next) {
        if (hc->phase != PHASE_HEADERS && hc->phase != PHASE_BODY)
            continue;
        if (hc->deadline_ms > now) {
            next = hc->deadline_ms < next ? hc->deadline_ms : next;
            continue;
        }
        if (hc->phase == PHASE_HEADERS)
            s->stats.closed_header_deadline++;
        else
            s->stats.closed_body_deadline++;
        log_debug(
            "HTTP connection closed: its %s took longer than %llu s",
            hc->phase == PHASE_HEADERS ? "headers" : "body",
            (unsigned long long)((hc->phase == PHASE_HEADERS ? s->header_ms : s->body_ms) / 1000));
        hc->phase = PHASE_CLOSING;
        if (hc->fd >= 0)
            shutdown(hc->fd, SHUT_RDWR);
    }
    if (next != UINT64_MAX)
        sweep_by(s, next);
}

/* MHD's accept policy: the per-address cap, then the room left outside the reserve. The host's
 * own address has no per-address cap: it is the operator's tools, or a reverse proxy in front
 * of every client, and it is bounded by max_conns. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa, socklen_t len)
{
    struct http_server *s = cls;
    unsigned char key[ADDR_KEY_LEN];
    unsigned same = 0;
    bool local;
    (void)len;

    addr_key(sa, key, &local);
    if (!local && s->per_addr_max != HTTP_PER_ADDR_OFF) {
        for (const struct http_conn *hc = s->conns; hc != NULL; hc = hc->next)
            same += memcmp(hc->key, key, ADDR_KEY_LEN) == 0;
        if (same >= s->per_addr_max) {
            s->stats.refused_per_address++;
            return MHD_NO;
        }
    }
    if (s->nconns >= s->max_conns || (!local && s->npublic >= s->max_conns - s->local_reserve)) {
        s->stats.refused_full++;
        return MHD_NO;
    }
    return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    struct http_conn *hc = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        hc = xcalloc(1, sizeof(*hc));
        addr_key(ci != NULL ? ci->client_addr : NULL, hc->key, &hc->local);
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        hc->fd = ci != NULL ? ci->connect_fd : -1;
        hc->next = s->conns;
        if (s->conns != NULL)
            s->conns->prev = hc;
        s->conns = hc;
        s->nconns++;
        s->npublic += !hc->local;
        *socket_context = hc;
        conn_phase(s, hc, PHASE_HEADERS);
        return;
    }
    if (hc == NULL)
        return;
    if (hc->prev != NULL)
        hc->prev->next = hc->next;
    else
        s->conns = hc->next;
    if (hc->next != NULL)
        hc->next->prev = hc->prev;
    s->nconns--;
    s->npublic -= !hc->local;
    free(hc);
    *socket_context = NULL;
}

static struct http_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct http_call *call = *con_cls;
    struct http_response res = {0};
    (void)version;

    if (call == NULL) {
        const char *cl;
        call = xcalloc(1, sizeof(*call));
        clock_gettime(CLOCK_MONOTONIC, &call->start);
        call->server = s;
        call->conn = c;
        *con_cls = call;
        conn_phase(s, conn_of(c), PHASE_BODY);
        client_address(c, call);
        /* Before the route: a control character has no business in any path, and one in
         * a literal segment would otherwise be a misleading 404; nor has an encoded slash,
         * an empty, "." or ".." segment (path_segments_ok(), on_uri()). */
        if (path_has_control(url))
            call_fail(call, 400, "BAD_PATH",
                      "path contains a control character (%%00-%%1F or %%7F)");
        else if (conn_of(c) != NULL && conn_of(c)->encoded_sep)
            call_fail(call, 400, "BAD_PATH",
                      "path contains an encoded '/' or '\\' (%%2F, %%5C): an identifier never "
                      "holds one");
        else if (!path_segments_ok(url))
            call_fail(call, 400, "BAD_PATH",
                      "path has an empty, '.' or '..' segment: send the path itself, "
                      "without '//' or a trailing '/'");
        else
            route_resolve(s, method, url, call);
        if (call->route != NULL && call->method != HTTP_GET && !origin_ok(c))
            call_fail(call, 403, "CSRF", "a write from another origin (Origin '%.100s')",
                      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"));
        if (call->route != NULL && (call->route->flags & HTTP_OPERATOR) != 0)
            auth_check(s, c, call);
        /* A declared body over the limit is refused before it is read: the
         * only response queued on the first call, so MHD closes the
         * connection instead of reading the rest. */
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno != 0 || end == cl || v > s->body_max) {
                http_reply_error(&res, 413, "TOO_LARGE", "request body exceeds %zu bytes",
                                 s->body_max);
                return respond(c, call, method, url, &res);
            }
        }
        return MHD_YES;
    }
    if (call->deferred) {
        /* Resumed: the answer is ready (or, not yet, a spurious call while suspended). */
        if (!call->answered)
            return MHD_YES;
        res = call->later;
        memset(&call->later, 0, sizeof(call->later));
        return respond(c, call, method, url, &res);
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return body_append(s, call, upload_data, n);
    }
    conn_phase(s, conn_of(c), PHASE_ANSWER);
    if (call->err_status == 0 && call->too_large)
        call_fail(call, 413, "TOO_LARGE", "request body exceeds %zu bytes", s->body_max);
    if (call->err_status == 0)
        handler_run(s, c, call, url, &res);
    if (call->deferred && call->err_status == 0)
        return MHD_YES; /* suspended in the handler: MHD calls again once resumed */
    if (call->stream != NULL)
        return respond_stream(c, call, method, url);
    if (call->err_status != 0)
        http_reply_error(&res, call->err_status, call->err_code, "%s", call->err_msg);
    return respond(c, call, method, url, &res);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_call *call = *con_cls;
    (void)toe;
    /* Kept alive, the connection waits for its next request's headers. */
    conn_phase(cls, conn_of(c), PHASE_HEADERS);
    if (call == NULL)
        return;
    /* Set only during the handler's call, which answers with it at once. */
    assert(call->stream == NULL);
    free(call->body);
    free(call->later.body);
    free(call);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[MSG_MAX];
    size_t n;
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
        msg[--n] = '\0';
    log_warnx("libmicrohttpd: %s", msg);
}

/* ---- the loop --------------------------------------------------------- */

static void on_timer(void *arg);

/*
 * MHD's timeout only changes when MHD runs, so it is re-read after every
 * MHD_run: one re-arm per run is all it needs, where a prepare hook would
 * ask MHD on every loop iteration. Driving MHD from elsewhere (say
 * MHD_resume_connection) would need a re-arm there too.
 */
static void mhd_run(struct http_server *s)
{
    MHD_UNSIGNED_LONG_LONG ms = TIMER_MAX_MS;

    if (MHD_run(s->mhd) != MHD_YES)
        log_warnx("libmicrohttpd: MHD_run failed");
    loop_timer_del(s->loop, s->timer_id);
    if (MHD_get_timeout(s->mhd, &ms) != MHD_YES || ms > TIMER_MAX_MS)
        ms = TIMER_MAX_MS;
    /* An answer given during this run (a handler that deferred and answered at once, or a
     * webhook completing another request) is sent on the next run: make it now. */
    if (s->resumed)
        ms = 0;
    s->resumed = false;
    s->timer_id = loop_timer_add(s->loop, ms, on_timer, s);
}

static void on_timer(void *arg)
{
    struct http_server *s = arg;
    s->timer_id = 0;
    mhd_run(s);
}

static void on_epoll(void *arg, int fd, unsigned events)
{
    (void)fd;
    (void)events;
    mhd_run(arg);
}

/* ---- lifecycle -------------------------------------------------------- */

static int routes_check(const struct http_route *routes, size_t nroutes)
{
    for (size_t i = 0; i < nroutes; i++) {
        const struct http_route *r = &routes[i];
        if ((unsigned)r->method >= NMETHODS || r->fn == NULL || !pattern_ok(r->pattern)) {
            log_warnx("bad HTTP route %zu '%s': needs a method, a handler and a pattern like "
                      "/api/x/{id}",
                      i, r->pattern != NULL ? r->pattern : "(null)");
            return VEND_EINVAL;
        }
    }
    return VEND_OK;
}

int http_server_start(struct http_server **out, struct loop *loop, const struct http_config *cfg,
                      const struct http_route *routes, size_t nroutes, void *ctx)
{
    struct http_server *s = NULL;
    struct addrinfo hints, *ai = NULL;
    const union MHD_DaemonInfo *info;
    char port[8];
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    int rc, gai;

    *out = NULL;
    if (cfg == NULL || cfg->host == NULL || cfg->host[0] == '\0') {
        log_warnx("bad HTTP config: host is empty");
        return VEND_EINVAL;
    }
    if (cfg->api_token != NULL && cfg->api_token[0] == '\0') {
        log_warnx("bad HTTP config: api_token is empty (unset it for development mode)");
        return VEND_EINVAL;
    }
    if (cfg->body_max > (size_t)INT_MAX) {
        log_warnx("bad HTTP config: body_max %zu is too large", cfg->body_max);
        return VEND_EINVAL;
    }
    if (cfg->max_conns != 0 && cfg->local_reserve >= cfg->max_conns) {
        log_warnx("bad HTTP config: the local reserve (%u) must be below the connection "
                  "limit (%u)",
                  cfg->local_reserve, cfg->max_conns);
        return VEND_EINVAL;
    }
    if (cfg->max_conns == 0 && cfg->local_reserve >= HTTP_MAX_CONNS_DEFAULT) {
        log_warnx("bad HTTP config: the local reserve (%u) must be below the connection "
                  "limit (%u)",
                  cfg->local_reserve, HTTP_MAX_CONNS_DEFAULT);
        return VEND_EINVAL;
    }
    rc = routes_check(routes, nroutes);
    if (rc < 0)
        return rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", (unsigned)cfg->port);
    gai = getaddrinfo(cfg->host, port, &hints, &ai);
    if (gai != 0) {
        log_warnx("cannot resolve HTTP host '%s': %s", cfg->host, gai_strerror(gai));
        return VEND_EIO;
    }

    s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->routes = routes;
    s->nroutes = nroutes;
    s->ctx = ctx;
    s->epoll_fd = -1;
    s->body_max = cfg->body_max != 0 ? cfg->body_max : HTTP_BODY_MAX_DEFAULT;
    s->data_version = cfg->data_version;
    if (s->data_version != NULL)
        s->cache = http_cache_new();
    if (cfg->api_token != NULL) {
        s->token_mode = true;
        session_init(&s->session, cfg->api_token);
        s->bearer_fails = ratelimit_new(HTTP_BEARER_FAILS_PER_MIN);
    }
    s->max_conns = cfg->max_conns != 0 ? cfg->max_conns : HTTP_MAX_CONNS_DEFAULT;
    s->local_reserve = cfg->local_reserve;
    s->per_addr_max = cfg->per_addr_max != 0 ? cfg->per_addr_max : HTTP_PER_ADDR_DEFAULT;
    s->header_ms = 1000u * (uint64_t)(cfg->header_s != 0 ? cfg->header_s : HTTP_HEADER_S_DEFAULT);
    s->body_ms = 1000u * (uint64_t)(cfg->body_s != 0 ? cfg->body_s : HTTP_BODY_S_DEFAULT);
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_DUAL_STACK;

    s->mhd = MHD_start_daemon(
        flags, cfg->port, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_UNESCAPE_CALLBACK, unescape, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_CONNECTION_LIMIT, s->max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    if (s->mhd == NULL) {
        log_warnx("cannot listen for HTTP on '%s' port %u", cfg->host, (unsigned)cfg->port);
        rc = VEND_EIO;
        goto out;
    }
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL || info->epoll_fd < 0) {
        log_warnx("cannot get libmicrohttpd's epoll fd");
        rc = VEND_EIO;
        goto out;
    }
    if (loop_io_add(loop, info->epoll_fd, LOOP_READ, on_epoll, s) < 0) {
        log_warnx("cannot watch libmicrohttpd's epoll fd %d", info->epoll_fd);
        rc = VEND_EIO;
        goto out;
    }
    s->epoll_fd = info->epoll_fd;
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info != NULL ? info->port : cfg->port;
    s->timer_id = loop_timer_add(loop, TIMER_MAX_MS, on_timer, s);
    log_info("HTTP listening on %s port %u%s", cfg->host, (unsigned)s->port,
             s->token_mode ? "" : " (development mode: operator API for loopback only)");
    *out = s;
    s = NULL;
    rc = VEND_OK;
out:
    freeaddrinfo(ai);
    http_server_free(s);
    return rc;
}

const struct http_stats *http_server_stats(const struct http_server *s)
{
    ((struct http_server *)s)->stats.open = s->nconns;
    return &s->stats;
}

uint16_t http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_free(struct http_server *s)
{
    if (s == NULL)
        return;
    /* MHD cannot stop with suspended connections: whoever still owes an answer is told
     * the service is going away. Answers given since the loop's last run of MHD (resumed,
     * as at shutdown) are sent the same way. */
    if (s->deferred != NULL || s->resumed) {
        while (s->deferred != NULL)
            http_deferred_error((struct http_deferred *)s->deferred, 503, "UNAVAILABLE",
                                "vendd is stopping");
        /* Let MHD send those answers before it closes the connections: a few runs, a few
         * milliseconds at most (a client that does not read gets its connection closed). */
        for (int i = 0; i < 20 && s->mhd != NULL; i++) {
            MHD_run(s->mhd);
            usleep(1000);
        }
    }
    /* MHD must not stop with a suspended connection (microhttpd.h): wake the streams that
     * sleep; MHD_stop_daemon() then closes every connection, and each stream's done_fn runs. */
    for (struct http_stream *st = s->streams; st != NULL; st = st->next) {
        st->ending = true;
        stream_unwatch(st);
        if (st->asleep) {
            st->asleep = false;
            MHD_resume_connection(st->conn);
        }
    }
    if (s->epoll_fd >= 0)
        loop_io_del(s->loop, s->epoll_fd);
    loop_timer_del(s->loop, s->timer_id);
    s->stopping = true;
    if (s->mhd != NULL)
        MHD_stop_daemon(s->mhd);
    loop_timer_del(s->loop, s->sweep_id);
    assert(s->streams == NULL && s->conns == NULL);
    session_clear(&s->session);
    ratelimit_free(s->bearer_fails);
    http_cache_free(s->cache);
    free(s);
}

/* ---- accessors -------------------------------------------------------- */

const char *http_query(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn_, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn_, MHD_HEADER_KIND, name);
}

const char *http_param(const struct http_request *req, const char *name)
{
    const char *cap;
    size_t len;
    for (size_t k = 0; k < req->nparams; k++) {
        if (!pattern_capture(req->pattern_, k, &cap, &len))
            break;
        if (strlen(name) == len && memcmp(cap, name, len) == 0)
            return req->params[k];
    }
    return NULL;
}

const char *http_cookie(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn_, MHD_COOKIE_KIND, name);
}

bool http_is_operator(const struct http_request *req)
{
    const struct http_call *call = req->call_;

    return operator_auth(call->server, req->conn_, call->remote, req->loopback,
                         req->method != HTTP_GET) == OP_OK;
}

const struct session *http_session(const struct http_request *req)
{
    const struct http_call *call = req->call_;

    return call->server->token_mode ? &call->server->session : NULL;
}

/* ---- answers given later ---------------------------------------------- */

struct http_deferred *http_defer(const struct http_request *req)
{
    struct http_call *call = req->call_;

    assert(!call->deferred);
    call->deferred = true;
    call->next_deferred = call->server->deferred;
    call->server->deferred = call;
    MHD_suspend_connection(call->conn);
    return (struct http_deferred *)call;
}

/* A resumed connection is served on MHD's next run: make it soon, from the loop, not from
 * inside a caller that may itself be inside MHD_run (mhd_run re-arms at 0 then, seeing
 * resumed). */
static void run_soon(struct http_server *s)
{
    s->resumed = true;
    loop_timer_del(s->loop, s->timer_id);
    s->timer_id = loop_timer_add(s->loop, 0, on_timer, s);
}

static void deferred_answer(struct http_call *call, const struct http_response *res)
{
    struct http_server *s = call->server;

    for (struct http_call **pp = &s->deferred; *pp != NULL; pp = &(*pp)->next_deferred) {
        if (*pp == call) {
            *pp = call->next_deferred;
            break;
        }
    }
    call->later = *res;
    call->answered = true;
    MHD_resume_connection(call->conn);
    run_soon(s);
}

void http_deferred_reply(struct http_deferred *d, int status, json_t *body)
{
    struct http_response res = {0};

    http_reply_json(&res, status, body);
    deferred_answer((struct http_call *)d, &res);
}

void http_deferred_error(struct http_deferred *d, int status, const char *code, const char *fmt,
                         ...)
{
    struct http_response res = {0};
    char msg[MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error(&res, status, code, "%s", msg);
    deferred_answer((struct http_call *)d, &res);
}

/* ---- streams ---------------------------------------------------------- */

struct http_stream *http_stream_start(const struct http_request *req, const char *content_type,
                                      http_stream_read_fn *read_fn, http_stream_done_fn *done_fn,
                                      void *arg)
{
    struct http_call *call = req->call_;
    struct http_server *s = call->server;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(call->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct http_stream *st;

    assert(!call->deferred && call->stream == NULL && read_fn != NULL && done_fn != NULL);
    st = xcalloc(1, sizeof(*st));
    st->server = s;
    st->conn = call->conn;
    st->fd = ci != NULL ? ci->connect_fd : -1;
    if (st->fd >= 0 &&
        setsockopt(st->fd, SOL_SOCKET, SO_SNDBUF, &(int){STREAM_SNDBUF}, sizeof(int)) < 0)
        log_warn("cannot bound the send buffer of the stream to '%s'", call->remote);
    st->read_fn = read_fn;
    st->done_fn = done_fn;
    st->arg = arg;
    st->content_type = content_type;
    st->next = s->streams;
    if (s->streams != NULL)
        s->streams->prev = st;
    s->streams = st;
    call->stream = st;
    return st;
}

void http_stream_wake(struct http_stream *st)
{
    if (!st->asleep)
        return;
    stream_unwatch(st);
    st->asleep = false;
    MHD_resume_connection(st->conn);
    run_soon(st->server);
}

void http_stream_end(struct http_stream *st)
{
    st->ending = true;
    stream_unwatch(st);
    if (st->asleep) {
        st->asleep = false;
        MHD_resume_connection(st->conn);
    }
    /* A client that stopped reading never lets MHD call the reader again, which would close
     * the connection: a timeout of a second, counted from its last activity, does. */
    MHD_set_connection_option(st->conn, MHD_CONNECTION_OPTION_TIMEOUT, 1u);
    run_soon(st->server);
}
