/*
 * http.h - libmicrohttpd glue for fake-midtrans: one thread per connection
 * (a held "timeout" answer must not stall other clients), bodies collected
 * up to FAKE_BODY_MAX, the route table of routes.c dispatched, and every
 * Midtrans request recorded, checked (Basic auth, content type, JSON) and
 * subjected to the armed failure modes before its handler runs.
 *
 * Handlers get a struct http_req (valid for the call only) and fill a
 * struct http_res through the http_reply_* helpers; they run on the
 * connection's thread and must take the store's lock for shared state
 * (the store's functions do).
 */
#ifndef FAKE_MIDTRANS_HTTP_H
#define FAKE_MIDTRANS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "fake.h"

#define HTTP_PARAMS_MAX 2

struct MHD_Connection;

struct http_req {
    const char *method;
    const char *path;
    char params[HTTP_PARAMS_MAX][FAKE_ID_MAX + 1]; /* the {x} segments, in order */
    size_t nparams;
    const char *body; /* NUL-terminated; "" when there is none */
    size_t body_len;
    json_t *json; /* the body parsed as a JSON object, or NULL (no body) */
    const char *content_type, *accept, *user_agent, *x_override, *x_append;
    struct MHD_Connection *conn;
};

struct http_res {
    unsigned status;
    char *body; /* malloc'd, owned by the response */
    const char *content_type;
};

/* Binds and listens on 127.0.0.1:port (0 = any free port): a socket, or -1
 * with a line on stderr. *bound gets the port. Separate from http_start so
 * main() knows the port (and the URLs built on it) before any request. */
int http_listen(uint16_t port, uint16_t *bound);
/* Serves f on the listening socket fd (which it then owns). Returns NULL
 * with a line on stderr on failure. */
struct http_server *http_start(struct fake *f, int fd);
/* Stops accepting, waits for connection threads, frees. NULL is fine. */
void http_stop(struct http_server *h);

/* body is stolen (may be NULL: then a 500 "cannot build JSON"). */
void http_reply_json(struct http_res *res, unsigned status, json_t *body);
void http_reply_text(struct http_res *res, unsigned status, const char *content_type,
                     const char *text);
/* The control API's error shape: {"status_code":"NNN","status_message":msg}. */
void http_reply_error(struct http_res *res, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A query argument, or NULL. */
const char *http_query(const struct http_req *req, const char *name);

#endif
