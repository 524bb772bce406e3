/*
 * it_restart.c - restarts of vendd (SPEC §4 rules 1 and 3, §8).
 *
 * 1. Trigger, SIGKILL vendd before any result, start it again: the unit's deadline is
 *    resumed from the database and fires (FAILED / NO_RESULT, refund queued), and no
 *    second command is ever published for it.
 * 2. Trigger, SIGTERM vendd (clean exit 0), the machine's result arrives while vendd is
 *    down (the broker queues it in vendd's persistent session), start vendd: the result is
 *    applied and the order is COMPLETED, again with one command in all.
 * 3. The same past the unit's deadline; 4. the same with vendd back on another HTTP port
 *    (the session's id, MQTT_CLIENT_ID, does not depend on it); 5. MQTT_CLIENT_ID is used.
 * 6. A result (and a trigger) read in the loop turn that also reads SIGTERM: applied before
 *    vendd stops, not dropped with the unit left to fail NO_RESULT and be refunded.
 * 7. A result waiting for a database locked past the busy timeout when SIGTERM comes: in
 *    the database after the restart.
 * 8. A second vendd on the database is refused; with MQTT_SHARED_GROUP (PostgreSQL) one
 *    with another MQTT_CLIENT_ID runs beside the first, one with the same id is refused.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define MOTOR1_MS           2000  /* deadline 3 s: passes after the restart, not before it */
#define MOTOR2_MS           10000 /* deadline 11 s: never reached in part 2 */
#define GRACE_MS            1000
#define SLACK_MS            2000
#define DISPENSE_ANSWER_MAX 512

static int setup(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", NULL};
    static const struct harness_slot slots[] = {{1, 5, MOTOR1_MS}, {2, 5, MOTOR2_MS}, {0, 0, 0}};

    *state = harness_fixture_new(env, slots, "it-restart");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void deadline_survives_sigkill(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    uint64_t sent, restarted, failed;

    assert_int_equal(harness_order(h, "kill-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "kill-1", NULL), 200);
    sent = harness_now_ms();
    assert_int_equal(harness_mqtt_wait(&f->machine, 1, 5000), 1);
    harness_vendd_kill(h);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'kill-1'", "DISPENSING", 0), 0);

    assert_int_equal(harness_vendd_start(h), 0);
    restarted = harness_now_ms();
    if (restarted - sent >= MOTOR1_MS + GRACE_MS)
        print_message("note: restart took until past the deadline; resume fails it at start\n");
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || failure_reason FROM orders "
                                      "WHERE id = 'kill-1'",
                                      "FAILED NO_RESULT", MOTOR1_MS + GRACE_MS + SLACK_MS),
                     0);
    failed = harness_now_ms();
    if (failed - sent + 50 < MOTOR1_MS + GRACE_MS)
        fail_msg("failed after %llu ms, before the deadline", (unsigned long long)(failed - sent));
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM refunds WHERE order_id = 'kill-1'", "QUEUED", 0),
        0);
    /* The unit was SENT before the crash: it must not go out again. */
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 1000), 1);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void result_queued_while_down_is_applied(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    long long stock;

    assert_int_equal(harness_order(h, "term-1", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "term-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, 2, 5000), 2);
    assert_non_null(strstr(harness_mqtt_payload(&f->machine, 1), "\"orderId\":\"term-1\""));
    assert_int_equal(harness_vendd_term(h), 0);

    assert_int_equal(harness_answer(&f->machine, "term-1", 2, 0), 0);
    harness_sleep_ms(200);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'term-1'", "DISPENSING", 0), 0);

    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'term-1'", "COMPLETED", 5000), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || late_result FROM dispense_logs "
                                      "WHERE order_id = 'term-1'",
                                      "SUCCEEDED 0", 0),
                     0);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 2", &stock), 1);
    assert_int_equal(stock, 4);
    assert_int_equal(harness_mqtt_wait(&f->machine, 3, 1000), 2);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/*
 * vendd is down past the unit's deadline while the machine's result waits in vendd's broker
 * session. On restart the result must be applied as it is, not after a NO_RESULT failure,
 * an alert and a refund: the first deadline sweep waits one grace period for it.
 */
static void result_held_past_deadline_is_applied_first(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);

    assert_int_equal(harness_vendd_start(h), 0); /* the case before stopped it */
    assert_int_equal(harness_order(h, "held-1", 1, 1), 0);
    assert_int_equal(harness_trigger(h, "held-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 5000), seen + 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_answer(&f->machine, "held-1", 1, 0), 0);
    harness_sleep_ms(MOTOR1_MS + GRACE_MS + 500); /* well past the unit's deadline */

    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'held-1'", "COMPLETED", 5000), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || late_result FROM dispense_logs "
                                      "WHERE order_id = 'held-1'",
                                      "SUCCEEDED 0", 0),
                     0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT (SELECT count(*) FROM refunds WHERE order_id = "
                                      "'held-1') + (SELECT count(*) FROM alerts WHERE order_id = "
                                      "'held-1')",
                                      "0", 0),
                     0);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/*
 * The broker keys vendd's session on MQTT_CLIENT_ID alone (SPEC §2): vendd restarted on
 * another HTTP port still finds the result the machine published while it was down.
 * Found in review: the id was "vendd-<host>-<PORT>", so a new port meant a new, empty session.
 */
static void session_survives_a_port_change(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);

    assert_int_equal(harness_vendd_start(h), 0); /* the case before stopped it */
    assert_int_equal(harness_order(h, "port-1", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "port-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 5000), seen + 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_answer(&f->machine, "port-1", 2, 0), 0);

    assert_int_equal(harness_new_http_port(h), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'port-1'", "COMPLETED", 5000), 0);
    /* Every start so far connected as the default id. */
    assert_int_equal(harness_broker_log_count(h, " as vendd ("), h->starts);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/* An installation that shares its broker names its own session. */
static void client_id_is_configurable(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;

    assert_int_equal(harness_env_set(h, "MQTT_CLIENT_ID=it-restart-vendd"), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(harness_broker_log_count(h, " as it-restart-vendd ("), 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/*
 * Bytes waiting in the receive queue of vendd's TCP socket local_port -> remote_port (IPv4
 * loopback, from /proc), or -1 if vendd holds no such socket: a test knows that something
 * sent to a frozen vendd has reached it.
 */
static long vendd_rx_queue(const struct harness *h, unsigned local_port, unsigned remote_port)
{
    char path[64], line[512], want[64];
    unsigned long inode = 0, lport, rport, st, tx, rx;
    long found = -1;
    FILE *f = fopen("/proc/net/tcp", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, " %*u: %*x:%lx %*x:%lx %lx %lx:%lx %*x:%*x %*x %*u %*u %lu", &lport,
                   &rport, &st, &tx, &rx, &inode) == 6 &&
            lport == local_port && rport == remote_port && st == 1) {
            found = (long)rx;
            break;
        }
    }
    fclose(f);
    if (found < 0)
        return -1;
    /* vendd's end, not the peer's: one of its descriptors is that socket. */
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    for (int fd = 0; fd < 256; fd++) {
        char link[64];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)h->pid, fd);
        n = readlink(path, link, sizeof(link) - 1);
        if (n > 0) {
            link[n] = '\0';
            if (strcmp(link, want) == 0)
                return found;
        }
    }
    return -1;
}

/* Wait until vendd's socket local_port -> remote_port holds received bytes (or, with
 * any_rx false, merely exists). 0, or -1 after 5 s. */
static int vendd_rx_wait(const struct harness *h, unsigned local_port, unsigned remote_port,
                         bool any_rx)
{
    for (int i = 0; i < 500; i++) {
        long rx = vendd_rx_queue(h, local_port, remote_port);

        if (any_rx ? rx > 0 : rx >= 0)
            return 0;
        harness_sleep_ms(10);
    }
    fprintf(stderr, "vendd's socket %u -> %u: nothing received\n", local_port, remote_port);
    return -1;
}

/* The local port of vendd's last dispense session with the broker (from the broker's log). */
static unsigned vendd_mqtt_port(const struct harness *h, const char *client_id)
{
    char path[sizeof(h->broker.dir) + 16], line[512], needle[96];
    unsigned port = 0, p;
    FILE *f;

    snprintf(path, sizeof(path), "%s/mosquitto.log", h->broker.dir);
    snprintf(needle, sizeof(needle), " as %s (", client_id);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        const char *from = strstr(line, "connected from 127.0.0.1:");

        if (from != NULL && strstr(line, needle) != NULL &&
            sscanf(from, "connected from 127.0.0.1:%u", &p) == 1)
            port = p;
    }
    fclose(f);
    return port;
}

/* A raw HTTP/1.1 client: connected now, its request written later. */
static int raw_connect(uint16_t port, unsigned *local_port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    socklen_t alen = sizeof(a);
    struct timeval tv = {.tv_sec = HARNESS_HTTP_TIMEOUT};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *local_port = ntohs(a.sin_port);
    return fd;
}

/* Everything the server sends until it closes (or the timeout), NUL-terminated. */
static void raw_read_all(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t got;

    while (n + 1 < size && (got = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)got;
    buf[n] = '\0';
}

/*
 * The machine's result (PUBACKed by the broker) and a trigger reach vendd's sockets while it
 * is frozen (SIGSTOP) with SIGTERM pending; thawed, vendd reads all three in one loop turn.
 * Both must be applied before vendd stops. Found in review: they sat in the dispense group,
 * whose 0 ms timer never fired, and were dropped at shutdown; the broker had its PUBACK, so
 * the result was gone, the unit failed NO_RESULT at its deadline and was refunded though the
 * product had dropped; the trigger was answered 503.
 */
static void last_turn_applied_at_sigterm(void **state)
{
    static const char body[] = "{\"order_id\":\"last-2\"}";
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char req[256], answer[DISPENSE_ANSWER_MAX];
    unsigned mqtt_port, http_client = 0;
    int fd, len;

    assert_int_equal(harness_vendd_start(h), 0); /* the case before stopped it */
    mqtt_port = vendd_mqtt_port(h, "it-restart-vendd");
    assert_int_not_equal(mqtt_port, 0);
    assert_int_equal(harness_order(h, "last-1", 1, 1), 0);
    assert_int_equal(harness_order(h, "last-2", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "last-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 5000), seen + 1);
    fd = raw_connect(h->http_port, &http_client);
    assert_true(fd >= 0);
    assert_int_equal(vendd_rx_wait(h, h->http_port, http_client, false), 0); /* accepted */

    assert_int_equal(kill(h->pid, SIGSTOP), 0);
    assert_int_equal(harness_answer(&f->machine, "last-1", 1, 0), 0);
    len = snprintf(req, sizeof(req),
                   "POST /api/dispense/trigger HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   strlen(body), body);
    assert_int_equal(write(fd, req, (size_t)len), len);
    assert_int_equal(vendd_rx_wait(h, mqtt_port, h->broker.port, true), 0);
    assert_int_equal(vendd_rx_wait(h, h->http_port, http_client, true), 0);
    assert_int_equal(kill(h->pid, SIGTERM), 0);
    assert_int_equal(kill(h->pid, SIGCONT), 0);
    assert_int_equal(harness_vendd_term(h), 0);
    raw_read_all(fd, answer, sizeof(answer));
    close(fd);

    /* Durable before the exit: the result, and the trigger with its real answer (its command
     * goes out once last-1's result frees the machine, whichever of the two came first). */
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT o.status || ' ' || l.status FROM orders o JOIN "
                                      "dispense_logs l ON l.order_id = o.id WHERE o.id = 'last-1'",
                                      "COMPLETED SUCCEEDED", 0),
                     0);
    if (strncmp(answer, "HTTP/1.1 200", 12) != 0 ||
        strstr(answer, "\"status\":\"DISPENSING\"") == NULL)
        fail_msg("the trigger read in the last turn was answered: %s", answer);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'last-2'", "DISPENSING", 0), 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 2000), seen + 2);
    assert_non_null(strstr(harness_mqtt_payload(&f->machine, seen + 1), "\"orderId\":\"last-2\""));

    /* And after a restart past last-1's deadline, nothing undoes it. */
    assert_int_equal(harness_vendd_start(h), 0);
    harness_sleep_ms(MOTOR1_MS + GRACE_MS + 500);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'last-1'", "COMPLETED", 0), 0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT (SELECT count(*) FROM refunds WHERE order_id = "
                                      "'last-1') + (SELECT count(*) FROM alerts WHERE order_id = "
                                      "'last-1')",
                                      "0", 0),
                     0);
    assert_int_equal(harness_answer(&f->machine, "last-2", 2, 0), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'last-2'", "COMPLETED", 5000), 0);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

/*
 * The machine's result (PUBACKed) comes while another process holds the database past
 * vendd's busy timeout, so it waits in memory; vendd is stopped (SIGTERM) before the lock
 * goes. Found in review: the waiting results were dropped at shutdown, and a machine without
 * a journal (this one) had its unit fail NO_RESULT and refunded though the product dropped.
 */
static void waiting_result_survives_sigterm(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    long long before, after;
    struct harness_db_lock *lock;

    assert_int_equal(harness_vendd_start(h), 0); /* the case before stopped it */
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 2", &before), 1);
    assert_int_equal(harness_order(h, "waits-1", 2, 1), 0);
    assert_int_equal(harness_trigger(h, "waits-1", NULL), 200);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 5000), seen + 1);
    lock = harness_db_lock(h);
    assert_non_null(lock);
    assert_int_equal(harness_answer(&f->machine, "waits-1", 2, 0), 0);
    assert_int_equal(harness_log_wait(h, "kept to be applied again", 1, 15000), 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_log_count(h, "for the next start"), 1);
    assert_int_equal(harness_db_unlock(lock), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'waits-1'", "DISPENSING", 0), 0);

    /* Back before the unit's deadline (MOTOR2_MS): the result, not a NO_RESULT. */
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'waits-1'", "COMPLETED", 3000),
        0);
    assert_int_equal(harness_sql_wait(h,
                                      "SELECT status || ' ' || late_result FROM dispense_logs "
                                      "WHERE order_id = 'waits-1'",
                                      "SUCCEEDED 0", 0),
                     0);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 2", &after), 1);
    assert_int_equal(after, before - 1);
    assert_int_equal(
        harness_sql_wait(h, "SELECT count(*) FROM refunds WHERE order_id = 'waits-1'", "0", 0), 0);
    assert_int_equal(harness_vendd_term(h), 0);
}

/*
 * A second vendd on the database of a running one stops before it opens the database: both
 * would keep their waiting results in the same file, each replacing the other's (found in
 * review). Its output names the lock.
 */
/*
 * Another vendd on h's database from h's working directory, with envp's extras (NULL-ended)
 * after the usual; its output into out until it exits or says it listens (10 s at most).
 * Returns its exit status, or -1 if it runs (then stopped with SIGTERM).
 */
static int second_vendd(struct harness *h, const char *const *extra, char *out, size_t size)
{
    char url[HARNESS_PATH_MAX + 32];
    char *envp[16] = {url, "MQTT_BROKER_URL=mqtt://127.0.0.1:1", "PORT=0", "HOST=127.0.0.1"};
    int fds[2], status = 0, n = 4;
    size_t len = 0;
    bool running = false;
    pid_t pid;

    snprintf(url, sizeof(url), "DATABASE_URL=%s", h->db_url);
    for (; extra != NULL && *extra != NULL && n < 15; extra++)
        envp[n++] = (char *)*extra;
    envp[n] = NULL;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *const argv[] = {h->vendd, NULL};

        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        /* The working directory too: with PostgreSQL the lock lives there. */
        if (chdir(h->dir) == 0)
            execve(argv[0], argv, envp);
        _exit(127);
    }
    close(fds[1]);
    /* Until it closes its output (it exits) or listens, 10 s at most. */
    for (int waited = 0; waited < 10000 && len < size - 1;) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        ssize_t got;

        if (poll(&p, 1, 100) == 0) {
            waited += 100;
            continue;
        }
        got = read(fds[0], out + len, size - 1 - len);
        if (got <= 0)
            break;
        len += (size_t)got;
        out[len] = '\0';
        if (strstr(out, "HTTP listening") != NULL) {
            running = true;
            break;
        }
    }
    out[len] = '\0';
    if (running) {
        harness_sleep_ms(300); /* past the start: still there */
        running = waitpid(pid, &status, WNOHANG) == 0;
        if (running)
            kill(pid, SIGTERM);
    }
    for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
        harness_sleep_ms(50);
    if (kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the second vendd did not stop: %s", out);
    }
    close(fds[0]);
    if (running)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void second_vendd_on_the_database_refused(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char out[4096] = "";
    int rc;

    assert_int_equal(harness_vendd_start(h), 0);
    rc = second_vendd(h, NULL, out, sizeof(out));
    assert_true(rc > 0);
    assert_non_null(strstr(out, "another vendd runs on this database"));
    /* The first one is untouched. */
    assert_true(harness_vendd_alive(h));
    assert_int_equal(harness_vendd_term(h), 0);
}

/*
 * With MQTT_SHARED_GROUP (PostgreSQL): an instance with another MQTT_CLIENT_ID starts beside
 * the first, one with the same id is refused (its results file and its broker session are
 * the first one's). On SQLite the option itself is refused.
 */
static void shared_group_instances_by_client_id(void **state)
{
    static const char *const same[] = {"MQTT_SHARED_GROUP=it-group", "MQTT_CLIENT_ID=vendd-1",
                                       NULL};
    static const char *const other[] = {"MQTT_SHARED_GROUP=it-group", "MQTT_CLIENT_ID=vendd-2",
                                        NULL};
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    char out[4096] = "";
    int rc;

    if (!harness_db_pg(h)) {
        assert_int_equal(harness_vendd_start(h), 0);
        rc = second_vendd(h, other, out, sizeof(out));
        assert_int_equal(rc, 78);
        assert_non_null(strstr(out, "MQTT_SHARED_GROUP: needs a postgres:// DATABASE_URL"));
        assert_true(harness_vendd_alive(h));
        assert_int_equal(harness_vendd_term(h), 0);
        return;
    }
    assert_int_equal(harness_env_set(h, same[0]), 0);
    assert_int_equal(harness_env_set(h, same[1]), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    rc = second_vendd(h, same, out, sizeof(out));
    assert_true(rc > 0);
    assert_non_null(
        strstr(out, "another vendd runs on this database with MQTT_CLIENT_ID 'vendd-1'"));
    out[0] = '\0';
    rc = second_vendd(h, other, out, sizeof(out));
    if (rc != -1)
        fail_msg("vendd-2 did not run beside vendd-1 (exit %d): %s", rc, out);
    /* A vendd without the group is still one per database: refused beside vendd-1 only if
     * in the same directory as its file, which it is not; the first one is untouched. */
    assert_true(harness_vendd_alive(h));
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_env_set(h, "MQTT_SHARED_GROUP="), 0);
    assert_int_equal(harness_env_set(h, "MQTT_CLIENT_ID="), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deadline_survives_sigkill),
        cmocka_unit_test(result_queued_while_down_is_applied),
        cmocka_unit_test(result_held_past_deadline_is_applied_first),
        cmocka_unit_test(session_survives_a_port_change),
        cmocka_unit_test(client_id_is_configurable),
        cmocka_unit_test(last_turn_applied_at_sigterm),
        cmocka_unit_test(waiting_result_survives_sigterm),
        cmocka_unit_test(second_vendd_on_the_database_refused),
        cmocka_unit_test(shared_group_instances_by_client_id),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
