/*
 * test_httpc.c - the outbound HTTP client on the real loop, against a real libmicrohttpd
 * server on loopback that can answer at once, slowly, too much or not at all. The point
 * of the module is that the loop never waits for the network: every test that involves a
 * slow answer also counts the loop's own ticks while it waits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "httpc.h"
#include "log.h"
#include "loop.h"
#include "vend/err.h"

struct server {
    struct MHD_Daemon *mhd;
    unsigned port;
};

/* The server runs its own threads: the test's loop stays the only thing on this thread. */
static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **con_cls)
{
    static const char big[4096] = {0};
    struct MHD_Response *res;
    char body[512];
    enum MHD_Result ret;
    const char *auth;

    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    if (*con_cls == NULL) {
        *con_cls = conn; /* first call: headers only */
        return MHD_YES;
    }
    if (*upload_size > 0) {
        *upload_size = 0; /* the body is not needed */
        return MHD_YES;
    }
    if (strcmp(url, "/slow") == 0) {
        usleep(600 * 1000);
        snprintf(body, sizeof(body), "{\"slow\":true}");
    } else if (strcmp(url, "/big") == 0) {
        res = MHD_create_response_from_buffer(sizeof(big), (void *)big, MHD_RESPMEM_PERSISTENT);
        ret = MHD_queue_response(conn, 200, res);
        MHD_destroy_response(res);
        return ret;
    } else if (strcmp(url, "/auth") == 0) {
        auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        snprintf(body, sizeof(body), "%s", auth != NULL ? auth : "none");
    } else if (strcmp(url, "/fail") == 0) {
        snprintf(body, sizeof(body), "{\"status_code\":\"500\"}");
        res = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
        ret = MHD_queue_response(conn, 500, res);
        MHD_destroy_response(res);
        return ret;
    } else {
        snprintf(body, sizeof(body), "{\"ok\":true,\"url\":\"%s\"}", url);
    }
    res = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    ret = MHD_queue_response(conn, 200, res);
    MHD_destroy_response(res);
    return ret;
}

static void server_start(struct server *s)
{
    const union MHD_DaemonInfo *info;

    s->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                              NULL, NULL, serve, NULL, MHD_OPTION_END);
    assert_non_null(s->mhd);
    info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    s->port = info->port;
}

/* A loopback port nothing listens on: bound, then closed. */
static unsigned closed_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

struct t {
    struct server srv;
    struct loop *loop;
    struct httpc *c;
    int done_calls;
    struct httpc_response res;
    char body[8192];
    int ticks; /* loop ticks seen while a request was pending */
    bool ticking;
};

static void on_done(void *arg, const struct httpc_response *res)
{
    struct t *t = arg;

    t->done_calls++;
    t->res = *res;
    snprintf(t->body, sizeof(t->body), "%s", res->body);
    t->res.body = t->body;
    t->res.detail = "";
    loop_stop(t->loop);
}

static void tick(void *arg)
{
    struct t *t = arg;

    t->ticks++;
    if (t->ticking)
        assert_true(loop_timer_add(t->loop, 10, tick, t) != 0);
}

static void stop(void *arg)
{
    loop_stop(arg);
}

static int setup(void **state)
{
    struct t *t = calloc(1, sizeof(*t));

    server_start(&t->srv);
    t->loop = loop_new();
    assert_non_null(t->loop);
    assert_int_equal(httpc_new(&t->c, t->loop), VEND_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;

    httpc_free(t->c);
    loop_free(t->loop);
    MHD_stop_daemon(t->srv.mhd);
    free(t);
    return 0;
}

static struct httpc_request req_for(struct t *t, const char *path, char *url, size_t size)
{
    snprintf(url, size, "http://127.0.0.1:%u%s", t->srv.port, path);
    return (struct httpc_request){
        .method = "GET",
        .url = url,
        .connect_timeout_ms = 1000,
        .total_timeout_ms = 3000,
        .max_response = 1024,
    };
}

/* Run the loop until the request is done, with a 5 s safety stop. */
static void run(struct t *t)
{
    uint64_t guard = loop_timer_add(t->loop, 5000, stop, t->loop);

    assert_int_equal(loop_run(t->loop), 0);
    loop_timer_del(t->loop, guard);
    t->ticking = false;
}

static void get_and_post_answer(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/hello", url, sizeof(url));

    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    assert_int_equal(t->done_calls, 0); /* never from inside httpc_start */
    assert_int_equal(httpc_pending(t->c), 1);
    run(t);
    assert_int_equal(t->done_calls, 1);
    assert_int_equal(t->res.err, VEND_OK);
    assert_int_equal(t->res.status, 200);
    assert_string_equal(t->body, "{\"ok\":true,\"url\":\"/hello\"}");
    assert_int_equal(httpc_pending(t->c), 0);

    req = req_for(t, "/fail", url, sizeof(url));
    req.method = "POST";
    req.body = "{\"a\":1}";
    req.body_len = 7;
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    run(t);
    assert_int_equal(t->res.err, VEND_OK); /* an HTTP answer, whatever its status */
    assert_int_equal(t->res.status, 500);
}

static void basic_auth_is_sent(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/auth", url, sizeof(url));

    req.basic_user = "SB-Mid-server-key";
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    run(t);
    /* base64("SB-Mid-server-key:") */
    assert_string_equal(t->body, "Basic U0ItTWlkLXNlcnZlci1rZXk6");
}

static void slow_answer_does_not_stall_the_loop(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/slow", url, sizeof(url));

    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    t->ticking = true;
    assert_true(loop_timer_add(t->loop, 10, tick, t) != 0);
    run(t);
    assert_int_equal(t->res.err, VEND_OK);
    assert_string_equal(t->body, "{\"slow\":true}");
    /* 600 ms of waiting at a tick per 10 ms: a blocked loop would show one or two. */
    if (t->ticks < 20)
        fail_msg("the loop ticked %d times while the request waited 600 ms", t->ticks);
}

static void no_answer_in_time_is_timedout(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/slow", url, sizeof(url));

    req.total_timeout_ms = 150;
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    run(t);
    assert_int_equal(t->res.err, VEND_ETIMEDOUT);
    assert_int_equal(t->res.status, 0);
}

static void refused_connection_is_unavailable(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/", url, sizeof(url));

    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", closed_port());
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    run(t);
    assert_int_equal(t->res.err, VEND_EUNAVAILABLE);
}

static void oversize_answer_is_toobig(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/big", url, sizeof(url));

    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    run(t);
    assert_int_equal(t->res.err, VEND_ETOOBIG);
    req.max_response = 4096;
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
    run(t);
    assert_int_equal(t->res.err, VEND_OK);
    assert_int_equal(t->res.len, 4096);
}

static void cancelled_request_never_calls_back(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/slow", url, sizeof(url));
    uint64_t id = 0;

    assert_int_equal(httpc_start(t->c, &req, on_done, t, &id), VEND_OK);
    httpc_cancel(t->c, id);
    assert_int_equal(httpc_pending(t->c), 0);
    assert_true(loop_timer_add(t->loop, 800, stop, t->loop) != 0);
    assert_int_equal(loop_run(t->loop), 0);
    assert_int_equal(t->done_calls, 0);
    /* Free with a request in flight: no callback, no leak (ASan checks). */
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_OK);
}

static void bad_requests_are_refused(void **state)
{
    struct t *t = *state;
    char url[128];
    struct httpc_request req = req_for(t, "/", url, sizeof(url));
    const char *many[HTTPC_MAX_HEADERS + 2];

    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_ERROR, NULL); /* the refusals log; keep it quiet */
    req.url = "ftp://127.0.0.1/";
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_EINVAL);
    req = req_for(t, "/", url, sizeof(url));
    req.method = "DELETE";
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_EINVAL);
    req = req_for(t, "/", url, sizeof(url));
    req.total_timeout_ms = 0;
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_EINVAL);
    req = req_for(t, "/", url, sizeof(url));
    req.max_response = HTTPC_MAX_RESPONSE + 1;
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_EINVAL);
    req = req_for(t, "/", url, sizeof(url));
    for (size_t i = 0; i < HTTPC_MAX_HEADERS + 1; i++)
        many[i] = "X-A: b";
    many[HTTPC_MAX_HEADERS + 1] = NULL;
    req.headers = many;
    assert_int_equal(httpc_start(t->c, &req, on_done, t, NULL), VEND_EINVAL);
    assert_int_equal(httpc_pending(t->c), 0);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(get_and_post_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(basic_auth_is_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(slow_answer_does_not_stall_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(no_answer_in_time_is_timedout, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_connection_is_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(oversize_answer_is_toobig, setup, teardown),
        cmocka_unit_test_setup_teardown(cancelled_request_never_calls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_requests_are_refused, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
