/*
 * httpc.c - libcurl's multi interface on vendd's loop; see httpc.h.
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); we watch them on the loop and hand readiness back with
 * curl_multi_socket_action(). Finished transfers are collected after every such call, and
 * their callbacks run there, outside any libcurl callback, so they may start new requests.
 */
#include "httpc.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "log.h"
#include "loop.h"
#include "vend/err.h"
#include "xmalloc.h"

struct httpc_req {
    struct httpc_req *next;
    uint64_t id;
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* the request body (libcurl does not copy POSTFIELDS) */
    char *resp; /* the response body, NUL-terminated */
    size_t resp_len, resp_cap, resp_max;
    bool overflow;
    httpc_done_fn *done;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
};

struct httpc {
    struct loop *loop;
    CURLM *multi;
    uint64_t timer;
    uint64_t next_id;
    size_t pending;
    struct httpc_req *reqs;
};

static void collect_done(struct httpc *c);

static void on_io(void *arg, int fd, unsigned events)
{
    struct httpc *c = arg;
    int running = 0, ev = 0;

    if (events & LOOP_READ)
        ev |= CURL_CSELECT_IN;
    if (events & LOOP_WRITE)
        ev |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, fd, ev, &running);
    collect_done(c);
}

static void on_loop_timer(void *arg)
{
    struct httpc *c = arg;
    int running = 0;

    c->timer = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(c);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what libcurl wants, or stop watching it. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct httpc *c = userp;
    unsigned events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        loop_io_del(c->loop, s);
        curl_multi_assign(c->multi, s, NULL);
        return 0;
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= LOOP_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= LOOP_WRITE;
    if (socketp != NULL)
        return loop_io_set(c->loop, s, events) < 0 ? -1 : 0;
    if (loop_io_add(c->loop, s, events, on_io, c) < 0)
        return -1;
    curl_multi_assign(c->multi, s, c); /* any non-NULL marks "watched" */
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer; -1 removes it. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct httpc *c = userp;

    (void)multi;
    if (c->timer != 0)
        loop_timer_del(c->loop, c->timer);
    c->timer = 0;
    if (timeout_ms < 0)
        return 0;
    c->timer = loop_timer_add(c->loop, (uint64_t)timeout_ms, on_loop_timer, c);
    return c->timer != 0 ? 0 : -1;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct httpc_req *r = userp;
    size_t n = size * nmemb;

    if (n > r->resp_max - r->resp_len) {
        r->overflow = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (r->resp_len + n + 1 > r->resp_cap) {
        r->resp_cap = r->resp_len + n + 1 > r->resp_cap * 2 ? r->resp_len + n + 1 : r->resp_cap * 2;
        r->resp = xrealloc(r->resp, r->resp_cap);
    }
    memcpy(r->resp + r->resp_len, data, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

static void req_free(struct httpc_req *r)
{
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->body);
    free(r->resp);
    free(r);
}

static void unlink_req(struct httpc *c, struct httpc_req *r)
{
    for (struct httpc_req **pp = &c->reqs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            c->pending--;
            return;
        }
    }
}

static int map_result(const struct httpc_req *r, CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return VEND_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return VEND_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return VEND_EUNAVAILABLE;
    case CURLE_WRITE_ERROR:
        return r->overflow ? VEND_ETOOBIG : VEND_EIO;
    default:
        return VEND_EIO;
    }
}

static void collect_done(struct httpc *c)
{
    CURLMsg *msg;
    int left = 0;

    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        struct httpc_req *r = NULL;
        struct httpc_response res = {0};

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(c->multi, msg->easy_handle);
        unlink_req(c, r);
        res.err = map_result(r, msg->data.result);
        if (res.err == VEND_OK)
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.body = r->resp != NULL ? r->resp : "";
        res.len = r->resp_len;
        res.detail = r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(msg->data.result);
        r->done(r->arg, &res);
        req_free(r);
    }
}

int httpc_new(struct httpc **out, struct loop *loop)
{
    struct httpc *c;

    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_warnx("cannot initialize libcurl");
        return VEND_EINTERNAL;
    }
    c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        log_warnx("cannot create a libcurl multi handle");
        free(c);
        curl_global_cleanup();
        return VEND_EINTERNAL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    *out = c;
    return VEND_OK;
}

static bool request_valid(const struct httpc_request *req)
{
    const char *bad = NULL;

    if (req->method == NULL ||
        (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0))
        bad = "method";
    else if (req->url == NULL || strlen(req->url) > HTTPC_MAX_URL ||
             (strncmp(req->url, "http://", 7) != 0 && strncmp(req->url, "https://", 8) != 0))
        bad = "url";
    else if (req->body_len > HTTPC_MAX_BODY || (req->body == NULL && req->body_len > 0))
        bad = "body";
    else if (req->connect_timeout_ms == 0 || req->total_timeout_ms == 0)
        bad = "timeout";
    else if (req->max_response == 0 || req->max_response > HTTPC_MAX_RESPONSE)
        bad = "max_response";
    if (bad != NULL)
        log_warnx("outbound HTTP request refused: bad %s", bad);
    return bad == NULL;
}

int httpc_start(struct httpc *c, const struct httpc_request *req, httpc_done_fn *done, void *arg,
                uint64_t *id)
{
    struct httpc_req *r;
    size_t nheaders = 0;

    if (!request_valid(req) || done == NULL)
        return VEND_EINVAL;
    r = xcalloc(1, sizeof(*r));
    r->easy = curl_easy_init();
    if (r->easy == NULL) {
        free(r);
        return VEND_ENOMEM;
    }
    r->id = ++c->next_id;
    r->done = done;
    r->arg = arg;
    r->resp_max = req->max_response;
    for (const char *const *h = req->headers; h != NULL && *h != NULL; h++) {
        if (++nheaders > HTTPC_MAX_HEADERS) {
            log_warnx("outbound HTTP request refused: over %d headers", HTTPC_MAX_HEADERS);
            req_free(r);
            return VEND_EINVAL;
        }
        r->headers = curl_slist_append(r->headers, *h);
    }
    r->headers = curl_slist_append(r->headers, "Accept: application/json");
    if (strcmp(req->method, "POST") == 0) {
        r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
        r->body = xmalloc(req->body_len + 1);
        if (req->body_len > 0)
            memcpy(r->body, req->body, req->body_len);
        r->body[req->body_len] = '\0';
        curl_easy_setopt(r->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    curl_easy_setopt(r->easy, CURLOPT_URL, req->url);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)req->total_timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "vendd/" VENDD_VERSION);
    if (req->basic_user != NULL) {
        curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(r->easy, CURLOPT_USERNAME, req->basic_user);
        curl_easy_setopt(r->easy, CURLOPT_PASSWORD,
                         req->basic_password != NULL ? req->basic_password : "");
    }
    if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
        req_free(r);
        return VEND_ENOMEM;
    }
    r->next = c->reqs;
    c->reqs = r;
    c->pending++;
    if (id != NULL)
        *id = r->id;
    return VEND_OK;
}

void httpc_cancel(struct httpc *c, uint64_t id)
{
    for (struct httpc_req *r = c->reqs; r != NULL; r = r->next) {
        if (r->id == id) {
            curl_multi_remove_handle(c->multi, r->easy);
            unlink_req(c, r);
            req_free(r);
            return;
        }
    }
}

size_t httpc_pending(const struct httpc *c)
{
    return c->pending;
}

void httpc_free(struct httpc *c)
{
    if (c == NULL)
        return;
    while (c->reqs != NULL)
        httpc_cancel(c, c->reqs->id);
    curl_multi_cleanup(c->multi); /* removes its sockets through on_socket */
    if (c->timer != 0)
        loop_timer_del(c->loop, c->timer);
    free(c);
    curl_global_cleanup();
}
