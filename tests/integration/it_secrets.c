/*
 * it_secrets.c - no secret of vendd's ever leaves it: vendd runs with distinctive secrets
 * (API_TOKEN, MQTT_PASSWORD, MIDTRANS_SERVER_KEY, and the session key derived from the
 * token) through a representative flow: --check and --check --verbose (the configuration
 * dump), a bad configuration, sign-in and out, the operator API with good and bad tokens, a
 * customer order paid through the fake Midtrans and dispensed, the webhook with good, bad and
 * garbage notifications, errors of every kind, the pages, /health and /metrics, a restart.
 *
 * Then every response (status line, headers, body), every line vendd logged, every MQTT
 * message vendd published and every row of its database is searched for each secret: as it
 * is, its last 12 characters (a truncated print), its base64, the base64 of "secret:" (HTTP
 * Basic, as Midtrans's key is sent) and, for the session key, its hex. Any hit fails.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"

#define TOKEN     "it-secret-api-token-Q7vX2kP9mW4z"
#define MQTT_PASS "it-secret-mqtt-pass-J3nB8cR5tY1h"
#define MQTT_USER "it-secret-user"
#define WAIT_MS   10000

struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        assert_non_null(t->p);
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(struct text *t, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    text_add(t, buf, n < 0 ? 0 : (size_t)n >= sizeof(buf) ? sizeof(buf) - 1 : (size_t)n);
}

struct sec {
    struct harness_fixture *f;
    struct harness_mqtt spy; /* everything vendd publishes */
    struct text out;         /* what vendd said: responses, --check, its log, its messages */
    char cookie[200], csrf[80];
};

/* ---- HTTP with the whole answer kept ----------------------------------------------------- */

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    text_add(arg, p, size * n);
    return size * n;
}

/*
 * method path with body (may be NULL) and up to two extra header lines (NULL: none); the
 * status line, the headers and the body go to s->out. Returns the HTTP status.
 */
static long call(struct sec *s, const char *method, const char *path, const char *body,
                 const char *h1, const char *h2)
{
    struct text ans = {0};
    struct curl_slist *hdrs = NULL;
    char url[256];
    long status = 0;
    CURL *c = curl_easy_init();

    assert_non_null(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)s->f->h.http_port, path);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (h1 != NULL)
        hdrs = curl_slist_append(hdrs, h1);
    if (h2 != NULL)
        hdrs = curl_slist_append(hdrs, h2);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &ans);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &ans);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    text_printf(&s->out, "\n=== %s %s -> %ld\n", method, path, status);
    if (ans.p != NULL)
        text_add(&s->out, ans.p, ans.len);
    /* The sign-in's cookie and CSRF token, for the calls after it. */
    if (ans.p != NULL && strstr(ans.p, "__Host-vendd_session=v1.") != NULL) {
        const char *v = strstr(ans.p, "__Host-vendd_session=");

        snprintf(s->cookie, sizeof(s->cookie), "Cookie: %.*s", (int)strcspn(v, ";\r\n"), v);
    }
    if (ans.p != NULL && strstr(ans.p, "\"csrf\":\"") != NULL) {
        const char *v = strstr(ans.p, "\"csrf\":\"") + 8;

        if (strcspn(v, "\"") == 64)
            snprintf(s->csrf, sizeof(s->csrf), "X-CSRF-Token: %.64s", v);
    }
    free(ans.p);
    return status;
}

static const char bearer[] = "Authorization: Bearer " TOKEN;

/* ---- vendd --check ------------------------------------------------------------------------ */

/* vendd with args and env (plus PATH); its stdout and stderr to s->out. Its exit status. */
static int vendd_run(struct sec *s, const char *arg, const char *const *env)
{
    int fds[2], status;
    char buf[4096];
    ssize_t n;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        if (chdir(s->f->h.dir) < 0)
            _exit(126);
        execle(s->f->h.vendd, "vendd", arg,
               arg != NULL && strcmp(arg, "--check") == 0 ? "-v" : NULL, (char *)NULL, env);
        _exit(127);
    }
    close(fds[1]);
    text_printf(&s->out, "\n=== vendd %s\n", arg);
    while ((n = read(fds[0], buf, sizeof(buf))) > 0)
        text_add(&s->out, buf, (size_t)n);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the search --------------------------------------------------------------------------- */

static void b64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* The first hit, named into why (secret, form, where and the text around it). */
struct hit {
    bool found;
    char why[400];
};

static void absent(struct hit *h, const char *haystack, const char *where, const char *name,
                   const char *form, const char *needle)
{
    const char *p = h->found ? NULL : strstr(haystack, needle);

    if (p == NULL)
        return;
    h->found = true;
    snprintf(h->why, sizeof(h->why), "%s (%s) found in %s: ...%.120s...", name, form, where,
             p - haystack > 60 ? p - 60 : haystack);
}

static void secret_absent(struct hit *h, const char *haystack, const char *where, const char *name,
                          const char *secret)
{
    char enc[256], with_colon[128];
    size_t n = strlen(secret);

    absent(h, haystack, where, name, "as is", secret);
    absent(h, haystack, where, name, "its last 12 characters", secret + n - 12);
    b64((const unsigned char *)secret, n, enc);
    absent(h, haystack, where, name, "base64", enc);
    snprintf(with_colon, sizeof(with_colon), "%s:", secret);
    b64((const unsigned char *)with_colon, n + 1, enc);
    absent(h, haystack, where, name, "base64 of 'secret:'", enc);
}

/* The session key (daemon/src/core/session.c): HMAC-SHA256(token, label), in hex. */
static void session_key_hex(char hex[65], unsigned char key[32])
{
    static const char label[] = "vendd session key v1";
    unsigned int klen = 32;

    HMAC(EVP_sha256(), TOKEN, (int)strlen(TOKEN), (const unsigned char *)label, sizeof(label) - 1,
         key, &klen);
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
}

static struct hit search_text(const char *haystack, const char *where)
{
    struct hit h = {0};
    unsigned char key[32];
    char hex[65], enc[64];

    secret_absent(&h, haystack, where, "API_TOKEN", TOKEN);
    secret_absent(&h, haystack, where, "MQTT_PASSWORD", MQTT_PASS);
    secret_absent(&h, haystack, where, "MIDTRANS_SERVER_KEY", HARNESS_FAKE_KEY);
    session_key_hex(hex, key);
    absent(&h, haystack, where, "the session key", "hex", hex);
    b64(key, sizeof(key), enc);
    absent(&h, haystack, where, "the session key", "base64", enc);
    return h;
}

static void search(const char *haystack, const char *where)
{
    struct hit h = search_text(haystack, where);

    if (h.found)
        fail_msg("%s", h.why);
}

/* ---- setup -------------------------------------------------------------------------------- */

static int setup(void **state)
{
    static const char *const env[] = {"MQTT_USERNAME=" MQTT_USER, "MQTT_PASSWORD=" MQTT_PASS, NULL};
    static const struct harness_slot slots[] = {{1, 5, 300}, {0, 0, 0}};
    struct sec *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return -1;
    /* Set up in development mode, then restarted with the token (harness_put_slot has none). */
    s->f = harness_fixture_new_midtrans(env, NULL, slots, "it-secrets-vm01");
    if (s->f == NULL)
        goto fail;
    if (harness_vendd_term(&s->f->h) != 0 || harness_env_set(&s->f->h, "API_TOKEN=" TOKEN) < 0)
        goto fail;
    snprintf(s->f->h.bearer, sizeof(s->f->h.bearer), "%s", TOKEN);
    if (harness_vendd_start(&s->f->h) < 0)
        goto fail;
    if (harness_mqtt_open(&s->spy, s->f->h.broker.port, "it-secrets-spy", "#", NULL, NULL) < 0)
        goto fail;
    *state = s;
    return 0;
fail:
    harness_fixture_free(s->f);
    free(s);
    return -1;
}

static int teardown(void **state)
{
    struct sec *s = *state;
    const char *keep = getenv("IT_SECRETS_TRANSCRIPT");
    FILE *f = s != NULL && keep != NULL && s->out.p != NULL ? fopen(keep, "w") : NULL;

    if (s == NULL)
        return 0; /* the group's setup failed and said why; cmocka still calls this */
    /* What was searched, for a person to read (IT_SECRETS_TRANSCRIPT=FILE). */
    if (f != NULL) {
        fwrite(s->out.p, 1, s->out.len, f);
        fclose(f);
    }

    harness_mqtt_close(&s->spy);
    harness_fixture_free(s->f);
    free(s->out.p);
    free(s);
    return 0;
}

/* The search finds each form it looks for: it can fail. */
static void the_search_finds_every_form(void **state)
{
    char basic[128], hex[65], text[256];
    unsigned char key[32];

    (void)state;
    assert_false(search_text("nothing to see", "x").found);
    assert_true(search_text("Bearer " TOKEN "\n", "x").found);
    assert_true(search_text("...pass-J3nB8cR5tY1h", "x").found); /* a truncated print */
    b64((const unsigned char *)HARNESS_FAKE_KEY ":", strlen(HARNESS_FAKE_KEY) + 1, basic);
    snprintf(text, sizeof(text), "Authorization: Basic %s", basic);
    assert_true(search_text(text, "x").found);
    session_key_hex(hex, key);
    assert_true(search_text(hex, "x").found);
}

/* ---- the flow and the search ------------------------------------------------------------- */

static void check_and_dump_say_no_secret(void **state)
{
    struct sec *s = *state;
    char url[64], db[HARNESS_PATH_MAX + 32];
    const char *good[] = {"PATH=/usr/bin:/bin",
                          db,
                          url,
                          "API_TOKEN=" TOKEN,
                          "MQTT_USERNAME=" MQTT_USER,
                          "MQTT_PASSWORD=" MQTT_PASS,
                          "MIDTRANS_SERVER_KEY=" HARNESS_FAKE_KEY,
                          NULL};
    /* Bad: a password without a user, a token too short, a key with a space. */
    const char *bad[] = {"PATH=/usr/bin:/bin", "MQTT_PASSWORD=" MQTT_PASS,
                         "API_TOKEN=" TOKEN " \x01", "MIDTRANS_SERVER_KEY=" HARNESS_FAKE_KEY " x",
                         NULL};

    snprintf(url, sizeof(url), "MQTT_BROKER_URL=mqtt://127.0.0.1:%u",
             (unsigned)s->f->h.broker.port);
    snprintf(db, sizeof(db), "DATABASE_URL=%s", s->f->h.db_url);
    assert_int_equal(vendd_run(s, "--check", good), 0);
    assert_int_equal(vendd_run(s, "--check", bad), 78);
    assert_int_equal(vendd_run(s, "--bogus", good), 64);
    search(s->out.p, "vendd --check");
}

static void the_flow_says_no_secret(void **state)
{
    struct sec *s = *state;
    struct harness *h = &s->f->h;
    char id[64], path[160], body[1024], sig[129];
    struct harness_reply r;

    /* Public, and errors before any sign-in. */
    assert_int_equal(call(s, "GET", "/health", NULL, NULL, NULL), 200);
    assert_int_equal(call(s, "GET", "/metrics", NULL, NULL, NULL), 401);
    assert_int_equal(call(s, "GET", "/api/machines", NULL, "Authorization: Bearer wrong", NULL),
                     401);
    assert_int_equal(
        call(s, "GET", "/api/machines", NULL, "Authorization: Basic dXNlcjpwdw==", NULL), 401);
    assert_int_equal(call(s, "GET", "/api/session", NULL, NULL, NULL), 200);
    assert_int_equal(call(s, "POST", "/api/session", "{\"token\":\"wrong\"}", NULL, NULL), 401);
    assert_int_equal(call(s, "POST", "/api/session", "{\"token\":" TOKEN "}", NULL, NULL), 400);
    /* Sign in, use the cookie, sign out. */
    assert_int_equal(call(s, "POST", "/api/session", "{\"token\":\"" TOKEN "\"}", NULL, NULL), 200);
    assert_true(s->cookie[0] != '\0' && s->csrf[0] != '\0');
    assert_int_equal(call(s, "GET", "/api/session", NULL, s->cookie, NULL), 200);
    assert_int_equal(call(s, "GET", "/api/machines", NULL, s->cookie, NULL), 200);
    assert_int_equal(call(s, "PUT", "/api/machines/VM01/slots/2",
                          "{\"product_name\":\"Tea\",\"price\":5000,\"capacity\":5}", s->cookie,
                          s->csrf),
                     201);
    assert_int_equal(call(s, "DELETE", "/api/session", NULL, s->cookie, s->csrf), 204);
    /* The operator API with the token. */
    assert_int_equal(call(s, "GET", "/metrics", NULL, bearer, NULL), 200);
    assert_int_equal(call(s, "GET", "/api/machines/VM01", NULL, bearer, NULL), 200);
    assert_int_equal(call(s, "GET", "/api/machines/NOPE", NULL, bearer, NULL), 404);
    assert_int_equal(call(s, "POST", "/api/machines", "{\"id\":", bearer, NULL), 400);
    assert_int_equal(
        call(s, "PUT", "/api/machines/VM01/config",
             "{\"motorTimeout\":4000,\"dropSensorDelay\":100,\"telemetryInterval\":60000}", bearer,
             NULL),
        200);
    assert_int_equal(call(s, "GET", "/api/orders?limit=x", NULL, bearer, NULL), 422);
    assert_int_equal(call(s, "PATCH", "/api/orders", NULL, bearer, NULL), 405);
    assert_int_equal(call(s, "GET", "/api/nothing/here", NULL, bearer, NULL), 404);
    assert_int_equal(call(s, "GET", "/", NULL, NULL, NULL), 200);
    assert_int_equal(call(s, "GET", "/buy/VM01", NULL, NULL, NULL), 200);
    assert_int_equal(call(s, "GET", "/api/buy/VM01", NULL, NULL, NULL), 200);
    assert_int_equal(call(s, "GET", "/api/openapi.json", NULL, NULL, NULL), 200);

    /* A customer's order: charged at the fake with the server key, paid, dispensed. */
    h->bearer[0] = '\0';
    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, sizeof(id), &r),
        201);
    text_printf(&s->out, "\n=== customer order\n%s", r.body != NULL ? r.body : "");
    assert_non_null(harness_reply_str(&r, "status_key"));
    snprintf(path, sizeof(path), "/api/buy/orders/%s?key=%s", id,
             harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    snprintf(h->bearer, sizeof(h->bearer), "%s", TOKEN);
    assert_int_equal(call(s, "GET", path, NULL, NULL, NULL), 200);
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(h, "POST", path, NULL, NULL), 200);
    assert_true(harness_mqtt_wait(&s->f->machine, 1, WAIT_MS) >= 1);
    {
        char got[64];
        int slot = 0, unit = 0;

        assert_int_equal(harness_command_parse(harness_mqtt_payload(&s->f->machine, 0), got,
                                               sizeof(got), &slot, &unit),
                         0);
        assert_int_equal(harness_answer(&s->f->machine, got, slot, unit), 0);
    }
    snprintf(path, sizeof(path), "SELECT status FROM orders WHERE id = '%s'", id);
    assert_int_equal(harness_sql_wait(h, path, "COMPLETED", WAIT_MS), 0);
    snprintf(path, sizeof(path), "/api/orders/%s", id);
    assert_int_equal(call(s, "GET", path, NULL, bearer, NULL), 200);

    /* The webhook: a replay of the good one, a bad signature, garbage. */
    harness_midtrans_sign(id, "200", "8000.00", HARNESS_FAKE_KEY, sig);
    snprintf(body, sizeof(body),
             "{\"order_id\":\"%s\",\"status_code\":\"200\",\"gross_amount\":\"8000.00\","
             "\"transaction_status\":\"settlement\",\"fraud_status\":\"accept\","
             "\"payment_type\":\"qris\",\"signature_key\":\"%s\"}",
             id, sig);
    assert_int_equal(call(s, "POST", "/api/payments/webhook", body, NULL, NULL), 200);
    memcpy(strstr(body, sig), "00", 2);
    assert_true(call(s, "POST", "/api/payments/webhook", body, NULL, NULL) >= 400);
    assert_true(call(s, "POST", "/api/payments/webhook", "{\"order_id\":", NULL, NULL) >= 400);
    assert_true(call(s, "POST", "/api/payments/webhook", "{}", NULL, NULL) >= 400);

    /* A refund asked of the fake (Basic auth with the key), an order cancelled. */
    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, sizeof(id), NULL),
        201);
    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(call(s, "POST", path, NULL, bearer, NULL), 200);
    assert_int_equal(call(s, "GET", "/metrics", NULL, bearer, NULL), 200);
    assert_int_equal(call(s, "GET", "/api/alerts", NULL, bearer, NULL), 200);

    /* A restart, then vendd stopped, so its whole log is written. */
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(call(s, "GET", "/metrics", NULL, bearer, NULL), 200);
    search(s->out.p, "an HTTP answer");
}

static void logs_messages_and_database_hold_no_secret(void **state)
{
    struct sec *s = *state;
    struct harness *h = &s->f->h;
    struct text log = {0}, msgs = {0};
    char buf[4096], *dump;
    size_t n;
    FILE *f;

    assert_int_equal(harness_vendd_term(h), 0);
    f = fopen(h->log_path, "r");
    assert_non_null(f);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        text_add(&log, buf, n);
    fclose(f);
    assert_true(log.len > 1000); /* it did log the flow */
    search(log.p, "vendd's log");

    n = harness_mqtt_wait(&s->spy, 1, WAIT_MS);
    assert_true(n >= 1);
    pthread_mutex_lock(&s->spy.mu);
    for (size_t i = 0; i < n && i < HARNESS_MSG_MAX; i++) {
        text_printf(&msgs, "%s ", s->spy.topics[i] != NULL ? s->spy.topics[i] : "");
        text_printf(&msgs, "%s\n", s->spy.payloads[i] != NULL ? s->spy.payloads[i] : "");
    }
    pthread_mutex_unlock(&s->spy.mu);
    assert_non_null(strstr(msgs.p, "vm/VM01/command")); /* vendd's own messages are in it */
    search(msgs.p, "an MQTT message");

    dump = harness_db_dump(h);
    assert_non_null(dump);
    search(dump, "vendd's database");
    free(dump);
    free(log.p);
    free(msgs.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_search_finds_every_form),
        cmocka_unit_test(check_and_dump_say_no_secret),
        cmocka_unit_test(the_flow_says_no_secret),
        cmocka_unit_test(logs_messages_and_database_hold_no_secret),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, setup, teardown);
}
