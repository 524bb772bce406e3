/*
 * it_db_hang.c - PostgreSQL stops answering under a running vendd (issue 11: a hung server
 * must not freeze the event loop).
 *
 * The server's processes (the postmaster and its children) get SIGSTOP: the sockets stay
 * open and the kernel still accepts connections, but nothing answers, as with a frozen host
 * or a network black hole. For longer than the broker waits for a silent client (1.5 times
 * vendd's 30 s keep-alive), while vendd serves:
 *  - a write (POST /api/orders) answers 503 BUSY within the client deadline of db_pg.c;
 *  - /health answers within 2 s, all the time;
 *  - reads and triggers answer 503 at once;
 *  - the machine's result for a unit in flight is taken and kept for the database;
 *  - the broker keeps vendd's sessions (no new connection, /health's mqtt_connected).
 * After SIGCONT: the kept result completes its order (once: one command, one stock row), a
 * trigger refused during the hang works, and vend-check finds every invariant kept.
 *
 * PostgreSQL only. A private server (tests/support/pgcluster, PGCLUSTER), so that stopping
 * it holds up no other test.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define MOTOR_MS 60000 /* with the grace below, the unit's deadline is past the hang */
#define GRACE    "DISPENSE_RESULT_GRACE_MS=30000"
/* Longer than the broker waits for a client it has not heard from (1.5 x vendd's 30 s). */
#define HANG_MS 50000
/* db_pg.c's client deadline (6 s) and a margin for a loaded machine. */
#define DEADLINE_MS 8000
#define HEALTH_MS   2000
#define WAIT_MS     20000 /* reconnect backoff and result retry, both at most 5 s apart */
#define MAX_PIDS    64

struct hang {
    struct harness_fixture *f;
    char dir[256];   /* holds the private server's state file */
    char state[300]; /* pgcluster's STATE */
    bool started;    /* pgcluster start succeeded */
    pid_t pids[MAX_PIDS];
    size_t npids;
};

static int cluster(const struct hang *t, const char *what)
{
    char cmd[1024];
    int n = snprintf(cmd, sizeof(cmd), "'%s' %s '%s' >&2", getenv("PGCLUSTER"), what, t->state);

    if (n < 0 || (size_t)n >= sizeof(cmd))
        return -1;
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state);

static int setup_env(void **state, const char *const *env)
{
    static const struct harness_slot slots[] = {{1, 10, MOTOR_MS}, {0, 0, 0}};
    const char *backend = getenv("VEND_TEST_DB");
    const char *tmp = getenv("TMPDIR");
    struct hang *t;

    if (backend == NULL || strcmp(backend, "pg") != 0 || getenv("PGCLUSTER") == NULL) {
        fprintf(stderr, "it_db_hang: needs VEND_TEST_DB=pg and PGCLUSTER\n");
        return -1;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    *state = t;
    snprintf(t->dir, sizeof(t->dir), "%s/it-db-hang-XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (mkdtemp(t->dir) == NULL) {
        fprintf(stderr, "it_db_hang: mkdtemp: %s\n", strerror(errno));
        free(t);
        *state = NULL;
        return -1;
    }
    snprintf(t->state, sizeof(t->state), "%s/pgcluster.state", t->dir);
    t->started = cluster(t, "start") == 0;
    /* The harness makes the test's database on the server VEND_PG_STATE names. */
    if (t->started && setenv("VEND_PG_STATE", t->state, 1) == 0)
        t->f = harness_fixture_new(env, slots, "it-db-hang");
    if (t->f != NULL)
        return 0;
    teardown(state); /* cmocka runs no teardown after a failed setup */
    *state = NULL;
    return -1;
}

static int setup(void **state)
{
    static const char *const env[] = {GRACE, NULL};

    return setup_env(state, env);
}

/* An instance of a shared group: it LISTENs for the others on a connection of its own. */
static int setup_group(void **state)
{
    static const char *const env[] = {GRACE, "MQTT_SHARED_GROUP=hang", NULL};

    return setup_env(state, env);
}

static void signal_all(struct hang *t, int sig)
{
    for (size_t i = 0; i < t->npids; i++)
        kill(t->pids[i], sig);
}

static int teardown(void **state)
{
    struct hang *t = *state;

    if (t == NULL)
        return 0;
    /* A failure half-way must not leave the server stopped (the database is dropped). */
    signal_all(t, SIGCONT);
    harness_fixture_free(t->f);
    if (t->started)
        cluster(t, "stop");
    if (t->dir[0] != '\0') {
        unlink(t->state);
        rmdir(t->dir);
    }
    free(t);
    return 0;
}

/* The value of key= in pgcluster's state file. */
static void state_get(const struct hang *t, const char *key, char *out, size_t size)
{
    char line[256];
    size_t klen = strlen(key);
    FILE *f = fopen(t->state, "r");

    out[0] = '\0';
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            line[strcspn(line, "\n")] = '\0';
            if (strlen(line + klen + 1) >= size)
                fail_msg("%s= in '%s' is too long", key, t->state);
            memcpy(out, line + klen + 1, strlen(line + klen + 1) + 1);
        }
    }
    fclose(f);
}

/* The parent pid of pid from /proc/pid/stat (after the command's closing parenthesis), -1. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    FILE *f;
    size_t n;
    char *p;
    int ppid = -1;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %*c %d", &ppid) != 1)
        return -1;
    return ppid;
}

/* SIGSTOP the postmaster: the kernel still accepts connections, but no backend starts to
 * answer them; the backends already running keep serving. Returns its pid. */
static pid_t postmaster_stop(struct hang *t)
{
    char dir[256], path[300];
    FILE *f;
    int pm = 0;

    state_get(t, "dir", dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/data/postmaster.pid", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &pm), 1);
    fclose(f);
    assert_true(pm > 1);
    t->pids[t->npids++] = pm;
    assert_int_equal(kill(pm, SIGSTOP), 0);
    return pm;
}

/* SIGSTOP the postmaster (first: it starts no new backend then) and each of its children:
 * the server of the private cluster hangs with every socket open. */
static void server_stop(struct hang *t)
{
    pid_t pm = postmaster_stop(t);
    DIR *d;
    struct dirent *e;

    d = opendir("/proc");
    assert_non_null(d);
    while ((e = readdir(d)) != NULL && t->npids < MAX_PIDS) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 1 || parent_of((pid_t)pid) != pm)
            continue;
        t->pids[t->npids++] = (pid_t)pid;
        kill((pid_t)pid, SIGSTOP);
    }
    closedir(d);
    /* The postmaster, its checkpointer, writers, launchers and vendd's backend. */
    assert_true(t->npids >= 4);
}

/* Commands for order_id the machine has seen so far. */
static int commands_for(struct harness_mqtt *m, const char *order_id)
{
    char needle[96];
    size_t n = harness_mqtt_wait(m, 0, 0);
    int count = 0;

    snprintf(needle, sizeof(needle), "\"orderId\":\"%s\"", order_id);
    for (size_t i = 0; i < n; i++)
        count += strstr(harness_mqtt_payload(m, i), needle) != NULL;
    return count;
}

/* method path (body) answers within limit_ms with status want; what names it. */
static void answers(struct harness *h, const char *method, const char *path, const char *body,
                    long want, int limit_ms, const char *what)
{
    struct harness_reply r;
    uint64_t t0 = harness_now_ms();
    long st = harness_call(h, method, path, body, &r);
    uint64_t took = harness_now_ms() - t0;

    if (st != want || took > (uint64_t)limit_ms)
        fail_msg("%s %s %s with PostgreSQL hung: HTTP %ld after %llu ms, wanted %ld within %d "
                 "ms (%s; log: %s)",
                 what, method, path, st, (unsigned long long)took, want, limit_ms,
                 r.body != NULL ? r.body : "no answer", h->log_path);
    if (want == 503 && (harness_reply_str(&r, "error.code") == NULL ||
                        strcmp(harness_reply_str(&r, "error.code"), "BUSY") != 0))
        fail_msg("%s: 503 without code BUSY: %s", what, r.body != NULL ? r.body : "");
    harness_reply_free(&r);
}

static void vendd_serves_through_a_hung_database(void **state)
{
    struct hang *t = *state;
    struct harness *h = &t->f->h;
    struct harness_mqtt *machine = &t->f->machine;
    struct harness_reply r;
    long long n = -1;
    uint64_t end;
    long st = 0;
    int vendd_sessions = harness_broker_log_count(h, " as vendd (");

    assert_int_equal(harness_order(h, "hang-1", 1, 1), 0);
    assert_int_equal(harness_order(h, "hang-2", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "hang-1", NULL), 200);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status FROM dispense_logs WHERE order_id = 'hang-1'",
                                      "SENT", 5000),
                     0);
    assert_int_equal(vendd_sessions, 1);

    server_stop(t);
    /* The first statement to meet the hung server waits for it at most the deadline. */
    answers(h, "POST", "/api/orders",
            "{\"id\":\"hang-3\",\"slot\":1,\"payment_method\":\"manual\"}", 503, DEADLINE_MS,
            "a new order");
    /* The machine's result comes while the server hangs: taken, kept for the database. */
    assert_int_equal(harness_answer(machine, "hang-1", 1, 0), 0);
    if (harness_log_wait(h, "kept to be applied again", 1, 5000) < 1)
        fail_msg("the result that came during the hang was not kept (log: %s)", h->log_path);
    for (end = harness_now_ms() + HANG_MS; harness_now_ms() < end;) {
        answers(h, "GET", "/health", NULL, 200, HEALTH_MS, "/health");
        answers(h, "GET", "/api/orders/hang-1", NULL, 503, HEALTH_MS, "a read");
        answers(h, "POST", "/api/dispense/trigger", "{\"order_id\":\"hang-2\"}", 503, HEALTH_MS,
                "a trigger");
        harness_sleep_ms(500);
    }
    /* The broker kept both of vendd's sessions: no new connection, none dropped. */
    assert_int_equal(harness_call(h, "GET", "/health", NULL, &r), 200);
    assert_true(json_is_true(json_object_get(r.json, "mqtt_connected")));
    assert_true(json_is_true(json_object_get(r.json, "mqtt_telemetry_connected")));
    harness_reply_free(&r);
    assert_int_equal(harness_broker_log_count(h, " as vendd ("), 1);
    assert_int_equal(harness_broker_log_count(h, " as vendd-telemetry ("), 1);
    assert_int_equal(harness_broker_log_count(h, "exceeded timeout"), 0);
    assert_true(harness_vendd_alive(h));

    signal_all(t, SIGCONT);
    t->npids = 0;
    if (harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'hang-1'", "COMPLETED", WAIT_MS) <
        0)
        fail_msg("the result kept during the hang was not applied (log: %s)", h->log_path);
    for (end = harness_now_ms() + WAIT_MS;;) {
        st = harness_trigger(h, "hang-2", NULL);
        if (st == 200 || harness_now_ms() >= end)
            break;
        harness_sleep_ms(100);
    }
    if (st != 200)
        fail_msg("trigger after the hang: HTTP %ld (log: %s)", st, h->log_path);
    for (end = harness_now_ms() + 5000; commands_for(machine, "hang-2") < 1;) {
        if (harness_now_ms() >= end)
            fail_msg("no command for 'hang-2' after the hang");
        harness_sleep_ms(20);
    }
    assert_int_equal(harness_answer(machine, "hang-2", 1, 0), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'hang-2'", "COMPLETED", 5000), 0);

    /* Once each: one command, one unit dropped, one stock row. */
    assert_int_equal(commands_for(machine, "hang-1"), 1);
    assert_int_equal(commands_for(machine, "hang-2"), 1);
    assert_int_equal(harness_sql_int(h,
                                     "SELECT count(*) FROM stock_logs WHERE change_type = "
                                     "'DISPENSE' AND order_id = 'hang-1'",
                                     &n),
                     1);
    assert_int_equal(n, 1);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1", &n), 1);
    assert_int_equal(n, 8);
    assert_int_equal(harness_sql_wait(h, "SELECT count(*) FROM refunds", "0", 0), 0);
    assert_true(harness_vendd_alive(h));
    assert_int_equal(harness_check(h, NULL), 0);
}

/* vendd's LISTEN connection (an instance of a group), from the server's side: its pid. */
static long long listen_backend(struct hang *t, long long other_than, int timeout_ms)
{
    struct harness *h = &t->f->h;
    char sql[160];
    long long pid = -1;
    uint64_t end = harness_now_ms() + (uint64_t)timeout_ms;

    snprintf(sql, sizeof(sql),
             "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %%' AND pid <> %lld",
             other_than);
    while (harness_sql_int(h, sql, &pid) != 1) {
        if (harness_now_ms() >= end)
            fail_msg("no LISTEN connection of vendd on the server (log: %s)", h->log_path);
        harness_sleep_ms(100);
    }
    return pid;
}

/* The LISTEN connection of a group's instance is lost, and the server then accepts new
 * connections without ever answering them (its postmaster stopped; the backends it already
 * started, vendd's main connection among them, keep serving). The reconnects must not hold
 * the loop: libpq's blocking connect did, 5 s at each attempt. Once the server answers again,
 * the LISTEN is back. */
static void listen_reconnect_never_holds_the_loop(void **state)
{
    struct hang *t = *state;
    struct harness *h = &t->f->h;
    long long old_pid;
    uint64_t end;

    assert_int_equal(harness_order(h, "listen-1", 1, 1), 0);
    old_pid = listen_backend(t, 0, 10000);
    postmaster_stop(t);
    assert_int_equal(kill((pid_t)old_pid, SIGTERM), 0);
    if (harness_log_wait(h, "LISTEN connection for", 1, 5000) < 1)
        fail_msg("vendd did not see its LISTEN connection go (log: %s)", h->log_path);
    /* Two attempts at least (1 s, then 2 s after the first gives up at 5 s). */
    for (end = harness_now_ms() + 12000; harness_now_ms() < end;) {
        answers(h, "GET", "/health", NULL, 200, HEALTH_MS, "/health");
        answers(h, "GET", "/api/orders/listen-1", NULL, 200, HEALTH_MS, "a read");
        harness_sleep_ms(100);
    }
    signal_all(t, SIGCONT);
    t->npids = 0;
    if (harness_log_wait(h, "LISTEN connection for 'vendd:hang' back", 1, 30000) < 1)
        fail_msg("the LISTEN connection did not come back (log: %s)", h->log_path);
    assert_true(listen_backend(t, old_pid, 5000) > 0);
    assert_true(harness_vendd_alive(h));
}

/* Lines of vendd's log that begin with prefix: what libpq printed past the log (its default
 * notice processor writes to stderr), not a line of vendd's own. */
static int raw_lines(const struct harness *h, const char *prefix)
{
    char line[1024];
    int n = 0;
    FILE *f = fopen(h->log_path, "r");

    if (f == NULL)
        fail_msg("cannot read vendd's log %s: %s", h->log_path, strerror(errno));
    while (fgets(line, sizeof(line), f) != NULL)
        n += strncmp(line, prefix, strlen(prefix)) == 0;
    fclose(f);
    return n;
}

/* The server ends the LISTEN connection (pg_terminate_backend, a restart): its last word, a
 * FATAL error, arrives while the connection is idle, and libpq hands it to the notice
 * processor. It goes to vendd's log, never raw to stderr past the log's format. */
static void listen_loss_says_nothing_past_the_log(void **state)
{
    struct hang *t = *state;
    struct harness *h = &t->f->h;
    long long pid = listen_backend(t, 0, 10000);
    char sql[96];
    long long ok = 0;

    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld)::int", pid);
        assert_int_equal(harness_sql_int(h, sql, &ok), 1);
        assert_int_equal(ok, 1);
        if (harness_log_wait(h, "LISTEN connection for 'vendd:hang' back", i + 1, 30000) < i + 1)
            fail_msg("the LISTEN connection did not come back (log: %s)", h->log_path);
        pid = listen_backend(t, pid, 5000);
    }
    if (raw_lines(h, "FATAL:") != 0)
        fail_msg("libpq's notice printed raw to stderr (log: %s)", h->log_path);
    assert_true(harness_vendd_alive(h));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(vendd_serves_through_a_hung_database, setup, teardown),
        cmocka_unit_test_setup_teardown(listen_reconnect_never_holds_the_loop, setup_group,
                                        teardown),
        cmocka_unit_test_setup_teardown(listen_loss_says_nothing_past_the_log, setup_group,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
