/*
 * http.c - libmicrohttpd in thread-per-connection mode, the route matcher and
 * the checks every Midtrans request goes through (see http.h).
 *
 * Order for a Midtrans route: record the request; if a failure is armed for
 * the endpoint, it answers instead (a 5xx, garbage or a refusal: the request
 * has no effect), except "timeout", which lets the request take effect and
 * only holds (or drops) the answer; then Basic auth, body size, content type
 * and JSON, then the handler. Failures come before auth because they stand
 * for what sits in front of Midtrans's API (load balancers, outages).
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/evp.h>

#include "routes.h"
#include "store.h"
#include "xmalloc.h"

#define CONN_LIMIT     64
#define CONN_TIMEOUT_S 30
#define CONN_MEMORY    65536             /* request line and headers; bodies go to struct conn */
#define DISCARD_MAX    (4 * 1024 * 1024) /* an oversized body is read and dropped up to this */
#define AUTH_MAX       1024

struct http_server {
    struct MHD_Daemon *mhd;
};

/* Per-request state: the body as it arrives. */
struct conn {
    char *body;
    size_t len;
    bool too_big;
    size_t discarded;
};

/* ---- replies ------------------------------------------------------------ */

void http_reply_json(struct http_res *res, unsigned status, json_t *body)
{
    free(res->body);
    res->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    res->content_type = "application/json";
    res->status = status;
    if (res->body == NULL) {
        res->body = xstrdup("{\"status_code\":\"500\",\"status_message\":\"cannot build JSON\"}");
        res->status = 500;
    }
}

void http_reply_text(struct http_res *res, unsigned status, const char *content_type,
                     const char *text)
{
    free(res->body);
    res->body = xstrdup(text);
    res->content_type = content_type;
    res->status = status;
}

void http_reply_error(struct http_res *res, unsigned status, const char *fmt, ...)
{
    char code[8], msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(code, sizeof(code), "%u", status);
    http_reply_json(res, status,
                    json_pack("{s:s,s:s}", "status_code", code, "status_message", msg));
}

const char *http_query(const struct http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- checks ------------------------------------------------------------- */

/* Midtrans authenticates with Basic base64(server_key + ":"): the key is
 * the user name and the password is empty (Midtrans's authorization docs). */
static const char *check_auth(const char *hdr, const char *key)
{
    unsigned char dec[AUTH_MAX];
    const char *p, *colon;
    size_t len, userlen;
    int n;

    if (hdr == NULL)
        return "missing";
    if (strncasecmp(hdr, "Basic ", 6) != 0)
        return "malformed";
    for (p = hdr + 6; *p == ' '; p++)
        ;
    len = strlen(p);
    if (len == 0 || len >= AUTH_MAX || len % 4 != 0)
        return "malformed";
    n = EVP_DecodeBlock(dec, (const unsigned char *)p, (int)len);
    if (n < 0)
        return "malformed";
    /* EVP_DecodeBlock counts the bytes the '=' padding stands for. */
    if (p[len - 1] == '=')
        n--;
    if (p[len - 2] == '=')
        n--;
    colon = memchr(dec, ':', (size_t)n);
    if (colon == NULL)
        return "malformed";
    userlen = (size_t)(colon - (const char *)dec);
    if (userlen != strlen(key) || memcmp(dec, key, userlen) != 0)
        return "wrong_key";
    if ((size_t)n != userlen + 1)
        return "password_not_empty";
    return "ok";
}

static bool is_json_type(const char *ct)
{
    size_t n = strlen("application/json");

    if (ct == NULL || strncasecmp(ct, "application/json", n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

/* Matches path against a pattern of literal and {x} segments. */
static bool match(const char *pattern, const char *path, struct http_req *req)
{
    const char *p = pattern, *u = path;

    req->nparams = 0;
    while (*p != '\0' && *u != '\0') {
        if (*p == '{') {
            size_t len = strcspn(u, "/");

            if (len == 0 || len > FAKE_ID_MAX || req->nparams == HTTP_PARAMS_MAX)
                return false;
            memcpy(req->params[req->nparams], u, len);
            req->params[req->nparams++][len] = '\0';
            p = strchr(p, '}');
            if (p == NULL)
                return false;
            p++;
            u += len;
            continue;
        }
        if (*p != *u)
            return false;
        p++;
        u++;
    }
    return *p == '\0' && *u == '\0';
}

/* The route for method and path, or NULL; *path_known says whether another
 * method would have matched (405 rather than 404). */
static const struct route *find_route(struct http_req *req, bool *path_known)
{
    size_t i, n;
    const struct route *rt = routes_table(&n);

    *path_known = false;
    for (i = 0; i < n; i++) {
        if (!match(rt[i].pattern, req->path, req))
            continue;
        if (strcmp(rt[i].method, req->method) == 0)
            return &rt[i];
        *path_known = true;
    }
    req->nparams = 0;
    return NULL;
}

/* Size, content type and JSON of a body; false with res filled if bad. */
static bool check_body(struct fake *f, const struct route *rt, enum route_kind kind,
                       const struct conn *c, struct http_req *req, struct http_res *res)
{
    json_error_t jerr;
    bool midtrans = kind == ROUTE_SNAP || kind == ROUTE_CORE;
    char msg[300];

    if (c->too_big) {
        snprintf(msg, sizeof(msg), "request body too large (max %d bytes)", FAKE_BODY_MAX);
        if (midtrans)
            mt_error(f, kind, res, "413", msg, 413);
        else
            http_reply_error(res, 413, "%s", msg);
        return false;
    }
    if (rt->body == BODY_NONE || (rt->body == BODY_OPTIONAL && c->len == 0))
        return true;
    if (c->len == 0) {
        if (midtrans)
            mt_error(f, kind, res, "400", "request body is missing", 0);
        else
            http_reply_error(res, 400, "this call needs a JSON object body");
        return false;
    }
    /* Midtrans wants Content-Type: application/json (its authorization docs); the control
     * API takes whatever curl -d sends. */
    if (midtrans && !is_json_type(req->content_type)) {
        snprintf(msg, sizeof(msg), "Content-Type must be application/json, not '%s'",
                 req->content_type ? req->content_type : "(none)");
        mt_error(f, kind, res, "400", msg, 0);
        return false;
    }
    req->json = json_loadb(c->body, c->len, JSON_REJECT_DUPLICATES, &jerr);
    if (req->json == NULL || !json_is_object(req->json)) {
        snprintf(msg, sizeof(msg),
                 "The request cannot be processed due to syntax error in the request body: %s",
                 req->json ? "not a JSON object" : jerr.text);
        json_decref(req->json);
        req->json = NULL;
        if (midtrans)
            mt_error(f, kind, res, "413", msg, kind == ROUTE_SNAP ? 400 : 0);
        else
            http_reply_error(res, 400, "body is not a JSON object: %s", jerr.text);
        return false;
    }
    return true;
}

/* ---- Midtrans requests -------------------------------------------------- */

static const char *s_fail_names[] = {NULL, "http_error", "timeout", "garbage", "refuse"};

/* An armed failure that answers instead of the handler. */
static void apply_failure(struct fake *f, enum route_kind kind, const struct store_fail *fail,
                          struct http_res *res)
{
    char code[8];

    switch (fail->mode) {
    case STORE_FAIL_HTTP:
        snprintf(code, sizeof(code), "%u", fail->http_status);
        mt_error(f, kind, res, code, mt_message(code), fail->http_status);
        break;
    case STORE_FAIL_GARBAGE:
        http_reply_text(res, fail->http_status ? fail->http_status : 200, "text/html",
                        fail->body[0] ? fail->body
                                      : "<html><head><title>502 Bad Gateway</title></head>"
                                        "<body><center><h1>502 Bad Gateway</h1></center>"
                                        "</body></html>\n");
        break;
    case STORE_FAIL_REFUSE:
        mt_error(f, kind, res, fail->status_code,
                 fail->status_message[0] ? fail->status_message : mt_message(fail->status_code),
                 fail->http_status);
        break;
    default:
        break;
    }
}

/* Returns false to drop the connection without an answer. */
static bool midtrans_request(struct fake *f, const struct route *rt, bool path_known,
                             enum route_kind kind, struct conn *c, struct http_req *req,
                             struct http_res *res, struct MHD_Connection *mc)
{
    const char *endpoint = rt ? rt->endpoint : "unknown";
    const char *auth = check_auth(MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization"),
                                  f->conf.server_key);
    struct store_logreq lr = {
        .method = req->method,
        .path = req->path,
        .endpoint = endpoint,
        .auth = auth,
        .content_type = req->content_type,
        .accept = req->accept,
        .user_agent = req->user_agent,
        .x_override = req->x_override,
        .x_append = req->x_append,
        .body = c->too_big ? "" : req->body,
        .body_len = c->too_big ? 0 : req->body_len,
    };
    struct store_fail fail = {.mode = STORE_FAIL_NONE};
    uint64_t seq = store_log_request(f->store, &lr);
    bool answer = true;

    if (rt != NULL && store_fail_take(f->store, endpoint, &fail) &&
        fail.mode != STORE_FAIL_TIMEOUT) {
        apply_failure(f, kind, &fail, res);
        goto out;
    }
    if (strcmp(auth, "ok") != 0) {
        mt_error(f, kind, res, "401",
                 kind == ROUTE_SNAP ? "Access denied due to unauthorized transaction, please "
                                      "check client or server key"
                                    : "Transaction cannot be authorized with the current "
                                      "client/server key.",
                 401);
        goto out;
    }
    if (rt == NULL) {
        if (path_known)
            mt_error(f, kind, res, "405", "HTTP method is not allowed.", 405);
        else
            mt_error(f, kind, res, "404", "The requested resource is not found", 404);
        goto out;
    }
    if (!check_body(f, rt, kind, c, req, res))
        goto out;
    rt->fn(f, req, res);
out:
    store_log_answer(f->store, seq, res->status,
                     fail.mode == STORE_FAIL_TIMEOUT && fail.drop ? "timeout_drop"
                                                                  : s_fail_names[fail.mode]);
    if (fail.mode == STORE_FAIL_TIMEOUT) {
        store_hold(f->store, fail.delay_ms);
        answer = !fail.drop;
    }
    return answer;
}

/* ---- libmicrohttpd callbacks -------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *mc, struct http_res *res)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    char *body = res->body ? res->body : xstrdup("");

    r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    res->body = NULL;
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    if (res->content_type != NULL)
        MHD_add_response_header(r, "Content-Type", res->content_type);
    ret = MHD_queue_response(mc, res->status ? res->status : 500, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result dispatch(struct fake *f, struct MHD_Connection *mc, const char *url,
                                const char *method, struct conn *c)
{
    struct http_req req;
    struct http_res res = {.status = 500};
    const struct route *rt;
    enum route_kind kind;
    bool path_known, answer = true;
    enum MHD_Result ret;

    memset(&req, 0, sizeof(req));
    req.method = method;
    req.path = url;
    req.body = c->body ? c->body : "";
    req.body_len = c->len;
    req.conn = mc;
    req.content_type = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Type");
    req.accept = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Accept");
    req.user_agent = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "User-Agent");
    req.x_override = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Override-Notification");
    req.x_append = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Append-Notification");

    rt = find_route(&req, &path_known);
    if (rt != NULL) {
        kind = rt->kind;
    } else if (strncmp(url, "/snap/", 6) == 0) {
        kind = ROUTE_SNAP;
    } else if (strncmp(url, "/v2/", 4) == 0 || strncmp(url, "/v1/", 4) == 0) {
        kind = ROUTE_CORE;
    } else {
        kind = ROUTE_CONTROL;
    }

    if (kind == ROUTE_SNAP || kind == ROUTE_CORE) {
        /* A Midtrans-looking path we do not serve is still recorded: it is
         * exactly what a test wants to see when a client gets a URL wrong. */
        answer = midtrans_request(f, rt, path_known, kind, c, &req, &res, mc);
    } else if (rt == NULL) {
        http_reply_error(&res, path_known ? 405 : 404, "%s %s: %s", method, url,
                         path_known ? "method not allowed" : "no such path (see GET /)");
    } else if (check_body(f, rt, kind, c, &req, &res)) {
        rt->fn(f, &req, &res);
    }
    json_decref(req.json);
    if (!f->conf.quiet)
        fprintf(stderr, "fake-midtrans: %s %s -> %u%s\n", method, url, res.status,
                answer ? "" : " (dropped)");
    if (!answer) {
        free(res.body);
        return MHD_NO;
    }
    ret = queue(mc, &res);
    free(res.body);
    return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct fake *f = cls;
    struct conn *c = *con_cls;

    (void)version;
    if (c == NULL) {
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");

        c = xcalloc(1, sizeof(*c));
        *con_cls = c;
        /* Refuse early what we would refuse at the end anyway. */
        if (cl != NULL && strtoull(cl, NULL, 10) > FAKE_BODY_MAX)
            c->too_big = true;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;

        *upload_data_size = 0;
        if (c->too_big || c->len + n > FAKE_BODY_MAX) {
            c->too_big = true;
            c->discarded += n;
            return c->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        c->body = xrealloc(c->body, c->len + n + 1);
        memcpy(c->body + c->len, upload_data, n);
        c->len += n;
        c->body[c->len] = '\0';
        return MHD_YES;
    }
    return dispatch(f, mc, url, method, c);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct conn *c = *con_cls;

    (void)cls;
    (void)mc;
    (void)toe;
    if (c != NULL) {
        free(c->body);
        free(c);
    }
    *con_cls = NULL;
}

/* libmicrohttpd's own messages (e.g. "closing connection" after a
 * deliberate drop) follow --quiet like ours. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    const struct fake *f = cls;

    if (f->conf.quiet)
        return;
    fputs("fake-midtrans: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

int http_listen(uint16_t port, uint16_t *bound)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        goto fail;
    *bound = ntohs(sa.sin_port);
    return fd;
fail:
    fprintf(stderr, "fake-midtrans: cannot listen on 127.0.0.1:%u: %s\n", (unsigned)port,
            strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

struct http_server *http_start(struct fake *f, int fd)
{
    struct http_server *h = xcalloc(1, sizeof(*h));

    h->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_access, f, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, f, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, f, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_END);
    if (h->mhd == NULL) {
        fprintf(stderr, "fake-midtrans: cannot start the HTTP server\n");
        close(fd);
        free(h);
        return NULL;
    }
    return h;
}

void http_stop(struct http_server *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->mhd);
    free(h);
}
