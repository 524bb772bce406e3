/*
 * it_slow_clients.c - slow clients and connection floods (issue 12, attacks): one address
 * holding many slow connections must not lock out the operator or the payment webhook.
 *
 * Every client is on loopback, so the test tells them apart by source address: the operator
 * is 127.0.0.1 (the host's own address, which may use the local reserve), "internet" clients
 * are 127.0.0.2 and up (loopback to the kernel, remote to the limits). The limits are set low
 * through the config so the attack fits in a few seconds:
 *
 * 1. ATTACK_CONNS connections from one address, each trickling a header line every second:
 *    PER_ADDR are held, the rest are closed at once; meanwhile the operator and a webhook POST
 *    from another address are answered; the held ones are closed by the header deadline,
 *    trickle or not.
 * 2. Many addresses fill the public pool: the surplus is refused, a newcomer from outside is
 *    refused, the operator still gets in (the reserve).
 * 3. A body trickled a byte at a time is closed by the body deadline.
 * 4. An event stream open all along outlives every deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define ATTACK_CONNS 1000 /* the attack: today's whole connection limit */
#define MAX_CONNS    64
#define RESERVE      16
#define PUBLIC_POOL  (MAX_CONNS - RESERVE)
#define PER_ADDR     8
#define HEADER_S     2
#define BODY_S       2
#define PROMPT_MS    1500 /* "answered promptly": well inside any deadline */
#define SLACK_MS     1500 /* a deadline is enforced this late at most */

struct slow {
    int fd;
    bool closed;
    uint64_t closed_at;
};

static int setup(void **state)
{
    static const char *const env[] = {"HTTP_MAX_CONNECTIONS=64", "HTTP_LOCAL_RESERVE=16",
                                      "HTTP_PER_ADDRESS_MAX=8",  "HTTP_HEADER_TIMEOUT_S=2",
                                      "HTTP_BODY_TIMEOUT_S=2",   NULL};
    struct harness_fixture *f = harness_fixture_new_midtrans(env, NULL, NULL, NULL);

    *state = f;
    return f == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

/* A non-blocking TCP connection to vendd from source address src; -1 on failure. */
static int connect_from(const struct harness *h, const char *src)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    inet_pton(AF_INET, src, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        goto fail;
    a.sin_port = htons(h->http_port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        goto fail;
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        goto fail;
    return fd;
fail:
    fprintf(stderr, "connect from %s: %s\n", src, strerror(errno));
    close(fd);
    return -1;
}

static void send_all(int fd, const char *s)
{
    /* A closed peer is what some checks wait for: errors here are not failures. */
    (void)!send(fd, s, strlen(s), MSG_NOSIGNAL);
}

/* True once the server has closed fd (EOF or reset); bytes it sent are skipped. */
static bool peer_closed(int fd)
{
    char buf[512];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
            return true;
        if (n < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
}

/* Mark the newly closed ones; returns how many are still open. */
static int poll_slow(struct slow *s, int n)
{
    int open = 0;

    for (int i = 0; i < n; i++) {
        if (!s[i].closed && peer_closed(s[i].fd)) {
            s[i].closed = true;
            s[i].closed_at = harness_now_ms();
        }
        open += !s[i].closed;
    }
    return open;
}

static void close_slow(struct slow *s, int n)
{
    for (int i = 0; i < n; i++)
        close(s[i].fd);
}

/* One request from src; its HTTP status, or -1 if none came within timeout_ms. */
static long request_from(const struct harness *h, const char *src, const char *req, int timeout_ms)
{
    char buf[1024];
    size_t len = 0;
    uint64_t end = harness_now_ms() + (uint64_t)timeout_ms;
    long status = -1;
    int fd = connect_from(h, src);

    if (fd < 0)
        return -1;
    send_all(fd, req);
    while (harness_now_ms() < end && len < sizeof(buf) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 50) <= 0)
            continue;
        n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n") != NULL) {
            if (sscanf(buf, "HTTP/1.%*c %ld", &status) != 1)
                status = -1;
            break;
        }
    }
    close(fd);
    return status;
}

static long operator_get(const struct harness *h)
{
    return request_from(h, "127.0.0.1",
                        "GET /api/machines HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Connection: close\r\n\r\n",
                        PROMPT_MS);
}

/* A forged notification from outside: a normal 4xx, not a timeout. */
static long webhook_post(const struct harness *h, const char *src)
{
    static const char body[] = "{\"order_id\":\"nope\",\"transaction_status\":\"settlement\"}";
    char req[512];

    snprintf(req, sizeof(req),
             "POST /api/payments/webhook HTTP/1.1\r\nHost: vendd.example\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             sizeof(body) - 1, body);
    return request_from(h, src, req, PROMPT_MS);
}

static long long metric(struct harness *h, const char *series)
{
    return harness_metric(h, series);
}

/* 1: the attack from one address, a header line every second. */
static void one_address_cannot_lock_out(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    static struct slow s[ATTACK_CONNS];
    uint64_t t0 = harness_now_ms(), last_line = 0;
    long st;
    int open;

    for (int i = 0; i < ATTACK_CONNS; i++) {
        s[i] = (struct slow){.fd = connect_from(h, "127.0.0.2")};
        assert_true(s[i].fd >= 0);
        send_all(s[i].fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    }
    /* The surplus is refused at once. */
    do {
        harness_sleep_ms(50);
        open = poll_slow(s, ATTACK_CONNS);
    } while (open > PER_ADDR && harness_now_ms() - t0 < 3000);
    print_message("%d of %d slow connections held after %llu ms\n", open, ATTACK_CONNS,
                  (unsigned long long)(harness_now_ms() - t0));
    assert_int_equal(open, PER_ADDR);

    /* Meanwhile the operator and the webhook are answered. */
    st = operator_get(h);
    assert_int_equal(st, 200);
    st = webhook_post(h, "127.0.0.3");
    print_message("webhook from 127.0.0.3: HTTP %ld\n", st);
    assert_true(st >= 400 && st < 500);

    /* The held ones trickle a line a second and are still closed by the header deadline. */
    while (poll_slow(s, ATTACK_CONNS) > 0 &&
           harness_now_ms() - t0 < HEADER_S * 1000 + SLACK_MS + 1000) {
        if (harness_now_ms() - last_line >= 1000) {
            for (int i = 0; i < ATTACK_CONNS; i++)
                if (!s[i].closed)
                    send_all(s[i].fd, "X-Slow: 1\r\n");
            last_line = harness_now_ms();
        }
        harness_sleep_ms(50);
    }
    open = poll_slow(s, ATTACK_CONNS);
    print_message("%d slow connections open %llu ms after the first\n", open,
                  (unsigned long long)(harness_now_ms() - t0));
    assert_int_equal(open, 0);
    close_slow(s, ATTACK_CONNS);

    assert_true(metric(h, "vendd_http_connections_refused_total{reason=\"per_address\"}") >=
                ATTACK_CONNS - PER_ADDR);
    assert_int_equal(metric(h, "vendd_http_connections_closed_total{reason=\"header_deadline\"}"),
                     PER_ADDR);
}

/* 2: many addresses fill the public pool; the operator still gets in, a newcomer does not. */
static void reserve_keeps_room_for_loopback(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    enum { NADDR = PUBLIC_POOL / PER_ADDR + 1, N = NADDR * PER_ADDR };
    struct slow s[N];
    long long full0 = metric(h, "vendd_http_connections_refused_total{reason=\"full\"}");
    uint64_t t0 = harness_now_ms();
    int open;

    for (int a = 0; a < NADDR; a++) {
        char src[32];

        snprintf(src, sizeof(src), "127.0.1.%d", a + 1);
        for (int i = 0; i < PER_ADDR; i++) {
            struct slow *c = &s[a * PER_ADDR + i];

            *c = (struct slow){.fd = connect_from(h, src)};
            assert_true(c->fd >= 0);
        }
    }
    do {
        harness_sleep_ms(50);
        open = poll_slow(s, N);
    } while (open > PUBLIC_POOL && harness_now_ms() - t0 < 1000);
    print_message("%d of %d connections from %d addresses held\n", open, N, NADDR);
    assert_int_equal(open, PUBLIC_POOL);

    assert_int_equal(
        request_from(h, "127.0.2.1", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", PROMPT_MS), -1);
    assert_int_equal(operator_get(h), 200);
    assert_int_equal(metric(h, "vendd_http_connections_refused_total{reason=\"full\"}") - full0,
                     N - PUBLIC_POOL + 1);

    /* Idle ones are closed by the header deadline too, and the pool is free again. */
    while (poll_slow(s, N) > 0 && harness_now_ms() - t0 < HEADER_S * 1000 + SLACK_MS + 1000)
        harness_sleep_ms(50);
    assert_int_equal(poll_slow(s, N), 0);
    close_slow(s, N);
    assert_int_equal(operator_get(h), 200);
}

/* 3: headers in, then a body a byte at a time: closed by the body deadline, unanswered. */
static void trickled_body_is_closed(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct slow s = {.fd = connect_from(h, "127.0.0.4")};
    uint64_t t0 = harness_now_ms();

    assert_true(s.fd >= 0);
    send_all(s.fd, "POST /api/payments/webhook HTTP/1.1\r\nHost: x\r\n"
                   "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{");
    while (!s.closed && harness_now_ms() - t0 < BODY_S * 1000 + SLACK_MS + 1000) {
        send_all(s.fd, " ");
        harness_sleep_ms(250);
        poll_slow(&s, 1);
    }
    print_message("trickled body closed after %llu ms\n",
                  s.closed ? (unsigned long long)(s.closed_at - t0) : 0ull);
    assert_true(s.closed);
    assert_true(s.closed_at - t0 >= BODY_S * 1000 - 200);
    close(s.fd);
    assert_int_equal(metric(h, "vendd_http_connections_closed_total{reason=\"body_deadline\"}"), 1);
}

/* 4: an event stream is an answer in progress: no header or body deadline ends it. */
static void event_stream_outlives_deadlines(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct slow s = {.fd = connect_from(h, "127.0.0.5")};
    uint64_t t0 = harness_now_ms();

    assert_true(s.fd >= 0);
    send_all(s.fd, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Accept: text/event-stream\r\n\r\n");
    while (harness_now_ms() - t0 < HEADER_S * 1000 + SLACK_MS) {
        harness_sleep_ms(100);
        assert_false(peer_closed(s.fd));
    }
    /* The dashboard's requests beside its stream, from the same address. */
    for (int i = 0; i < PER_ADDR - 1; i++)
        assert_int_equal(request_from(h, "127.0.0.5",
                                      "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      "Connection: close\r\n\r\n",
                                      PROMPT_MS),
                         200);
    assert_false(peer_closed(s.fd));
    close(s.fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_address_cannot_lock_out),
        cmocka_unit_test(reserve_keeps_room_for_loopback),
        cmocka_unit_test(trickled_body_is_closed),
        cmocka_unit_test(event_stream_outlives_deadlines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
