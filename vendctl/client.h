/*
 * client.h - vendctl's HTTP client of vendd (libcurl): one connection reused across calls,
 * the bearer token, a bound on every answer, and vendd's errors turned into exit statuses.
 *
 * Paths are given already safe for a URL: the caller validates path parameters against the
 * API's identifier rules and escapes query values with client_escape().
 */
#ifndef VENDCTL_CLIENT_H
#define VENDCTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

struct client {
    CURL *curl;
    char base[512];  /* "http://127.0.0.1:3001", no trailing '/' */
    char auth[1100]; /* "Authorization: Bearer ..." or "" */
    long timeout_s;
};

struct reply {
    long status; /* HTTP status */
    char *body;  /* NUL-terminated, malloc'd; NULL if the answer had none */
    size_t len;
    json_t *json;     /* the body parsed, or NULL if it is not JSON */
    char what[200];   /* "GET /api/machines/VM01": names the call in messages */
    char error[1024]; /* why there is no answer; "" when there is one */
};

/*
 * Set up c for vendd at base (http:// or https://, at most sizeof(c->base) - 1 bytes) with
 * token (NULL: none). Returns 0, or -1 after a message (a bad URL, libcurl failing).
 * Warns once on stderr when a token would travel unencrypted to a host other than loopback.
 */
int client_init(struct client *c, const char *base, const char *token, long timeout_s);
void client_release(struct client *c);

/*
 * Send method path (body: a JSON object sent as application/json, or NULL) and wait for the
 * answer, at most c->timeout_s and CTL_BODY_MAX bytes. Returns CTL_EOK when vendd answered
 * (whatever the status; r filled, release it with reply_release()), else CTL_ESERVER after a
 * message naming the call and why (r then holds nothing).
 */
int client_send(struct client *c, const char *method, const char *path, const json_t *body,
                struct reply *r);
#define CALL_JSON_ERRORS 1u /* vendd's error body goes to stdout too (--json) */
#define CALL_QUIET       2u /* no message: the caller reports (client_report()) */

/*
 * client_send(), and the answer must be a 2xx with a JSON body: returns CTL_EOK, or the exit
 * status of the failure (client_status()) after a message naming the call and vendd's error
 * (flags: CALL_*). r holds the answer either way, to be released.
 */
int client_call(struct client *c, const char *method, const char *path, const json_t *body,
                struct reply *r, unsigned flags);

/* The exit status for r: 0 for a 2xx, CTL_ENOTFOUND for a 404, ... (vendctl.h). */
int client_status(const struct reply *r);
/* true if r says vendd has no such route (405, or its router's 404 "no resource at"). */
bool client_route_missing(const struct reply *r);
/* Print "vendctl: WHAT: STATUS CODE: message" for a failed r (what vendd said, escaped). */
void client_report(const struct reply *r);
/* A string member of r's "error" object ("code", "message"), or NULL. */
const char *reply_error(const struct reply *r, const char *member);
void reply_release(struct reply *r);

/* s escaped for a query value, malloc'd (free() it); NULL on out of memory. */
char *client_escape(struct client *c, const char *s);

/*
 * Called with the bytes of a streamed answer (client_stream()) as they come; returns 0 to go
 * on, anything else to stop the stream.
 */
typedef int client_stream_fn(const char *data, size_t len, void *arg);

enum client_stream_end {
    CLIENT_STREAM_ENDED,   /* a 200 answer began, then the server ended it or the line broke */
    CLIENT_STREAM_STOPPED, /* fn stopped it */
    CLIENT_STREAM_FAILED,  /* no answer: r->error says why */
    CLIENT_STREAM_ANSWER,  /* an answer other than a 200 of content type accept: r holds it */
};

/*
 * GET path with the extra header (NULL: none, e.g. "Last-Event-ID: 7") and Accept: accept,
 * and feed a 200 answer's body to fn as it arrives, with no overall timeout (c->timeout_s
 * bounds the connect). Returns how it ended; r holds the call's name and, for
 * CLIENT_STREAM_FAILED or _ANSWER, what went wrong; release it with reply_release().
 */
enum client_stream_end client_stream(struct client *c, const char *path, const char *accept,
                                     const char *header, client_stream_fn *fn, void *arg,
                                     struct reply *r);

#endif
