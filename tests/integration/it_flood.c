/*
 * it_flood.c - a telemetry flood never costs a dispense result (issue 9, SPEC §10): while
 * one process publishes telemetry for VM01 far faster than vendd can store it (the broker
 * drops what does not fit vendd's telemetry session), vmsim dispenses a series of orders.
 * Every order completes from its own result: none waits for a settle, none times out, no
 * result is dropped; the broker's drops are visible in /metrics; vendd stays up.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
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
#include <mosquitto.h>

#include "harness.h"

#define FLOOD_RATE_PER_S                                                                           \
    48000 /* offered telemetry: 3x what vendd stores without loss (make bench) */
#define FLOOD_SECONDS 8
#define ORDERS        12

static const char s_telemetry[] =
    "{\"timestamp\":\"2025-11-04T10:30:00Z\",\"slots\":[{\"id\":1,\"level\":\"FULL\"},"
    "{\"id\":2,\"level\":\"LOW\"}],\"temperature\":25.5,\"door\":\"CLOSED\"}";

struct flood {
    uint16_t port;
    volatile bool stop;
    uint64_t sent;
    int err;
};

/* Publish telemetry for VM01 at FLOOD_RATE_PER_S, QoS 0, in 10 ms slices, writing only while
 * the socket takes it (libmosquitto's queue stays small). */
static void *flood_run(void *arg)
{
    struct flood *fl = arg;
    struct mosquitto *m = mosquitto_new("it-flood", true, NULL);
    uint64_t start = harness_now_ms();

    if (m == NULL || mosquitto_connect(m, "127.0.0.1", fl->port, 30) != MOSQ_ERR_SUCCESS) {
        fl->err = -1;
        goto out;
    }
    while (!fl->stop && harness_now_ms() - start < FLOOD_SECONDS * 1000) {
        uint64_t due = (harness_now_ms() - start) * FLOOD_RATE_PER_S / 1000;

        while (fl->sent < due && !mosquitto_want_write(m)) {
            if (mosquitto_publish(m, NULL, "vm/VM01/telemetry", (int)sizeof(s_telemetry) - 1,
                                  s_telemetry, 0, false) != MOSQ_ERR_SUCCESS) {
                fl->err = -1;
                goto out;
            }
            fl->sent++;
            mosquitto_loop_write(m, 1);
        }
        if (mosquitto_loop(m, 5, 1) != MOSQ_ERR_SUCCESS) {
            fl->err = -1;
            goto out;
        }
    }
out:
    if (m != NULL) {
        mosquitto_disconnect(m);
        mosquitto_destroy(m);
    }
    return NULL;
}

static pid_t start_vmsim(struct harness *h, const char *dir, const char *log_path,
                         const char *drops)
{
    const char *bin = getenv("VMSIM");
    char url[64];
    pid_t pid;

    if (bin == NULL)
        return -1;
    snprintf(url, sizeof(url), "mqtt://127.0.0.1:%u", (unsigned)h->broker.port);
    pid = fork();
    if (pid == 0) {
        FILE *log = freopen(log_path, "a", stdout);

        if (log == NULL || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(126);
        setenv("MQTT_BROKER_URL", url, 1);
        execl(bin, bin, "--id", "VM01", "--slots", "1", "--stock", "50", "--motor-ms", "100",
              "--drop-prob", "1", "--state-dir", dir, "--drop-log", drops, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void results_are_never_lost_to_a_telemetry_flood(void **state)
{
    static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=3000", NULL};
    static const struct harness_slot slots[] = {{1, 40, 500}, {0, 0, 0}};
    struct harness_fixture *f = harness_fixture_new(env, slots, NULL);
    struct flood fl = {0};
    struct harness *h;
    pthread_t flooder;
    char dir[HARNESS_PATH_MAX + 16], log_path[HARNESS_PATH_MAX + 16], id[32], sql[128];
    char drops[HARNESS_PATH_MAX + 16];
    long long completed = -1, stored = -1;
    int status = 0;
    pid_t sim;

    (void)state;
    assert_non_null(f);
    h = &f->h;
    snprintf(dir, sizeof(dir), "%s/vmsim", h->dir);
    snprintf(log_path, sizeof(log_path), "%s/vmsim.log", h->dir);
    snprintf(drops, sizeof(drops), "%s/drops.log", h->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    sim = start_vmsim(h, dir, log_path, drops);
    assert_true(sim > 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM machines WHERE id = 'VM01'", "ONLINE", 10000), 0);

    fl.port = h->broker.port;
    assert_int_equal(pthread_create(&flooder, NULL, flood_run, &fl), 0);
    harness_sleep_ms(1000); /* the flood is on before the first order */
    for (int i = 0; i < ORDERS; i++) {
        snprintf(id, sizeof(id), "flood-%d", i);
        assert_int_equal(harness_order(h, id, 1, 1), 0);
        assert_int_equal(harness_trigger(h, id, NULL), 200);
        snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", id);
        assert_int_equal(harness_sql_wait(h, sql, "COMPLETED", 10000), 0);
    }
    fl.stop = true;
    pthread_join(flooder, NULL);
    assert_int_equal(fl.err, 0);

    /* Every order completed from its own result, none recovered by a settle. */
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM orders WHERE status = 'COMPLETED'", &completed),
        1);
    assert_int_equal(completed, ORDERS);
    assert_int_equal(harness_metric(h, "vendd_settle_asks_total"), 0);
    assert_int_equal(harness_metric(h, "vendd_dispense_no_result_total"), 0);
    assert_int_equal(harness_metric(h, "vendd_dispense_results_dropped_total"), 0);
    assert_int_equal(harness_metric(h, "vendd_dispense_succeeded_total"), ORDERS);
    assert_int_equal(
        harness_sql_int(h, "SELECT current_stock FROM slots WHERE slot_number = 1", &completed), 1);
    assert_int_equal(completed, 40 - ORDERS);
    assert_true(harness_vendd_alive(h));
    /* The flood was real, and what did not fit was stored or visibly dropped. */
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM telemetry", &stored), 1);
    fprintf(stderr,
            "it_flood: %llu telemetry offered at %d/s, %lld stored, broker dropped %lld, "
            "%d orders completed\n",
            (unsigned long long)fl.sent, FLOOD_RATE_PER_S, stored,
            harness_metric(h, "vendd_broker_messages_dropped"), ORDERS);
    assert_true(fl.sent > (uint64_t)FLOOD_RATE_PER_S);
    assert_true(stored > 0);

    kill(sim, SIGTERM);
    waitpid(sim, &status, 0);
    assert_int_equal(harness_check(h, drops), 0);
    harness_fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(results_are_never_lost_to_a_telemetry_flood),
    };

    mosquitto_lib_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
