/*
 * it_db_storage.c - the database's disk fills up under a running vendd (SPEC §4: no paid
 * order lost, nothing dispensed twice, bad conditions change nothing half-way).
 *
 * The test runs in a private mount namespace (a user namespace when not root) with vendd's
 * directory on a small tmpfs. With a unit in flight and a customer order waiting for its
 * payment, a ballast file takes the last free byte and telemetry grows the WAL until SQLite
 * answers SQLITE_FULL. Then, while the disk is full:
 *   - the machine's dispense_result cannot be stored: vendd keeps it (results_retried), stays
 *     up, and records nothing half-way;
 *   - the payment notification is refused with a non-2xx answer, so Midtrans sends it again,
 *     and no payment event is recorded.
 * Once the ballast goes, the kept result completes its order and the notification, sent
 * again, pays the other one, which dispenses once: the stock is exact, one event per payment,
 * and SQLite's integrity check passes.
 *
 * And a database on a read-only mount: vendd refuses to start, in one line naming the file,
 * instead of running on a database it cannot write.
 *
 * Without namespaces (a container that forbids them) the test says why and is skipped (77).
 */
#define _GNU_SOURCE /* unshare() */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define SKIP          77
#define DISK_SIZE     "size=6m"
#define WAIT_MS       20000
#define TELEMETRY_MAX 20000 /* messages sent at most to fill the WAL */

static const char s_telemetry[] =
    "{\"timestamp\":\"2025-11-04T10:30:00Z\",\"slots\":[{\"id\":1,\"level\":\"FULL\"}],"
    "\"temperature\":25.5,\"door\":\"CLOSED\"}";

static char s_disk[64]; /* the tmpfs: every file of the test lives here */

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A mount namespace of our own (and a user namespace when not root, mapping our ids onto
 * themselves), with a tmpfs of DISK_SIZE on s_disk. Single-threaded: first thing in main().
 * Returns 0, or SKIP with the reason on stderr. */
static int private_disk(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    char map[64];

    if (uid == 0) {
        if (unshare(CLONE_NEWNS) < 0) {
            fprintf(stderr, "it_db_storage: skipped: unshare(CLONE_NEWNS): %s\n", strerror(errno));
            return SKIP;
        }
    } else {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
            fprintf(stderr, "it_db_storage: skipped: no user namespace: %s\n", strerror(errno));
            return SKIP;
        }
        snprintf(map, sizeof(map), "%u %u 1", (unsigned)uid, (unsigned)uid);
        if (write_text("/proc/self/setgroups", "deny") < 0 ||
            write_text("/proc/self/uid_map", map) < 0) {
            fprintf(stderr, "it_db_storage: skipped: cannot map the user id: %s\n",
                    strerror(errno));
            return SKIP;
        }
        snprintf(map, sizeof(map), "%u %u 1", (unsigned)gid, (unsigned)gid);
        if (write_text("/proc/self/gid_map", map) < 0) {
            fprintf(stderr, "it_db_storage: skipped: cannot map the group id: %s\n",
                    strerror(errno));
            return SKIP;
        }
    }
    /* Nothing mounted here may reach the host's mount table. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        fprintf(stderr, "it_db_storage: skipped: cannot make / private: %s\n", strerror(errno));
        return SKIP;
    }
    snprintf(s_disk, sizeof(s_disk), "/tmp/vendd-disk-XXXXXX");
    if (mkdtemp(s_disk) == NULL) {
        fprintf(stderr, "it_db_storage: cannot make a directory in /tmp: %s\n", strerror(errno));
        return 1;
    }
    if (mount("vendd-it-disk", s_disk, "tmpfs", MS_NOSUID | MS_NODEV, DISK_SIZE) < 0) {
        fprintf(stderr, "it_db_storage: skipped: cannot mount a tmpfs: %s\n", strerror(errno));
        rmdir(s_disk);
        return SKIP;
    }
    setenv("TMPDIR", s_disk, 1);
    return 0;
}

/* Fill the disk to its last byte: bytes written to path, or -1. */
static long long fill_disk(const char *path)
{
    static char block[64 * 1024];
    long long total = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    if (fd < 0)
        return -1;
    for (size_t size = sizeof(block); size > 0;) {
        ssize_t n = write(fd, block, size);

        if (n > 0) {
            total += n;
            continue;
        }
        if (n < 0 && errno != ENOSPC) {
            close(fd);
            return -1;
        }
        size /= 2; /* the tail: smaller writes until not one byte fits */
    }
    close(fd);
    return total;
}

static long long sql_int(struct harness *h, const char *sql)
{
    long long v = -1;

    assert_int_equal(harness_sql_int(h, sql, &v), 1);
    return v;
}

static void disk_full_loses_nothing(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=60000", NULL};
    static const struct harness_slot slots[] = {{1, 10, 3000}, {0, 0, 0}};
    struct harness_fixture *f;
    struct harness *h;
    struct harness_reply r = {0};
    char ballast[HARNESS_PATH_MAX + 16], paid_id[64], order[64], sql[256];
    long long stored, lost, retried;
    int slot, unit, sent = 0;
    long st;

    (void)state;
    f = harness_fixture_new_midtrans(env, NULL, slots, "it-storage-vm01");
    assert_non_null(f);
    h = &f->h;

    /* A customer order waiting for its payment, and a manual one whose unit is at the
     * machine. */
    assert_int_equal(harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", paid_id,
                                            sizeof(paid_id), NULL),
                     201);
    assert_int_equal(harness_order(h, "DISK-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "DISK-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, 1, WAIT_MS), 1);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, 0), order,
                                           sizeof(order), &slot, &unit),
                     0);
    assert_string_equal(order, "DISK-1");

    /* The disk fills; telemetry grows the WAL until a group commit fails for lack of room. */
    snprintf(ballast, sizeof(ballast), "%s/ballast", s_disk);
    assert_true(fill_disk(ballast) > 0);
    stored = harness_metric(h, "vendd_telemetry_stored_total");
    for (lost = 0; lost == 0 && sent < TELEMETRY_MAX; sent += 200) {
        for (int i = 0; i < 200; i++)
            assert_int_equal(harness_mqtt_publish(&f->machine, "vm/VM01/telemetry", s_telemetry,
                                                  sizeof(s_telemetry) - 1),
                             0);
        lost = harness_metric(h, "vendd_ingest_batch_lost_total");
    }
    fprintf(stderr, "it_db_storage: disk full after %d telemetry messages (%lld stored before)\n",
            sent, stored);
    assert_true(lost > 0);

    /* The result of the unit in flight: kept, not applied half-way, not lost. */
    retried = harness_metric(h, "vendd_dispense_results_retried_total");
    assert_int_equal(harness_answer(&f->machine, "DISK-1", slot, unit), 0);
    for (int i = 0; i < 100 && harness_metric(h, "vendd_dispense_results_retried_total") == retried;
         i++)
        usleep(50 * 1000);
    assert_true(harness_metric(h, "vendd_dispense_results_retried_total") > retried);
    assert_true(harness_metric(h, "vendd_results_waiting") >= 1);

    /* The payment: refused, so Midtrans would send it again; nothing recorded. */
    st = harness_notify(h, paid_id, "settlement", "8000.00", HARNESS_FAKE_KEY, &r);
    harness_reply_free(&r);
    assert_true(st >= 500);
    assert_true(harness_vendd_alive(h));

    /* Still full after the first retries (100, 200, 400, 800 ms): still kept, nothing
     * applied. */
    usleep(1600 * 1000);
    assert_true(harness_metric(h, "vendd_results_waiting") >= 1);
    {
        char status[32];

        assert_int_equal(harness_sql_text(h, "SELECT status FROM orders WHERE id = 'DISK-1'",
                                          status, sizeof(status)),
                         1);
        assert_string_equal(status, "DISPENSING");
    }

    /* Room again: the kept result completes its order. */
    assert_int_equal(unlink(ballast), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'DISK-1'", "COMPLETED", WAIT_MS),
        0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM payment_events WHERE order_id = '%s' AND "
             "transaction_status = 'settlement'",
             paid_id);
    assert_int_equal(sql_int(h, sql), 0);

    /* The payment, sent again, is taken once and dispenses once. */
    harness_mqtt_set_handler(&f->machine, harness_autoanswer,
                             &(struct harness_autoanswer){.mu = PTHREAD_MUTEX_INITIALIZER});
    assert_int_equal(harness_notify(h, paid_id, "settlement", "8000.00", HARNESS_FAKE_KEY, NULL),
                     200);
    snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", paid_id);
    assert_int_equal(harness_sql_wait(h, sql, "COMPLETED", WAIT_MS), 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM payment_events WHERE order_id = '%s' AND "
             "transaction_status = 'settlement'",
             paid_id);
    assert_int_equal(sql_int(h, sql), 1);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM dispense_logs WHERE status = 'SUCCEEDED'"),
                     2);
    assert_int_equal(sql_int(h, "SELECT current_stock FROM slots WHERE machine_id = 'VM01' AND "
                                "slot_number = 1"),
                     8);
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, WAIT_MS), 2); /* one command each */
    assert_true(harness_vendd_alive(h));
    {
        char ok[32];

        assert_int_equal(harness_sql_text(h, "PRAGMA integrity_check", ok, sizeof(ok)), 1);
        assert_string_equal(ok, "ok");
    }
    /* No reading stored in part (a group of telemetry opens no savepoint per reading, and is
     * applied again when one fails half-way): every raw row has its sample in its hour's
     * rollup, and the machine row was last moved by a stored reading. */
    fprintf(stderr, "it_db_storage: %lld group commit(s) of telemetry applied again\n",
            harness_metric(h, "vendd_ingest_batch_replays_total"));
    assert_int_equal(sql_int(h, "SELECT count(*) FROM machines m WHERE (SELECT count(*) FROM "
                                "telemetry t WHERE t.machine_id = m.id) != COALESCE((SELECT "
                                "sum(samples) FROM telemetry_hourly h WHERE h.machine_id = m.id), "
                                "0)"),
                     0);
    assert_int_equal(sql_int(h, "SELECT count(*) FROM telemetry t JOIN machines m ON m.id = "
                                "t.machine_id WHERE t.received_at > m.last_seen"),
                     0);
    /* The checker is exec'd from inside this mount namespace, on the tmpfs's database. */
    assert_int_equal(harness_check(h, NULL), 0);
    harness_fixture_free(f);
}

/* Run vendd with DATABASE_URL=url until it exits (bounded): its status, and its stderr and
 * stdout in out. */
static int run_vendd(const char *url, char *out, size_t size)
{
    char db_env[HARNESS_PATH_MAX + 64];
    int fds[2], status = -1;
    size_t len = 0;
    pid_t pid;

    snprintf(db_env, sizeof(db_env), "DATABASE_URL=%s", url);
    if (pipe(fds) < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char *const argv[] = {getenv("VENDD"), NULL};
        char *const envp[] = {db_env, "MQTT_BROKER_URL=mqtt://127.0.0.1:1", "PORT=0",
                              "HOST=127.0.0.1", NULL};

        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(fds[1]);
    for (int waited = 0; waited < 10000;) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 100) == 0) {
            waited += 100;
            continue;
        }
        n = read(fds[0], out + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(fds[0]);
    /* Its output is closed; the exit may take a moment more (a sanitizer's report). */
    for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(50 * 1000);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1; /* still running: it did start */
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void read_only_database_refused_at_start(void **state)
{
    char dir[HARNESS_PATH_MAX], db[HARNESS_PATH_MAX + 16], url[HARNESS_PATH_MAX + 32];
    char out[4096];
    int fd, rc;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/ro", s_disk);
    snprintf(db, sizeof(db), "%s/vendd.db", dir);
    snprintf(url, sizeof(url), "sqlite:%s", db);
    assert_int_equal(mkdir(dir, 0700), 0);
    fd = open(db, O_WRONLY | O_CREAT, 0600); /* an empty file is an empty database */
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(mount(dir, dir, NULL, MS_BIND, NULL), 0);
    assert_int_equal(mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), 0);
    rc = run_vendd(url, out, sizeof(out));
    umount(dir);
    fprintf(stderr, "it_db_storage: vendd on a read-only mount exited %d: %s", rc, out);
    assert_true(rc > 0);
    /* The first file it needs there says it: the lock beside the database, or the database. */
    assert_non_null(strcasestr(out, "read-only"));
    assert_non_null(strstr(out, db));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disk_full_loses_nothing),
        cmocka_unit_test(read_only_database_refused_at_start),
    };
    int rc = private_disk();

    if (rc != 0)
        return rc;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    umount(s_disk);
    rmdir(s_disk);
    return rc;
}
