/*
 * httpc.h - vendd's outbound HTTP client: libcurl's multi interface driven by our own loop
 * (its sockets are loop fds, its timer a loop timer), so a slow payment gateway never stalls
 * the loop: orders, results and telemetry keep flowing while a request waits.
 *
 * Invariants:
 *   - Everything runs on the loop thread; nothing here blocks (libcurl resolves names in
 *     its own resolver thread and connects non-blocking).
 *   - Every request has a connect timeout, a total timeout and a bound on the response
 *     body; http and https only, no redirects followed.
 *   - The done callback runs exactly once per started request, from the loop, never from
 *     inside httpc_start(); httpc_cancel() and httpc_free() suppress it.
 */
#ifndef VENDD_HTTPC_H
#define VENDD_HTTPC_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct httpc;

/* Bounds httpc_start() enforces. */
#define HTTPC_MAX_URL      2048
#define HTTPC_MAX_BODY     (64 * 1024)
#define HTTPC_MAX_RESPONSE (1024 * 1024)
#define HTTPC_MAX_HEADERS  8

struct httpc_request {
    const char *method;          /* "GET" or "POST" */
    const char *url;             /* http:// or https://, <= HTTPC_MAX_URL */
    const char *body;            /* POST: the JSON body (sent as application/json) */
    size_t body_len;             /* <= HTTPC_MAX_BODY */
    const char *basic_user;      /* NULL: no auth; else Basic user:basic_password */
    const char *basic_password;  /* NULL means empty */
    const char *const *headers;  /* extra "Name: value" lines, NULL-terminated, or NULL */
    uint32_t connect_timeout_ms; /* > 0 */
    uint32_t total_timeout_ms;   /* > 0, the whole exchange */
    size_t max_response;         /* 1..HTTPC_MAX_RESPONSE bytes of body kept */
};

struct httpc_response {
    /*
     * VEND_OK: an HTTP answer came (any status); VEND_ETIMEDOUT: no answer in time;
     * VEND_EUNAVAILABLE: could not connect (refused, no route, name not found);
     * VEND_ETOOBIG: the body exceeded max_response; VEND_EIO: anything else.
     */
    int err;
    long status;      /* the HTTP status when err is VEND_OK, else 0 */
    const char *body; /* NUL-terminated, valid during the callback only; "" if none */
    size_t len;
    const char *detail; /* libcurl's words for a failure, for the log; never NULL */
};

typedef void httpc_done_fn(void *arg, const struct httpc_response *res);

/* A client on loop. Returns VEND_OK, or VEND_EINTERNAL if libcurl cannot start. */
int httpc_new(struct httpc **out, struct loop *loop);

/*
 * Start req; everything in it is copied. done(arg, ...) runs later, from the loop.
 * *id (may be NULL) identifies it for httpc_cancel(). Returns VEND_OK, VEND_EINVAL for a
 * request out of bounds (logged, naming the field), or VEND_ENOMEM.
 */
int httpc_start(struct httpc *c, const struct httpc_request *req, httpc_done_fn *done, void *arg,
                uint64_t *id);

/* Abandon request id: its callback will not run. Unknown or finished ids are ignored. */
void httpc_cancel(struct httpc *c, uint64_t id);

/* Requests started and not yet done. */
size_t httpc_pending(const struct httpc *c);

/* Abandon every request (no callbacks), drop its fds and timer from the loop, free. NULL ok. */
void httpc_free(struct httpc *c);

#endif
