/* bench_http.c - the load generators' keep-alive HTTP/1.1 client connection. */
#define _GNU_SOURCE
#include "bench_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

int bh_addr(const char *host, uint16_t port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, "http: '%s' is not an IPv4 address\n", host);
        return -1;
    }
    return 0;
}

static int arm(struct bh_conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};

    if (out == c->epollout)
        return 0;
    if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -1;
    c->epollout = out;
    return 0;
}

int bh_open(struct bh_conn *c, int epfd, const struct sockaddr_in *sa)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    int one = 1;

    c->kind = BH_KIND;
    c->epfd = epfd;
    c->sa = *sa;
    c->busy = c->epollout = false;
    c->in_len = c->resp_len = c->out_len = c->out_off = 0;
    if (c->in == NULL) {
        c->in = malloc(BH_IN_MAX);
        if (c->in == NULL) {
            fprintf(stderr, "http: out of memory\n");
            return -1;
        }
    }
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        fprintf(stderr, "http: cannot connect to port %u: %s\n", (unsigned)ntohs(sa->sin_port),
                strerror(errno));
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        fprintf(stderr, "http: epoll_ctl: %s\n", strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

void bh_close(struct bh_conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    free(c->in);
    c->in = NULL;
}

int bh_write(struct bh_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

        if (w > 0) {
            c->out_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return arm(c, true);
        } else {
            fprintf(stderr, "http: send: %s\n", w < 0 ? strerror(errno) : "closed");
            return -1;
        }
    }
    return arm(c, false);
}

int bh_send(struct bh_conn *c, const char *method, const char *path, const char *body)
{
    size_t blen = body != NULL ? strlen(body) : 0;
    int n;

    if (body != NULL)
        n = snprintf(c->out, sizeof(c->out),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, blen, body);
    else
        n = snprintf(c->out, sizeof(c->out), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method,
                     path);
    if (n < 0 || (size_t)n >= sizeof(c->out)) {
        fprintf(stderr, "http: request '%s %s' longer than %d bytes\n", method, path, BH_OUT_MAX);
        return -1;
    }
    c->out_len = (size_t)n;
    c->out_off = 0;
    c->busy = true;
    c->t_sent = bu_now_us();
    return bh_write(c);
}

/* The value of header name in the head [h, end), or NULL; *len gets its length. */
static const char *header(const char *h, const char *end, const char *name, size_t *len)
{
    size_t nlen = strlen(name);

    for (const char *p = h; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);

        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;

            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *len = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* A whole response in c->in: 1 (and *r), 0 if more is needed, -1 if malformed. */
static int parse(struct bh_conn *c, struct bh_resp *r)
{
    const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4), *v;
    size_t head, vlen, clen = 0;
    char num[24];

    if (end == NULL)
        return c->in_len >= BH_IN_MAX ? -1 : 0;
    head = (size_t)(end - c->in) + 4;
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.", 7) != 0)
        return -1;
    r->status = (c->in[9] - '0') * 100 + (c->in[10] - '0') * 10 + (c->in[11] - '0');
    v = header(c->in, end, "Transfer-Encoding", &vlen);
    if (v != NULL) {
        fprintf(stderr, "http: chunked answers are not supported\n");
        return -1;
    }
    v = header(c->in, end, "Content-Length", &vlen);
    if (v != NULL) {
        if (vlen == 0 || vlen >= sizeof(num))
            return -1;
        memcpy(num, v, vlen);
        num[vlen] = '\0';
        clen = strtoul(num, NULL, 10);
    }
    if (head + clen > BH_IN_MAX) {
        fprintf(stderr, "http: answer of %zu bytes exceeds %d\n", head + clen, BH_IN_MAX);
        return -1;
    }
    if (c->in_len < head + clen)
        return 0;
    v = header(c->in, end, "Connection", &vlen);
    r->close = v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0;
    r->body = c->in + head;
    r->body_len = clen;
    c->resp_len = head + clen;
    return 1;
}

int bh_read(struct bh_conn *c, struct bh_resp *r)
{
    int rc;

    if (c->resp_len > 0) /* the previous answer was not released */
        return -1;
    for (;;) {
        ssize_t n;

        rc = parse(c, r);
        if (rc != 0)
            return rc;
        n = recv(c->fd, c->in + c->in_len, BH_IN_MAX - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
}

int bh_next(struct bh_conn *c, const struct bh_resp *r)
{
    struct sockaddr_in sa = c->sa;

    memmove(c->in, c->in + c->resp_len, c->in_len - c->resp_len);
    c->in_len -= c->resp_len;
    c->resp_len = 0;
    c->busy = false;
    if (!r->close)
        return 0;
    epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    return bh_open(c, c->epfd, &sa);
}
