/*
 * it_e2e_settle.c - the three ways issue 8 found to drop a product and still refund it, or to
 * lose the record of a drop, each run for real: mosquitto, vendd and vmsim (the firmware core,
 * which keeps a journal and announces "settle":true). Each ends with the product counted
 * once, and a refund only for a unit that did not drop.
 *
 *  1. the result is PUBACKed, the database is locked past vendd's busy timeout, and vendd is
 *     killed with the result still in memory (and its copy in a file removed): after the
 *     restart, the unit's deadline asks the machine (settle), whose journal has the result;
 *  2. the broker freezes (SIGSTOP) with the command in its socket: vendd's deadline passes,
 *     the unit waits UNSETTLED; the broker thaws and delivers the command late, and the
 *     machine refuses it (expiresAt) and says so when asked;
 *  3. the database is locked for a while: the result waits in memory and is applied after.
 * And: a machine that goes silent leaves its unit UNSETTLED (visible in the API) until it
 * returns and answers, or an operator settles it by hand.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

struct e2e {
    struct harness_fixture *f;
    pid_t sim;
    char state_dir[HARNESS_PATH_MAX + 16];
    char sim_log[HARNESS_PATH_MAX + 16];
    char drops[HARNESS_PATH_MAX + 16]; /* vmsim --drop-log, for harness_check() */
};

/* vmsim as VM01 on the harness's broker: one slot, a 300 ms motor, every run drops; silent
 * (--silent-after 0: connected, deaf and mute until SIGUSR1) if asked. */
static pid_t start_vmsim(struct e2e *e, bool silent)
{
    const char *bin = getenv("VMSIM");
    char url[64];
    pid_t pid;

    if (bin == NULL)
        return -1;
    snprintf(url, sizeof(url), "mqtt://127.0.0.1:%u", (unsigned)e->f->h.broker.port);
    pid = fork();
    if (pid == 0) {
        FILE *log = freopen(e->sim_log, "a", stdout);

        if (log == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(126);
        setenv("MQTT_BROKER_URL", url, 1);
        if (silent)
            execl(bin, bin, "--id", "VM01", "--slots", "1", "--stock", "10", "--motor-ms", "300",
                  "--drop-prob", "1", "--state-dir", e->state_dir, "--drop-log", e->drops,
                  "--silent-after", "0", (char *)NULL);
        else
            execl(bin, bin, "--id", "VM01", "--slots", "1", "--stock", "10", "--motor-ms", "300",
                  "--drop-prob", "1", "--state-dir", e->state_dir, "--drop-log", e->drops,
                  (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int setup(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=2000", NULL};
    static const struct harness_slot slots[] = {{1, 5, 1000}, {0, 0, 0}};
    struct e2e *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return -1;
    e->f = harness_fixture_new(env, slots, NULL);
    if (e->f == NULL)
        goto fail;
    snprintf(e->state_dir, sizeof(e->state_dir), "%s/vmsim", e->f->h.dir);
    snprintf(e->sim_log, sizeof(e->sim_log), "%s/vmsim.log", e->f->h.dir);
    snprintf(e->drops, sizeof(e->drops), "%s/drops.log", e->f->h.dir);
    if (mkdir(e->state_dir, 0700) != 0)
        goto fail;
    e->sim = start_vmsim(e, false);
    if (e->sim <= 0)
        goto fail;
    /* VM01 settles: vendd has read "settle":true from its retained status. */
    if (harness_sql_wait(&e->f->h, "SELECT status || ' ' || settle FROM machines WHERE id = 'VM01'",
                         "ONLINE 1", 10000) < 0)
        goto fail;
    *state = e;
    return 0;
fail:
    if (e->sim > 0)
        kill(e->sim, SIGKILL);
    harness_fixture_free(e->f);
    free(e);
    return -1;
}

static int teardown(void **state)
{
    struct e2e *e = *state;
    int status = 0;

    if (e->sim > 0) {
        kill(e->sim, SIGCONT);
        kill(e->sim, SIGTERM);
        waitpid(e->sim, &status, 0);
    }
    if (e->f->h.broker.pid > 0)
        kill(e->f->h.broker.pid, SIGCONT);
    harness_fixture_free(e->f);
    free(e);
    return 0;
}

/* Motor runs in vmsim's own account. */
static int motor_runs(struct e2e *e)
{
    char line[256];
    int runs = 0;
    FILE *log = fopen(e->sim_log, "r");

    if (log == NULL)
        return -1;
    while (fgets(line, sizeof(line), log) != NULL)
        runs += strstr(line, "motor on") != NULL;
    fclose(log);
    return runs;
}

static long long sql_int(struct e2e *e, const char *sql)
{
    long long n = -1;

    assert_int_equal(harness_sql_int(&e->f->h, sql, &n), 1);
    return n;
}

/* The product dropped once: order COMPLETED, one unit out of the stock, nothing refunded. */
static void expect_dropped_once(struct e2e *e, const char *order_id)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", order_id);
    assert_int_equal(harness_sql_wait(&e->f->h, sql, "COMPLETED", 20000), 0);
    assert_int_equal(sql_int(e, "SELECT current_stock FROM slots WHERE slot_number = 1"), 4);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM stock_logs WHERE order_id = '%s' AND change_type = 'DISPENSE'",
             order_id);
    assert_int_equal(sql_int(e, sql), 1);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM refunds"), 0);
    assert_int_equal(motor_runs(e), 1);
}

/* Hold the write lock of vendd's database from another connection. */
static struct harness_db_lock *lock_database(struct e2e *e)
{
    struct harness_db_lock *l = harness_db_lock(&e->f->h);

    assert_non_null(l);
    return l;
}

static void unlock_database(struct harness_db_lock *l)
{
    assert_int_equal(harness_db_unlock(l), 0);
}

/* Remove the file vendd keeps waiting results in (result_spool.h): beside the SQLite file, or
 * "vendd-results-<hash>" in its working directory with PostgreSQL. Not there is fine: a vendd
 * killed between the log line and the file's write left none. */
static void remove_results_file(const struct harness *h)
{
    char path[HARNESS_PATH_MAX + 300];
    struct dirent *e;
    DIR *d;

    snprintf(path, sizeof(path), "%s-results", h->db_path);
    assert_true(unlink(path) == 0 || errno == ENOENT);
    d = opendir(h->dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);

        if (strncmp(e->d_name, "vendd-results-", 14) != 0 ||
            (n > 5 && strcmp(e->d_name + n - 5, ".lock") == 0))
            continue;
        snprintf(path, sizeof(path), "%s/%s", h->dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
}

/* Why 1: the result was acknowledged to the broker, could not be committed, and vendd died. */
static void result_lost_by_a_killed_vendd_is_recovered_by_settle(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    struct harness_db_lock *lock;

    assert_int_equal(harness_order(h, "why-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "why-1", NULL), 200);
    lock = lock_database(e);
    /* vmsim drops the product and publishes; vendd PUBACKs it and cannot commit it. */
    assert_int_equal(harness_log_wait(h, "kept to be applied again", 1, 15000), 1);
    harness_vendd_kill(h); /* kill -9: the result in memory is gone */
    /* And the file vendd keeps it in as well (it_restart applies that one), as if vendd had
     * died before writing it: the machine's journal is what is left. */
    remove_results_file(h);
    unlock_database(lock);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM dispense_logs WHERE order_id = 'why-1'", "SENT", 0),
        0);
    assert_int_equal(harness_vendd_start(h), 0);
    /* The deadline asks the machine; its journal has the drop. */
    expect_dropped_once(e, "why-1");
    assert_int_equal(harness_sql_wait(h, "SELECT settled_by FROM dispense_logs", "MACHINE", 0), 0);
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* Why 2: the broker stalls with the command: the machine gets it after the deadline. */
static void command_delivered_after_the_deadline_is_refused_and_settled(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;

    assert_int_equal(harness_order(h, "why-2", 1, 1), 0);
    assert_int_equal(kill(h->broker.pid, SIGSTOP), 0);
    /* vendd hands the command to its socket; the broker reads nothing. */
    assert_int_equal(harness_trigger(h, "why-2", NULL), 200);
    assert_int_equal(harness_log_wait(h, "UNSETTLED", 1, 15000), 1);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'why-2'", "DISPENSING", 0), 0);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM refunds"), 0);
    assert_int_equal(kill(h->broker.pid, SIGCONT), 0);
    /* The command arrives past its expiresAt: refused, journaled, and the settle answered. */
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || failure_reason FROM orders "
                                      "WHERE id = 'why-2'",
                                      "FAILED EXPIRED", 20000),
                     0);
    assert_int_equal(motor_runs(e), 0);
    assert_int_equal(sql_int(e, "SELECT current_stock FROM slots WHERE slot_number = 1"), 5);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM refunds WHERE order_id = 'why-2'"), 1);
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* Why 3: a result vendd cannot commit for a while waits and is applied, not dropped. */
static void result_on_a_locked_database_is_applied_later(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    struct harness_db_lock *lock;

    /* A deadline well past vendd's 5 s busy wait, so the result is applied from memory,
     * not recovered by a settle. */
    assert_int_equal(harness_put_slot(h, 1, 5, 9000), 0);
    assert_int_equal(harness_order(h, "why-3", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "why-3", NULL), 200);
    lock = lock_database(e);
    assert_int_equal(harness_log_wait(h, "kept to be applied again", 1, 15000), 1);
    unlock_database(lock);
    expect_dropped_once(e, "why-3");
    assert_int_equal(sql_int(e, "SELECT settle_asks FROM dispense_logs WHERE order_id = 'why-3'"),
                     0);
    assert_true(harness_metric(h, "vendd_dispense_results_retried_total") >= 1);
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* A machine that never answers: the unit waits UNSETTLED, visible, until an operator who has
 * looked at the machine settles it. */
static void silent_machine_leaves_the_unit_to_the_operator(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    struct harness_reply r = {0};

    assert_int_equal(harness_order(h, "silent", 1, 1), 0);
    assert_int_equal(kill(e->sim, SIGSTOP), 0); /* connected, and deaf */
    assert_int_equal(harness_trigger(h, "silent", NULL), 200);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status FROM dispense_logs WHERE order_id = "
                                      "'silent'",
                                      "UNSETTLED", 15000),
                     0);
    assert_int_equal(harness_call(h, "GET", "/api/dispense/status/silent", NULL, &r), 200);
    assert_string_equal(harness_reply_str(&r, "units.0.status"), "UNSETTLED");
    harness_reply_free(&r);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM alerts WHERE kind = 'UNIT_UNSETTLED' AND "
                                "resolved_at IS NULL"),
                     1);
    /* Not while it is waiting for a result, and not without a word on the drop. */
    assert_int_equal(
        harness_call(h, "POST", "/api/dispense/settle", "{\"order_id\":\"silent\"}", &r), 422);
    harness_reply_free(&r);
    assert_int_equal(harness_call(h, "POST", "/api/dispense/settle",
                                  "{\"order_id\":\"silent\",\"dropped\":false}", &r),
                     200);
    assert_string_equal(harness_reply_str(&r, "status"), "FAILED");
    harness_reply_free(&r);
    assert_int_equal(harness_call(h, "POST", "/api/dispense/settle",
                                  "{\"order_id\":\"silent\",\"dropped\":false}", &r),
                     409);
    harness_reply_free(&r);
    assert_int_equal(harness_sql_wait(h, "SELECT settled_by FROM dispense_logs", "OPERATOR", 0), 0);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM refunds WHERE order_id = 'silent'"), 1);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM alerts WHERE kind = 'UNIT_UNSETTLED' AND "
                                "resolved_at IS NULL"),
                     0);
    /* The machine wakes and finds the command late: it never runs it. */
    assert_int_equal(kill(e->sim, SIGCONT), 0);
    assert_true(harness_log_wait(h, "rejected dispense_result for order 'silent'", 1, 10000) >= 1);
    assert_int_equal(motor_runs(e), 0);
    assert_int_equal(sql_int(e, "SELECT current_stock FROM slots WHERE slot_number = 1"), 5);
    assert_int_equal(harness_check(h, e->drops), 0);
}

/* A machine that stops answering: its unit waits UNSETTLED, and settles when it returns. */
static void silent_machine_settles_when_it_returns(void **state)
{
    struct e2e *e = *state;
    struct harness *h = &e->f->h;
    int status = 0;

    kill(e->sim, SIGTERM);
    waitpid(e->sim, &status, 0);
    e->sim = start_vmsim(e, true);
    assert_true(e->sim > 0);
    assert_int_equal(harness_log_wait(h, "machine 'VM01' is ONLINE", 2, 10000), 2);
    assert_int_equal(harness_order(h, "mute", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "mute", NULL), 200); /* dropped by the deaf machine */
    assert_int_equal(harness_sql_wait(h, "SELECT status FROM dispense_logs WHERE order_id = 'mute'",
                                      "UNSETTLED", 15000),
                     0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'mute'", "DISPENSING", 0), 0);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM refunds"), 0);
    /* It wakes and says ONLINE: vendd asks at once (well before its next ask, 5 s after the
     * first); it never got the command, so it journals the unit as never to run, and the
     * order fails with its refund. */
    assert_int_equal(kill(e->sim, SIGUSR1), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || failure_reason FROM orders "
                                      "WHERE id = 'mute'",
                                      "FAILED CANCELLED", 4000),
                     0);
    assert_int_equal(harness_sql_wait(h, "SELECT settled_by FROM dispense_logs", "MACHINE", 0), 0);
    assert_int_equal(sql_int(e, "SELECT count(*) FROM refunds WHERE order_id = 'mute'"), 1);
    assert_int_equal(motor_runs(e), 0);
    assert_int_equal(sql_int(e, "SELECT current_stock FROM slots WHERE slot_number = 1"), 5);
    /* The machine is free again: the next order dispenses. */
    assert_int_equal(harness_order(h, "after-mute", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "after-mute", NULL), 200);
    assert_int_equal(harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'after-mute'",
                                      "COMPLETED", 10000),
                     0);
    assert_int_equal(harness_check(h, e->drops), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(result_lost_by_a_killed_vendd_is_recovered_by_settle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(command_delivered_after_the_deadline_is_refused_and_settled,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(result_on_a_locked_database_is_applied_later, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(silent_machine_leaves_the_unit_to_the_operator, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(silent_machine_settles_when_it_returns, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
