/*
 * http.h - the HTTP server: libmicrohttpd (MHD) driven by the daemon's loop,
 * a table of routes, JSON bodies in and out, and the operator auth policy
 * (SPEC §5, §7). docs/internals/http.md explains the design.
 *
 * Invariants:
 * - Everything runs on the loop's thread; MHD has no thread of its own.
 * - A handler sees only requests that matched its route, passed auth and,
 *   for POST/PUT/PATCH, carried a JSON object (or, with HTTP_BODY_OPTIONAL,
 *   no body at all). Everything else is answered by the server itself with
 *   {"error":{"code":"...","message":"..."}} and the fitting status.
 * - Every response is sent on the handler's second MHD call, never the first,
 *   so keep-alive works (docs/internals/http.md, "The two-call rule").
 * - A POST/PUT/PATCH/DELETE whose Origin header is not this server's origin (its
 *   Host) is refused 403 CSRF on every route, in every mode: a browser on
 *   another site never writes here, whatever credentials it holds.
 */
#ifndef VENDD_HTTP_H
#define VENDD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>

#include <jansson.h>

struct loop;
struct session;
struct sockaddr;
struct MHD_Connection;
struct http_server;

/* At most this many {name} captures per pattern; each is 1..HTTP_PARAM_MAX bytes. */
#define HTTP_PARAMS_MAX 4
#define HTTP_PARAM_MAX  64
/* Default for http_config.body_max when it is 0. */
#define HTTP_BODY_MAX_DEFAULT (64u * 1024u)

enum http_method {
    HTTP_GET,
    HTTP_POST,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_DELETE,
};

enum http_route_flags {
    HTTP_PUBLIC = 0,
    /* Operator endpoint: loopback only in development mode, else a bearer token or the
     * session cookie (a write with the cookie also needs X-CSRF-Token). */
    HTTP_OPERATOR = 1u << 0,
    /* POST/PUT/PATCH may come without a body (req->json is then NULL). */
    HTTP_BODY_OPTIONAL = 1u << 1,
    /* A GET whose answer depends only on its path and the database: kept while the data
     * version stays the same (http_config data_version); only asked without a query. */
    HTTP_CACHED = 1u << 2,
};

/* Everything here is valid during the handler call only. */
struct http_request {
    enum http_method method;
    const char *path; /* URL-decoded, without the query string; no control characters */
    /* {name} captures in pattern order, each matching VEND_ORDER_ID_PATTERN
     * (vend/topic.h), the widest identifier rule. */
    const char *params[HTTP_PARAMS_MAX];
    size_t nparams;
    const char *body; /* NUL-terminated raw body, "" when there is none */
    size_t body_len;
    json_t *json; /* the parsed body (an object) for POST/PUT/PATCH, else NULL; borrowed */
    bool loopback;
    const char *remote_addr; /* numeric address of the client */
    /* Private to http.c: use the accessors below. */
    const char *pattern_;
    struct MHD_Connection *conn_;
    void *call_;
};

struct http_header_line;

/*
 * What a handler answers. The server zeroes it before the call. body is a
 * NUL-terminated string allocated with xmalloc (or malloc); the server frees
 * it. Without body, static_body (static_len bytes, any bytes) is sent and
 * never freed: compiled-in files. content_type is a static string; NULL means
 * "application/json". headers are added with http_reply_header().
 * status 0 after the handler returns means it forgot to answer: 500.
 */
struct http_response {
    int status;
    char *body;
    const char *content_type;
    const void *static_body;
    size_t static_len;
    struct http_header_line *headers; /* private: http_reply_header() */
};

typedef void http_handler_fn(void *ctx, const struct http_request *req, struct http_response *res);

/*
 * One row of the route table. pattern is an absolute path whose segments are
 * literals or "{name}" captures, e.g. "/api/orders/{id}". Routes are tried in
 * table order and the first match wins, so put "/api/orders/summary" before
 * "/api/orders/{id}". The table and its strings must outlive the server.
 */
struct http_route {
    enum http_method method;
    const char *pattern;
    unsigned flags; /* enum http_route_flags */
    http_handler_fn *fn;
};

struct http_config {
    const char *host;      /* IPv4/IPv6 literal or a name ("localhost"), resolved once */
    uint16_t port;         /* 0 = ephemeral, see http_server_port() */
    const char *api_token; /* NULL = development mode; copied */
    size_t body_max;       /* largest accepted request body; 0 = HTTP_BODY_MAX_DEFAULT */
    /* Optional: the data version under the answers of the route with this pattern
     * (db_version_of()), with ctx. With it, the answers of HTTP_CACHED routes are kept while
     * it stays the same (http_cache.h). */
    void (*data_version)(void *ctx, const char *pattern, uint64_t version[2]);
    /* Connection limits (docs/internals/http.md, "Limits"); 0 = the default, but for
     * local_reserve, where 0 is none. */
    unsigned max_conns;     /* every connection at once */
    unsigned local_reserve; /* of max_conns, only for 127.0.0.1 and ::1; below max_conns */
    unsigned per_addr_max;  /* per address but the host's own (IPv6: per /64); or _OFF */
    unsigned header_s;      /* a request's headers must be in within this many seconds */
    unsigned body_s;        /* and its body within this many seconds after its headers */
};

#define HTTP_MAX_CONNS_DEFAULT 1000u
#define HTTP_PER_ADDR_DEFAULT  32u
#define HTTP_PER_ADDR_OFF      UINT_MAX
#define HTTP_HEADER_S_DEFAULT  10u
#define HTTP_BODY_S_DEFAULT    30u

/* Token mode: wrong bearer tokens a client address may send a minute, as many as sign-ins
 * (API_SIGNIN_PER_MIN); past it, its bearer tokens are refused (429) without being checked. */
#define HTTP_BEARER_FAILS_PER_MIN 10

/* What the limits did, since start (for /metrics). */
struct http_stats {
    uint64_t refused_per_address; /* accepted and closed at once: its address has its fill */
    uint64_t refused_full;        /* the same: no room left for it (the reserve is not its) */
    uint64_t closed_header_deadline;
    uint64_t closed_body_deadline;
    uint64_t open; /* connections open now */
};

/*
 * Binds cfg->host:cfg->port and starts serving on loop. ctx is passed to
 * every handler. routes are validated (patterns, capture count, methods).
 * On success *out owns the server; on failure *out is NULL and the return is
 * VEND_EINVAL (bad config or route table, logged with the subject) or
 * VEND_EIO (cannot resolve, bind or hook into the loop, logged).
 */
int http_server_start(struct http_server **out, struct loop *loop, const struct http_config *cfg,
                      const struct http_route *routes, size_t nroutes, void *ctx);

/* The port actually bound (useful with port 0). */
uint16_t http_server_port(const struct http_server *s);

/* The limits' counters; valid while s lives. */
const struct http_stats *http_server_stats(const struct http_server *s);

/* Closes all connections and frees s. NULL is fine. Not from inside a handler. */
void http_server_free(struct http_server *s);

/* Query argument name (URL-decoded, so any bytes but NUL: a %00 arrives as DEL;
 * check before putting it in JSON) or NULL. Borrowed, valid during the handler. */
const char *http_query(const struct http_request *req, const char *name);
/* Request header name (case-insensitive) or NULL. Borrowed, valid during the handler. */
const char *http_header(const struct http_request *req, const char *name);
/* The capture named name in the route's pattern (without braces) or NULL. */
const char *http_param(const struct http_request *req, const char *name);

/* Sets status and body = the compact JSON of body; body is stolen (decref'd).
 * body NULL (a failed json_pack) becomes a 500 INTERNAL error. */
void http_reply_json(struct http_response *res, int status, json_t *body);
/* Sets status and {"error":{"code":code,"message":...}}; the message is
 * truncated at 255 bytes and bytes outside printable ASCII become '?'.
 * Never put secrets in it. */
void http_reply_error(struct http_response *res, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Adds "name: value" to the answer (both copied; neither may hold CR or LF: callers build
 * them). For an answer given now, not through http_defer() or a stream. */
void http_reply_header(struct http_response *res, const char *name, const char *value);

/* The value of the request's cookie name, or NULL. Borrowed, valid during the handler. */
const char *http_cookie(const struct http_request *req, const char *name);

/*
 * True when req carries the operator's credentials, as HTTP_OPERATOR routes require them: a
 * loopback client in development mode; else the bearer token, or the session cookie
 * (session.h) with, for a POST/PUT/PATCH/DELETE, its X-CSRF-Token. For public routes that do
 * more for an operator (an operator's manual order, GET /api/session).
 */
bool http_is_operator(const struct http_request *req);

/* The sign-in keys (session.h) derived from api_token; NULL in development mode. */
const struct session *http_session(const struct http_request *req);

/*
 * Answering later, for a handler that must wait for something that is not on this loop turn
 * (a payment gateway). Inside the handler, http_defer() suspends the connection: the handler
 * returns without setting res, and exactly one http_deferred_reply() or http_deferred_error()
 * answers later, from the loop. No timeout applies meanwhile, so the caller must bound its
 * wait. If the server is freed first, the request is answered 503 and d becomes invalid:
 * whoever holds d must be gone by then (free it before the server).
 */
struct http_deferred;
struct http_deferred *http_defer(const struct http_request *req);
void http_deferred_reply(struct http_deferred *d, int status, json_t *body);
void http_deferred_error(struct http_deferred *d, int status, const char *code, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

/*
 * Streaming, for a handler whose answer is a body without end (server-sent events). Inside the
 * handler, http_stream_start() makes the answer 200 with content_type and "Cache-Control:
 * no-store", whose body is read from read_fn as the client can take it; the handler then
 * returns without setting res. Chunked on HTTP/1.1; the connection is closed when it ends.
 *
 * read_fn copies up to max bytes into buf and returns how many (> 0); or 0 when it has
 * nothing now: the stream then sleeps (no CPU, no timeout) until http_stream_wake(); or -1
 * to end the stream. It runs on the loop, inside the HTTP server's run: it must not call
 * http_stream_wake() or http_stream_end() on its own stream, nor free the server.
 *
 * done_fn runs exactly once, when the stream is over for any reason (client gone, -1 from
 * read_fn, http_stream_end(), the server freed, or the response could not be made), and the
 * handle is invalid from then on. http_server_free() ends every stream, so whoever holds
 * handles may outlive the server: its done_fn runs inside http_server_free().
 *
 * A client that closes its end is seen at once, asleep or not, and the stream ends. One whose
 * host vanished without a word is only seen when a write fails: wake the stream from time to
 * time (a heartbeat). The kernel keeps at most 64 KiB unsent per stream (not the megabytes
 * of autotuning), so a client that stops reading soon stops the reads too.
 */
struct http_stream;
typedef long http_stream_read_fn(void *arg, char *buf, size_t max);
typedef void http_stream_done_fn(void *arg);
struct http_stream *http_stream_start(const struct http_request *req, const char *content_type,
                                      http_stream_read_fn *read_fn, http_stream_done_fn *done_fn,
                                      void *arg);
/* read_fn may have something again: call it soon. Harmless on a stream that is not asleep. */
void http_stream_wake(struct http_stream *st);
/* End the stream and close its connection soon, even if the client has stopped reading (its
 * unsent bytes are dropped). done_fn follows, from the loop, not from inside this call. */
void http_stream_end(struct http_stream *st);

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. NULL or other families: false. */
bool http_addr_is_loopback(const struct sockaddr *sa);

#endif
