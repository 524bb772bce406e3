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
#include <sqlite3.h>

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

/* The child's environment: a fixed set, the sanitizer options, the caller's extras. */
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
    snprintf(vars[n++], sizeof(vars[0]), "DATABASE_URL=sqlite:%s", h->db_path);
    snprintf(vars[n++], sizeof(vars[0]), "MQTT_BROKER_URL=mqtt://127.0.0.1:%u",
             (unsigned)h->broker.port);
    snprintf(vars[n++], sizeof(vars[0]), "MACHINE_ID=VM01");
    for (size_t i = 0; i < h->nextra_env && n < max; i++)
        snprintf(vars[n++], sizeof(vars[0]), "%s", h->extra_env[i]);
    for (size_t i = 0; i < n; i++)
        envp[i] = vars[i];
    envp[n] = NULL;
    return n;
}

static int spawn_vendd(struct harness *h)
{
    char vars[HARNESS_ENV_MAX + 12][HARNESS_PATH_MAX + 32];
    char *envp[HARNESS_ENV_MAX + 13];
    pid_t parent = getpid();
    int fd;

    build_env(h, vars, HARNESS_ENV_MAX + 12, envp);
    fd = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail("cannot open '%s': %s", h->log_path, strerror(errno));
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

static int vendd_start(struct harness *h, bool want_mqtt)
{
    int subs = harness_log_count(h, "Subscribed to vm/+/status");
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
            harness_log_count(h, "Subscribed to vm/+/status") > subs) {
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

int harness_vendd_start(struct harness *h)
{
    return vendd_start(h, true);
}

int harness_vendd_start_nobroker(struct harness *h)
{
    return vendd_start(h, false);
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

int harness_start(struct harness *h, const char *const *extra_env)
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
    if (test_broker_start(&h->broker) < 0 || free_port(&h->http_port) < 0 ||
        harness_vendd_start(h) < 0) {
        harness_stop(h);
        return -1;
    }
    return 0;
}

void harness_stop(struct harness *h)
{
    DIR *d;
    struct dirent *e;

    harness_vendd_kill(h);
    test_broker_stop(&h->broker);
    if (h->dir[0] == '\0')
        return;
    if (getenv("HARNESS_KEEP") != NULL) {
        fprintf(stderr, "harness: kept '%s'\n", h->dir);
        h->dir[0] = '\0';
        return;
    }
    d = opendir(h->dir);
    if (d != NULL) {
        /* Flat: vendd.db, its -wal/-shm, vendd.log. */
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(h->dir);
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

long harness_http(struct harness *h, const char *method, const char *path, const char *content_type,
                  const char *body, size_t len, struct harness_reply *r)
{
    char url[512], ctype[128];
    struct curl_slist *hdrs = NULL;
    struct buf b = {0};
    long status = -1;
    CURL *c;

    if (r != NULL)
        memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)h->http_port, path);
    snprintf(ctype, sizeof(ctype), "Content-Type: %s",
             content_type != NULL ? content_type : "application/json");
    c = curl_easy_init();
    if (c == NULL)
        return fail("curl_easy_init failed");
    hdrs = curl_slist_append(hdrs, ctype);
    hdrs = curl_slist_append(hdrs, "Expect:");
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
        j = json_object_get(j, key);
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

/* ---- SQLite --------------------------------------------------------------------------- */

static int db_open_ro(const struct harness *h, sqlite3 **db)
{
    if (sqlite3_open_v2(h->db_path, db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fail("cannot open '%s': %s", h->db_path, sqlite3_errmsg(*db));
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 2000);
    return 0;
}

int harness_sql_text(const struct harness *h, const char *sql, char *buf, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    const unsigned char *t;
    int rc = -1, step;

    buf[0] = '\0';
    if (db_open_ro(h, &db) < 0)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail("SQL '%s': %s", sql, sqlite3_errmsg(db));
        goto out;
    }
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        t = sqlite3_column_text(st, 0);
        snprintf(buf, size, "%s", t != NULL ? (const char *)t : "");
        rc = 1;
    } else if (step == SQLITE_DONE) {
        rc = 0;
    } else {
        fail("SQL '%s': %s", sql, sqlite3_errmsg(db));
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

int harness_sql_int(const struct harness *h, const char *sql, long long *out)
{
    char buf[32], *end;
    int rc = harness_sql_text(h, sql, buf, sizeof(buf));

    *out = 0;
    if (rc != 1)
        return rc;
    errno = 0;
    *out = strtoll(buf, &end, 10);
    if (errno != 0 || end == buf || *end != '\0')
        return fail("SQL '%s': '%s' is not an integer", sql, buf);
    return 1;
}

int harness_sql_wait(const struct harness *h, const char *sql, const char *want, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    char buf[256];

    for (;;) {
        if (harness_sql_text(h, sql, buf, sizeof(buf)) >= 0 && strcmp(buf, want) == 0)
            return 0;
        if (harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(10);
    }
    return fail("SQL '%s' is '%s' after %d ms, wanted '%s'", sql, buf, timeout_ms, want);
}

static int append(struct buf *b, const char *s)
{
    return on_body((char *)s, 1, strlen(s), b) == strlen(s) ? 0 : -1;
}

char *harness_db_dump(const struct harness *h)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *tables = NULL, *rows = NULL;
    struct buf b = {0};
    char sql[256];
    int ok = 0;

    if (db_open_ro(h, &db) < 0)
        return NULL;
    /* One read transaction, so the dump is one snapshot. */
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_master WHERE type = 'table' "
                           "AND name NOT LIKE 'sqlite_%' ORDER BY name",
                           -1, &tables, NULL) != SQLITE_OK)
        goto out;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);

        snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\" ORDER BY rowid", name);
        if (append(&b, "== ") < 0 || append(&b, name) < 0 || append(&b, "\n") < 0 ||
            sqlite3_prepare_v2(db, sql, -1, &rows, NULL) != SQLITE_OK)
            goto out;
        while (sqlite3_step(rows) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(rows); i++) {
                const char *t = (const char *)sqlite3_column_text(rows, i);

                if (append(&b, t != NULL ? t : "NULL") < 0 || append(&b, "|") < 0)
                    goto out;
            }
            if (append(&b, "\n") < 0)
                goto out;
        }
        sqlite3_finalize(rows);
        rows = NULL;
    }
    ok = 1;
out:
    if (!ok) {
        fail("cannot dump '%s': %s", h->db_path, sqlite3_errmsg(db));
        free(b.p);
        b.p = NULL;
    }
    sqlite3_finalize(rows);
    sqlite3_finalize(tables);
    sqlite3_close(db);
    return b.p;
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

    (void)m, (void)props;
    if (len > HARNESS_PAYLOAD_MAX)
        len = HARNESS_PAYLOAD_MAX;
    pthread_mutex_lock(&c->mu);
    if (c->n < HARNESS_MSG_MAX) {
        c->topics[c->n] = dup_bytes(msg->topic, strlen(msg->topic));
        c->payloads[c->n] = dup_bytes(msg->payload, len);
    }
    c->n++;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->on_message != NULL)
        c->on_message(c, msg->topic, msg->payload, len, c->arg);
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

/* ---- the usual fixture ---------------------------------------------------------------- */

struct harness_fixture *harness_fixture_new(const char *const *extra_env,
                                            const struct harness_slot *slots,
                                            const char *machine_client_id)
{
    struct harness_fixture *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        fail("out of memory");
        return NULL;
    }
    if (harness_start(&f->h, extra_env) < 0) {
        free(f);
        return NULL;
    }
    for (size_t i = 0; slots != NULL && slots[i].slot != 0; i++) {
        if (harness_put_slot(&f->h, slots[i].slot, slots[i].stock, slots[i].motor_ms) < 0)
            goto undo;
    }
    if (machine_client_id != NULL &&
        harness_mqtt_open(&f->machine, f->h.broker.port, machine_client_id, "vm/VM01/command", NULL,
                          NULL) < 0)
        goto undo;
    return f;
undo:
    harness_stop(&f->h);
    free(f);
    return NULL;
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
