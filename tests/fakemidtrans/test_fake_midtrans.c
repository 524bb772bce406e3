/*
 * test_fake_midtrans.c - black-box test of tools/fake-midtrans: the real
 * binary ($FAKE_MIDTRANS) started on port 0, driven over real HTTP with
 * libcurl, sending its notifications to a small libmicrohttpd receiver in
 * this process whose answers each test scripts.
 *
 * Nothing here shares code with the fake: signatures, QR checksums and
 * Basic auth are computed again from Midtrans's documentation, so a fake that drifts
 * from Midtrans's formats fails here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#define KEY         "SB-Mid-server-test-0123456789"
#define RETRY_UNIT  2 /* ms per Midtrans "minute": retries after 4, 20, 60, 180, 420 ms */
#define GOT_MAX     512
#define SCRIPTS_MAX 8
#define BODY_MAX    (64 * 1024)
#define WAIT_MS     3000

/* ---- the receiver: a notification URL with scripted answers -------------- */

struct got {
    char path[64];
    char content_type[64];
    char user_agent[64];
    json_t *json;
};

struct script {
    char path[64];
    unsigned codes[16]; /* answers for the next requests to path, then 200 */
    size_t n, pos;
};

struct receiver {
    struct MHD_Daemon *mhd;
    uint16_t port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct got got[GOT_MAX];
    size_t ngot;
    struct script scripts[SCRIPTS_MAX];
    size_t nscripts;
};

struct upload {
    char *buf;
    size_t len;
};

static enum MHD_Result rcv_access(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    struct receiver *r = cls;
    struct upload *up = *con_cls;
    struct MHD_Response *resp;
    unsigned code = 200;
    const char *v;
    enum MHD_Result ret;
    size_t i;

    (void)method;
    (void)version;
    if (up == NULL) {
        *con_cls = calloc(1, sizeof(*up));
        return MHD_YES;
    }
    if (*size > 0) {
        if (up->len + *size <= BODY_MAX) {
            up->buf = realloc(up->buf, up->len + *size + 1);
            memcpy(up->buf + up->len, data, *size);
            up->len += *size;
            up->buf[up->len] = '\0';
        }
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&r->mu);
    if (r->ngot < GOT_MAX) {
        struct got *g = &r->got[r->ngot++];

        snprintf(g->path, sizeof(g->path), "%s", url);
        v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        snprintf(g->content_type, sizeof(g->content_type), "%s", v ? v : "");
        v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
        snprintf(g->user_agent, sizeof(g->user_agent), "%s", v ? v : "");
        g->json = up->buf ? json_loadb(up->buf, up->len, 0, NULL) : NULL;
    }
    for (i = 0; i < r->nscripts; i++) {
        struct script *s = &r->scripts[i];

        if (strcmp(s->path, url) == 0 && s->pos < s->n)
            code = s->codes[s->pos++];
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);

    resp = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    if (code == 307 || code == 308 || code == 302)
        MHD_add_response_header(resp, "Location", "/notify2");
    ret = MHD_queue_response(c, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void rcv_done(void *cls, struct MHD_Connection *c, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    struct upload *up = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (up != NULL) {
        free(up->buf);
        free(up);
    }
    *con_cls = NULL;
}

static int receiver_start(struct receiver *r)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL,
                              rcv_access, r, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_NOTIFY_COMPLETED, rcv_done, r, MHD_OPTION_END);
    if (r->mhd == NULL)
        return -1;
    info = MHD_get_daemon_info(r->mhd, MHD_DAEMON_INFO_BIND_PORT);
    r->port = info ? info->port : 0;
    return r->port ? 0 : -1;
}

static void receiver_clear(struct receiver *r)
{
    size_t i;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->ngot; i++)
        json_decref(r->got[i].json);
    r->ngot = 0;
    r->nscripts = 0;
    pthread_mutex_unlock(&r->mu);
}

static void receiver_stop(struct receiver *r)
{
    if (r->mhd != NULL)
        MHD_stop_daemon(r->mhd);
    r->mhd = NULL;
    receiver_clear(r);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

/* The next requests to path get these answers, then 200. */
static void receiver_script(struct receiver *r, const char *path, size_t n, const unsigned *codes)
{
    struct script *s;

    pthread_mutex_lock(&r->mu);
    assert_true(r->nscripts < SCRIPTS_MAX && n <= 16);
    s = &r->scripts[r->nscripts++];
    snprintf(s->path, sizeof(s->path), "%s", path);
    memcpy(s->codes, codes, n * sizeof(*codes));
    s->n = n;
    s->pos = 0;
    pthread_mutex_unlock(&r->mu);
}

static bool got_matches(const struct got *g, const char *path, const char *order_id,
                        const char *status)
{
    const char *oid = json_string_value(json_object_get(g->json, "order_id"));
    const char *st = json_string_value(json_object_get(g->json, "transaction_status"));

    return (path == NULL || strcmp(g->path, path) == 0) && oid && strcmp(oid, order_id) == 0 &&
           (status == NULL || (st && strcmp(st, status) == 0));
}

static size_t count_locked(struct receiver *r, const char *path, const char *order_id,
                           const char *status)
{
    size_t i, n = 0;

    for (i = 0; i < r->ngot; i++)
        n += got_matches(&r->got[i], path, order_id, status);
    return n;
}

/* Waits up to ms until at least want notifications matched; returns the
 * number that matched. */
static size_t wait_got(struct receiver *r, const char *path, const char *order_id,
                       const char *status, size_t want, unsigned ms)
{
    struct timespec dl;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    while ((n = count_locked(r, path, order_id, status)) < want) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT) {
            n = count_locked(r, path, order_id, status);
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* A copy of the index-th matching notification (0 = first), or NULL. */
static json_t *got_json(struct receiver *r, const char *path, const char *order_id,
                        const char *status, size_t index, struct got *meta)
{
    json_t *j = NULL;
    size_t i;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->ngot; i++) {
        if (!got_matches(&r->got[i], path, order_id, status))
            continue;
        if (index-- == 0) {
            j = json_deep_copy(r->got[i].json);
            if (meta != NULL) {
                *meta = r->got[i];
                meta->json = NULL;
            }
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return j;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- the fake: a child process ------------------------------------------ */

struct fake {
    pid_t pid;
    uint16_t port;
    char base[64];
};

struct fixture {
    struct fake fake;
    struct receiver rcv;
    char notify_url[128];
};

/* For the atexit handler only: a failing test that skips its teardown must
 * still leave no fake-midtrans behind. */
static pid_t s_child;

static void kill_child(void)
{
    if (s_child > 0) {
        kill(s_child, SIGKILL);
        waitpid(s_child, NULL, 0);
        s_child = 0;
    }
}

/* Starts the binary with extra arguments and reads the port from its first
 * line. Returns 0 or -1. */
static int fake_start(struct fake *f, const char *const *extra)
{
    const char *bin = getenv("FAKE_MIDTRANS");
    const char *argv[24];
    char line[256];
    size_t n = 0, len = 0;
    pid_t parent = getpid();
    int out[2];
    unsigned port;

    if (bin == NULL) {
        fprintf(stderr, "set FAKE_MIDTRANS to the fake-midtrans binary\n");
        return -1;
    }
    argv[n++] = bin;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--quiet";
    while (extra != NULL && *extra != NULL && n < 22)
        argv[n++] = *extra++;
    argv[n] = NULL;
    if (pipe2(out, O_CLOEXEC) < 0)
        return -1;
    f->pid = fork();
    if (f->pid < 0)
        return -1;
    if (f->pid == 0) {
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(out[1], 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    if (s_child == 0) {
        s_child = f->pid;
        atexit(kill_child);
    }
    /* The first line, with a deadline: a fake that never starts fails the
     * test instead of hanging it. */
    while (len < sizeof(line) - 1) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        ssize_t r;

        if (poll(&p, 1, 5000) <= 0)
            break;
        r = read(out[0], line + len, 1);
        if (r <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    close(out[0]);
    if (sscanf(line, "fake-midtrans listening on 127.0.0.1:%u", &port) != 1 || port == 0 ||
        port > 65535) {
        fprintf(stderr, "fake-midtrans said '%s'\n", line);
        return -1;
    }
    f->port = (uint16_t)port;
    snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%u", port);
    return 0;
}

/* SIGTERM and wait; the exit status must be 0 (under ASan that also means
 * no leak). */
static int fake_stop(struct fake *f)
{
    int status = 0, i;

    if (f->pid <= 0)
        return 0;
    kill(f->pid, SIGTERM);
    for (i = 0; i < 500; i++) {
        if (waitpid(f->pid, &status, WNOHANG) == f->pid)
            break;
        sleep_ms(10);
    }
    if (i == 500) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, &status, 0);
    }
    if (s_child == f->pid)
        s_child = 0;
    f->pid = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* ---- HTTP client -------------------------------------------------------- */

struct reply {
    CURLcode rc;
    long status;
    char *body;
    size_t len;
    json_t *json;
    long ms;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct reply *r = arg;
    size_t n = size * nmemb;

    r->body = realloc(r->body, r->len + n + 1);
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static void reply_free(struct reply *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static void basic_auth(char *out, size_t size, const char *user, const char *pass)
{
    char plain[200];
    unsigned char enc[272]; /* 4/3 of plain, rounded up, and the NUL */
    int n = snprintf(plain, sizeof(plain), "%s:%s", user, pass);

    EVP_EncodeBlock(enc, (const unsigned char *)plain, n);
    snprintf(out, size, "Authorization: Basic %s", enc);
}

/* One request. auth is a full header line or NULL; ctype NULL = none. */
static struct reply call(const struct fake *f, const char *method, const char *path,
                         const char *auth, const char *ctype, const char *body, const char *extra,
                         long timeout_ms)
{
    struct reply r;
    struct curl_slist *h = NULL;
    char url[1024], hdr[256];
    struct timespec t0, t1;
    CURL *c = curl_easy_init();

    memset(&r, 0, sizeof(r));
    snprintf(url, sizeof(url), "%s%s", f->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (auth != NULL)
        h = curl_slist_append(h, auth);
    if (ctype != NULL) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", ctype);
        h = curl_slist_append(h, hdr);
    } else {
        h = curl_slist_append(h, "Content-Type:");
    }
    h = curl_slist_append(h, "Accept: application/json");
    if (extra != NULL)
        h = curl_slist_append(h, extra);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r.rc = curl_easy_perform(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r.ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    if (r.body != NULL)
        r.json = json_loadb(r.body, r.len, 0, NULL);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r;
}

/* A Midtrans call as a correct client makes it. */
static struct reply mt(const struct fake *f, const char *method, const char *path, const char *body)
{
    char auth[300];

    basic_auth(auth, sizeof(auth), KEY, "");
    return call(f, method, path, auth, body ? "application/json" : NULL, body, NULL, 5000);
}

/* A control-API call. */
static struct reply ctl(const struct fake *f, const char *method, const char *path,
                        const char *body)
{
    return call(f, method, path, NULL, body ? "application/json" : NULL, body, NULL, 5000);
}

static const char *jstr(const json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

static void assert_jstr(const json_t *j, const char *key, const char *want)
{
    const char *v = jstr(j, key);

    if (v == NULL || strcmp(v, want) != 0) {
        fprintf(stderr, "field %s: want '%s', got '%s'\n", key, want, v ? v : "(none)");
        fail();
    }
}

static void charge(const struct fake *f, const char *order_id, int amount)
{
    char body[256];
    struct reply r;

    snprintf(body, sizeof(body),
             "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"%s\","
             "\"gross_amount\":%d}}",
             order_id, amount);
    r = mt(f, "POST", "/v2/charge", body);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "201");
    reply_free(&r);
}

static void ctl_ok(const struct fake *f, const char *method, const char *path, const char *body)
{
    struct reply r = ctl(f, method, path, body);

    if (r.status != 200)
        fprintf(stderr, "%s %s: %ld %s\n", method, path, r.status, r.body ? r.body : "");
    assert_int_equal(r.status, 200);
    reply_free(&r);
}

/* signature_key = SHA512(order_id + status_code + gross_amount + key), hex. */
static void signature(const json_t *n, const char *key, char out[129])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[64];
    unsigned int len = 0, i;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    EVP_DigestInit_ex(ctx, EVP_sha512(), NULL);
    EVP_DigestUpdate(ctx, jstr(n, "order_id"), strlen(jstr(n, "order_id")));
    EVP_DigestUpdate(ctx, jstr(n, "status_code"), strlen(jstr(n, "status_code")));
    EVP_DigestUpdate(ctx, jstr(n, "gross_amount"), strlen(jstr(n, "gross_amount")));
    EVP_DigestUpdate(ctx, key, strlen(key));
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[128] = '\0';
}

static void assert_signed(const json_t *n)
{
    char want[129];

    assert_non_null(jstr(n, "signature_key"));
    signature(n, KEY, want);
    assert_string_equal(jstr(n, "signature_key"), want);
}

/* "YYYY-MM-DD HH:MM:SS" */
static bool is_time(const char *s)
{
    int y, mo, d, h, mi, se;
    char tail;

    return s != NULL && strlen(s) == 19 &&
           sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &tail) == 6;
}

/* ---- fixtures ----------------------------------------------------------- */

static int group_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char retry[16];
    const char *args[8];

    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (receiver_start(&fx->rcv) < 0)
        return -1;
    snprintf(fx->notify_url, sizeof(fx->notify_url), "http://127.0.0.1:%u/notify",
             (unsigned)fx->rcv.port);
    snprintf(retry, sizeof(retry), "%d", RETRY_UNIT);
    args[0] = "--server-key";
    args[1] = KEY;
    args[2] = "--notify-url";
    args[3] = fx->notify_url;
    args[4] = "--retry-unit-ms";
    args[5] = retry;
    args[6] = NULL;
    if (fake_start(&fx->fake, args) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    int rc;

    if (fx == NULL)
        return 0; /* the group's setup failed and said why; cmocka still calls this */
    rc = fake_stop(&fx->fake);
    receiver_stop(&fx->rcv);
    free(fx);
    curl_global_cleanup();
    if (rc < 0)
        fprintf(stderr, "fake-midtrans did not exit cleanly (status != 0)\n");
    return rc;
}

static int test_setup(void **state)
{
    struct fixture *fx = *state;
    struct reply r = ctl(&fx->fake, "POST", "/_fake/reset", NULL);
    int rc = r.status == 200 ? 0 : -1;

    reply_free(&r);
    receiver_clear(&fx->rcv);
    return rc;
}

/* ---- tests: the Midtrans API -------------------------------------------- */

static void test_basic_auth(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    const char *body =
        "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"auth-1\","
        "\"gross_amount\":5000}}";
    char hdr[300];
    struct reply r;
    json_t *reqs;
    size_t i;
    static const char *const want[] = {"missing", "wrong_key", "password_not_empty", "malformed",
                                       "ok"};

    r = call(f, "POST", "/v2/charge", NULL, "application/json", body, NULL, 5000);
    assert_int_equal(r.status, 401);
    assert_jstr(r.json, "status_code", "401");
    reply_free(&r);
    basic_auth(hdr, sizeof(hdr), "SB-Mid-server-wrong", "");
    r = call(f, "POST", "/v2/charge", hdr, "application/json", body, NULL, 5000);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    basic_auth(hdr, sizeof(hdr), KEY, "secret");
    r = call(f, "POST", "/v2/charge", hdr, "application/json", body, NULL, 5000);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    r = call(f, "POST", "/v2/charge", "Authorization: Bearer " KEY, "application/json", body, NULL,
             5000);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    /* Nothing was created by the refused calls. */
    r = mt(f, "POST", "/v2/charge", body);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "201");
    reply_free(&r);

    /* Snap refuses in its own shape. */
    r = call(f, "POST", "/snap/v1/transactions", NULL, "application/json",
             "{\"transaction_details\":{\"order_id\":\"auth-2\",\"gross_amount\":5000}}", NULL,
             5000);
    assert_int_equal(r.status, 401);
    assert_true(json_is_array(json_object_get(r.json, "error_messages")));
    reply_free(&r);

    r = ctl(f, "GET", "/_fake/requests", NULL);
    reqs = json_object_get(r.json, "requests");
    assert_int_equal(json_array_size(reqs), 6);
    for (i = 0; i < 5; i++) {
        json_t *e = json_array_get(reqs, i);

        assert_jstr(e, "auth", want[i]);
        assert_int_equal(json_is_true(json_object_get(e, "auth_ok")), i == 4);
        assert_jstr(e, "path", "/v2/charge");
        assert_jstr(e, "method", "POST");
        assert_jstr(e, "body", body);
        assert_jstr(json_object_get(e, "json"), "payment_type", "qris");
        assert_int_equal(json_integer_value(json_object_get(e, "status")), i == 4 ? 200 : 401);
    }
    reply_free(&r);
}

static void test_snap_create(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    static const char *const bad[] = {
        "{\"transaction_details\":{\"order_id\":\"snap-2\",\"gross_amount\":\"10000\"}}",
        "{\"transaction_details\":{\"order_id\":\"snap-2\",\"gross_amount\":10000.5}}",
        "{\"transaction_details\":{\"order_id\":\"snap-2\",\"gross_amount\":0}}",
        "{\"transaction_details\":{\"gross_amount\":10000}}",
        "{\"transaction_details\":{\"order_id\":\"has space\",\"gross_amount\":10000}}",
        "{\"transaction_details\":{\"order_id\":"
        "\"123456789012345678901234567890123456789012345678901\",\"gross_amount\":10000}}",
        "{\"transaction_details\":{\"order_id\":\"snap-2\",\"gross_amount\":10000},"
        "\"item_details\":[{\"id\":\"a\",\"price\":4000,\"quantity\":2,\"name\":\"Cola\"}]}",
        "{\"transaction_details\":{\"order_id\":\"snap-2\",\"gross_amount\":10000},"
        "\"item_details\":[{\"price\":10000,\"quantity\":1}]}",
        "{\"customer_details\":{}}",
        "[1,2]",
        "{\"transaction_details\":",
    };
    const char *ok = "{\"transaction_details\":{\"order_id\":\"snap-1\",\"gross_amount\":10000},"
                     "\"item_details\":[{\"id\":\"a\",\"price\":4000,\"quantity\":2,\"name\":"
                     "\"Cola\"},{\"id\":\"b\",\"price\":2000,\"quantity\":1,\"name\":\"Tea\"}]}";
    char auth[300], big[40000];
    const char *token, *url;
    struct reply r, r2;
    size_t i;

    r = mt(f, "POST", "/snap/v1/transactions", ok);
    assert_int_equal(r.status, 201);
    token = jstr(r.json, "token");
    url = jstr(r.json, "redirect_url");
    assert_non_null(token);
    assert_int_equal(strlen(token), 36);
    assert_non_null(url);
    assert_non_null(strstr(url, "/snap/v2/vtweb/"));
    assert_string_equal(url + strlen(url) - 36, token);
    /* The redirect URL is a page a person can pay on. */
    r2 = ctl(f, "GET", strstr(url, "/snap/"), NULL);
    assert_int_equal(r2.status, 200);
    assert_non_null(strstr(r2.body, "/_fake/pay/snap-1"));
    reply_free(&r2);
    reply_free(&r);

    /* Snap: no status until a payment method is chosen (Midtrans's status API). */
    r = mt(f, "GET", "/v2/snap-1/status", NULL);
    assert_jstr(r.json, "status_code", "404");
    reply_free(&r);
    /* The order_id is taken. */
    r = mt(f, "POST", "/snap/v1/transactions", ok);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "already been taken"));
    reply_free(&r);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = mt(f, "POST", "/snap/v1/transactions", bad[i]);
        if (r.status != 400)
            fprintf(stderr, "bad[%zu] got %ld %s\n", i, r.status, r.body);
        assert_int_equal(r.status, 400);
        assert_true(json_array_size(json_object_get(r.json, "error_messages")) > 0);
        reply_free(&r);
    }
    /* Not JSON by content type, and too large. */
    basic_auth(auth, sizeof(auth), KEY, "");
    r = call(f, "POST", "/snap/v1/transactions", auth, "text/plain", ok, NULL, 5000);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\0';
    r = mt(f, "POST", "/snap/v1/transactions", big);
    assert_int_equal(r.status, 413);
    reply_free(&r);

    /* The customer pays on the Snap page: now the status API sees it. */
    ctl_ok(f, "POST", "/_fake/pay/snap-1", NULL);
    r = mt(f, "GET", "/v2/snap-1/status", NULL);
    assert_jstr(r.json, "transaction_status", "settlement");
    assert_jstr(r.json, "payment_type", "qris");
    assert_signed(r.json);
    reply_free(&r);
}

static unsigned crc16(const char *s, size_t len)
{
    unsigned crc = 0xffff;
    size_t i;
    int b;

    for (i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)s[i] << 8;
        for (b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

static void test_qris_charge(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    const char *body = "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"qr-1\","
                       "\"gross_amount\":10000},\"qris\":{\"acquirer\":\"gopay\"}}";
    const char *qr, *url;
    json_t *action;
    char crc[8];
    struct reply r, r2;

    r = mt(f, "POST", "/v2/charge", body);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "201");
    assert_jstr(r.json, "transaction_status", "pending");
    assert_jstr(r.json, "order_id", "qr-1");
    assert_jstr(r.json, "gross_amount", "10000.00");
    assert_jstr(r.json, "payment_type", "qris");
    assert_jstr(r.json, "currency", "IDR");
    assert_jstr(r.json, "fraud_status", "accept");
    assert_jstr(r.json, "acquirer", "gopay");
    assert_int_equal(strlen(jstr(r.json, "transaction_id")), 36);
    assert_true(is_time(jstr(r.json, "transaction_time")));
    assert_true(is_time(jstr(r.json, "expiry_time")));
    /* An EMVCo QRIS payload with a valid CRC (tag 63). */
    qr = jstr(r.json, "qr_string");
    assert_non_null(qr);
    assert_memory_equal(qr, "000201", 6);
    assert_non_null(strstr(qr, "5802ID"));
    snprintf(crc, sizeof(crc), "%04X", crc16(qr, strlen(qr) - 4));
    assert_string_equal(qr + strlen(qr) - 4, crc);
    action = json_array_get(json_object_get(r.json, "actions"), 0);
    assert_jstr(action, "name", "generate-qr-code");
    assert_jstr(action, "method", "GET");
    url = jstr(action, "url");
    assert_non_null(strstr(url, jstr(r.json, "transaction_id")));
    r2 = ctl(f, "GET", strstr(url, "/v2/"), NULL);
    assert_int_equal(r2.status, 200);
    assert_string_equal(r2.body, qr);
    reply_free(&r2);
    reply_free(&r);

    /* The order_id is in use while pending (Midtrans's QRIS docs): 406 in an HTTP 200. */
    r = mt(f, "POST", "/v2/charge", body);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "406");
    reply_free(&r);
    r = mt(f, "POST", "/v2/charge",
           "{\"payment_type\":\"credit_card\",\"transaction_details\":{\"order_id\":\"qr-2\","
           "\"gross_amount\":10000}}");
    assert_jstr(r.json, "status_code", "402");
    reply_free(&r);
    r = mt(f, "POST", "/v2/charge",
           "{\"transaction_details\":{\"order_id\":\"qr-2\",\"gross_amount\":10000}}");
    assert_jstr(r.json, "status_code", "400");
    reply_free(&r);
    r = mt(f, "POST", "/v2/charge",
           "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"qr-2\","
           "\"gross_amount\":10000},\"qris\":{\"acquirer\":\"ovo\"}}");
    assert_jstr(r.json, "status_code", "400");
    assert_true(json_array_size(json_object_get(r.json, "validation_messages")) == 1);
    reply_free(&r);
    r = mt(f, "POST", "/v2/charge",
           "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"qr-2\","
           "\"gross_amount\":10000},\"custom_expiry\":{\"expiry_duration\":20,\"unit\":"
           "\"fortnight\"}}");
    assert_jstr(r.json, "status_code", "400");
    reply_free(&r);
    /* A wrong path is answered and recorded. */
    r = mt(f, "POST", "/v2/charges", body);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    r = ctl(f, "GET", "/_fake/requests", NULL);
    assert_non_null(strstr(r.body, "\"path\":\"/v2/charges\""));
    reply_free(&r);
}

static void test_status_after_pay(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char path[128];
    struct reply r;

    charge(f, "pay-1", 15000);
    r = mt(f, "GET", "/v2/pay-1/status", NULL);
    assert_jstr(r.json, "transaction_status", "pending");
    assert_jstr(r.json, "status_code", "201");
    assert_signed(r.json);
    assert_null(json_object_get(r.json, "settlement_time"));
    reply_free(&r);

    ctl_ok(f, "POST", "/_fake/pay/pay-1", NULL);
    r = mt(f, "GET", "/v2/pay-1/status", NULL);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "transaction_status", "settlement");
    assert_jstr(r.json, "status_code", "200");
    assert_jstr(r.json, "fraud_status", "accept");
    assert_jstr(r.json, "gross_amount", "15000.00");
    assert_true(is_time(jstr(r.json, "settlement_time")));
    assert_signed(r.json);
    /* The same transaction by its transaction_id (Midtrans's status API). */
    snprintf(path, sizeof(path), "/v2/%s/status", jstr(r.json, "transaction_id"));
    reply_free(&r);
    r = mt(f, "GET", path, NULL);
    assert_jstr(r.json, "order_id", "pay-1");
    reply_free(&r);

    /* A card-style capture under fraud review. */
    charge(f, "pay-2", 15000);
    ctl_ok(f, "POST", "/_fake/pay/pay-2",
           "{\"transaction_status\":\"capture\",\"fraud_status\":\"challenge\"}");
    r = mt(f, "GET", "/v2/pay-2/status", NULL);
    assert_jstr(r.json, "transaction_status", "capture");
    assert_jstr(r.json, "fraud_status", "challenge");
    assert_signed(r.json);
    reply_free(&r);
    r = mt(f, "GET", "/v2/nosuch/status", NULL);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "404");
    reply_free(&r);
}

static void test_expire_cancel(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char old_id[64], path[128];
    struct reply r;

    charge(f, "exp-1", 8000);
    r = mt(f, "POST", "/v2/exp-1/expire", NULL);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "407");
    assert_jstr(r.json, "transaction_status", "expire");
    snprintf(old_id, sizeof(old_id), "%s", jstr(r.json, "transaction_id"));
    reply_free(&r);
    r = mt(f, "POST", "/v2/exp-1/expire", NULL);
    assert_jstr(r.json, "status_code", "412");
    reply_free(&r);
    r = mt(f, "GET", "/v2/exp-1/status", NULL);
    assert_jstr(r.json, "transaction_status", "expire");
    assert_jstr(r.json, "status_code", "202");
    assert_signed(r.json);
    reply_free(&r);
    /* After expire the order_id may be used again (Midtrans's QRIS docs). */
    charge(f, "exp-1", 8000);
    r = mt(f, "GET", "/v2/exp-1/status", NULL);
    assert_jstr(r.json, "transaction_status", "pending");
    assert_string_not_equal(jstr(r.json, "transaction_id"), old_id);
    reply_free(&r);
    snprintf(path, sizeof(path), "/v2/%s/status", old_id);
    r = mt(f, "GET", path, NULL);
    assert_jstr(r.json, "transaction_status", "expire");
    reply_free(&r);

    r = mt(f, "POST", "/v2/exp-1/cancel", NULL);
    assert_jstr(r.json, "status_code", "200");
    assert_jstr(r.json, "transaction_status", "cancel");
    reply_free(&r);
    charge(f, "can-2", 8000);
    ctl_ok(f, "POST", "/_fake/pay/can-2", NULL);
    r = mt(f, "POST", "/v2/can-2/cancel", NULL);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "412");
    reply_free(&r);

    /* Midtrans's side: the bank denies, the batch expiry runs. */
    charge(f, "den-3", 8000);
    ctl_ok(f, "POST", "/_fake/deny/den-3", NULL);
    r = mt(f, "GET", "/v2/den-3/status", NULL);
    assert_jstr(r.json, "transaction_status", "deny");
    assert_jstr(r.json, "status_code", "202");
    reply_free(&r);

    /* "mirror": the body's status_code becomes the HTTP status. */
    ctl_ok(f, "POST", "/_fake/config", "{\"core_http_status\":\"mirror\"}");
    r = mt(f, "POST", "/v2/can-2/cancel", NULL);
    assert_int_equal(r.status, 412);
    reply_free(&r);
    r = mt(f, "POST", "/v2/charge",
           "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"exp-4\","
           "\"gross_amount\":8000}}");
    assert_int_equal(r.status, 201);
    reply_free(&r);
    r = mt(f, "GET", "/v2/nosuch/status", NULL);
    assert_int_equal(r.status, 404);
    reply_free(&r);
}

static void test_refund(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct reply r;
    json_t *tx;

    charge(f, "ref-1", 10000);
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k1\",\"amount\":4000}");
    assert_jstr(r.json, "status_code", "412"); /* not settled yet */
    reply_free(&r);
    ctl_ok(f, "POST", "/_fake/pay/ref-1", NULL);

    r = mt(f, "POST", "/v2/ref-1/refund",
           "{\"refund_key\":\"k1\",\"amount\":4000,\"reason\":\"slot jammed\"}");
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "200");
    assert_jstr(r.json, "transaction_status", "partial_refund");
    assert_jstr(r.json, "refund_amount", "4000.00");
    assert_jstr(r.json, "refund_key", "k1");
    assert_int_equal(json_integer_value(json_object_get(r.json, "refund_chargeback_id")), 1);
    reply_free(&r);
    /* The same refund_key again: the same answer, nothing refunded twice. */
    r = mt(f, "POST", "/v2/ref-1/refund",
           "{\"refund_key\":\"k1\",\"amount\":4000,\"reason\":\"slot jammed\"}");
    assert_jstr(r.json, "status_code", "200");
    assert_int_equal(json_integer_value(json_object_get(r.json, "refund_chargeback_id")), 1);
    assert_jstr(r.json, "refund_amount", "4000.00");
    reply_free(&r);
    r = mt(f, "GET", "/v2/ref-1/status", NULL);
    assert_jstr(r.json, "refund_amount", "4000.00");
    assert_int_equal(json_array_size(json_object_get(r.json, "refunds")), 1);
    reply_free(&r);
    /* The same key for another amount is not the same request. */
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k1\",\"amount\":5000}");
    assert_jstr(r.json, "status_code", "406");
    reply_free(&r);
    /* More than what is left. */
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k2\",\"amount\":6001}");
    assert_jstr(r.json, "status_code", "414");
    reply_free(&r);
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k2\",\"amount\":0}");
    assert_jstr(r.json, "status_code", "414");
    reply_free(&r);
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k 2\",\"amount\":10}");
    assert_jstr(r.json, "status_code", "400");
    reply_free(&r);
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k2\",\"amount\":\"6000\"}");
    assert_jstr(r.json, "status_code", "400");
    reply_free(&r);
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k2\",\"amount\":6000}");
    assert_jstr(r.json, "status_code", "200");
    assert_jstr(r.json, "transaction_status", "refund");
    assert_int_equal(json_integer_value(json_object_get(r.json, "refund_chargeback_id")), 2);
    reply_free(&r);
    /* Fully refunded: a new refund is refused as a status change... */
    r = mt(f, "POST", "/v2/ref-1/refund", NULL);
    assert_jstr(r.json, "status_code", "412");
    reply_free(&r);
    /* ...while retrying an earlier refund still gets its answer. */
    r = mt(f, "POST", "/v2/ref-1/refund", "{\"refund_key\":\"k1\",\"amount\":4000}");
    assert_jstr(r.json, "status_code", "200");
    assert_jstr(r.json, "refund_key", "k1");
    reply_free(&r);

    r = ctl(f, "GET", "/_fake/transactions/ref-1", NULL);
    tx = r.json;
    assert_int_equal(json_integer_value(json_object_get(tx, "refunded")), 10000);
    assert_int_equal(json_array_size(json_object_get(tx, "refunds")), 2);
    assert_jstr(tx, "transaction_status", "refund");
    reply_free(&r);
    r = mt(f, "GET", "/v2/ref-1/status", NULL);
    assert_jstr(r.json, "refund_amount", "10000.00");
    assert_jstr(r.json, "status_code", "200");
    assert_signed(r.json);
    reply_free(&r);
}

/* ---- tests: failure modes ------------------------------------------------ */

static void test_fail_http_error(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    const char *body = "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"f5-1\","
                       "\"gross_amount\":5000}}";
    struct reply r;
    int i;

    ctl_ok(f, "POST", "/_fake/fail",
           "{\"endpoint\":\"charge\",\"mode\":\"http_error\",\"http_status\":503,\"count\":2}");
    for (i = 0; i < 2; i++) {
        r = mt(f, "POST", "/v2/charge", body);
        assert_int_equal(r.status, 503);
        assert_jstr(r.json, "status_code", "503");
        reply_free(&r);
    }
    /* The failed calls had no effect: the same order_id is still free. */
    r = mt(f, "POST", "/v2/charge", body);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "201");
    reply_free(&r);
    r = ctl(f, "GET", "/_fake/requests", NULL);
    assert_jstr(json_array_get(json_object_get(r.json, "requests"), 0), "injected", "http_error");
    reply_free(&r);

    /* "any" hits whatever comes next, once. */
    ctl_ok(f, "POST", "/_fake/fail", "{\"mode\":\"http_error\"}");
    r = mt(f, "GET", "/v2/f5-1/status", NULL);
    assert_int_equal(r.status, 500);
    reply_free(&r);
    r = mt(f, "GET", "/v2/f5-1/status", NULL);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    /* Cleared. */
    ctl_ok(f, "POST", "/_fake/fail", "{\"endpoint\":\"status\",\"mode\":\"http_error\"}");
    ctl_ok(f, "DELETE", "/_fake/fail", NULL);
    r = mt(f, "GET", "/v2/f5-1/status", NULL);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    r = ctl(f, "POST", "/_fake/fail", "{\"endpoint\":\"nope\",\"mode\":\"http_error\"}");
    assert_int_equal(r.status, 400);
    reply_free(&r);
    r = ctl(f, "POST", "/_fake/fail", "{\"mode\":\"http_error\",\"http_status\":404}");
    assert_int_equal(r.status, 400);
    reply_free(&r);
}

static void test_fail_timeout(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    char auth[300];
    const char *body = "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"to-1\","
                       "\"gross_amount\":5000}}";
    struct reply r;

    basic_auth(auth, sizeof(auth), KEY, "");
    /* The client gives up first. */
    charge(f, "to-0", 5000);
    ctl_ok(f, "POST", "/_fake/fail",
           "{\"endpoint\":\"status\",\"mode\":\"timeout\",\"delay_ms\":600}");
    r = call(f, "GET", "/v2/to-0/status", auth, NULL, NULL, NULL, 150);
    assert_int_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    reply_free(&r);
    /* A patient client gets the answer late, and the charge took effect. */
    ctl_ok(f, "POST", "/_fake/fail",
           "{\"endpoint\":\"charge\",\"mode\":\"timeout\",\"delay_ms\":300}");
    r = mt(f, "POST", "/v2/charge", body);
    assert_int_equal(r.rc, CURLE_OK);
    assert_true(r.ms >= 290);
    assert_jstr(r.json, "status_code", "201");
    reply_free(&r);
    /* Dropped: no answer at all, yet Midtrans did it. */
    ctl_ok(f, "POST", "/_fake/fail",
           "{\"endpoint\":\"charge\",\"mode\":\"timeout\",\"delay_ms\":50,\"drop\":true}");
    r = mt(f, "POST", "/v2/charge",
           "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"to-2\","
           "\"gross_amount\":5000}}");
    assert_int_equal(r.rc, CURLE_GOT_NOTHING);
    reply_free(&r);
    r = mt(f, "GET", "/v2/to-2/status", NULL);
    assert_jstr(r.json, "transaction_status", "pending");
    reply_free(&r);
    r = ctl(f, "GET", "/_fake/requests", NULL);
    assert_non_null(strstr(r.body, "\"injected\":\"timeout_drop\""));
    reply_free(&r);
}

static void test_fail_garbage_refuse(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct reply r;

    charge(f, "gr-1", 5000);
    ctl_ok(f, "POST", "/_fake/fail", "{\"endpoint\":\"status\",\"mode\":\"garbage\"}");
    r = mt(f, "GET", "/v2/gr-1/status", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(r.body);
    assert_null(r.json);
    reply_free(&r);
    ctl_ok(f, "POST", "/_fake/fail",
           "{\"endpoint\":\"status\",\"mode\":\"garbage\",\"http_status\":502,\"body\":"
           "\"{\\\"status_code\\\":\\\"2\"}");
    r = mt(f, "GET", "/v2/gr-1/status", NULL);
    assert_int_equal(r.status, 502);
    assert_string_equal(r.body, "{\"status_code\":\"2");
    assert_null(r.json);
    reply_free(&r);

    /* A Midtrans refusal: the transaction stays as it was. */
    ctl_ok(f, "POST", "/_fake/fail",
           "{\"endpoint\":\"cancel\",\"mode\":\"refuse\",\"status_code\":\"412\"}");
    r = mt(f, "POST", "/v2/gr-1/cancel", NULL);
    assert_int_equal(r.status, 200);
    assert_jstr(r.json, "status_code", "412");
    assert_jstr(r.json, "status_message", "Merchant cannot modify the status of the transaction");
    reply_free(&r);
    r = mt(f, "GET", "/v2/gr-1/status", NULL);
    assert_jstr(r.json, "transaction_status", "pending");
    reply_free(&r);
    ctl_ok(f, "POST", "/_fake/fail",
           "{\"endpoint\":\"snap\",\"mode\":\"refuse\",\"status_code\":\"429\",\"count\":1}");
    r = mt(f, "POST", "/snap/v1/transactions",
           "{\"transaction_details\":{\"order_id\":\"gr-2\",\"gross_amount\":5000}}");
    assert_int_equal(r.status, 429);
    assert_true(json_is_array(json_object_get(r.json, "error_messages")));
    reply_free(&r);
    r = ctl(f, "POST", "/_fake/fail", "{\"mode\":\"refuse\",\"status_code\":\"41\"}");
    assert_int_equal(r.status, 400);
    reply_free(&r);
}

/* ---- tests: notifications ------------------------------------------------ */

static void assert_notification(const json_t *n, const char *order_id, const char *status,
                                const char *code, const char *gross)
{
    assert_non_null(n);
    assert_jstr(n, "order_id", order_id);
    assert_jstr(n, "transaction_status", status);
    assert_jstr(n, "status_code", code);
    assert_jstr(n, "gross_amount", gross);
    assert_jstr(n, "status_message", "midtrans payment notification");
    assert_jstr(n, "payment_type", "qris");
    assert_jstr(n, "currency", "IDR");
    assert_true(is_time(jstr(n, "transaction_time")));
    assert_int_equal(strlen(jstr(n, "transaction_id")), 36);
    assert_non_null(jstr(n, "merchant_id"));
    assert_int_equal(strlen(jstr(n, "signature_key")), 128);
    assert_signed(n);
}

static void test_notify_signed(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct receiver *rc = &fx->rcv;
    char want[129];
    struct got meta;
    json_t *n;

    charge(f, "nt-1", 12500);
    assert_int_equal(wait_got(rc, "/notify", "nt-1", "pending", 1, WAIT_MS), 1);
    n = got_json(rc, "/notify", "nt-1", "pending", 0, &meta);
    assert_notification(n, "nt-1", "pending", "201", "12500.00");
    assert_string_equal(meta.content_type, "application/json");
    assert_string_equal(meta.user_agent, "Veritrans");
    json_decref(n);

    ctl_ok(f, "POST", "/_fake/pay/nt-1", NULL);
    assert_int_equal(wait_got(rc, "/notify", "nt-1", "settlement", 1, WAIT_MS), 1);
    n = got_json(rc, "/notify", "nt-1", "settlement", 0, NULL);
    assert_notification(n, "nt-1", "settlement", "200", "12500.00");
    assert_jstr(n, "fraud_status", "accept");
    assert_true(is_time(jstr(n, "settlement_time")));
    assert_jstr(n, "acquirer", "gopay");
    json_decref(n);

    /* A forged one does not verify. */
    ctl_ok(f, "POST", "/_fake/notify/nt-1", "{\"bad_signature\":true}");
    assert_int_equal(wait_got(rc, "/notify", "nt-1", "settlement", 2, WAIT_MS), 2);
    n = got_json(rc, "/notify", "nt-1", "settlement", 1, NULL);
    signature(n, KEY, want);
    assert_string_not_equal(jstr(n, "signature_key"), want);
    json_decref(n);

    /* An API expire and a refund notify too. */
    charge(f, "nt-2", 3000);
    ctl_ok(f, "POST", "/_fake/pay/nt-2", NULL);
    ctl_ok(f, "DELETE", "/_fake/requests", NULL);
    {
        struct reply r = mt(f, "POST", "/v2/nt-2/refund", "{\"refund_key\":\"r1\"}");

        assert_jstr(r.json, "transaction_status", "refund");
        reply_free(&r);
    }
    assert_int_equal(wait_got(rc, "/notify", "nt-2", "refund", 1, WAIT_MS), 1);
    n = got_json(rc, "/notify", "nt-2", "refund", 0, NULL);
    assert_notification(n, "nt-2", "refund", "200", "3000.00");
    assert_jstr(n, "refund_amount", "3000.00");
    assert_int_equal(json_array_size(json_object_get(n, "refunds")), 1);
    json_decref(n);
}

static void test_notify_duplicates_out_of_order(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct receiver *rc = &fx->rcv;
    json_t *a, *b;
    char *sa, *sb;
    size_t last;

    charge(f, "dup-1", 20000);
    ctl_ok(f, "POST", "/_fake/pay/dup-1", NULL);
    assert_int_equal(wait_got(rc, "/notify", "dup-1", "settlement", 1, WAIT_MS), 1);
    ctl_ok(f, "POST", "/_fake/notify/dup-1", "{\"times\":3}");
    assert_int_equal(wait_got(rc, "/notify", "dup-1", "settlement", 4, WAIT_MS), 4);
    a = got_json(rc, "/notify", "dup-1", "settlement", 0, NULL);
    b = got_json(rc, "/notify", "dup-1", "settlement", 3, NULL);
    sa = json_dumps(a, JSON_SORT_KEYS);
    sb = json_dumps(b, JSON_SORT_KEYS);
    assert_string_equal(sa, sb); /* byte-for-byte the same event */
    free(sa);
    free(sb);
    json_decref(a);
    json_decref(b);

    /* A stale "pending" after the settlement (Midtrans may send them out of order), signed. */
    ctl_ok(f, "POST", "/_fake/notify/dup-1", "{\"transaction_status\":\"pending\"}");
    assert_int_equal(wait_got(rc, "/notify", "dup-1", "pending", 2, WAIT_MS), 2);
    pthread_mutex_lock(&rc->mu);
    last = rc->ngot - 1;
    while (last > 0 && !got_matches(&rc->got[last], "/notify", "dup-1", NULL))
        last--;
    assert_jstr(rc->got[last].json, "transaction_status", "pending");
    pthread_mutex_unlock(&rc->mu);
    a = got_json(rc, "/notify", "dup-1", "pending", 1, NULL);
    assert_notification(a, "dup-1", "pending", "201", "20000.00");
    assert_null(json_object_get(a, "settlement_time"));
    json_decref(a);

    {
        struct reply r = ctl(f, "POST", "/_fake/notify/dup-1", "{\"transaction_status\":\"x\"}");

        assert_int_equal(r.status, 400);
        reply_free(&r);
        r = ctl(f, "POST", "/_fake/notify/nosuch", NULL);
        assert_int_equal(r.status, 404);
        reply_free(&r);
    }
}

/* The notifier's own log of attempts for order_id. */
static size_t attempts(const struct fake *f, const char *order_id, json_t **last)
{
    struct reply r = ctl(f, "GET", "/_fake/notifications", NULL);
    json_t *a = json_object_get(r.json, "notifications"), *e;
    size_t i, n = 0;

    json_array_foreach(a, i, e)
    {
        if (strcmp(jstr(e, "order_id"), order_id) == 0) {
            n++;
            if (last != NULL) {
                json_decref(*last);
                *last = json_incref(e);
            }
        }
    }
    reply_free(&r);
    return n;
}

static void test_notify_retries(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct receiver *rc = &fx->rcv;
    static const unsigned twice_503[] = {503, 503};
    static const unsigned always_500[] = {500, 500, 500, 500, 500, 500};
    static const unsigned always_404[] = {404, 404, 404, 404, 404, 404};
    static const unsigned redirects[] = {302, 307};
    json_t *last = NULL;
    char url[128];
    struct reply r;
    uint16_t dead;

    /* 503 twice, then 200: delivered on the third attempt. */
    ctl_ok(f, "POST", "/_fake/config", "{\"notify_pending\":false}");
    receiver_script(rc, "/notify", 2, twice_503);
    charge(f, "rt-1", 1000);
    ctl_ok(f, "POST", "/_fake/pay/rt-1", NULL);
    assert_int_equal(wait_got(rc, "/notify", "rt-1", "settlement", 3, WAIT_MS), 3);
    sleep_ms(100);
    assert_int_equal(wait_got(rc, "/notify", "rt-1", NULL, 3, 0), 3);
    assert_int_equal(attempts(f, "rt-1", &last), 3);
    assert_int_equal(json_integer_value(json_object_get(last, "http_status")), 200);
    assert_true(json_is_true(json_object_get(last, "final")));
    json_decref(last);
    last = NULL;

    /* 500: one retry only (Midtrans's retry policy). */
    receiver_clear(rc);
    receiver_script(rc, "/notify", 6, always_500);
    charge(f, "rt-2", 1000);
    ctl_ok(f, "POST", "/_fake/pay/rt-2", NULL);
    assert_int_equal(wait_got(rc, "/notify", "rt-2", NULL, 2, WAIT_MS), 2);
    sleep_ms(200); /* past the next retry time, were there one */
    assert_int_equal(wait_got(rc, "/notify", "rt-2", NULL, 3, 0), 2);

    /* 404: two retries. */
    receiver_clear(rc);
    receiver_script(rc, "/notify", 6, always_404);
    charge(f, "rt-3", 1000);
    ctl_ok(f, "POST", "/_fake/pay/rt-3", NULL);
    assert_int_equal(wait_got(rc, "/notify", "rt-3", NULL, 3, WAIT_MS), 3);
    sleep_ms(300);
    assert_int_equal(wait_got(rc, "/notify", "rt-3", NULL, 4, 0), 3);

    /* 302: no retry and not followed; 307: followed with the same POST. */
    receiver_clear(rc);
    receiver_script(rc, "/notify", 2, redirects);
    charge(f, "rt-4", 1000);
    ctl_ok(f, "POST", "/_fake/pay/rt-4", NULL);
    sleep_ms(150);
    assert_int_equal(wait_got(rc, "/notify", "rt-4", NULL, 2, 0), 1);
    assert_int_equal(wait_got(rc, "/notify2", "rt-4", NULL, 1, 0), 0);
    ctl_ok(f, "POST", "/_fake/notify/rt-4", NULL);
    assert_int_equal(wait_got(rc, "/notify2", "rt-4", "settlement", 1, WAIT_MS), 1);

    /* Nobody listening: the first attempt and all 5 retries. */
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof(sa);

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        getsockname(fd, (struct sockaddr *)&sa, &len);
        dead = ntohs(sa.sin_port);
        close(fd); /* bound, never listened: connections are refused */
    }
    charge(f, "rt-5", 1000);
    snprintf(url, sizeof(url), "{\"url\":\"http://127.0.0.1:%u/gone\"}", (unsigned)dead);
    r = ctl(f, "POST", "/_fake/notify/rt-5", url);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    {
        int i;

        for (i = 0; i < 300 && attempts(f, "rt-5", NULL) < 6; i++)
            sleep_ms(10);
    }
    sleep_ms(50);
    assert_int_equal(attempts(f, "rt-5", &last), 6);
    assert_int_equal(json_integer_value(json_object_get(last, "attempt")), 5);
    assert_int_equal(json_integer_value(json_object_get(last, "http_status")), 0);
    assert_true(json_is_true(json_object_get(last, "final")));
    json_decref(last);
}

static void test_notification_headers(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct receiver *rc = &fx->rcv;
    char auth[300], ovr[256], app[256];
    struct reply r;

    basic_auth(auth, sizeof(auth), KEY, "");
    snprintf(ovr, sizeof(ovr), "X-Override-Notification: http://127.0.0.1:%u/ovr",
             (unsigned)rc->port);
    r = call(f, "POST", "/v2/charge", auth, "application/json",
             "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"hd-1\","
             "\"gross_amount\":7000}}",
             ovr, 5000);
    assert_jstr(r.json, "status_code", "201");
    reply_free(&r);
    snprintf(app, sizeof(app), "X-Append-Notification: http://127.0.0.1:%u/app",
             (unsigned)rc->port);
    r = call(f, "POST", "/v2/charge", auth, "application/json",
             "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"hd-2\","
             "\"gross_amount\":7000}}",
             app, 5000);
    reply_free(&r);
    assert_int_equal(wait_got(rc, "/ovr", "hd-1", "pending", 1, WAIT_MS), 1);
    assert_int_equal(wait_got(rc, "/app", "hd-2", "pending", 1, WAIT_MS), 1);
    assert_int_equal(wait_got(rc, "/notify", "hd-2", "pending", 1, WAIT_MS), 1);
    sleep_ms(50);
    assert_int_equal(wait_got(rc, "/notify", "hd-1", NULL, 1, 0), 0);
    r = ctl(f, "GET", "/_fake/requests", NULL);
    snprintf(app, sizeof(app), "/_fake/requests?since=%lld",
             (long long)json_integer_value(json_object_get(r.json, "last_seq")));
    reply_free(&r);
    r = call(f, "POST", "/v2/charge", auth, "application/json",
             "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"hd-3\","
             "\"gross_amount\":7000}}",
             "X-Override-Notification: ftp://example.com/x", 5000);
    assert_jstr(r.json, "status_code", "400");
    reply_free(&r);
    r = ctl(f, "GET", app, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "requests")), 1);
    assert_non_null(strstr(r.body, "ftp://example.com/x"));
    reply_free(&r);
}

static void test_auto_expiry(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct reply r;
    json_t *n;

    r = mt(f, "POST", "/v2/charge",
           "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"ax-1\","
           "\"gross_amount\":2000},\"custom_expiry\":{\"expiry_duration\":1,\"unit\":"
           "\"second\"}}");
    assert_jstr(r.json, "status_code", "201");
    reply_free(&r);
    assert_int_equal(wait_got(&fx->rcv, "/notify", "ax-1", "expire", 1, 4000), 1);
    n = got_json(&fx->rcv, "/notify", "ax-1", "expire", 0, NULL);
    assert_notification(n, "ax-1", "expire", "202", "2000.00");
    json_decref(n);
    r = mt(f, "GET", "/v2/ax-1/status", NULL);
    assert_jstr(r.json, "transaction_status", "expire");
    reply_free(&r);
}

static void test_control_errors(void **state)
{
    struct fixture *fx = *state;
    struct fake *f = &fx->fake;
    struct reply r;

    r = ctl(f, "POST", "/_fake/pay/nosuch", NULL);
    assert_int_equal(r.status, 404);
    assert_jstr(r.json, "status_code", "404");
    reply_free(&r);
    charge(f, "ce-1", 1000);
    r = ctl(f, "POST", "/_fake/refund/ce-1", NULL);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    ctl_ok(f, "POST", "/_fake/pay/ce-1", "{\"notify\":false}");
    r = ctl(f, "POST", "/_fake/pay/ce-1", NULL);
    assert_int_equal(r.status, 409);
    reply_free(&r);
    r = ctl(f, "POST", "/_fake/pay/ce-1", "{\"fraud_status\":\"maybe\"}");
    assert_int_equal(r.status, 400);
    reply_free(&r);
    r = ctl(f, "POST", "/_fake/config", "{\"notify_url\":\"gopher://x\"}");
    assert_int_equal(r.status, 400);
    reply_free(&r);
    r = ctl(f, "POST", "/_fake/config", "not json");
    assert_int_equal(r.status, 400);
    reply_free(&r);
    r = ctl(f, "GET", "/_fake/nothing", NULL);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    r = ctl(f, "GET", "/_fake/transactions", NULL);
    assert_int_equal(json_integer_value(json_object_get(r.json, "count")), 1);
    reply_free(&r);
}

/* A second fake with a tiny store, and bad command lines. */
static void test_bounds_and_flags(void **state)
{
    struct fake small;
    static const char *const args[] = {"--max-transactions", "2", "--server-key", KEY, NULL};
    struct reply r;
    int status;
    pid_t pid;

    (void)state;
    memset(&small, 0, sizeof(small));
    assert_int_equal(fake_start(&small, (const char *const *)args), 0);
    charge(&small, "b-1", 1000);
    charge(&small, "b-2", 1000);
    r = mt(&small, "POST", "/v2/charge",
           "{\"payment_type\":\"qris\",\"transaction_details\":{\"order_id\":\"b-3\","
           "\"gross_amount\":1000}}");
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "max-transactions"));
    reply_free(&r);
    assert_int_equal(fake_stop(&small), 0);

    /* A bad flag is refused with EX_USAGE. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);

        dup2(fd, 2);
        execl(getenv("FAKE_MIDTRANS"), "fake-midtrans", "--port", "70000", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_basic_auth, test_setup),
        cmocka_unit_test_setup(test_snap_create, test_setup),
        cmocka_unit_test_setup(test_qris_charge, test_setup),
        cmocka_unit_test_setup(test_status_after_pay, test_setup),
        cmocka_unit_test_setup(test_expire_cancel, test_setup),
        cmocka_unit_test_setup(test_refund, test_setup),
        cmocka_unit_test_setup(test_fail_http_error, test_setup),
        cmocka_unit_test_setup(test_fail_timeout, test_setup),
        cmocka_unit_test_setup(test_fail_garbage_refuse, test_setup),
        cmocka_unit_test_setup(test_notify_signed, test_setup),
        cmocka_unit_test_setup(test_notify_duplicates_out_of_order, test_setup),
        cmocka_unit_test_setup(test_notify_retries, test_setup),
        cmocka_unit_test_setup(test_notification_headers, test_setup),
        cmocka_unit_test_setup(test_auto_expiry, test_setup),
        cmocka_unit_test_setup(test_control_errors, test_setup),
        cmocka_unit_test(test_bounds_and_flags),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
