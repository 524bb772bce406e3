/*
 * it_vendctl.c - the vendctl binary ($VENDCTL), black-box: run as an operator would run it,
 * against the real vendd and mosquitto of the integration harness (tests/integration/
 * harness.h), its exit status, stdout and stderr checked; its --json output compared with
 * what the API answers the harness for the same question.
 *
 * Three groups: vendd in development mode (loopback, no token); vendd with API_TOKEN (where
 * the token comes from); no vendd at all, a fake server on loopback playing the event stream
 * and broken answers (reconnect with Last-Event-ID, bounds, a hanging server).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define RUN_TIMEOUT_MS 30000
#define OUT_MAX        (4u << 20)
#define TOKEN          "it-vendctl-token-0123456789"

extern char **environ;

/* ---- running vendctl -------------------------------------------------------------------- */

struct run {
    pid_t pid;
    char out_path[64], err_path[64];
    int status; /* exit status; -1 if it died of a signal or was killed */
    bool killed;
    char *out, *err; /* what it printed, NUL-terminated */
};

/* Start vendctl with argv (argv[0] ignored) and the environment PATH, the sanitizer
 * options, VENDCTL_URL=url (if url) and env (NULL-terminated "K=V", or NULL). */
static void run_start(struct run *r, const char *url, const char *const *env,
                      const char *const *argv)
{
    static const char *const pass[] = {"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                                       "TMPDIR"};
    const char *bin = getenv("VENDCTL");
    char vars[16][512], *envp[17], *args[40];
    size_t n = 0, na = 0;
    int fo, fe;

    memset(r, 0, sizeof(*r));
    if (bin == NULL || access(bin, X_OK) != 0)
        fail_msg("VENDCTL must name the vendctl binary (got '%s')", bin ? bin : "");
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        if (getenv(pass[i]) != NULL)
            snprintf(vars[n++], sizeof(vars[0]), "%s=%s", pass[i], getenv(pass[i]));
    }
    if (url != NULL)
        snprintf(vars[n++], sizeof(vars[0]), "VENDCTL_URL=%s", url);
    for (size_t i = 0; env != NULL && env[i] != NULL && n < 16; i++)
        snprintf(vars[n++], sizeof(vars[0]), "%s", env[i]);
    for (size_t i = 0; i < n; i++)
        envp[i] = vars[i];
    envp[n] = NULL;
    args[na++] = (char *)"vendctl";
    for (size_t i = 1; argv[i] != NULL && na < 39; i++)
        args[na++] = (char *)argv[i];
    args[na] = NULL;
    snprintf(r->out_path, sizeof(r->out_path), "/tmp/it-vendctl-out-XXXXXX");
    snprintf(r->err_path, sizeof(r->err_path), "/tmp/it-vendctl-err-XXXXXX");
    fo = mkstemp(r->out_path);
    fe = mkstemp(r->err_path);
    assert_true(fo >= 0 && fe >= 0);
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        execve(bin, args, envp);
        _exit(127);
    }
    close(fo);
    close(fe);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    size_t n = 0, size = 0;
    char *buf;

    if (f != NULL && fstat(fileno(f), &st) == 0)
        size = (size_t)st.st_size < OUT_MAX ? (size_t)st.st_size : OUT_MAX;
    buf = calloc(1, size + 1);
    assert_non_null(buf);
    if (f != NULL) {
        n = fread(buf, 1, size, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

/* Wait for it (killed after timeout_ms) and read what it printed. */
static void run_wait(struct run *r, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    int st = 0;
    pid_t got;

    for (;;) {
        got = waitpid(r->pid, &st, WNOHANG);
        if (got == r->pid)
            break;
        if (harness_now_ms() >= deadline) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            r->killed = true;
            break;
        }
        harness_sleep_ms(5);
    }
    r->status = !r->killed && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r->out = slurp(r->out_path);
    r->err = slurp(r->err_path);
    unlink(r->out_path);
    unlink(r->err_path);
}

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

static void run(struct run *r, const char *url, const char *const *env, const char *const *argv)
{
    run_start(r, url, env, argv);
    run_wait(r, RUN_TIMEOUT_MS);
}

/* The exit status is want, and stderr holds needle (NULL: anything). */
static void expect(const struct run *r, int want, const char *needle, const char *what)
{
    if (r->status != want || (needle != NULL && strstr(r->err, needle) == NULL))
        fail_msg("%s: exit %d (want %d), stderr wanted '%s'\n--- stdout:\n%s--- stderr:\n%s", what,
                 r->status, want, needle ? needle : "", r->out, r->err);
}

/* The fixture's URL. */
static const char *url_of(struct harness *h, char *buf, size_t size)
{
    snprintf(buf, size, "http://127.0.0.1:%u", (unsigned)h->http_port);
    return buf;
}

#define ARGS(...) ((const char *const[]){"vendctl", __VA_ARGS__, NULL})

/* vendctl in the fixture's vendd, no extra environment. */
static void ctl(struct harness *h, struct run *r, const char *const *argv)
{
    char url[64];

    run(r, url_of(h, url, sizeof(url)), NULL, argv);
}

/* vendctl --json ... must print (one document) exactly what GET path answers. */
static void expect_json_equal(struct harness *h, const struct run *r, const char *path)
{
    struct harness_reply hr;
    json_error_t err;
    json_t *got = json_loads(r->out, 0, &err);

    assert_int_equal(harness_call(h, "GET", path, NULL, &hr), 200);
    if (got == NULL)
        fail_msg("vendctl's --json output does not parse (%s): %s", err.text, r->out);
    if (!json_equal(got, hr.json))
        fail_msg("vendctl --json differs from GET %s:\n got  %s\n want %s", path, r->out, hr.body);
    json_decref(got);
    harness_reply_free(&hr);
}

/* A line of text that starts with prefix, or NULL. */
static const char *line_starting(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);

    for (const char *p = text; p != NULL && *p != '\0';
         p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, prefix, n) == 0)
            return p;
    }
    return NULL;
}

/* ---- group 1: development mode ---------------------------------------------------------- */

static int setup_dev(void **state)
{
    static const struct harness_slot slots[] = {{1, 20, 1500}, {0, 0, 0}};

    *state = harness_fixture_new(NULL, slots, "VM01");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

/* Usage errors: status 2, a message naming the problem, and nothing sent (the URL is a port
 * where nothing listens: a request would make it 5). */
static void test_usage(void **state)
{
    const struct {
        const char *const *argv;
        const char *needle;
    } cases[] = {
        {(const char *const[]){"vendctl", NULL}, "no command given"},
        {ARGS("frobnicate"), "unknown command 'frobnicate'"},
        {ARGS("machines", "frob"), "unknown subcommand 'frob' of 'machines'"},
        {ARGS("slot"), "'slot' needs a subcommand: set"},
        {ARGS("machines", "show"), "missing ID"},
        {ARGS("machines", "show", "VM01", "VM02"), "too many arguments, from 'VM02' on"},
        {ARGS("machines", "show", "a b"), "ID 'a b' is not a machine id: [A-Za-z0-9_-]{1,32}"},
        {ARGS("orders", "show", "bad/id"), "ORDER 'bad/id' is not an order id"},
        {ARGS("restock", "VM01", "x", "1"), "N 'x' is not an integer from 1 to 255"},
        {ARGS("restock", "VM01", "1", "3x"), "COUNT '3x' is not an integer"},
        {ARGS("audit", "VM01", "256", "1"), "N '256' is not an integer from 1 to 255"},
        {ARGS("health", "--bogus"), "unknown option '--bogus'"},
        {ARGS("health", "--note", "x"), "option '--note' does not apply to 'health'"},
        {ARGS("config", "VM01", "--motor-timeout", "3000", "--telemetry-interval", "60000"),
         "missing --drop-sensor-delay MS"},
        {ARGS("config", "VM01", "--motor-timeout", "5", "--drop-sensor-delay", "0",
              "--telemetry-interval", "60000"),
         "--motor-timeout '5' is not an integer from 100 to 60000"},
        {ARGS("settle", "o1", "--dropped", "maybe"), "--dropped 'maybe' is neither yes nor no"},
        {ARGS("machines", "list", "--limit", "0"), "--limit '0' is not an integer"},
        {ARGS("machines", "list", "--page-size", "501"), "--page-size '501'"},
        {ARGS("orders", "create", "--machine", "VM01"), "missing --slot N"},
        {ARGS("slot", "set", "VM01", "1"), "nothing to set"},
        {ARGS("health", "--json", "--json"), "option '--json' given twice"},
        {ARGS("health", "--timeout"), "option '--timeout' needs SECONDS"},
        {ARGS("health", "--json=yes"), "option '--json' takes no value"},
        {ARGS("health", "--timeout", "0"), "--timeout '0'"},
        {ARGS("metrics", "--json"), "--json does not apply"},
        {ARGS("--url", "ftp://127.0.0.1/", "health"), "is not an http:// or https:// URL"},
        {ARGS("help", "frob"), "unknown command 'frob'"},
    };
    struct run r;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char what[64];

        run(&r, "http://127.0.0.1:1", NULL, cases[i].argv);
        snprintf(what, sizeof(what), "usage case %zu", i);
        expect(&r, 2, cases[i].needle, what);
        /* A bad URL is no mistake of the command's words: no usage line for it. */
        if (strstr(r.err, "usage: vendctl") == NULL && strstr(cases[i].needle, "URL") == NULL)
            fail_msg("%s: no usage line: %s", what, r.err);
        run_free(&r);
    }
    /* Help is not an error: stdout, status 0. */
    run(&r, "http://127.0.0.1:1", NULL, ARGS("help"));
    expect(&r, 0, NULL, "help");
    assert_non_null(strstr(r.out, "restock ID N COUNT [--if-version V]"));
    run_free(&r);
    run(&r, "http://127.0.0.1:1", NULL, ARGS("restock", "--help"));
    expect(&r, 0, NULL, "restock --help");
    assert_non_null(strstr(r.out, "usage: vendctl restock ID N COUNT"));
    run_free(&r);
    /* And a request to where nothing listens is 5, naming the call. */
    run(&r, "http://127.0.0.1:1", NULL, ARGS("health"));
    expect(&r, 5, "GET /health: no answer from 'http://127.0.0.1:1'", "no server");
    run_free(&r);
}

static void test_machines(void **state)
{
    struct harness_fixture *f = *state;
    struct harness_reply hr;
    const char *line, *head;
    struct run r;

    ctl(&f->h, &r, ARGS("machines", "add", "VM10", "Lobby ten", "--location", "Floor 10"));
    expect(&r, 0, NULL, "machines add");
    assert_non_null(strstr(r.out, "Lobby ten"));
    run_free(&r);
    ctl(&f->h, &r, ARGS("machines", "add", "VM11"));
    expect(&r, 0, NULL, "machines add without a name");
    run_free(&r);
    /* Again: 409 CONFLICT, status 3, vendd's message. */
    ctl(&f->h, &r, ARGS("machines", "add", "VM10"));
    expect(&r, 3, "POST /api/machines: 409 CONFLICT", "machines add twice");
    run_free(&r);

    /* The table: a header, a row per machine, columns aligned. */
    ctl(&f->h, &r, ARGS("machines"));
    expect(&r, 0, NULL, "machines");
    head = line_starting(r.out, "ID ");
    line = line_starting(r.out, "VM10 ");
    assert_non_null(head);
    assert_non_null(line);
    assert_non_null(line_starting(r.out, "VM01 "));
    assert_int_equal(strstr(head, "NAME") - head, strstr(line, "Lobby ten") - line);
    assert_int_equal(strstr(head, "LOCATION") - head, strstr(line, "Floor 10") - line);
    assert_null(strchr(r.out, '\033')); /* no colour when not a terminal */
    run_free(&r);

    ctl(&f->h, &r, ARGS("machines", "show", "VM10"));
    expect(&r, 0, NULL, "machines show");
    assert_non_null(line_starting(r.out, "location "));
    assert_non_null(strstr(r.out, "Floor 10"));
    run_free(&r);

    ctl(&f->h, &r, ARGS("machines", "show", "VM10", "--json"));
    expect(&r, 0, NULL, "machines show --json");
    expect_json_equal(&f->h, &r, "/api/machines/VM10");
    run_free(&r);

    /* A list: the walk of every page is the API's list in one page. */
    ctl(&f->h, &r, ARGS("--json", "machines", "list"));
    expect(&r, 0, NULL, "machines list --json");
    expect_json_equal(&f->h, &r, "/api/machines?limit=500");
    run_free(&r);
    ctl(&f->h, &r, ARGS("machines", "list", "--json", "--page-size", "1"));
    expect(&r, 0, NULL, "machines list --page-size 1");
    expect_json_equal(&f->h, &r, "/api/machines?limit=500");
    run_free(&r);
    /* --limit: that many, and the next_cursor where it stopped, as the API's own page. */
    ctl(&f->h, &r, ARGS("machines", "list", "--json", "--limit", "2", "--page-size", "1"));
    expect(&r, 0, NULL, "machines list --limit 2");
    expect_json_equal(&f->h, &r, "/api/machines?limit=2");
    run_free(&r);
    /* --cursor goes on from there. */
    assert_int_equal(harness_call(&f->h, "GET", "/api/machines?limit=1", NULL, &hr), 200);
    {
        const char *cur = harness_reply_str(&hr, "next_cursor");
        char path[256];

        assert_non_null(cur);
        ctl(&f->h, &r, ARGS("machines", "--json", "--limit", "1", "--cursor", cur));
        expect(&r, 0, NULL, "machines --cursor");
        snprintf(path, sizeof(path), "/api/machines?limit=1&cursor=%s", cur);
        expect_json_equal(&f->h, &r, path);
        run_free(&r);
    }
    harness_reply_free(&hr);
}

static long long slot_sql(struct harness *h, const char *col, int slot)
{
    char sql[160];
    long long v = -1;

    snprintf(sql, sizeof(sql),
             "SELECT %s FROM slots WHERE machine_id = 'VM01' AND slot_number = %d", col, slot);
    assert_int_equal(harness_sql_int(h, sql, &v), 1);
    return v;
}

static void test_slots_restock_audit(void **state)
{
    struct harness_fixture *f = *state;
    struct run r;

    ctl(&f->h, &r,
        ARGS("slot", "set", "VM01", "3", "--product", "Water", "--price", "3000", "--capacity",
             "10", "--motor-ms", "1200"));
    expect(&r, 0, NULL, "slot set (new)");
    assert_non_null(strstr(r.out, "Water"));
    run_free(&r);
    assert_int_equal(slot_sql(&f->h, "version", 3), 1);

    ctl(&f->h, &r, ARGS("restock", "VM01", "3", "4"));
    expect(&r, 0, NULL, "restock");
    assert_non_null(strstr(r.out, "stock 0 + 4 = 4"));
    run_free(&r);
    assert_int_equal(slot_sql(&f->h, "current_stock", 3), 4);

    ctl(&f->h, &r, ARGS("audit", "VM01", "3", "3"));
    expect(&r, 0, NULL, "audit");
    assert_non_null(strstr(r.out, "stock counted 3 (was 4)"));
    run_free(&r);
    assert_int_equal(slot_sql(&f->h, "current_stock", 3), 3);
    assert_int_equal(slot_sql(&f->h, "version", 3), 3);

    /* The count against a version seen before the last change: 409, status 3, the slot as
     * it is now, nothing changed. */
    ctl(&f->h, &r, ARGS("audit", "VM01", "3", "5", "--if-version", "1"));
    expect(&r, 3, "409 CONFLICT", "audit with a stale version");
    if (strstr(r.err, "now: version 3, stock 3 of 10, product 'Water' at 3000") == NULL)
        fail_msg("no current values after the conflict: %s", r.err);
    run_free(&r);
    assert_int_equal(slot_sql(&f->h, "current_stock", 3), 3);
    ctl(&f->h, &r, ARGS("restock", "VM01", "3", "1", "--if-version", "2", "--json"));
    expect(&r, 3, "now: version 3", "restock with a stale version");
    /* --json: vendd's error on stdout, with the version that won. */
    {
        json_t *j = json_loads(r.out, 0, NULL);

        assert_non_null(j);
        assert_int_equal(
            json_integer_value(json_object_get(json_object_get(j, "error"), "version")), 3);
        json_decref(j);
    }
    run_free(&r);
    /* With the version it has, it goes through; a stock change with slot set reads it. */
    ctl(&f->h, &r, ARGS("restock", "VM01", "3", "2", "--if-version", "3"));
    expect(&r, 0, NULL, "restock with the current version");
    run_free(&r);
    ctl(&f->h, &r, ARGS("slot", "set", "VM01", "3", "--stock", "7"));
    expect(&r, 0, NULL, "slot set --stock");
    run_free(&r);
    assert_int_equal(slot_sql(&f->h, "current_stock", 3), 7);

    ctl(&f->h, &r, ARGS("restock", "VM01", "9", "1"));
    expect(&r, 4, "machine 'VM01' has no slot 9", "restock an unknown slot");
    run_free(&r);
    /* Over capacity: vendd's 422, status 1, what it said. */
    ctl(&f->h, &r, ARGS("restock", "VM01", "3", "100"));
    expect(&r, 1, "422 INVALID_FIELD", "restock over capacity");
    run_free(&r);

    ctl(&f->h, &r, ARGS("slots", "VM01", "--json"));
    expect(&r, 0, NULL, "slots --json");
    expect_json_equal(&f->h, &r, "/api/stock/VM01");
    run_free(&r);
    ctl(&f->h, &r, ARGS("stock", "VM01"));
    expect(&r, 0, NULL, "stock");
    assert_non_null(line_starting(r.out, "SLOT  PRODUCT"));
    assert_non_null(strstr(r.out, "Water"));
    run_free(&r);
}

static void test_orders(void **state)
{
    struct harness_fixture *f = *state;
    char order[80];
    int slot = 0, unit = 0;
    size_t before = f->machine.n;
    struct run r;

    ctl(&f->h, &r,
        ARGS("orders", "create", "--machine", "VM01", "--slot", "1", "--id", "ctl-o1", "--quantity",
             "1"));
    expect(&r, 0, NULL, "orders create");
    assert_non_null(line_starting(r.out, "status "));
    assert_non_null(strstr(r.out, "PAID"));
    run_free(&r);

    ctl(&f->h, &r, ARGS("orders", "list", "--status", "PAID", "--machine", "VM01"));
    expect(&r, 0, NULL, "orders list --status");
    assert_non_null(line_starting(r.out, "ctl-o1 "));
    run_free(&r);
    ctl(&f->h, &r, ARGS("orders", "--json"));
    expect(&r, 0, NULL, "orders --json");
    expect_json_equal(&f->h, &r, "/api/orders?limit=500");
    run_free(&r);

    ctl(&f->h, &r, ARGS("trigger", "ctl-o1"));
    expect(&r, 0, NULL, "trigger");
    assert_non_null(strstr(r.out, "order 'ctl-o1' DISPENSING: command sent"));
    run_free(&r);
    /* The machine got the command for it. */
    assert_true(harness_mqtt_wait(&f->machine, before + 1, 5000) >= before + 1);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, before), order,
                                           sizeof(order), &slot, &unit),
                     0);
    assert_string_equal(order, "ctl-o1");
    ctl(&f->h, &r, ARGS("trigger", "ctl-o1"));
    expect(&r, 3, "409 WRONG_STATE", "trigger twice");
    assert_non_null(strstr(r.err, "(status DISPENSING)"));
    run_free(&r);

    assert_int_equal(harness_answer(&f->machine, "ctl-o1", 1, 0), 0);
    assert_int_equal(
        harness_sql_wait(&f->h, "SELECT status FROM orders WHERE id = 'ctl-o1'", "COMPLETED", 5000),
        0);
    ctl(&f->h, &r, ARGS("orders", "show", "ctl-o1"));
    expect(&r, 0, NULL, "orders show");
    assert_non_null(strstr(r.out, "COMPLETED"));
    assert_non_null(line_starting(r.out, "units"));
    run_free(&r);
    ctl(&f->h, &r, ARGS("orders", "show", "ctl-o1", "--json"));
    expect(&r, 0, NULL, "orders show --json");
    expect_json_equal(&f->h, &r, "/api/orders/ctl-o1");
    run_free(&r);
    ctl(&f->h, &r, ARGS("dispense", "status", "ctl-o1", "--json"));
    expect(&r, 0, NULL, "dispense status --json");
    expect_json_equal(&f->h, &r, "/api/dispense/status/ctl-o1");
    run_free(&r);
    ctl(&f->h, &r, ARGS("dispense", "logs", "VM01", "--json"));
    expect(&r, 0, NULL, "dispense logs --json");
    expect_json_equal(&f->h, &r, "/api/dispense/logs/VM01?limit=500");
    run_free(&r);
    /* A unit that is not UNSETTLED cannot be settled: 409, status 3. */
    ctl(&f->h, &r, ARGS("settle", "ctl-o1", "--unit", "1", "--dropped", "yes"));
    expect(&r, 3, "409 WRONG_STATE", "settle a completed unit");
    run_free(&r);
    /* A paid order cannot be cancelled. */
    ctl(&f->h, &r, ARGS("orders", "cancel", "ctl-o1"));
    expect(&r, 3, "(status COMPLETED)", "cancel a completed order");
    run_free(&r);
}

static void test_refunds_alerts(void **state)
{
    struct harness_fixture *f = *state;
    struct harness_reply hr;
    size_t before = f->machine.n;
    long long refund = 0;
    char id[32], needle[64];
    struct run r;

    assert_int_equal(harness_order(&f->h, "ctl-o2", 1, 1), 0);
    ctl(&f->h, &r, ARGS("trigger", "ctl-o2"));
    expect(&r, 0, NULL, "trigger ctl-o2");
    run_free(&r);
    assert_true(harness_mqtt_wait(&f->machine, before + 1, 5000) >= before + 1);
    assert_int_equal(harness_answer_ex(&f->machine, "ctl-o2", 1, 0, false, false, "JAMMED"), 0);
    assert_int_equal(
        harness_sql_wait(&f->h, "SELECT status FROM orders WHERE id = 'ctl-o2'", "FAILED", 5000),
        0);
    assert_int_equal(harness_sql_wait(&f->h,
                                      "SELECT count(*) FROM refunds WHERE order_id = 'ctl-o2'", "1",
                                      5000),
                     0);
    assert_int_equal(
        harness_sql_int(&f->h, "SELECT id FROM refunds WHERE order_id = 'ctl-o2'", &refund), 1);

    ctl(&f->h, &r, ARGS("refunds"));
    expect(&r, 0, NULL, "refunds");
    assert_non_null(strstr(r.out, "ctl-o2"));
    run_free(&r);
    ctl(&f->h, &r, ARGS("refunds", "list", "--json", "--status", "all"));
    expect(&r, 0, NULL, "refunds --json");
    expect_json_equal(&f->h, &r, "/api/refunds?status=all&limit=500");
    run_free(&r);
    ctl(&f->h, &r, ARGS("alerts"));
    expect(&r, 0, NULL, "alerts");
    assert_non_null(strstr(r.out, "DISPENSE_FAILED"));
    run_free(&r);
    ctl(&f->h, &r, ARGS("alerts", "list", "--json", "--machine", "VM01"));
    expect(&r, 0, NULL, "alerts --json");
    expect_json_equal(&f->h, &r, "/api/alerts?open=true&machine_id=VM01&limit=500");
    run_free(&r);

    snprintf(id, sizeof(id), "%lld", refund);
    ctl(&f->h, &r, ARGS("refunds", "done", id, "--note", "cash back at the kiosk"));
    expect(&r, 0, NULL, "refunds done");
    snprintf(needle, sizeof(needle), "refund %lld DONE", refund);
    assert_non_null(strstr(r.out, needle));
    run_free(&r);
    ctl(&f->h, &r, ARGS("refunds", "done", id, "--note", "again"));
    expect(&r, 3, "(status DONE)", "refunds done twice");
    run_free(&r);
    ctl(&f->h, &r, ARGS("alerts", "--resolved", "--json"));
    expect(&r, 0, NULL, "alerts --resolved");
    expect_json_equal(&f->h, &r, "/api/alerts?open=false&limit=500");
    run_free(&r);

    /* Resolving by hand: whatever this vendd can do, vendctl says the same. */
    harness_call(&f->h, "POST", "/api/alerts/999999/resolve", "{}", &hr);
    ctl(&f->h, &r, ARGS("alerts", "resolve", "999999"));
    if (hr.status == 405 || (hr.status == 404 && strstr(hr.body, "no resource at") != NULL))
        expect(&r, 6, "not supported by this vendd", "alerts resolve (no route)");
    else if (hr.status == 404)
        expect(&r, 4, "404", "alerts resolve (unknown alert)");
    else
        fail_msg("POST /api/alerts/999999/resolve: HTTP %ld: %s", hr.status, hr.body);
    run_free(&r);
    harness_reply_free(&hr);
}

static void test_not_found(void **state)
{
    struct harness_fixture *f = *state;
    const struct {
        const char *const *argv;
        const char *needle;
    } cases[] = {
        {ARGS("machines", "show", "NOPE"),
         "GET /api/machines/NOPE: 404 NOT_FOUND: no machine 'NOPE'"},
        {ARGS("orders", "show", "nope"), "404 NOT_FOUND"},
        {ARGS("stock", "NOPE"), "404 NOT_FOUND"},
        {ARGS("restock", "NOPE", "1", "1"), "404 NOT_FOUND"},
        {ARGS("trigger", "nope"), "404 NOT_FOUND"},
        {ARGS("refunds", "done", "999999", "--note", "x"), "404 NOT_FOUND"},
        {ARGS("telemetry", "NOPE"), "404 NOT_FOUND"},
    };
    struct run r;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctl(&f->h, &r, cases[i].argv);
        expect(&r, 4, cases[i].needle, cases[i].argv[1]);
        run_free(&r);
    }
    /* --json: vendd's error document on stdout. */
    ctl(&f->h, &r, ARGS("machines", "show", "NOPE", "--json"));
    expect(&r, 4, NULL, "machines show NOPE --json");
    assert_non_null(strstr(r.out, "\"NOT_FOUND\""));
    run_free(&r);
}

static void test_config_health(void **state)
{
    struct harness_fixture *f = *state;
    struct harness_reply hr;
    json_t *want;
    struct run r;

    ctl(&f->h, &r,
        ARGS("config", "VM01", "--motor-timeout", "3000", "--drop-sensor-delay", "50",
             "--telemetry-interval", "60000"));
    expect(&r, 0, NULL, "config");
    assert_non_null(strstr(r.out, "vm/VM01/config"));
    run_free(&r);
    want = json_pack("{sisisi}", "motorTimeout", 3000, "dropSensorDelay", 50, "telemetryInterval",
                     60000);
    assert_int_equal(harness_call(&f->h, "GET", "/api/machines/VM01", NULL, &hr), 200);
    assert_true(json_equal(json_object_get(hr.json, "config"), want));
    json_decref(want);
    harness_reply_free(&hr);

    /* Telemetry: a list whose pages carry another member (machine_id), walked 2 a page. */
    for (int i = 0; i < 3; i++) {
        static const char msg[] = "{\"slots\":[{\"id\":1,\"level\":\"FULL\"}],"
                                  "\"temperature\":25.5,\"door\":\"CLOSED\"}";

        assert_int_equal(harness_mqtt_publish(&f->machine, "vm/VM01/telemetry", msg, strlen(msg)),
                         0);
    }
    assert_int_equal(harness_sql_wait(&f->h,
                                      "SELECT count(*) FROM telemetry WHERE machine_id = 'VM01'",
                                      "3", 5000),
                     0);
    ctl(&f->h, &r, ARGS("telemetry", "VM01", "--json", "--page-size", "2"));
    expect(&r, 0, NULL, "telemetry --json");
    expect_json_equal(&f->h, &r, "/api/machines/VM01/telemetry?limit=500");
    run_free(&r);
    ctl(&f->h, &r, ARGS("telemetry", "VM01"));
    expect(&r, 0, NULL, "telemetry");
    assert_non_null(line_starting(r.out, "ID  RECEIVED"));
    assert_non_null(strstr(r.out, "25.5"));
    run_free(&r);

    ctl(&f->h, &r, ARGS("health"));
    expect(&r, 0, NULL, "health");
    assert_non_null(line_starting(r.out, "status "));
    run_free(&r);
    ctl(&f->h, &r, ARGS("health", "--json"));
    expect(&r, 0, NULL, "health --json");
    expect_json_equal(&f->h, &r, "/health");
    run_free(&r);
    ctl(&f->h, &r, ARGS("metrics"));
    expect(&r, 0, NULL, "metrics");
    assert_non_null(strstr(r.out, "vendd_"));
    run_free(&r);
}

/* The real event stream, if this vendd has it: an event for a change made while watching.
 * If it has not, status 6 and a message saying so. */
static void test_watch_vendd(void **state)
{
    struct harness_fixture *f = *state;
    char url[64];
    struct run r;

    run_start(&r, url_of(&f->h, url, sizeof(url)), NULL, ARGS("watch", "--json", "--count", "1"));
    harness_sleep_ms(500);
    assert_int_equal(harness_put_slot(&f->h, 1, 15, 1500), 0);
    run_wait(&r, 10000);
    if (r.status == 6) {
        expect(&r, 6, "the event stream is not supported by this vendd (GET /api/events: 404)",
               "watch without /api/events");
    } else {
        json_t *ev = json_loads(r.out, 0, NULL);

        expect(&r, 0, NULL, "watch --count 1");
        if (ev == NULL || !json_is_string(json_object_get(ev, "event")) ||
            json_object_get(ev, "data") == NULL)
            fail_msg("watch --json: not an event line: %s", r.out);
        json_decref(ev);
    }
    run_free(&r);
}

/* ---- group 2: a token ------------------------------------------------------------------ */

static int setup_token(void **state)
{
    static const char *const env[] = {"API_TOKEN=" TOKEN, NULL};
    struct harness_fixture *f = harness_fixture_new(env, NULL, NULL);

    if (f != NULL)
        snprintf(f->h.bearer, sizeof(f->h.bearer), "%s", TOKEN);
    *state = f;
    return f != NULL ? 0 : -1;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_token(void **state)
{
    struct harness_fixture *f = *state;
    char url[64], path[HARNESS_PATH_MAX + 16];
    struct run r;

    url_of(&f->h, url, sizeof(url));
    /* None: vendd's 401, status 1, and where a token comes from. */
    run(&r, url, NULL, ARGS("machines"));
    expect(&r, 1, "401 UNAUTHORIZED", "no token");
    assert_non_null(strstr(r.err, "$VENDD_TOKEN or --token-file"));
    run_free(&r);
    run(&r, url, (const char *const[]){"VENDD_TOKEN=" TOKEN, NULL}, ARGS("machines"));
    expect(&r, 0, NULL, "VENDD_TOKEN");
    assert_non_null(line_starting(r.out, "VM01 "));
    run_free(&r);
    run(&r, url, (const char *const[]){"VENDD_TOKEN=wrong-token", NULL}, ARGS("machines"));
    expect(&r, 1, "401 UNAUTHORIZED: invalid bearer token", "a wrong VENDD_TOKEN");
    run_free(&r);

    /* A file of mode 0600 (a trailing newline is no part of the token), also over the
     * environment. */
    snprintf(path, sizeof(path), "%s/token", f->h.dir);
    write_file(path, TOKEN "\n", 0600);
    run(&r, url, (const char *const[]){"VENDD_TOKEN=wrong-token", NULL},
        ARGS("machines", "--token-file", path));
    expect(&r, 0, NULL, "--token-file 0600");
    run_free(&r);
    write_file(path, TOKEN, 0400);
    run(&r, url, NULL, ARGS("--token-file", path, "machines"));
    expect(&r, 0, NULL, "--token-file 0400");
    run_free(&r);
    /* Readable by others or the group: refused before anything is sent. */
    write_file(path, TOKEN, 0644);
    run(&r, url, NULL, ARGS("machines", "--token-file", path));
    expect(&r, 2, "is accessible by its group or others (mode 0644): refused", "world-readable");
    run_free(&r);
    write_file(path, TOKEN, 0640);
    run(&r, url, NULL, ARGS("machines", "--token-file", path));
    expect(&r, 2, "(mode 0640)", "group-readable");
    run_free(&r);
    write_file(path, "", 0600);
    run(&r, url, NULL, ARGS("machines", "--token-file", path));
    expect(&r, 2, "is empty", "empty token file");
    run_free(&r);
    run(&r, url, NULL, ARGS("machines", "--token-file", "/nonexistent/token"));
    expect(&r, 2, "cannot open token file '/nonexistent/token'", "no token file");
    run_free(&r);
    /* Never from argv, whatever the spelling. */
    run(&r, url, NULL, ARGS("machines", "--token", TOKEN));
    expect(&r, 2, "'--token' is not accepted", "--token");
    run_free(&r);
    run(&r, url, NULL, ARGS("--token=" TOKEN, "machines"));
    expect(&r, 2, "'--token' is not accepted", "--token=");
    run_free(&r);
    /* A token is sent only with a request, so a token variable with a newline cannot add a
     * header: refused. */
    run(&r, url, (const char *const[]){"VENDD_TOKEN=a\r\nX-Evil: 1", NULL}, ARGS("machines"));
    expect(&r, 2, "VENDD_TOKEN holds a space or a control character", "token with CRLF");
    run_free(&r);
}

/* ---- group 3: a fake server ------------------------------------------------------------ */

enum fake_mode {
    FAKE_SSE,    /* two connections of events, the second held open */
    FAKE_404,    /* vendd's router: no such route */
    FAKE_SILENT, /* accepts, never answers */
    FAKE_HUGE,   /* a 200 without end */
    FAKE_ESCAPE, /* a machine list with terminal escapes in it */
};

struct fake {
    int fd;
    uint16_t port;
    pthread_t th;
    enum fake_mode mode;
    volatile bool stop;
    pthread_mutex_t mu;
    int conns;
    char last_event_id[4][64]; /* of each connection's request, "" if none */
};

static const char sse_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\nConnection: close\r\n\r\n";

/* Read a request's head (bounded, with a deadline); "" on timeout. */
static void read_head(struct fake *fk, int c, char *buf, size_t size)
{
    size_t n = 0;
    uint64_t deadline = harness_now_ms() + 5000;

    buf[0] = '\0';
    while (n + 1 < size && strstr(buf, "\r\n\r\n") == NULL && harness_now_ms() < deadline &&
           !fk->stop) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        ssize_t got;

        if (poll(&p, 1, 50) <= 0)
            continue;
        got = recv(c, buf + n, size - n - 1, 0);
        if (got <= 0)
            break;
        n += (size_t)got;
        buf[n] = '\0';
    }
}

/* Until the client closes (or the test stops). */
static void hold(struct fake *fk, int c)
{
    char buf[256];

    while (!fk->stop) {
        struct pollfd p = {.fd = c, .events = POLLIN};

        if (poll(&p, 1, 50) > 0 && recv(c, buf, sizeof(buf), 0) <= 0)
            break;
    }
}

static void send_all(int c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c, s, n, MSG_NOSIGNAL);

        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void send_str(int c, const char *s)
{
    send_all(c, s, strlen(s));
}

static void serve(struct fake *fk, int c, int i)
{
    char head[8192], *h;

    read_head(fk, c, head, sizeof(head));
    pthread_mutex_lock(&fk->mu);
    if (i < 4) {
        h = strstr(head, "Last-Event-ID: ");
        if (h != NULL)
            sscanf(h + 15, "%63[^\r\n]", fk->last_event_id[i]);
    }
    pthread_mutex_unlock(&fk->mu);
    switch (fk->mode) {
    case FAKE_SSE:
        send_str(c, sse_head);
        if (i == 0) {
            /* The stream's position first (an id without data is no event), then two. */
            send_str(c, "retry: 100\nid: 0\n\n: heartbeat\n\n"
                        "id: 1\nevent: order\ndata: {\"order_id\":\"A\",\"status\":\"PAID\"}\n\n"
                        "id: 2\ndata: plain \033[31mtext\n\n");
            return;
        }
        send_str(c, "id: 3\r\nevent: machine\r\ndata: {\"id\":\"VM01\",\r\n"
                    "data: \"status\":\"ONLINE\"}\r\n\r\n");
        hold(fk, c);
        return;
    case FAKE_404:
        send_str(c, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                    "Connection: close\r\n\r\n"
                    "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no resource at "
                    "'/api/events'\"}}");
        return;
    case FAKE_SILENT:
        hold(fk, c);
        return;
    case FAKE_HUGE: {
        static char chunk[65536];

        memset(chunk, ' ', sizeof(chunk));
        send_str(c,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
        for (int k = 0; k < 400 && !fk->stop; k++) /* 25 MiB at most */
            send_all(c, chunk, sizeof(chunk));
        return;
    }
    case FAKE_ESCAPE:
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                    "{\"machines\":[{\"id\":\"VM01\",\"name\":\"\\u001b]0;pwned\\u0007\\u001b[2J\","
                    "\"status\":\"ONLINE\"}],\"next_cursor\":null}");
        return;
    }
}

static void *fake_thread(void *arg)
{
    struct fake *fk = arg;

    while (!fk->stop) {
        struct pollfd p = {.fd = fk->fd, .events = POLLIN};
        int c, i;

        if (poll(&p, 1, 50) <= 0)
            continue;
        c = accept(fk->fd, NULL, NULL);
        if (c < 0)
            continue;
        pthread_mutex_lock(&fk->mu);
        i = fk->conns++;
        pthread_mutex_unlock(&fk->mu);
        serve(fk, c, i);
        close(c);
    }
    return NULL;
}

static struct fake *fake_start(enum fake_mode mode)
{
    struct fake *fk = calloc(1, sizeof(*fk));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);

    assert_non_null(fk);
    fk->mode = mode;
    pthread_mutex_init(&fk->mu, NULL);
    fk->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fk->fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fk->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fk->fd, 8), 0);
    assert_int_equal(getsockname(fk->fd, (struct sockaddr *)&sa, &len), 0);
    fk->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&fk->th, NULL, fake_thread, fk), 0);
    return fk;
}

static void fake_stop(struct fake *fk)
{
    fk->stop = true;
    pthread_join(fk->th, NULL);
    close(fk->fd);
    pthread_mutex_destroy(&fk->mu);
    free(fk);
}

static const char *fake_url(const struct fake *fk, char *buf, size_t size)
{
    snprintf(buf, size, "http://127.0.0.1:%u", (unsigned)fk->port);
    return buf;
}

/* Events one a line; the stream lost after two, taken up again from event 2. */
static void test_watch_stream(void **state)
{
    struct fake *fk = fake_start(FAKE_SSE);
    char url[64];
    struct run r;

    (void)state;
    run(&r, fake_url(fk, url, sizeof(url)), NULL, ARGS("watch", "--count", "3"));
    expect(&r, 0, "the stream ended; reconnecting in 100 ms after event 2", "watch");
    assert_string_equal(r.out, "order {\"order_id\":\"A\",\"status\":\"PAID\"}\n"
                               "message plain ?[31mtext\n"
                               "machine {\"id\":\"VM01\", \"status\":\"ONLINE\"}\n");
    assert_int_equal(fk->conns, 2);
    assert_string_equal(fk->last_event_id[0], "");
    assert_string_equal(fk->last_event_id[1], "2");
    run_free(&r);
    fake_stop(fk);

    fk = fake_start(FAKE_SSE);
    run(&r, fake_url(fk, url, sizeof(url)), NULL, ARGS("watch", "--json", "--count", "3"));
    expect(&r, 0, NULL, "watch --json");
    {
        json_error_t err;
        json_t *want[3] = {
            json_pack("{sssss{ssss}}", "id", "1", "event", "order", "data", "order_id", "A",
                      "status", "PAID"),
            json_pack("{ssssss}", "id", "2", "event", "message", "data", "plain \033[31mtext"),
            json_pack("{sssss{ssss}}", "id", "3", "event", "machine", "data", "id", "VM01",
                      "status", "ONLINE"),
        };
        const char *p = r.out;

        for (int i = 0; i < 3; i++) {
            const char *nl = strchr(p, '\n');
            json_t *got;

            assert_non_null(nl);
            got = json_loadb(p, (size_t)(nl - p), 0, &err);
            if (got == NULL || !json_equal(got, want[i]))
                fail_msg("watch --json line %d: %.*s", i + 1, (int)(nl - p), p);
            json_decref(got);
            json_decref(want[i]);
            p = nl + 1;
        }
        assert_string_equal(p, "");
    }
    run_free(&r);
    fake_stop(fk);
}

static void test_fake_answers(void **state)
{
    struct fake *fk;
    char url[64];
    struct run r;

    (void)state;
    fk = fake_start(FAKE_404);
    run(&r, fake_url(fk, url, sizeof(url)), NULL, ARGS("watch"));
    expect(&r, 6, "the event stream is not supported by this vendd (GET /api/events: 404)",
           "watch, no route");
    run_free(&r);
    /* The router's 404 for any route: status 6, not 4. */
    run(&r, url, NULL, ARGS("orders", "show", "x"));
    expect(&r, 6, "GET /api/orders/x: not supported by this vendd", "no route");
    run_free(&r);
    fake_stop(fk);

    /* No answer within --timeout: 5. */
    fk = fake_start(FAKE_SILENT);
    run(&r, fake_url(fk, url, sizeof(url)), NULL, ARGS("health", "--timeout", "1"));
    expect(&r, 5, "GET /health: no answer from", "a server that never answers");
    run_free(&r);
    fake_stop(fk);

    /* An answer without end is cut at 16 MiB: 5. */
    fk = fake_start(FAKE_HUGE);
    run(&r, fake_url(fk, url, sizeof(url)), NULL, ARGS("health"));
    expect(&r, 5, "answer over 16777216 bytes", "a huge answer");
    run_free(&r);
    fake_stop(fk);

    /* Terminal escapes in what the server says never reach the terminal. */
    fk = fake_start(FAKE_ESCAPE);
    run(&r, fake_url(fk, url, sizeof(url)), NULL, ARGS("machines"));
    expect(&r, 0, NULL, "machines with escapes");
    assert_null(strchr(r.out, '\033'));
    assert_null(strchr(r.out, '\a'));
    assert_non_null(strstr(r.out, "?]0;pwned??[2J"));
    run_free(&r);
    fake_stop(fk);
}

int main(void)
{
    const struct CMUnitTest dev[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_machines),
        cmocka_unit_test(test_slots_restock_audit),
        cmocka_unit_test(test_orders),
        cmocka_unit_test(test_refunds_alerts),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_config_health),
        cmocka_unit_test(test_watch_vendd),
    };
    const struct CMUnitTest token[] = {
        cmocka_unit_test(test_token),
    };
    const struct CMUnitTest fake[] = {
        cmocka_unit_test(test_watch_stream),
        cmocka_unit_test(test_fake_answers),
    };
    int failed = 0;

    failed += cmocka_run_group_tests_name("vendctl, development mode", dev, setup_dev, teardown);
    failed += cmocka_run_group_tests_name("vendctl, a token", token, setup_token, teardown);
    failed += cmocka_run_group_tests_name("vendctl, a fake server", fake, NULL, NULL);
    return failed != 0;
}
