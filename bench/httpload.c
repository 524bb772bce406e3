/*
 * httpload.c - a keep-alive HTTP load generator, one thread, epoll (docs/BENCH.md); what wrk
 * would do, without a dependency.
 *
 *   httpload --port P [--host 127.0.0.1] [--conns 64] --seconds S (--path P ... | --paths FILE)
 *   httpload --port P [--conns 16] --requests FILE
 *
 * Timed mode: every connection sends GET requests one at a time (no pipelining), taking the
 * paths in turn from the list, for S seconds; an answer that is not 2xx counts as failed.
 * Latency: request handed to the socket to the last byte of its answer.
 * Requests mode: FILE has one request a line, "METHOD PATH [BODY]" (the body, the rest of
 * the line, goes as application/json); each is sent once; used to register machines and
 * create orders. The first few failures are printed on stderr with their answer.
 *
 * Prints one line:
 *   httpload: requests=N seconds=S rate=R ok=N failed=N errors=N p50_ms=X p90_ms=X
 *             p99_ms=X max_ms=X cpu_us=N
 * (errors: connections lost or malformed answers; cpu_us: this process's own CPU).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench_http.h"
#include "bench_util.h"

#define TOOL         "httpload"
#define CONNS_MAX    1000
#define PATHS_MAX    100000
#define SAMPLES_MAX  50000000u
#define FAILS_SHOWN  3
#define REQ_LINE_MAX 4000

static volatile sig_atomic_t s_stop;

/* One request of the list: method, path and body point into the line's copy. */
struct req {
    char *line;
    const char *method, *path, *body;
};

struct httpload {
    int epfd;
    struct bh_conn *conns;
    size_t nconns;
    struct req *reqs;
    size_t nreqs, next;
    bool once; /* requests mode */
    uint64_t *lat;
    size_t nlat, cap;
    uint64_t ok, failed, errors;
};

static void on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

/* Split a "METHOD PATH [BODY]" line (in place); -1 if it has no path. */
static int req_parse(struct req *r, char *line, bool get_only)
{
    char *sp;

    r->line = line;
    if (get_only) {
        r->method = "GET";
        r->path = line;
        r->body = NULL;
        return line[0] == '/' ? 0 : -1;
    }
    r->method = line;
    sp = strchr(line, ' ');
    if (sp == NULL)
        return -1;
    *sp = '\0';
    r->path = sp + 1;
    sp = strchr(sp + 1, ' ');
    r->body = NULL;
    if (sp != NULL) {
        *sp = '\0';
        r->body = sp + 1;
    }
    return r->path[0] == '/' ? 0 : -1;
}

static int reqs_add(struct httpload *h, const char *text, bool get_only)
{
    char *line;

    if (h->nreqs >= PATHS_MAX) {
        fprintf(stderr, "%s: more than %d requests\n", TOOL, PATHS_MAX);
        return -1;
    }
    if (h->reqs == NULL) {
        h->reqs = calloc(PATHS_MAX, sizeof(*h->reqs));
        if (h->reqs == NULL)
            return -1;
    }
    line = strdup(text);
    if (line == NULL || req_parse(&h->reqs[h->nreqs], line, get_only) < 0) {
        fprintf(stderr, "%s: bad request line '%s' (want %s)\n", TOOL, text,
                get_only ? "/path" : "METHOD /path [BODY]");
        free(line);
        return -1;
    }
    h->nreqs++;
    return 0;
}

static int reqs_load(struct httpload *h, const char *file, bool get_only)
{
    char buf[REQ_LINE_MAX + 2];
    FILE *f = fopen(file, "r");
    int rc = 0;

    if (f == NULL) {
        fprintf(stderr, "%s: cannot open '%s': %s\n", TOOL, file, strerror(errno));
        return -1;
    }
    while (rc == 0 && fgets(buf, sizeof(buf), f) != NULL) {
        size_t n = strlen(buf);

        if (n > 0 && buf[n - 1] == '\n')
            buf[--n] = '\0';
        else if (!feof(f)) {
            fprintf(stderr, "%s: '%s': a line longer than %d bytes\n", TOOL, file, REQ_LINE_MAX);
            rc = -1;
        }
        if (rc == 0 && n > 0)
            rc = reqs_add(h, buf, get_only);
    }
    fclose(f);
    return rc;
}

static void sample(struct httpload *h, uint64_t us)
{
    if (h->nlat == h->cap) {
        size_t cap = h->cap == 0 ? 65536 : h->cap * 2;
        uint64_t *p = cap <= SAMPLES_MAX ? realloc(h->lat, cap * sizeof(*p)) : NULL;

        if (p == NULL)
            return; /* past the bound the rate still counts, the percentiles stop */
        h->lat = p;
        h->cap = cap;
    }
    h->lat[h->nlat++] = us;
}

/* Send the next request on c; false when the list is done (requests mode). */
static bool send_next(struct httpload *h, struct bh_conn *c)
{
    const struct req *r;

    if (h->once && h->next >= h->nreqs)
        return false;
    r = &h->reqs[h->next++ % h->nreqs];
    if (bh_send(c, r->method, r->path, r->body) < 0) {
        h->errors++;
        return false;
    }
    c->tag = (int64_t)((h->next - 1) % h->nreqs);
    return true;
}

static void on_answer(struct httpload *h, struct bh_conn *c, const struct bh_resp *r)
{
    sample(h, bu_now_us() - c->t_sent);
    if (r->status >= 200 && r->status < 300) {
        h->ok++;
        return;
    }
    if (h->failed++ < FAILS_SHOWN)
        fprintf(stderr, "%s: %s %s -> %d %.*s\n", TOOL, h->reqs[c->tag].method,
                h->reqs[c->tag].path, r->status, (int)(r->body_len > 300 ? 300 : r->body_len),
                r->body);
}

static void event(struct httpload *h, struct bh_conn *c, uint32_t ev, bool sending)
{
    struct bh_resp r;
    int rc;

    if ((ev & EPOLLOUT) && bh_write(c) < 0)
        goto lost;
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    rc = bh_read(c, &r);
    if (rc == 0)
        return;
    if (rc < 0)
        goto lost;
    on_answer(h, c, &r);
    if (bh_next(c, &r) < 0) {
        h->errors++;
        return;
    }
    if (sending)
        send_next(h, c);
    return;
lost:
    h->errors++;
    if (c->busy && h->once && h->errors < 5)
        fprintf(stderr, "%s: lost the answer to %s %s\n", TOOL, h->reqs[c->tag].method,
                h->reqs[c->tag].path);
    epoll_ctl(h->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->busy = false;
    /* Timed mode reconnects and goes on; requests mode counts the request as lost. */
    if (sending && !h->once && bh_open(c, h->epfd, &c->sa) == 0)
        send_next(h, c);
}

static size_t busy(const struct httpload *h)
{
    size_t n = 0;

    for (size_t i = 0; i < h->nconns; i++)
        n += h->conns[i].fd >= 0 && h->conns[i].busy;
    return n;
}

int main(int argc, char **argv)
{
    struct httpload h = {0};
    struct sockaddr_in sa;
    const char *host = "127.0.0.1", *paths = NULL, *requests = NULL;
    uint64_t port = 0, conns = 0, seconds = 0, t0, t_end, cpu0;
    struct sigaction act;
    double secs;
    int rc = 0;

    for (int i = 1; i < argc && rc == 0; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL) {
            fprintf(stderr, "%s: option '%s' needs a value\n", TOOL, a);
            return 64;
        }
        if (strcmp(a, "--port") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 65535, &port);
        else if (strcmp(a, "--host") == 0)
            host = v;
        else if (strcmp(a, "--conns") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, CONNS_MAX, &conns);
        else if (strcmp(a, "--seconds") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 3600, &seconds);
        else if (strcmp(a, "--path") == 0)
            rc = reqs_add(&h, v, true);
        else if (strcmp(a, "--paths") == 0)
            paths = v;
        else if (strcmp(a, "--requests") == 0)
            requests = v;
        else {
            fprintf(stderr, "%s: unknown option '%s'\n", TOOL, a);
            rc = -1;
        }
    }
    if (rc == 0 && paths != NULL)
        rc = reqs_load(&h, paths, true);
    if (rc == 0 && requests != NULL)
        rc = reqs_load(&h, requests, false);
    h.once = requests != NULL;
    if (rc < 0 || port == 0 || h.nreqs == 0 || h.once == (seconds != 0)) {
        fprintf(stderr, "usage: httpload --port P [--host H] [--conns N] --seconds S "
                        "(--path P ... | --paths FILE)\n"
                        "       httpload --port P [--conns N] --requests FILE\n");
        return 64;
    }
    if (conns == 0)
        conns = h.once ? 16 : 64;
    if (bh_addr(host, (uint16_t)port, &sa) < 0)
        return 64;
    memset(&act, 0, sizeof(act));
    act.sa_handler = on_signal;
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    h.epfd = epoll_create1(EPOLL_CLOEXEC);
    h.conns = calloc(conns, sizeof(*h.conns));
    if (h.epfd < 0 || h.conns == NULL)
        return 1;
    h.nconns = conns;
    for (size_t i = 0; i < h.nconns; i++) {
        h.conns[i].fd = -1;
        if (bh_open(&h.conns[i], h.epfd, &sa) < 0)
            return 1;
    }
    cpu0 = (uint64_t)bu_proc_cpu_us(0);
    t0 = bu_now_us();
    t_end = t0 + seconds * 1000000u;
    for (size_t i = 0; i < h.nconns; i++)
        send_next(&h, &h.conns[i]);
    while (!s_stop) {
        struct epoll_event ev[256];
        bool sending = h.once || bu_now_us() < t_end;
        int n;

        if (!sending || h.once) {
            if (busy(&h) == 0)
                break;
        }
        n = epoll_wait(h.epfd, ev, 256, 100);
        for (int k = 0; k < n; k++)
            event(&h, ev[k].data.ptr, ev[k].events, sending);
    }
    secs = (double)(bu_now_us() - t0) / 1e6;
    if (!h.once && secs > (double)seconds)
        secs = (double)seconds; /* the rate over the window; late answers still count */
    bu_sort_u64(h.lat, h.nlat);
    printf(
        "httpload: requests=%zu seconds=%.3f rate=%.0f ok=%llu failed=%llu errors=%llu "
        "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f cpu_us=%llu\n",
        h.nlat, secs, (double)h.nlat / secs, (unsigned long long)h.ok, (unsigned long long)h.failed,
        (unsigned long long)h.errors, (double)bu_pct(h.lat, h.nlat, 0.50) / 1000.0,
        (double)bu_pct(h.lat, h.nlat, 0.90) / 1000.0, (double)bu_pct(h.lat, h.nlat, 0.99) / 1000.0,
        (double)bu_pct(h.lat, h.nlat, 1.0) / 1000.0,
        (unsigned long long)((uint64_t)bu_proc_cpu_us(0) - cpu0));
    for (size_t i = 0; i < h.nconns; i++)
        bh_close(&h.conns[i]);
    for (size_t i = 0; i < h.nreqs; i++)
        free(h.reqs[i].line);
    free(h.reqs);
    free(h.conns);
    free(h.lat);
    close(h.epfd);
    return h.failed == 0 && h.errors == 0 ? 0 : 1;
}
