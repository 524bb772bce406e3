/*
 * bench_http.h - a keep-alive HTTP/1.1 client connection for the bench's load generators:
 * non-blocking, on the caller's epoll set, one request at a time (no pipelining, as wrk and
 * browsers do), TCP_NODELAY. It understands what libmicrohttpd sends: a status line,
 * headers, a Content-Length body; a chunked answer is an error.
 *
 * epoll data.ptr is the struct bh_conn, whose first member is `kind` (BH_KIND).
 * Functions return 0 or -1 after one line on stderr, unless said otherwise.
 */
#ifndef VEND_BENCH_HTTP_H
#define VEND_BENCH_HTTP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BH_KIND    0x48545450 /* "HTTP" */
#define BH_OUT_MAX 4096
#define BH_IN_MAX  (256 * 1024)

struct bh_conn {
    int kind; /* BH_KIND; first */
    int fd;
    int epfd;
    struct sockaddr_in sa;
    bool busy;     /* a request is out and its answer not yet read */
    bool epollout; /* EPOLLOUT registered: the request is not all written */
    char out[BH_OUT_MAX];
    size_t out_len, out_off;
    char *in; /* BH_IN_MAX bytes */
    size_t in_len, resp_len;
    uint64_t t_sent; /* bu_now_us() when the request was handed to the socket */
    int64_t tag;     /* the caller's */
};

/* A response read by bh_read(): valid until bh_next(). */
struct bh_resp {
    int status;
    const char *body;
    size_t body_len;
    bool close; /* "Connection: close": bh_next() reconnects */
};

/* Connect (blocking: loopback) and add to epfd. */
int bh_open(struct bh_conn *c, int epfd, const struct sockaddr_in *sa);
void bh_close(struct bh_conn *c);

/* Queue and write a request; body NULL for none (else sent as application/json). */
int bh_send(struct bh_conn *c, const char *method, const char *path, const char *body);
/* EPOLLOUT: write the rest. */
int bh_write(struct bh_conn *c);
/* EPOLLIN: 1 when a whole response is in *r, 0 when more is needed, -1 closed or malformed. */
int bh_read(struct bh_conn *c, struct bh_resp *r);
/* Done with the response bh_read() gave: drop it (reconnect if the server closes). */
int bh_next(struct bh_conn *c, const struct bh_resp *r);

/* "127.0.0.1" and a port into *sa. */
int bh_addr(const char *host, uint16_t port, struct sockaddr_in *sa);

#endif
