/*
 * it_instances.c - two vendd on one PostgreSQL and one broker (MQTT_SHARED_GROUP), the smoke
 * test of several instances (the larger suite runs three).
 *
 * 1. Orders triggered on instance 1; the machine's results go to whichever instance the
 *    broker picks (round-robin over the group): each order COMPLETED once, the stock taken
 *    once per unit, and both instances applied results.
 * 2. An event stream on instance 2 shows an order made on instance 1 at once (NOTIFY).
 * 3. A unit sent by instance 1, which is then killed (SIGKILL) while the machine stays
 *    silent: instance 2, started before the unit existed, learns of its deadline from the
 *    rows and fails it NO_RESULT (the order FAILED, its refund queued) in time.
 * 4. A refund left SENT by an instance that died (its lease past): instance 2 takes it back
 *    into the queue and sends it (here, a manual order's: to the operator).
 * 5. With instance 1 dead, every result goes to instance 2: its session ended with its
 *    connection, so the broker no longer counts it in the group (with a session kept, half of
 *    them would wait for it).
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define MOTOR_MS 1500 /* deadline: 1.5 s + 1 s grace after the command */
#define GRACE_MS 1000

struct two {
    struct harness_fixture *f; /* instance 1 (vendd-1), the broker, the database, VM01 */
    struct harness h2;         /* instance 2 (vendd-2): f's broker and database, its own dir */
};

static int setup(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000",
                                      "MQTT_SHARED_GROUP=it-instances", "MQTT_CLIENT_ID=vendd-1",
                                      NULL};
    static const struct harness_slot slots[] = {{1, 10, MOTOR_MS}, {0, 0, 0}};
    struct two *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -1;
    t->f = harness_fixture_new(env, slots, "it-instances-vm");
    if (t->f == NULL) {
        free(t);
        return -1;
    }
    /* The second instance: the first one's settings, its own client id, port and directory
     * (its results file and log). */
    t->h2 = t->f->h;
    t->h2.pid = 0;
    t->h2.starts = 0;
    t->h2.reaped = false;
    snprintf(t->h2.dir, sizeof(t->h2.dir), "%s", "/tmp/vendd-it2-XXXXXX");
    if (getenv("TMPDIR") != NULL)
        snprintf(t->h2.dir, sizeof(t->h2.dir), "%s/vendd-it2-XXXXXX", getenv("TMPDIR"));
    if (mkdtemp(t->h2.dir) == NULL || harness_env_set(&t->h2, "MQTT_CLIENT_ID=vendd-2") < 0 ||
        harness_new_http_port(&t->h2) < 0) {
        harness_fixture_free(t->f);
        free(t);
        return -1;
    }
    snprintf(t->h2.log_path, sizeof(t->h2.log_path), "%s/vendd.log", t->h2.dir);
    if (harness_vendd_start(&t->h2) < 0) {
        harness_fixture_free(t->f);
        free(t);
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct two *t = *state;
    char cmd[HARNESS_PATH_MAX + 16];

    harness_vendd_kill(&t->h2);
    if (getenv("VEND_KEEP") == NULL) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->h2.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", t->h2.dir);
    }
    harness_fixture_free(t->f);
    free(t);
    return 0;
}

/* Wait for the command of order_id on VM01 (the n-th command seen), then answer it. */
static void dispense_and_answer(struct two *t, const char *order_id, size_t n)
{
    char got[64];
    int slot = 0, unit = 0;

    assert_int_equal(harness_mqtt_wait(&t->f->machine, n, 5000), n);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&t->f->machine, n - 1), got,
                                           sizeof(got), &slot, &unit),
                     0);
    assert_string_equal(got, order_id);
    assert_int_equal(harness_answer(&t->f->machine, order_id, slot, unit), 0);
}

static void results_applied_by_either_instance(void **state)
{
    struct two *t = *state;
    struct harness *h1 = &t->f->h;
    static const char *const ids[] = {"inst-1", "inst-2", "inst-3", "inst-4"};
    char sql[160];
    long long n = 0;

    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(harness_order(h1, ids[i], 1, 1), 0);
        assert_int_equal(harness_trigger(i % 2 ? &t->h2 : h1, ids[i], NULL), 200);
        dispense_and_answer(t, ids[i], i + 1);
        snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", ids[i]);
        assert_int_equal(harness_sql_wait(h1, sql, "COMPLETED", 5000), 0);
    }
    /* Once each: one dispense row per order, SUCCEEDED, and the stock 10 - 4. */
    assert_int_equal(harness_sql_int(h1,
                                     "SELECT count(*) FROM dispense_logs WHERE order_id LIKE "
                                     "'inst-%' AND status = 'SUCCEEDED'",
                                     &n),
                     1);
    assert_int_equal(n, 4);
    assert_int_equal(
        harness_sql_int(h1, "SELECT current_stock FROM slots WHERE slot_number = 1", &n), 1);
    assert_int_equal(n, 6);
    assert_int_equal(harness_sql_int(h1,
                                     "SELECT count(*) FROM stock_logs WHERE change_type = "
                                     "'DISPENSE' AND order_id LIKE 'inst-%'",
                                     &n),
                     1);
    assert_int_equal(n, 4);
    /* The broker spread the results: each instance applied some. */
    assert_true(harness_log_count(h1, "COMPLETED") > 0);
    assert_true(harness_log_count(&t->h2, "COMPLETED") > 0);
}

/* GET /api/events on port: the connected socket, the request sent; -1 on failure. */
static int events_open(uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    static const char req[] = "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Read fd into buf until needle shows up or timeout_ms pass; true if it did. */
static bool events_wait(int fd, char *buf, size_t size, size_t *len, const char *needle,
                        int timeout_ms)
{
    uint64_t end = harness_now_ms() + (uint64_t)timeout_ms;

    while (strstr(buf, needle) == NULL && harness_now_ms() < end && *len < size - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 20) <= 0)
            continue;
        n = read(fd, buf + *len, size - 1 - *len);
        if (n <= 0)
            break;
        *len += (size_t)n;
        buf[*len] = '\0';
    }
    return strstr(buf, needle) != NULL;
}

static void events_of_one_instance_on_the_other(void **state)
{
    struct two *t = *state;
    static char buf[65536];
    size_t len = 0;
    uint64_t made, seen;
    int fd = events_open(t->h2.http_port);

    assert_true(fd >= 0);
    buf[0] = '\0';
    assert_true(events_wait(fd, buf, sizeof(buf), &len, "\r\n\r\n", 2000)); /* headers */
    harness_sleep_ms(300); /* the stream is attached and idle */
    assert_int_equal(harness_order(&t->f->h, "inst-event", 1, 1), 0);
    made = harness_now_ms();
    assert_true(events_wait(fd, buf, sizeof(buf), &len, "inst-event", 3000));
    seen = harness_now_ms();
    close(fd);
    fprintf(stderr, "order made on instance 1, its event on instance 2 after %llu ms\n",
            (unsigned long long)(seen - made));
    /* NOTIFY: at once, not at a periodic look (250 ms without it, 1 s alone). */
    assert_true(seen - made < 200);
    /* Each instance LISTENs on a connection of its own. */
    assert_int_equal(harness_sql_wait(&t->f->h,
                                      "SELECT count(*) FROM pg_stat_activity WHERE query = "
                                      "'LISTEN \"vendd:it-instances\"'",
                                      "2", 1000),
                     0);
}

static void dead_instances_deadline_taken_over(void **state)
{
    struct two *t = *state;
    struct harness *h1 = &t->f->h;
    size_t seen = harness_mqtt_wait(&t->f->machine, 0, 0);
    uint64_t sent, failed;

    assert_int_equal(harness_order(h1, "inst-kill", 1, 1), 0);
    assert_int_equal(harness_trigger(h1, "inst-kill", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&t->f->machine, seen + 1, 5000), seen + 1);
    sent = harness_now_ms();
    harness_vendd_kill(h1); /* the machine never answers */
    assert_int_equal(
        harness_sql_wait(h1, "SELECT status FROM orders WHERE id = 'inst-kill'", "FAILED", 10000),
        0);
    failed = harness_now_ms();
    assert_int_equal(harness_sql_wait(h1,
                                      "SELECT status || ' ' || error_message FROM dispense_logs "
                                      "WHERE order_id = 'inst-kill'",
                                      "NO_RESULT NO_RESULT", 1000),
                     0);
    /* Not before the deadline, and within a second or two of it (the re-arm from the rows). */
    assert_true(failed - sent >= MOTOR_MS + GRACE_MS - 200);
    assert_true(failed - sent <= MOTOR_MS + GRACE_MS + 3000);
    assert_true(harness_log_count(&t->h2, "FAILED: no result") >= 1);
    assert_int_equal(harness_sql_wait(h1,
                                      "SELECT count(*) FROM refunds WHERE order_id = 'inst-kill'",
                                      "1", 1000),
                     0);
    /* No second command for it, from anyone. */
    assert_int_equal(harness_mqtt_wait(&t->f->machine, seen + 2, 500), seen + 1);
}

static void dead_instances_refund_taken_back(void **state)
{
    struct two *t = *state;
    struct harness *h1 = &t->f->h;
    char sql[256], past[40];

    /* The refund of the order failed above went to the operator (a manual order); make it
     * what a sender killed mid-call leaves: SENT, its lease ten minutes past. */
    assert_int_equal(harness_sql_wait(h1, "SELECT status FROM refunds WHERE order_id = 'inst-kill'",
                                      "OPERATOR", 5000),
                     0);
    harness_iso_time(past, sizeof(past), -600000);
    snprintf(sql, sizeof(sql),
             "UPDATE refunds SET status = 'SENT', next_attempt_at = '%s' WHERE order_id = "
             "'inst-kill' RETURNING status",
             past);
    assert_int_equal(harness_sql_text(h1, sql, (char[16]){0}, 16), 1);
    assert_int_equal(harness_sql_wait(h1, "SELECT status FROM refunds WHERE order_id = 'inst-kill'",
                                      "OPERATOR", 5000),
                     0);
    assert_true(harness_log_count(&t->h2, "gave no answer within") >= 1);
}

static void results_after_a_death_go_to_the_living(void **state)
{
    struct two *t = *state;
    static const char *const ids[] = {"inst-after-1", "inst-after-2", "inst-after-3"};
    size_t seen = harness_mqtt_wait(&t->f->machine, 0, 0);
    char sql[160];

    assert_false(harness_vendd_alive(&t->f->h)); /* killed in the test before */
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(harness_order(&t->h2, ids[i], 1, 1), 0);
        assert_int_equal(harness_trigger(&t->h2, ids[i], NULL), 200);
        dispense_and_answer(t, ids[i], seen + i + 1);
        snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", ids[i]);
        assert_int_equal(harness_sql_wait(&t->f->h, sql, "COMPLETED", 5000), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(results_applied_by_either_instance),
        cmocka_unit_test(events_of_one_instance_on_the_other),
        cmocka_unit_test(dead_instances_deadline_taken_over),
        cmocka_unit_test(dead_instances_refund_taken_back),
        cmocka_unit_test(results_after_a_death_go_to_the_living),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
