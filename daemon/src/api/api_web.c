/*
 * api_web.c - the pages vendd serves from the files compiled into it (web_assets.h): GET /
 * (the dashboard), GET /assets/{name} (its scripts, style and qrcode.js) and
 * GET /buy/{machine_id} (the purchase page). The pages hold no data: they read it from the
 * API, so they are public and the same for everyone.
 *
 * Every page and asset carries the headers of page_headers(), the one place they are set:
 * an ETag (If-None-Match answers 304), Cache-Control no-cache (the browser asks every time and
 * a 304 costs a few bytes, so a new vendd's pages show at once), and a Content-Security-Policy
 * that allows scripts, styles, fetches and images from vendd only: an injected string can
 * never run as script, even where a page forgot to escape it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "api.h"
#include "conf.h"
#include "vendd.h"
#include "web_assets.h"

#define CSP_BASE                                                                                   \
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "          \
    "form-action 'self'"

static const struct web_asset *asset_find(const char *name)
{
    for (size_t i = 0; i < web_nassets; i++) {
        if (strcmp(web_assets[i].name, name) == 0)
            return &web_assets[i];
    }
    return NULL;
}

/* The headers of every page and asset. connect_origin: one more origin the page may fetch
 * from (the fake Midtrans on the purchase page), or NULL. */
static void page_headers(struct http_response *res, const struct web_asset *a,
                         const char *connect_origin)
{
    char csp[sizeof(CSP_BASE) + 32 + API_ORIGIN_SIZE];

    if (connect_origin != NULL)
        snprintf(csp, sizeof(csp), "%s; connect-src 'self' %s", CSP_BASE, connect_origin);
    else
        snprintf(csp, sizeof(csp), "%s", CSP_BASE);
    http_reply_header(res, "ETag", a->etag);
    http_reply_header(res, "Cache-Control", "no-cache");
    http_reply_header(res, "Content-Security-Policy", csp);
    http_reply_header(res, "X-Content-Type-Options", "nosniff");
    http_reply_header(res, "Referrer-Policy", "no-referrer");
}

/* If-None-Match (RFC 9110 13.1.2): "*", or a list of entity tags compared weakly (W/ aside). */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);

    while (*inm != '\0') {
        size_t n;

        while (*inm == ' ' || *inm == '\t' || *inm == ',')
            inm++;
        if (*inm == '*')
            return true;
        if (strncmp(inm, "W/", 2) == 0)
            inm += 2;
        n = strcspn(inm, ", \t");
        if (n == elen && memcmp(inm, etag, n) == 0)
            return true;
        inm += n;
    }
    return false;
}

static void serve(const struct http_request *req, struct http_response *res, const char *name,
                  const char *connect_origin)
{
    const struct web_asset *a = asset_find(name);
    const char *inm = http_header(req, "If-None-Match");

    if (a == NULL) {
        /* A vendd built before daemon/web/ had this page. */
        http_reply_error(res, 404, "NOT_FOUND", "'%s' is not built into this vendd", name);
        return;
    }
    page_headers(res, a, connect_origin);
    /* With a 304 MHD sends no body, but the Content-Length of this one: the length a 200 would
     * have, as RFC 9110 (8.6) wants, rather than a misleading 0. */
    res->status = inm != NULL && etag_matches(inm, a->etag) ? 304 : 200;
    res->static_body = a->data;
    res->static_len = a->len;
    res->content_type = a->content_type;
}

void api_web_index(void *ctx, const struct http_request *req, struct http_response *res)
{
    (void)ctx;
    serve(req, res, "index.html", NULL);
}

void api_web_asset(void *ctx, const struct http_request *req, struct http_response *res)
{
    const char *name = http_param(req, "name");
    size_t n = strlen(name);

    (void)ctx;
    /* Pages have their own routes; under /assets/ only what they load. */
    if ((n >= 5 && strcasecmp(name + n - 5, ".html") == 0) || asset_find(name) == NULL) {
        http_reply_error(res, 404, "NOT_FOUND", "no asset '%s'", name);
        return;
    }
    serve(req, res, name, NULL);
}

void api_web_buy(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    char url[API_ORIGIN_SIZE + 16], origin[API_ORIGIN_SIZE];

    /* The machine is the page's to read from location.pathname (and to find unknown). */
    if (api_simulated_payments(v, url, sizeof(url), origin, sizeof(origin)))
        serve(req, res, "buy.html", origin);
    else
        serve(req, res, "buy.html", NULL);
}

/* 127.0.0.0/8, ::1, ::ffff:127.x.y.z or "localhost". */
static bool host_is_loopback(const char *host)
{
    struct sockaddr_in in4 = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &in4.sin_addr) == 1)
        return http_addr_is_loopback((const struct sockaddr *)&in4);
    if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1)
        return http_addr_is_loopback((const struct sockaddr *)&in6);
    return false;
}

bool api_simulated_payments(const struct vendd *v, char *url, size_t url_size, char *origin,
                            size_t origin_size)
{
    const char *base = v->conf->midtrans_api_base, *sep, *auth, *h;
    char host[API_ORIGIN_SIZE];
    size_t olen, hlen;

    /* Without a server key nothing is paid at all (checkout.h). */
    if (v->midtrans == NULL)
        return false;
    sep = strstr(base, "://");
    if (sep == NULL)
        return false;
    auth = sep + 3;
    /* conf.c has checked the authority: [v6]:port or host[:port], no user info. */
    olen = (size_t)(auth - base) + strcspn(auth, "/");
    h = auth[0] == '[' ? auth + 1 : auth;
    hlen = strcspn(h, auth[0] == '[' ? "]" : ":/");
    if (hlen == 0 || hlen >= sizeof(host) || olen >= origin_size)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (!host_is_loopback(host))
        return false;
    /* The origin, scheme://authority, as CSP and a browser write it; the fake's control API
     * is at its root. */
    memcpy(origin, base, olen);
    origin[olen] = '\0';
    return (size_t)snprintf(url, url_size, "%s/_fake/pay/", origin) < url_size;
}
