/*
 * hello.c - the HTTP ceiling vendd's reads are measured against (docs/BENCH.md):
 * libmicrohttpd answering every request with a constant JSON body, in the mode vendd runs it
 * (daemon/src/core/http.c): MHD_USE_EPOLL without an internal thread, MHD's epoll fd polled
 * by the program's own poll() loop, MHD_run() when it is readable or MHD's timeout comes;
 * the same connection limit, idle timeout and per-connection memory; the answer queued on
 * the second call of the access handler (the first call's answer closes the connection in
 * 0.9.75, limits.md pitfall 3). What it leaves out is everything vendd does per request:
 * routing, the operator check, SQL and jansson.
 *
 *   hello [--port P]     P = 0 (default) picks a free port; prints "hello: port N"
 *
 * Listens on 127.0.0.1 until SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <microhttpd.h>

#include "bench_util.h"

#define TOOL           "hello"
#define CONN_LIMIT     1000  /* vendd's http.c */
#define CONN_TIMEOUT_S 30    /* vendd's http.c */
#define CONN_MEMORY    32768 /* vendd's http.c */
#define POLL_MAX_MS    1000  /* vendd's loop.c */

static volatile sig_atomic_t s_stop;

static const char BODY[] = "{\"status\":\"ok\",\"hello\":\"world\"}";

static void on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct MHD_Response *r;
    enum MHD_Result rc;

    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    if (*con_cls == NULL) {
        *con_cls = conn; /* any non-NULL mark: the next call answers */
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0; /* a body is read and ignored */
        return MHD_YES;
    }
    r = MHD_create_response_from_buffer(sizeof(BODY) - 1, (void *)BODY, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    rc = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return rc;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;
    struct MHD_Daemon *d;
    struct sigaction act;
    struct pollfd pfd;
    uint64_t port = 0;

    if (argc == 3 && strcmp(argv[1], "--port") == 0) {
        if (bu_parse_u64(TOOL, "--port", argv[2], 0, 65535, &port) < 0)
            return 64;
    } else if (argc != 1) {
        fprintf(stderr, "usage: hello [--port P]\n");
        return 64;
    }
    memset(&act, 0, sizeof(act));
    act.sa_handler = on_signal;
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, on_access,
                         NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_LIMIT,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "%s: cannot listen on 127.0.0.1 port %u\n", TOOL, (unsigned)port);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
    pfd.fd = info != NULL ? info->epoll_fd : -1;
    pfd.events = POLLIN;
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("hello: port %u\n", info != NULL ? (unsigned)info->port : (unsigned)port);
    fflush(stdout);
    while (!s_stop && pfd.fd >= 0) {
        MHD_UNSIGNED_LONG_LONG to;
        int timeout = POLL_MAX_MS;

        if (MHD_get_timeout(d, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)timeout)
            timeout = (int)to;
        if (poll(&pfd, 1, timeout) < 0 && errno != EINTR)
            break;
        MHD_run(d);
    }
    MHD_stop_daemon(d);
    return 0;
}
