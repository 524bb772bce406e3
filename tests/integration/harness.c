/*
 * harness.c - the black-box integration harness (harness.h): processes, vendd's log, HTTP,
 * read-only SQL on vendd's file, a raw MQTT client and the fixture most tests share.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <mqtt_protocol.h>
#include <openssl/evp.h>

#define TERM_WAIT_MS 10000
#define BODY_MAX     (1u << 20) /* bytes of an HTTP answer we keep */
#define LOG_LINE_MAX 8192

extern char **environ;

uint64_t harness_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void harness_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;

    fputs("harness: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -1;
}

/* ---- processes ------------------------------------------------------------------------ */

static int free_port(uint16_t *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd, rc = -1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        *port = ntohs(sa.sin_port);
        rc = 0;
    }
    close(fd);
    return rc;
}

/* Variables of vendd's environment besides the caller's extras (build_env()). */
#define ENV_FIXED 16

/* true if the caller's extras name variable name (then the harness does not set it). */
static bool extra_has(const struct harness *h, const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < h->nextra_env; i++) {
        if (strncmp(h->extra_env[i], name, len) == 0 && h->extra_env[i][len] == '=')
            return true;
    }
    return false;
}

/* The child's environment: a fixed set, the sanitizer options, the fake Midtrans (when
 * wired), the caller's extras. */
static size_t build_env(const struct harness *h, char vars[][HARNESS_PATH_MAX + 32], size_t max,
                        char **envp)
{
    static const char *const pass[] = {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    size_t n = 0;

    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        const char *val = getenv(pass[i]);

        if (val != NULL && n < max)
            snprintf(vars[n++], sizeof(vars[0]), "%s=%s", pass[i], val);
    }
    snprintf(vars[n++], sizeof(vars[0]), "PORT=%u", (unsigned)h->http_port);
    snprintf(vars[n++], sizeof(vars[0]), "HOST=127.0.0.1");
    snprintf(vars[n++], sizeof(vars[0]), "DATABASE_URL=%s", h->db_url);
    /* A test with a broker of its own (TLS, passwords) names it in its extras. */
    if (!extra_has(h, "MQTT_BROKER_URL"))
        snprintf(vars[n++], sizeof(vars[0]), "MQTT_BROKER_URL=mqtt://127.0.0.1:%u",
                 (unsigned)h->broker.port);
    snprintf(vars[n++], sizeof(vars[0]), "MACHINE_ID=VM01");
    if (h->fake_wire && h->fake_port != 0) {
        const unsigned fp = h->fake_port, vp = h->http_port;

        if (!extra_has(h, "MIDTRANS_SERVER_KEY"))
            snprintf(vars[n++], sizeof(vars[0]), "MIDTRANS_SERVER_KEY=%s", HARNESS_FAKE_KEY);
        if (!extra_has(h, "MIDTRANS_API_BASE"))
            snprintf(vars[n++], sizeof(vars[0]), "MIDTRANS_API_BASE=http://127.0.0.1:%u", fp);
        if (!extra_has(h, "MIDTRANS_SNAP_BASE"))
            snprintf(vars[n++], sizeof(vars[0]), "MIDTRANS_SNAP_BASE=http://127.0.0.1:%u/snap/v1",
                     fp);
        if (!extra_has(h, "MIDTRANS_NOTIFICATION_URL"))
            snprintf(vars[n++], sizeof(vars[0]),
                     "MIDTRANS_NOTIFICATION_URL=http://127.0.0.1:%u/api/payments/webhook", vp);
    }
    for (size_t i = 0; i < h->nextra_env && n < max; i++)
        snprintf(vars[n++], sizeof(vars[0]), "%s", h->extra_env[i]);
    for (size_t i = 0; i < n; i++)
        envp[i] = vars[i];
    envp[n] = NULL;
    return n;
}

static int spawn_vendd(struct harness *h)
{
    char vars[HARNESS_ENV_MAX + ENV_FIXED][HARNESS_PATH_MAX + 32];
    char *envp[HARNESS_ENV_MAX + ENV_FIXED + 1];
    pid_t parent = getpid();
    int fd;

    build_env(h, vars, HARNESS_ENV_MAX + ENV_FIXED, envp);
    fd = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail("cannot open '%s': %s", h->log_path, strerror(errno));
    h->reaped = false;
    h->pid = fork();
    if (h->pid < 0) {
        h->pid = 0;
        close(fd);
        return fail("fork: %s", strerror(errno));
    }
    if (h->pid == 0) {
        /* Child: die with the test, log to the file, run in the fresh directory. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(fd, 1);
        dup2(fd, 2);
        if (chdir(h->dir) < 0)
            _exit(1);
        execve(h->vendd, (char *[]){(char *)"vendd", NULL}, envp);
        fprintf(stderr, "harness: cannot run '%s': %s\n", h->vendd, strerror(errno));
        _exit(127);
    }
    close(fd);
    return 0;
}

bool harness_vendd_alive(struct harness *h)
{
    int status;

    if (h->pid <= 0)
        return false;
    if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
        fprintf(stderr, "harness: vendd (pid %d) died: %s %d\n", (int)h->pid,
                WIFEXITED(status) ? "exit" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        h->pid = 0;
        h->reaped = true;
        h->reaped_status = status;
        return false;
    }
    return true;
}

/* Without the broker: /health answers 200. */
static int wait_http(struct harness *h)
{
    uint64_t deadline = harness_now_ms() + HARNESS_START_MS;

    while (harness_now_ms() < deadline) {
        if (!harness_vendd_alive(h))
            return fail("vendd exited during start (log: %s)", h->log_path);
        if (harness_call(h, "GET", "/health", NULL, NULL) == 200)
            return 0;
        harness_sleep_ms(20);
    }
    return fail("vendd not answering /health within %d ms (log: %s)", HARNESS_START_MS,
                h->log_path);
}

/* vendd's log lines "Subscribed to [$share/G/]vm/+/<kind>" (MQTT_SHARED_GROUP: the second
 * form, the only one with a '/' before "vm/"). */
static int subscribed(const struct harness *h, const char *plain, const char *shared)
{
    return harness_log_count(h, plain) + harness_log_count(h, shared);
}

#define SUBS_STATUS    "Subscribed to vm/+/status", "/vm/+/status"
#define SUBS_TELEMETRY "Subscribed to vm/+/telemetry", "/vm/+/telemetry"

static int vendd_start(struct harness *h, bool want_mqtt)
{
    int subs = subscribed(h, SUBS_STATUS);
    int subs_bulk = subscribed(h, SUBS_TELEMETRY);
    uint64_t deadline = harness_now_ms() + HARNESS_START_MS;

    if (h->pid > 0)
        return fail("vendd is already running");
    if (spawn_vendd(h) < 0)
        return -1;
    /* wait_ready() counts subscriptions from now on: remember how many there were. */
    while (want_mqtt && harness_now_ms() < deadline) {
        struct harness_reply r;
        long st;

        if (!harness_vendd_alive(h))
            return fail("vendd exited during start (log: %s)", h->log_path);
        st = harness_call(h, "GET", "/health", NULL, &r);
        if (st == 200 && json_is_true(json_object_get(r.json, "mqtt_connected")) &&
            json_is_true(json_object_get(r.json, "mqtt_telemetry_connected")) &&
            subscribed(h, SUBS_STATUS) > subs && subscribed(h, SUBS_TELEMETRY) > subs_bulk) {
            harness_reply_free(&r);
            h->starts++;
            return 0;
        }
        harness_reply_free(&r);
        harness_sleep_ms(20);
    }
    if (want_mqtt)
        return fail("vendd not connected and subscribed within %d ms (log: %s)", HARNESS_START_MS,
                    h->log_path);
    if (wait_http(h) < 0)
        return -1;
    h->starts++;
    return 0;
}

/* On PostgreSQL, vendd said so: a PG variant that ran on a SQLite file would prove nothing. */
static int check_backend(struct harness *h, int rc)
{
    if (rc == 0 && harness_db_pg(h) && harness_log_count(h, "database: PostgreSQL") < h->starts)
        return fail("vendd started without naming its PostgreSQL database (log: %s)", h->log_path);
    return rc;
}

int harness_vendd_start(struct harness *h)
{
    return check_backend(h, vendd_start(h, true));
}

int harness_vendd_start_nobroker(struct harness *h)
{
    return check_backend(h, vendd_start(h, false));
}

int harness_vendd_term(struct harness *h)
{
    uint64_t deadline = harness_now_ms() + TERM_WAIT_MS;
    int status;
    pid_t rc;

    if (h->pid <= 0)
        return fail("vendd is not running");
    kill(h->pid, SIGTERM);
    while (harness_now_ms() < deadline) {
        rc = waitpid(h->pid, &status, WNOHANG);
        if (rc == h->pid) {
            h->pid = 0;
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            return fail("vendd died of signal %d after SIGTERM", WTERMSIG(status));
        }
        harness_sleep_ms(10);
    }
    harness_vendd_kill(h);
    return fail("vendd did not exit within %d ms of SIGTERM", TERM_WAIT_MS);
}

void harness_vendd_kill(struct harness *h)
{
    int status;

    if (h->pid <= 0)
        return;
    kill(h->pid, SIGKILL);
    while (waitpid(h->pid, &status, 0) < 0 && errno == EINTR)
        ;
    h->pid = 0;
}

int harness_vendd_wait_death(struct harness *h, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    int status;
    pid_t rc;

    if (h->pid <= 0 && h->reaped) {
        /* Already found dead (harness_vendd_alive()): its status is kept. */
        status = h->reaped_status;
        h->reaped = false;
        goto dead;
    }
    if (h->pid <= 0)
        return fail("vendd is not running");
    for (;;) {
        rc = waitpid(h->pid, &status, WNOHANG);
        if (rc == h->pid)
            break;
        if (rc < 0 && errno != EINTR)
            return fail("waitpid vendd (pid %d): %s", (int)h->pid, strerror(errno));
        if (harness_now_ms() >= deadline)
            return fail("vendd still running %d ms on (log: %s)", timeout_ms, h->log_path);
        harness_sleep_ms(10);
    }
    h->pid = 0;
dead:
    if (WIFSIGNALED(status))
        return WTERMSIG(status);
    fprintf(stderr, "harness: vendd exited with status %d, not by a signal (log: %s)\n",
            WEXITSTATUS(status), h->log_path);
    return 0;
}

int harness_new_http_port(struct harness *h)
{
    uint16_t port;

    /* The kernel may hand back the port vendd just closed: insist on another. */
    for (int i = 0; i < 16; i++) {
        if (free_port(&port) < 0)
            return fail("no free loopback port");
        if (port != h->http_port) {
            h->http_port = port;
            return 0;
        }
    }
    return fail("no loopback port other than %u", (unsigned)h->http_port);
}

int harness_env_set(struct harness *h, const char *kv)
{
    const char *eq = strchr(kv, '=');
    size_t i;

    if (eq == NULL || strlen(kv) >= sizeof(h->extra_env[0]))
        return fail("extra environment: '%s' is not a short KEY=VALUE", kv);
    for (i = 0; i < h->nextra_env; i++) {
        if (strncmp(h->extra_env[i], kv, (size_t)(eq - kv) + 1) == 0)
            break;
    }
    if (i == HARNESS_ENV_MAX)
        return fail("extra environment: more than %d variables", HARNESS_ENV_MAX);
    memcpy(h->extra_env[i], kv, strlen(kv) + 1);
    if (i == h->nextra_env)
        h->nextra_env++;
    return 0;
}

int harness_prepare(struct harness *h, const char *const *extra_env)
{
    const char *tmp = getenv("TMPDIR");
    int n;
    const char *vendd = getenv("VENDD");
    char *abs;

    memset(h, 0, sizeof(*h));
    /* Absolute: vendd runs in its own directory. */
    abs = vendd != NULL ? realpath(vendd, NULL) : NULL;
    if (abs == NULL || strlen(abs) >= sizeof(h->vendd) || access(abs, X_OK) != 0) {
        free(abs);
        return fail("VENDD must name the vendd binary (got '%s')", vendd ? vendd : "");
    }
    memcpy(h->vendd, abs, strlen(abs) + 1);
    free(abs);
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL; i++) {
        if (i == HARNESS_ENV_MAX || strlen(extra_env[i]) >= sizeof(h->extra_env[0]))
            return fail("extra environment: too many or too long ('%s')", extra_env[i]);
        memcpy(h->extra_env[i], extra_env[i], strlen(extra_env[i]) + 1);
        h->nextra_env = i + 1;
    }
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    n = snprintf(h->dir, sizeof(h->dir), "%s/vendd-it-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(h->dir) || mkdtemp(h->dir) == NULL) {
        h->dir[0] = '\0';
        return fail("cannot create a directory in '%s'", tmp);
    }
    snprintf(h->db_path, sizeof(h->db_path), "%s/vendd.db", h->dir);
    snprintf(h->log_path, sizeof(h->log_path), "%s/vendd.log", h->dir);
    if (harness_db_create(h) < 0 || test_broker_start(&h->broker) < 0 ||
        free_port(&h->http_port) < 0) {
        harness_stop(h);
        return -1;
    }
    return 0;
}

int harness_start(struct harness *h, const char *const *extra_env)
{
    if (harness_prepare(h, extra_env) < 0)
        return -1;
    if (harness_vendd_start(h) < 0) {
        harness_stop(h);
        return -1;
    }
    return 0;
}

/* Remove path and what it holds: vendd.db, its -wal/-shm, the logs, and directories a test
 * made in it (vmsim's journals) down to depth levels. */
static void remove_dir(const char *path, int depth)
{
    char sub[HARNESS_PATH_MAX + NAME_MAX + 2];
    struct dirent *e;
    struct stat st;
    DIR *d = opendir(path);

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            if (depth > 0 && lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                remove_dir(sub, depth - 1);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

void harness_stop(struct harness *h)
{
    harness_vendd_kill(h);
    harness_fake_stop(h);
    test_broker_stop(&h->broker);
    harness_db_drop(h);
    if (h->dir[0] == '\0')
        return;
    if (getenv("HARNESS_KEEP") != NULL) {
        fprintf(stderr, "harness: kept '%s'\n", h->dir);
        h->dir[0] = '\0';
        return;
    }
    remove_dir(h->dir, 1);
    h->dir[0] = '\0';
}

/* ---- log ------------------------------------------------------------------------------ */

static int file_count(const char *path, const char *needle)
{
    char *line = malloc(LOG_LINE_MAX);
    FILE *f = fopen(path, "r");
    int n = 0;

    if (line == NULL || f == NULL) {
        free(line);
        if (f != NULL)
            fclose(f);
        return 0;
    }
    while (fgets(line, LOG_LINE_MAX, f) != NULL) {
        if (strstr(line, needle) != NULL)
            n++;
    }
    fclose(f);
    free(line);
    return n;
}

int harness_log_count(const struct harness *h, const char *needle)
{
    return file_count(h->log_path, needle);
}

int harness_broker_log_count(const struct harness *h, const char *needle)
{
    char path[sizeof(h->broker.dir) + 16];

    snprintf(path, sizeof(path), "%s/mosquitto.log", h->broker.dir);
    return file_count(path, needle);
}

int harness_log_wait(const struct harness *h, const char *needle, int n, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    int got;

    for (;;) {
        got = harness_log_count(h, needle);
        if (got >= n)
            return got;
        if (harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(10);
    }
    return fail("log: %d line(s) with '%s' after %d ms, wanted %d", got, needle, timeout_ms, n);
}

/* ---- the invariant checker ------------------------------------------------------------ */

int harness_check(const struct harness *h, const char *drops)
{
    const char *bin = getenv("VEND_CHECK");
    char out[HARNESS_PATH_MAX + 16], pct[8] = "";
    const char *argv[8];
    size_t n = 0;
    int status = 0, fd;
    pid_t pid;

    if (bin == NULL || bin[0] == '\0')
        return fail("VEND_CHECK is not set (ctest sets it to tools/vend-check)");
    for (size_t i = 0; i < h->nextra_env; i++)
        if (strncmp(h->extra_env[i], "LOW_STOCK_PERCENT=", 18) == 0)
            snprintf(pct, sizeof(pct), "%s", h->extra_env[i] + 18);
    snprintf(out, sizeof(out), "%s/vend-check.out", h->dir);
    argv[n++] = bin;
    if (drops != NULL) {
        argv[n++] = "--drops";
        argv[n++] = drops;
    }
    if (pct[0] != '\0') {
        argv[n++] = "--low-stock-percent";
        argv[n++] = pct;
    }
    argv[n++] = h->db_url; /* vendd's own: SQLite or PostgreSQL */
    argv[n] = NULL;
    pid = fork();
    if (pid < 0)
        return fail("vend-check: fork: %s", strerror(errno));
    if (pid == 0) {
        fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
            _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return fail("vend-check: waitpid: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    /* The violations, for the test's log. */
    {
        char line[LOG_LINE_MAX];
        FILE *f = fopen(out, "r");

        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            fprintf(stderr, "harness: vend-check: %s", line);
        if (f != NULL)
            fclose(f);
    }
    return fail("vend-check on %s%s%s: %s %d", h->db_path, drops != NULL ? " with " : "",
                drops != NULL ? drops : "", WIFEXITED(status) ? "exit" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---- HTTP ----------------------------------------------------------------------------- */

struct buf {
    char *p;
    size_t len;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    char *p;

    if (b->len + n > BODY_MAX)
        return 0;
    p = realloc(b->p, b->len + n + 1);
    if (p == NULL)
        return 0;
    memcpy(p + b->len, data, n);
    b->p = p;
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* One HTTP request to 127.0.0.1:port (bearer: "" for none). */
static long http_to(uint16_t port, const char *bearer, const char *method, const char *path,
                    const char *content_type, const char *body, size_t len, struct harness_reply *r)
{
    char url[512], ctype[128], auth[160];
    struct curl_slist *hdrs = NULL;
    struct buf b = {0};
    long status = -1;
    CURL *c;

    if (r != NULL)
        memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    snprintf(ctype, sizeof(ctype), "Content-Type: %s",
             content_type != NULL ? content_type : "application/json");
    c = curl_easy_init();
    if (c == NULL)
        return fail("curl_easy_init failed");
    hdrs = curl_slist_append(hdrs, ctype);
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (bearer[0] != '\0') {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)HARNESS_HTTP_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (r != NULL) {
        r->status = status < 0 ? 0 : status;
        r->body = b.p;
        if (b.p != NULL)
            r->json = json_loadb(b.p, b.len, 0, NULL);
    } else {
        free(b.p);
    }
    return status;
}

long harness_http(struct harness *h, const char *method, const char *path, const char *content_type,
                  const char *body, size_t len, struct harness_reply *r)
{
    return http_to(h->http_port, h->bearer, method, path, content_type, body, len, r);
}

struct woken_call {
    struct harness *h;
    const char *method, *path, *body;
    struct harness_reply *r;
    long status;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void *woken_call_thread(void *arg)
{
    struct woken_call *w = arg;
    long st = http_to(w->h->http_port, w->h->bearer, w->method, w->path, NULL, w->body,
                      w->body != NULL ? strlen(w->body) : 0, w->r);

    pthread_mutex_lock(&w->mu);
    w->status = st;
    w->done = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

long harness_call_wake(struct harness *h, const char *method, const char *path, const char *body,
                       struct harness_reply *r, int patience_ms)
{
    struct woken_call w = {.h = h, .method = method, .path = path, .body = body, .r = r};
    struct timespec ts;
    pthread_t th;
    bool done;

    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    if (pthread_create(&th, NULL, woken_call_thread, &w) != 0) {
        pthread_cond_destroy(&w.cv);
        pthread_mutex_destroy(&w.mu);
        return fail("pthread_create failed");
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += patience_ms / 1000;
    ts.tv_nsec += (long)(patience_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done && pthread_cond_timedwait(&w.cv, &w.mu, &ts) == 0)
        ;
    done = w.done;
    pthread_mutex_unlock(&w.mu);
    if (!done) {
        h->stalled++;
        snprintf(h->stalled_what, sizeof(h->stalled_what), "%s %s", method, path);
        fprintf(stderr, "harness: %s %s: no answer after %d ms; waking vendd with GET /health\n",
                method, path, patience_ms);
        http_to(h->http_port, "", "GET", "/health", NULL, NULL, 0, NULL);
    }
    pthread_join(th, NULL);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return w.status;
}

int harness_http_parallel(struct harness *h, struct harness_request *reqs, size_t n, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    struct curl_slist *hdrs = NULL;
    char url[512], auth[160];
    struct buf *bufs = NULL;
    CURL **easy = NULL;
    CURLM *multi = NULL;
    int running = 0, answered = 0;
    size_t i;

    easy = calloc(n, sizeof(*easy));
    bufs = calloc(n, sizeof(*bufs));
    multi = curl_multi_init();
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (h->bearer[0] != '\0') {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", h->bearer);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (easy == NULL || bufs == NULL || multi == NULL || hdrs == NULL) {
        answered = fail("harness_http_parallel: out of memory");
        goto out;
    }
    /* One connection per request, all opened together. */
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n);
    for (i = 0; i < n; i++) {
        reqs[i].status = 0;
        reqs[i].answer = NULL;
        easy[i] = curl_easy_init();
        if (easy[i] == NULL) {
            answered = fail("curl_easy_init failed");
            goto out;
        }
        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)h->http_port, reqs[i].path);
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_CUSTOMREQUEST, reqs[i].method);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, hdrs);
        if (reqs[i].body != NULL)
            curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, reqs[i].body);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &bufs[i]);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(easy[i], CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_multi_add_handle(multi, easy[i]);
    }
    do {
        curl_multi_perform(multi, &running);
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    } while (running > 0 && harness_now_ms() < deadline);
    for (i = 0; i < n; i++) {
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &reqs[i].status);
        reqs[i].answer = bufs[i].p;
        bufs[i].p = NULL;
        answered += reqs[i].status > 0;
    }
    if (answered < (int)n)
        fprintf(stderr, "harness: %d of %zu parallel requests answered in %d ms\n", answered, n,
                timeout_ms);
out:
    for (i = 0; easy != NULL && i < n && easy[i] != NULL; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    for (i = 0; bufs != NULL && i < n; i++)
        free(bufs[i].p);
    if (multi != NULL)
        curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    free(easy);
    free(bufs);
    return answered;
}

void harness_requests_free(struct harness_request *reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(reqs[i].answer);
        reqs[i].answer = NULL;
    }
}

long harness_call(struct harness *h, const char *method, const char *path, const char *body,
                  struct harness_reply *r)
{
    return harness_http(h, method, path, NULL, body, body != NULL ? strlen(body) : 0, r);
}

void harness_reply_free(struct harness_reply *r)
{
    if (r == NULL)
        return;
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

const char *harness_reply_str(const struct harness_reply *r, const char *dotted)
{
    char key[64];
    const json_t *j = r->json;
    const char *p = dotted, *dot;
    size_t n;

    while (j != NULL && *p != '\0') {
        dot = strchr(p, '.');
        n = dot != NULL ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        /* A number indexes an array: "units.0.status". */
        j = json_is_array(j) && key[0] >= '0' && key[0] <= '9'
                ? json_array_get(j, strtoul(key, NULL, 10))
                : json_object_get(j, key);
        p += n + (dot != NULL);
    }
    return json_is_string(j) ? json_string_value(j) : NULL;
}

/* Finds the sample of series in /metrics: 1 with *val, 0 if absent, -1 on error. */
static int metric_find(struct harness *h, const char *series, long long *val)
{
    struct harness_reply r;
    size_t n = strlen(series);
    char *line, *end;
    int found = 0;

    *val = 0;
    if (harness_call(h, "GET", "/metrics", NULL, &r) != 200 || r.body == NULL) {
        harness_reply_free(&r);
        return fail("GET /metrics failed");
    }
    for (line = r.body; line != NULL && *line != '\0'; line = end) {
        end = strchr(line, '\n');
        if (end != NULL)
            *end++ = '\0';
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            errno = 0;
            *val = strtoll(line + n + 1, NULL, 10);
            found = errno != 0 ? fail("/metrics: '%s' is not a number", line) : 1;
            break;
        }
    }
    harness_reply_free(&r);
    return found;
}

long long harness_metric(struct harness *h, const char *series)
{
    long long val;

    return metric_find(h, series, &val) < 0 ? -1 : val;
}

int harness_metric_present(struct harness *h, const char *series)
{
    long long val;

    return metric_find(h, series, &val);
}

int harness_put_slot(struct harness *h, int slot, int stock, int motor_ms)
{
    char path[64], body[256];
    struct harness_reply r;
    long st;

    char sql[128], version[32] = "";
    long long v = 0;

    /* Like an operator: an existing slot is changed against the version last seen. */
    snprintf(sql, sizeof(sql),
             "SELECT version FROM slots WHERE machine_id = 'VM01' AND slot_number = %d", slot);
    if (harness_sql_int(h, sql, &v) == 1)
        snprintf(version, sizeof(version), ",\"version\":%lld", v);
    snprintf(path, sizeof(path), "/api/machines/VM01/slots/%d", slot);
    snprintf(body, sizeof(body),
             "{\"product_name\":\"Coca Cola\",\"price\":8000,\"capacity\":%d,"
             "\"current_stock\":%d,\"motor_duration_ms\":%d%s}",
             stock > 10 ? stock : 10, stock, motor_ms, version);
    st = harness_call(h, "PUT", path, body, &r);
    if (st != 200 && st != 201)
        fail("PUT %s: HTTP %ld: %s", path, st, r.body ? r.body : "");
    harness_reply_free(&r);
    return st == 200 || st == 201 ? 0 : -1;
}

int harness_order(struct harness *h, const char *id, int slot, int quantity)
{
    char body[256];
    struct harness_reply r;
    long st;

    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"slot\":%d,\"quantity\":%d,\"payment_method\":\"manual\"}", id, slot,
             quantity);
    st = harness_call(h, "POST", "/api/orders", body, &r);
    if (st != 201)
        fail("POST /api/orders %s: HTTP %ld: %s", id, st, r.body ? r.body : "");
    harness_reply_free(&r);
    return st == 201 ? 0 : -1;
}

long harness_trigger(struct harness *h, const char *order_id, struct harness_reply *r)
{
    char body[160];

    snprintf(body, sizeof(body), "{\"order_id\":\"%s\"}", order_id);
    return harness_call(h, "POST", "/api/dispense/trigger", body, r);
}

/* ---- database dumps (harness_db.c makes them) ------------------------------------- */

/* Lines of text (one dump) as an array of pointers into a copy; NULL-terminated. */
static char **dump_lines(const char *text, char **copy)
{
    size_t n = 1, i = 0;
    char **lines, *p;

    *copy = strdup(text);
    if (*copy == NULL)
        return NULL;
    for (p = *copy; *p != '\0'; p++)
        n += *p == '\n';
    lines = calloc(n + 1, sizeof(*lines));
    if (lines == NULL)
        return NULL;
    for (p = *copy; *p != '\0';) {
        char *nl = strchr(p, '\n');

        lines[i++] = p;
        if (nl == NULL)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    return lines;
}

/* Lines of a not in b, each under its table's header; returns how many. */
static int dump_missing(char **a, char **b, char sign)
{
    const char *table = "", *shown = NULL;
    int n = 0;

    for (size_t i = 0; a[i] != NULL; i++) {
        bool found = false;

        if (strncmp(a[i], "== ", 3) == 0) {
            table = a[i];
            continue;
        }
        for (size_t j = 0; b[j] != NULL && !found; j++)
            found = strcmp(a[i], b[j]) == 0;
        if (found)
            continue;
        if (shown != table)
            fprintf(stderr, "%s\n", table);
        shown = table;
        fprintf(stderr, "%c %s\n", sign, a[i]);
        n++;
    }
    return n;
}

int harness_db_diff(const char *before, const char *after)
{
    char *bc = NULL, *ac = NULL, **bl = dump_lines(before, &bc), **al = dump_lines(after, &ac);
    int n = -1;

    if (bl != NULL && al != NULL)
        n = dump_missing(bl, al, '-') + dump_missing(al, bl, '+');
    free(bl);
    free(al);
    free(bc);
    free(ac);
    return n;
}

/* ---- MQTT ----------------------------------------------------------------------------- */

static void mq_on_connect(struct mosquitto *m, void *arg, int rc, int flags,
                          const mosquitto_property *props)
{
    struct harness_mqtt *c = arg;

    (void)m, (void)flags, (void)props;
    pthread_mutex_lock(&c->mu);
    if (rc == 0)
        c->connects++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void mq_on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted,
                            const mosquitto_property *props)
{
    struct harness_mqtt *c = arg;

    (void)m, (void)mid, (void)n, (void)granted, (void)props;
    pthread_mutex_lock(&c->mu);
    c->subacks++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void mq_on_publish(struct mosquitto *m, void *arg, int mid, int reason,
                          const mosquitto_property *props)
{
    struct harness_mqtt *c = arg;

    (void)m, (void)mid, (void)reason, (void)props;
    pthread_mutex_lock(&c->mu);
    c->pubacks++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static char *dup_bytes(const void *p, size_t len)
{
    char *s = malloc(len + 1);

    if (s != NULL) {
        if (len > 0)
            memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

static void mq_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
                          const mosquitto_property *props)
{
    struct harness_mqtt *c = arg;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    harness_mqtt_fn *fn;
    void *fn_arg;

    (void)m, (void)props;
    if (len > HARNESS_PAYLOAD_MAX)
        len = HARNESS_PAYLOAD_MAX;
    pthread_mutex_lock(&c->mu);
    if (c->n < HARNESS_MSG_MAX) {
        c->topics[c->n] = dup_bytes(msg->topic, strlen(msg->topic));
        c->payloads[c->n] = dup_bytes(msg->payload, len);
    }
    c->n++;
    fn = c->on_message;
    fn_arg = c->arg;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (fn != NULL)
        fn(c, msg->topic, msg->payload, len, fn_arg);
}

void harness_mqtt_set_handler(struct harness_mqtt *c, harness_mqtt_fn *on_message, void *arg)
{
    pthread_mutex_lock(&c->mu);
    c->on_message = on_message;
    c->arg = arg;
    pthread_mutex_unlock(&c->mu);
}

/* Wait (c->mu held) until *counter >= want; false on timeout. */
static bool cond_wait(struct harness_mqtt *c, const int *counter, int want, int timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    while (*counter < want) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
            return *counter >= want;
    }
    return true;
}

int harness_mqtt_open(struct harness_mqtt *c, uint16_t port, const char *client_id,
                      const char *filter, harness_mqtt_fn *on_message, void *arg)
{
    int connected, rc;

    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->on_message = on_message;
    c->arg = arg;
    mosquitto_lib_init();
    c->m = mosquitto_new(client_id, true, c);
    if (c->m == NULL)
        return fail("mosquitto_new(%s) failed", client_id);
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_v5_callback_set(c->m, mq_on_connect);
    mosquitto_subscribe_v5_callback_set(c->m, mq_on_subscribe);
    mosquitto_publish_v5_callback_set(c->m, mq_on_publish);
    mosquitto_message_v5_callback_set(c->m, mq_on_message);
    rc = mosquitto_connect_bind_v5(c->m, "127.0.0.1", port, 30, NULL, NULL);
    if (rc != MOSQ_ERR_SUCCESS || mosquitto_loop_start(c->m) != MOSQ_ERR_SUCCESS) {
        fail("%s: cannot connect to port %u: %s", client_id, (unsigned)port,
             mosquitto_strerror(rc));
        harness_mqtt_close(c);
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    connected = cond_wait(c, &c->connects, 1, 5000);
    pthread_mutex_unlock(&c->mu);
    if (!connected) {
        harness_mqtt_close(c);
        return fail("%s: no CONNACK", client_id);
    }
    if (filter == NULL)
        return 0;
    rc = mosquitto_subscribe_v5(c->m, NULL, filter, 1, 0, NULL);
    pthread_mutex_lock(&c->mu);
    connected = rc == MOSQ_ERR_SUCCESS && cond_wait(c, &c->subacks, 1, 5000);
    pthread_mutex_unlock(&c->mu);
    if (!connected) {
        harness_mqtt_close(c);
        return fail("%s: no SUBACK for '%s'", client_id, filter);
    }
    return 0;
}

void harness_mqtt_close(struct harness_mqtt *c)
{
    if (c->m != NULL) {
        mosquitto_disconnect_v5(c->m, 0, NULL);
        mosquitto_loop_stop(c->m, true);
        mosquitto_destroy(c->m);
        c->m = NULL;
        mosquitto_lib_cleanup();
    }
    for (size_t i = 0; i < c->n && i < HARNESS_MSG_MAX; i++) {
        free(c->topics[i]);
        free(c->payloads[i]);
        c->topics[i] = c->payloads[i] = NULL;
    }
    c->n = 0;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
}

int harness_mqtt_publish_nowait(struct harness_mqtt *c, const char *topic, const void *payload,
                                size_t len)
{
    int rc = mosquitto_publish_v5(c->m, NULL, topic, (int)len, payload, 1, false, NULL);

    return rc == MOSQ_ERR_SUCCESS ? 0 : fail("publish to '%s': %s", topic, mosquitto_strerror(rc));
}

int harness_mqtt_publish(struct harness_mqtt *c, const char *topic, const void *payload, size_t len)
{
    int want, ok;

    pthread_mutex_lock(&c->mu);
    want = c->pubacks + 1;
    pthread_mutex_unlock(&c->mu);
    if (harness_mqtt_publish_nowait(c, topic, payload, len) < 0)
        return -1;
    pthread_mutex_lock(&c->mu);
    ok = cond_wait(c, &c->pubacks, want, 5000);
    pthread_mutex_unlock(&c->mu);
    return ok ? 0 : fail("no PUBACK for '%s'", topic);
}

size_t harness_mqtt_wait(struct harness_mqtt *c, size_t n, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    size_t got;

    for (;;) {
        pthread_mutex_lock(&c->mu);
        got = c->n;
        pthread_mutex_unlock(&c->mu);
        if (got >= n || harness_now_ms() >= deadline)
            return got;
        harness_sleep_ms(5);
    }
}

const char *harness_mqtt_payload(struct harness_mqtt *c, size_t i)
{
    const char *p = NULL;

    pthread_mutex_lock(&c->mu);
    if (i < c->n && i < HARNESS_MSG_MAX)
        p = c->payloads[i];
    pthread_mutex_unlock(&c->mu);
    return p != NULL ? p : "";
}

int harness_answer_ex(struct harness_mqtt *machine, const char *order_id, int slot, int unit,
                      bool success, bool drop, const char *error)
{
    char res[320], unit_key[24] = "", err[48] = "null";

    if (unit > 0)
        snprintf(unit_key, sizeof(unit_key), ",\"unit\":%d", unit);
    if (error != NULL)
        snprintf(err, sizeof(err), "\"%s\"", error);
    snprintf(res, sizeof(res),
             "{\"orderId\":\"%s\",\"slot\":%d%s,\"success\":%s,\"dropDetected\":%s,"
             "\"durationMs\":1850,\"error\":%s}",
             order_id, slot, unit_key, success ? "true" : "false", drop ? "true" : "false", err);
    return harness_mqtt_publish(machine, "vm/VM01/dispense_result", res, strlen(res));
}

int harness_answer(struct harness_mqtt *machine, const char *order_id, int slot, int unit)
{
    return harness_answer_ex(machine, order_id, slot, unit, true, true, NULL);
}

int harness_command_parse(const char *payload, char *order_id, size_t size, int *slot, int *unit)
{
    json_t *cmd = json_loads(payload, 0, NULL);
    const char *type = json_string_value(json_object_get(cmd, "cmd"));
    const char *id = json_string_value(json_object_get(cmd, "orderId"));
    json_t *s = json_object_get(cmd, "slot"), *u = json_object_get(cmd, "unit");
    int rc = -1;

    if (type != NULL && strcmp(type, "dispense") == 0 && id != NULL && strlen(id) < size &&
        json_is_integer(s) && (u == NULL || json_is_integer(u))) {
        memcpy(order_id, id, strlen(id) + 1);
        *slot = (int)json_integer_value(s);
        *unit = u != NULL ? (int)json_integer_value(u) : 0;
        rc = 0;
    }
    json_decref(cmd);
    return rc;
}

void harness_autoanswer(struct harness_mqtt *c, const char *topic, const char *payload, size_t len,
                        void *arg)
{
    struct harness_autoanswer *a = arg;
    char order_id[128], res[320], unit_key[24] = "", text[HARNESS_PAYLOAD_MAX + 1];
    int slot, unit;
    bool ok;

    if (strstr(topic, "/command") == NULL || len > HARNESS_PAYLOAD_MAX)
        return;
    memcpy(text, payload, len);
    text[len] = '\0';
    if (harness_command_parse(text, order_id, sizeof(order_id), &slot, &unit) < 0)
        return;
    ok = unit >= 64 || !(a->fail_units & ((uint64_t)1 << (unit > 0 ? unit : 1)));
    if (unit > 0)
        snprintf(unit_key, sizeof(unit_key), ",\"unit\":%d", unit);
    snprintf(res, sizeof(res),
             "{\"orderId\":\"%s\",\"slot\":%d%s,\"success\":%s,\"dropDetected\":%s,"
             "\"durationMs\":850,\"error\":%s}",
             order_id, slot, unit_key, ok ? "true" : "false", ok ? "true" : "false",
             ok ? "null" : "\"JAMMED\"");
    if (harness_mqtt_publish_nowait(c, "vm/VM01/dispense_result", res, strlen(res)) == 0) {
        pthread_mutex_lock(&a->mu);
        a->answered++;
        pthread_mutex_unlock(&a->mu);
    }
}

int harness_machine_online(struct harness *h, struct harness_mqtt *machine)
{
    static const char status[] = "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-60,"
                                 "\"fw\":\"1.0.0\"}";
    int rc, want, ok;

    pthread_mutex_lock(&machine->mu);
    want = machine->pubacks + 1;
    pthread_mutex_unlock(&machine->mu);
    rc = mosquitto_publish_v5(machine->m, NULL, "vm/VM01/status", (int)strlen(status), status, 1,
                              true, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        return fail("publish VM01's status: %s", mosquitto_strerror(rc));
    pthread_mutex_lock(&machine->mu);
    ok = cond_wait(machine, &machine->pubacks, want, 5000);
    pthread_mutex_unlock(&machine->mu);
    if (!ok)
        return fail("no PUBACK for VM01's status");
    return harness_sql_wait(h, "SELECT status FROM machines WHERE id = 'VM01'", "ONLINE", 5000);
}

/* ---- payments: fake-midtrans ---------------------------------------------------------- */

#define FAKE_START_MS 5000

int harness_fake_start(struct harness *h, const char *const *args)
{
    const char *bin = getenv("FAKE_MIDTRANS");
    char retry[16], notify[128], log_path[HARNESS_PATH_MAX], line[256];
    const char *argv[32];
    size_t n = 0, len = 0;
    pid_t parent = getpid();
    unsigned port = 0;
    int out[2], logfd;
    uint64_t deadline = harness_now_ms() + FAKE_START_MS;

    if (bin == NULL || access(bin, X_OK) != 0)
        return fail("FAKE_MIDTRANS must name the fake-midtrans binary (got '%s')", bin ? bin : "");
    if (h->fake_pid > 0)
        return fail("fake-midtrans is already running");
    if (h->dir[0] == '\0')
        return fail("harness_fake_start() before harness_prepare()");
    snprintf(retry, sizeof(retry), "%d", HARNESS_FAKE_RETRY_MS);
    snprintf(notify, sizeof(notify), "http://127.0.0.1:%u/api/payments/webhook",
             (unsigned)h->http_port);
    snprintf(log_path, sizeof(log_path), "%s/fake-midtrans.log", h->dir);
    argv[n++] = "fake-midtrans";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--server-key";
    argv[n++] = HARNESS_FAKE_KEY;
    argv[n++] = "--retry-unit-ms";
    argv[n++] = retry;
    argv[n++] = "--notify-url";
    argv[n++] = notify;
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        if (n == sizeof(argv) / sizeof(argv[0]) - 1)
            return fail("fake-midtrans: too many arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0)
        return fail("cannot open '%s': %s", log_path, strerror(errno));
    if (pipe2(out, O_CLOEXEC) < 0) {
        close(logfd);
        return fail("pipe: %s", strerror(errno));
    }
    h->fake_pid = fork();
    if (h->fake_pid < 0) {
        h->fake_pid = 0;
        close(logfd);
        close(out[0]);
        close(out[1]);
        return fail("fork: %s", strerror(errno));
    }
    if (h->fake_pid == 0) {
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        dup2(out[1], 1);
        dup2(logfd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    close(logfd);
    /* Its first line names the port; a fake that never says it fails the test. */
    while (len < sizeof(line) - 1) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        int64_t left = (int64_t)deadline - (int64_t)harness_now_ms();
        ssize_t r;

        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        r = read(out[0], line + len, 1);
        if (r <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    close(out[0]); /* it flushed the line; later writes to stdout get EPIPE, not a block */
    if (sscanf(line, "fake-midtrans listening on 127.0.0.1:%u", &port) != 1 || port == 0 ||
        port > 65535) {
        harness_fake_stop(h);
        return fail("fake-midtrans said '%s' (log: %s)", line, log_path);
    }
    h->fake_port = (uint16_t)port;
    h->fake_wire = true;
    return 0;
}

int harness_fake_stop(struct harness *h)
{
    uint64_t deadline = harness_now_ms() + TERM_WAIT_MS;
    int status = 0;
    bool exited = false;

    if (h->fake_pid <= 0)
        return 0;
    kill(h->fake_pid, SIGTERM);
    while (harness_now_ms() < deadline) {
        if (waitpid(h->fake_pid, &status, WNOHANG) == h->fake_pid) {
            exited = true;
            break;
        }
        harness_sleep_ms(10);
    }
    if (!exited) {
        kill(h->fake_pid, SIGKILL);
        while (waitpid(h->fake_pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    h->fake_pid = 0;
    h->fake_port = 0;
    if (!exited || !WIFEXITED(status))
        return fail("fake-midtrans did not exit on SIGTERM");
    return WEXITSTATUS(status);
}

long harness_fake_call(struct harness *h, const char *method, const char *path, const char *body,
                       struct harness_reply *r)
{
    if (h->fake_port == 0) {
        if (r != NULL)
            memset(r, 0, sizeof(*r));
        return fail("fake-midtrans is not running");
    }
    return http_to(h->fake_port, "", method, path, NULL, body, body != NULL ? strlen(body) : 0, r);
}

json_t *harness_fake_tx(struct harness *h, const char *order_id)
{
    char path[160];
    struct harness_reply r;
    json_t *tx = NULL;

    snprintf(path, sizeof(path), "/_fake/transactions/%s", order_id);
    if (harness_fake_call(h, "GET", path, NULL, &r) == 200 && json_is_object(r.json))
        tx = json_incref(r.json);
    harness_reply_free(&r);
    return tx;
}

int harness_fake_requests(struct harness *h, const char *method, const char *path, json_t **last)
{
    struct harness_reply r;
    json_t *reqs, *e;
    size_t i;
    int n = 0;

    if (last != NULL)
        *last = NULL;
    if (harness_fake_call(h, "GET", "/_fake/requests", NULL, &r) != 200) {
        harness_reply_free(&r);
        return fail("GET /_fake/requests failed");
    }
    reqs = json_object_get(r.json, "requests");
    json_array_foreach(reqs, i, e)
    {
        const char *m = json_string_value(json_object_get(e, "method"));
        const char *p = json_string_value(json_object_get(e, "path"));

        if (m == NULL || p == NULL || strcmp(m, method) != 0 || strcmp(p, path) != 0)
            continue;
        n++;
        if (last != NULL) {
            json_decref(*last);
            *last = json_incref(json_object_get(e, "json"));
        }
    }
    harness_reply_free(&r);
    return n;
}

/* Final notification attempts the fake logged for order_id (and status unless NULL). */
static int fake_finals(struct harness *h, const char *order_id, const char *status, long *http)
{
    struct harness_reply r;
    json_t *e;
    size_t i;
    int n = -1;

    if (harness_fake_call(h, "GET", "/_fake/notifications", NULL, &r) == 200) {
        n = 0;
        json_array_foreach(json_object_get(r.json, "notifications"), i, e)
        {
            const char *o = json_string_value(json_object_get(e, "order_id"));
            const char *st = json_string_value(json_object_get(e, "transaction_status"));

            if (!json_is_true(json_object_get(e, "final")) || o == NULL ||
                strcmp(o, order_id) != 0 || (status != NULL && (st == NULL || strcmp(st, status))))
                continue;
            n++;
            if (http != NULL)
                *http = (long)json_integer_value(json_object_get(e, "http_status"));
        }
    }
    harness_reply_free(&r);
    return n;
}

int harness_fake_notified(struct harness *h, const char *order_id, const char *status, int n,
                          int timeout_ms, long *last_http)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    int got;

    for (;;) {
        got = fake_finals(h, order_id, status, last_http);
        if (got >= n)
            return got;
        if (harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(10);
    }
    return fail("fake-midtrans: %d finished '%s' notification(s) for '%s' after %d ms, wanted %d",
                got, status != NULL ? status : "*", order_id, timeout_ms, n);
}

/* vendd's MIDTRANS_TIMEOUT_MS as the harness gives it (10000 when not given). */
static long midtrans_timeout_ms(const struct harness *h)
{
    static const char name[] = "MIDTRANS_TIMEOUT_MS=";

    for (size_t i = 0; i < h->nextra_env; i++) {
        if (strncmp(h->extra_env[i], name, sizeof(name) - 1) == 0)
            return strtol(h->extra_env[i] + sizeof(name) - 1, NULL, 10);
    }
    return 10000;
}

long harness_order_customer(struct harness *h, const char *items_json, const char *method, char *id,
                            size_t id_size, struct harness_reply *r)
{
    struct harness_reply own;
    struct harness_reply *rr = r != NULL ? r : &own;
    char body[1024];
    const char *got;
    long st;

    snprintf(body, sizeof(body), "{\"machine_id\":\"VM01\",\"items\":%s,\"payment_method\":\"%s\"}",
             items_json, method);
    /* Midtrans may take up to MIDTRANS_TIMEOUT_MS (at most 60 s) before vendd answers. */
    st = harness_call_wake(h, "POST", "/api/orders", body, rr,
                           (int)midtrans_timeout_ms(h) + HARNESS_PATIENCE_MS);
    if (id != NULL && id_size > 0) {
        id[0] = '\0';
        got = st == 201 ? harness_reply_str(rr, "order_id") : NULL;
        if (got != NULL && strlen(got) < id_size)
            memcpy(id, got, strlen(got) + 1);
    }
    if (rr == &own)
        harness_reply_free(&own);
    return st;
}

void harness_midtrans_sign(const char *order_id, const char *status_code, const char *gross,
                           const char *key, char out[129])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    out[0] = '\0';
    if (ctx == NULL)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, order_id, strlen(order_id)) == 1 &&
        EVP_DigestUpdate(ctx, status_code, strlen(status_code)) == 1 &&
        EVP_DigestUpdate(ctx, gross, strlen(gross)) == 1 &&
        EVP_DigestUpdate(ctx, key, strlen(key)) == 1 && EVP_DigestFinal_ex(ctx, md, &n) == 1 &&
        n == 64) {
        for (unsigned int i = 0; i < n; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 0xf];
        }
        out[128] = '\0';
    }
    EVP_MD_CTX_free(ctx);
}

int harness_notification(const char *order_id, const char *status, const char *gross,
                         const char *key, char *out, size_t size)
{
    const char *code = "202";
    char sig[129], sigfield[160] = "";
    int n;

    if (strcmp(status, "settlement") == 0 || strcmp(status, "capture") == 0)
        code = "200";
    else if (strcmp(status, "pending") == 0)
        code = "201";
    if (key != NULL) {
        harness_midtrans_sign(order_id, code, gross, key, sig);
        snprintf(sigfield, sizeof(sigfield), "\"signature_key\":\"%s\",", sig);
    }
    n = snprintf(out, size,
                 "{\"transaction_time\":\"2025-11-04 17:30:00\",\"transaction_status\":\"%s\","
                 "\"transaction_id\":\"it-%s\",\"status_message\":\"midtrans payment "
                 "notification\",\"status_code\":\"%s\",%s\"payment_type\":\"qris\","
                 "\"order_id\":\"%s\",\"merchant_id\":\"G000000001\",\"gross_amount\":\"%s\","
                 "\"currency\":\"IDR\",\"fraud_status\":\"accept\"}",
                 status, order_id, code, sigfield, order_id, gross);
    if (n < 0 || (size_t)n >= size)
        return fail("notification for '%s' does not fit in %zu bytes", order_id, size);
    return 0;
}

long harness_notify(struct harness *h, const char *order_id, const char *status, const char *gross,
                    const char *key, struct harness_reply *r)
{
    char body[1024];

    if (harness_notification(order_id, status, gross, key, body, sizeof(body)) < 0)
        return -1;
    return harness_call(h, "POST", "/api/payments/webhook", body, r);
}

/* ---- the usual fixture ---------------------------------------------------------------- */

static struct harness_fixture *fixture_new(const char *const *extra_env,
                                           const char *const *fake_args, bool midtrans,
                                           const struct harness_slot *slots,
                                           const char *machine_client_id)
{
    struct harness_fixture *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        fail("out of memory");
        return NULL;
    }
    if (harness_prepare(&f->h, extra_env) < 0) {
        free(f);
        return NULL;
    }
    if ((midtrans && harness_fake_start(&f->h, fake_args) < 0) || harness_vendd_start(&f->h) < 0)
        goto undo;
    for (size_t i = 0; slots != NULL && slots[i].slot != 0; i++) {
        if (harness_put_slot(&f->h, slots[i].slot, slots[i].stock, slots[i].motor_ms) < 0)
            goto undo;
    }
    if (machine_client_id != NULL &&
        harness_mqtt_open(&f->machine, f->h.broker.port, machine_client_id, "vm/VM01/command", NULL,
                          NULL) < 0)
        goto undo;
    if (midtrans && machine_client_id != NULL && harness_machine_online(&f->h, &f->machine) < 0)
        goto undo_machine;
    return f;
undo_machine:
    harness_mqtt_close(&f->machine);
undo:
    harness_stop(&f->h);
    free(f);
    return NULL;
}

struct harness_fixture *harness_fixture_new(const char *const *extra_env,
                                            const struct harness_slot *slots,
                                            const char *machine_client_id)
{
    return fixture_new(extra_env, NULL, false, slots, machine_client_id);
}

struct harness_fixture *harness_fixture_new_midtrans(const char *const *extra_env,
                                                     const char *const *fake_args,
                                                     const struct harness_slot *slots,
                                                     const char *machine_client_id)
{
    return fixture_new(extra_env, fake_args, true, slots, machine_client_id);
}

void harness_fixture_free(struct harness_fixture *f)
{
    if (f == NULL)
        return;
    if (f->machine.m != NULL)
        harness_mqtt_close(&f->machine);
    harness_stop(&f->h);
    free(f);
}
