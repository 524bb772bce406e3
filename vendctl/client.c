/*
 * client.c - vendctl's HTTP client of vendd (client.h): one libcurl handle reused, so a list
 * walked page by page keeps its connection; every answer bounded; vendd's error replies
 * turned into one message and an exit status.
 */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vendctl.h"

/* The prefix of the 404 message of vendd's router (daemon/src/core/http.c), as opposed to
 * the 404 of a handler for an unknown machine or order: the route itself is not there. */
#define NO_ROUTE_PREFIX "no resource at "

struct body {
    char *p;
    size_t len, cap;
    bool toobig, nomem;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;

    if (n > CTL_BODY_MAX - b->len) {
        b->toobig = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 4096;
        char *p;

        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > CTL_BODY_MAX + 1)
            cap = CTL_BODY_MAX + 1;
        p = realloc(b->p, cap);
        if (p == NULL) {
            b->nomem = true;
            return 0;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static bool is_loopback_host(const char *host)
{
    return strcasecmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
}

/* Checks base is an http(s) URL that libcurl parses; warns about a token sent in clear. */
static int check_url(const char *base, bool token)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;

    if (u == NULL)
        return ctl_fail(-1, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        char esc[CTL_URL_MAX];

        out_escape(esc, sizeof(esc), base);
        ctl_fail(-1, "URL '%s' is not an http:// or https:// URL", esc);
        goto out;
    }
    if (token && strcmp(scheme, "http") == 0 && !is_loopback_host(host))
        fprintf(stderr, "vendctl: warning: the token goes unencrypted to '%s' (use https://)\n",
                host);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

int client_init(struct client *c, const char *base, const char *token, long timeout_s)
{
    size_t n = strlen(base);

    memset(c, 0, sizeof(*c));
    c->timeout_s = timeout_s;
    while (n > 0 && base[n - 1] == '/')
        n--;
    if (n == 0 || n >= sizeof(c->base))
        return ctl_fail(-1, "URL is empty or longer than %zu bytes", sizeof(c->base) - 1);
    memcpy(c->base, base, n);
    c->base[n] = '\0';
    if (check_url(c->base, token != NULL) < 0)
        return -1;
    if (token != NULL)
        snprintf(c->auth, sizeof(c->auth), "Authorization: Bearer %s", token);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ctl_fail(-1, "libcurl failed to start");
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        curl_global_cleanup();
        return ctl_fail(-1, "libcurl failed to start");
    }
    return 0;
}

void client_release(struct client *c)
{
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
        curl_global_cleanup();
    }
    /* The token leaves memory with the client. */
    memset(c->auth, 0, sizeof(c->auth));
    c->curl = NULL;
}

void reply_release(struct reply *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* Options every request shares; the handle is reset first (its connections stay open). */
static int setup(struct client *c, struct reply *r, const char *path, struct curl_slist **hdrs,
                 char *errbuf)
{
    char url[CTL_URL_MAX + 2048];
    int n = snprintf(url, sizeof(url), "%s%s", c->base, path);

    if (n < 0 || (size_t)n >= sizeof(url)) {
        snprintf(r->error, sizeof(r->error), "URL longer than %zu bytes", sizeof(url) - 1);
        return -1;
    }
    *hdrs = curl_slist_append(*hdrs, "Expect:");
    if (*hdrs != NULL && c->auth[0] != '\0')
        *hdrs = curl_slist_append(*hdrs, c->auth);
    if (*hdrs == NULL) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        return -1;
    }
    curl_easy_reset(c->curl);
    errbuf[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "vendctl/" CTL_VERSION);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, c->timeout_s);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CTL_BODY_MAX);
    return 0;
}

/* Why perform failed, into r->error. */
static void perform_error(struct client *c, struct reply *r, CURLcode rc, const struct body *b,
                          const char *errbuf)
{
    if (b->toobig || rc == CURLE_FILESIZE_EXCEEDED)
        snprintf(r->error, sizeof(r->error), "answer over %u bytes", CTL_BODY_MAX);
    else if (b->nomem)
        snprintf(r->error, sizeof(r->error), "out of memory");
    else
        snprintf(r->error, sizeof(r->error), "no answer from '%s': %s", c->base,
                 errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
}

int client_send(struct client *c, const char *method, const char *path, const json_t *body,
                struct reply *r)
{
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hdrs = NULL;
    struct body b = {0};
    char *text = NULL;
    CURLcode rc;
    int status = CTL_ESERVER;

    memset(r, 0, sizeof(*r));
    snprintf(r->what, sizeof(r->what), "%s %s", method, path);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (setup(c, r, path, &hdrs, errbuf) < 0)
        goto out;
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    } else {
        /* Every write sends a JSON object: a route whose body is optional takes {} too. */
        text = body != NULL ? json_dumps(body, JSON_COMPACT) : strdup("{}");
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        if (text == NULL || hdrs == NULL) {
            snprintf(r->error, sizeof(r->error), "out of memory");
            goto out;
        }
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK) {
        perform_error(c, r, rc, &b, errbuf);
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = b.p;
    r->len = b.len;
    b.p = NULL;
    if (r->body != NULL)
        r->json = json_loadb(r->body, r->len, 0, NULL);
    status = CTL_EOK;
out:
    if (status != CTL_EOK)
        ctl_fail(status, "%s: %s", r->what, r->error);
    curl_slist_free_all(hdrs);
    free(text);
    free(b.p);
    return status;
}

const char *reply_error(const struct reply *r, const char *member)
{
    return json_string_value(json_object_get(json_object_get(r->json, "error"), member));
}

bool client_route_missing(const struct reply *r)
{
    const char *msg = reply_error(r, "message");

    return r->status == 405 || (r->status == 404 && msg != NULL &&
                                strncmp(msg, NO_ROUTE_PREFIX, sizeof(NO_ROUTE_PREFIX) - 1) == 0);
}

int client_status(const struct reply *r)
{
    if (r->status >= 200 && r->status <= 299)
        return CTL_EOK;
    if (client_route_missing(r))
        return CTL_EUNSUPPORTED;
    if (r->status == 404)
        return CTL_ENOTFOUND;
    if (r->status == 409)
        return CTL_ECONFLICT;
    if (r->status >= 400 && r->status <= 499)
        return CTL_EREFUSED;
    return CTL_ESERVER;
}

void client_report(const struct reply *r)
{
    char code[64], msg[512], extra[96] = "";
    const json_t *err = json_object_get(r->json, "error");
    const json_t *version = json_object_get(err, "version");

    if (!json_is_object(err)) {
        fprintf(stderr, "vendctl: %s: HTTP %ld, not an answer of vendd's API\n", r->what,
                r->status);
        return;
    }
    out_escape(code, sizeof(code), reply_error(r, "code"));
    out_escape(msg, sizeof(msg), reply_error(r, "message"));
    if (client_route_missing(r)) {
        fprintf(stderr, "vendctl: %s: not supported by this vendd (%ld %s: %s)\n", r->what,
                r->status, code, msg);
        return;
    }
    /* What vendd adds to a 409: the state that refused, the version that won. */
    if (reply_error(r, "status") != NULL) {
        char st[32];

        out_escape(st, sizeof(st), reply_error(r, "status"));
        snprintf(extra, sizeof(extra), " (status %s)", st);
    } else if (json_is_integer(version)) {
        snprintf(extra, sizeof(extra), " (version now %lld)",
                 (long long)json_integer_value(version));
    } else if (r->status == 401) {
        snprintf(extra, sizeof(extra), " (the token comes from $VENDD_TOKEN or --token-file)");
    }
    fprintf(stderr, "vendctl: %s: %ld %s: %s%s\n", r->what, r->status, code, msg, extra);
}

int client_call(struct client *c, const char *method, const char *path, const json_t *body,
                struct reply *r, unsigned flags)
{
    int status = client_send(c, method, path, body, r);

    if (status != CTL_EOK)
        return status;
    status = client_status(r);
    if (status == CTL_EOK) {
        if (!json_is_object(r->json))
            return ctl_fail(CTL_ESERVER, "%s: HTTP %ld, but the answer is not a JSON object",
                            r->what, r->status);
        return CTL_EOK;
    }
    if ((flags & CALL_JSON_ERRORS) && r->json != NULL)
        out_json(stdout, r->json);
    if (!(flags & CALL_QUIET))
        client_report(r);
    return status;
}

char *client_escape(struct client *c, const char *s)
{
    char *e = curl_easy_escape(c->curl, s, 0), *copy;

    /* Ours to free() like every other string, not curl_free(). */
    copy = e != NULL ? strdup(e) : NULL;
    curl_free(e);
    return copy;
}

/* ---- streams ------------------------------------------------------------------------ */

struct stream {
    CURL *curl;
    const char *accept;
    client_stream_fn *fn;
    void *arg;
    int state; /* 0: no byte yet, 1: feeding fn, 2: keeping an answer that is not the stream */
    bool stopped;
    struct body err;
};

/* A 200 whose content type is accept (parameters after ';' allowed). */
static bool is_stream(CURL *curl, const char *accept)
{
    size_t n = strlen(accept);
    const char *ct = NULL;
    long code = 0;

    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct);
    return code == 200 && ct != NULL && strncasecmp(ct, accept, n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static size_t on_stream(char *data, size_t size, size_t nmemb, void *arg)
{
    struct stream *s = arg;
    size_t n = size * nmemb;

    if (s->state == 0)
        s->state = is_stream(s->curl, s->accept) ? 1 : 2;
    if (s->state == 2)
        return on_body(data, size, nmemb, &s->err);
    if (s->fn(data, n, s->arg) != 0) {
        s->stopped = true;
        return 0;
    }
    return n;
}

enum client_stream_end client_stream(struct client *c, const char *path, const char *accept,
                                     const char *header, client_stream_fn *fn, void *arg,
                                     struct reply *r)
{
    char errbuf[CURL_ERROR_SIZE], acc[128];
    struct curl_slist *hdrs = NULL;
    struct stream s = {.curl = c->curl, .accept = accept, .fn = fn, .arg = arg};
    enum client_stream_end end = CLIENT_STREAM_FAILED;
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    snprintf(r->what, sizeof(r->what), "GET %s", path);
    snprintf(acc, sizeof(acc), "Accept: %s", accept);
    hdrs = curl_slist_append(hdrs, acc);
    if (hdrs != NULL)
        hdrs = curl_slist_append(hdrs, "Cache-Control: no-cache");
    if (hdrs != NULL && header != NULL)
        hdrs = curl_slist_append(hdrs, header);
    if (setup(c, r, path, &hdrs, errbuf) < 0)
        goto out;
    curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
    /* A stream has no end to wait for: only the connect is bounded. */
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 0L);
    curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
    rc = curl_easy_perform(c->curl);
    if (s.stopped) {
        end = CLIENT_STREAM_STOPPED;
    } else if (s.state == 1) {
        end = CLIENT_STREAM_ENDED;
    } else if (s.state == 0 && rc != CURLE_OK) {
        perform_error(c, r, rc, &s.err, errbuf);
    } else if (s.state == 0 && is_stream(c->curl, accept)) {
        end = CLIENT_STREAM_ENDED; /* a 200 stream that ended before its first byte */
    } else {
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
        r->body = s.err.p;
        r->len = s.err.len;
        s.err.p = NULL;
        if (r->body != NULL)
            r->json = json_loadb(r->body, r->len, 0, NULL);
        end = CLIENT_STREAM_ANSWER;
    }
out:
    curl_slist_free_all(hdrs);
    free(s.err.p);
    return end;
}
