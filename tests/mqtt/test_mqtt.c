/*
 * test_mqtt.c - the MQTT client against a real mosquitto on loopback.
 *
 * The peer on the other side ("raw") is a plain libmosquitto v5 client with
 * its own thread (mosquitto_loop_start), so it runs while the test drives
 * the daemon's loop, and reconnects by itself after a broker restart.
 */
#include "broker.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "mqtt.h"

#include <vend/err.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

/* Longest gap allowed between two ticks of a 20 ms timer while the client connects,
 * reconnects or fails: below the shortest blocking wait that would be a defect (1 s). */
#define TICK_GAP_MAX_MS 800

/* ---- the raw peer ---------------------------------------------------- */

struct raw {
    struct mosquitto *m;
    pthread_mutex_t mu;
    const char *filter;
    int suback_gen; /* SUBACKs seen: bumps again after a reconnect */
    int count;
    char topic[128];
    char payload[256];
    bool has_expiry;
    uint32_t expiry;
};

static void raw_on_connect(struct mosquitto *m, void *arg, int rc, int flags,
                           const mosquitto_property *props)
{
    struct raw *r = arg;

    (void)flags;
    (void)props;
    if (rc == 0 && r->filter)
        mosquitto_subscribe_v5(m, NULL, r->filter, 1, 0, NULL);
}

static void raw_on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted,
                             const mosquitto_property *props)
{
    struct raw *r = arg;

    (void)m;
    (void)mid;
    (void)n;
    (void)granted;
    (void)props;
    pthread_mutex_lock(&r->mu);
    r->suback_gen++;
    pthread_mutex_unlock(&r->mu);
}

static void raw_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
                           const mosquitto_property *props)
{
    struct raw *r = arg;
    uint32_t expiry = 0;
    size_t len = (size_t)msg->payloadlen;

    (void)m;
    pthread_mutex_lock(&r->mu);
    r->count++;
    snprintf(r->topic, sizeof(r->topic), "%s", msg->topic);
    if (len >= sizeof(r->payload))
        len = sizeof(r->payload) - 1;
    memcpy(r->payload, msg->payload ? msg->payload : "", len);
    r->payload[len] = '\0';
    r->has_expiry = mosquitto_property_read_int32(props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &expiry,
                                                  false) != NULL;
    r->expiry = expiry;
    pthread_mutex_unlock(&r->mu);
}

static int raw_gen(struct raw *r)
{
    int g;

    pthread_mutex_lock(&r->mu);
    g = r->suback_gen;
    pthread_mutex_unlock(&r->mu);
    return g;
}

static int raw_count(struct raw *r)
{
    int n;

    pthread_mutex_lock(&r->mu);
    n = r->count;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Connect (and subscribe to filter, if any); returns once the SUBACK arrived. */
static void raw_start(struct raw *r, const struct test_broker *b, const char *id,
                      const char *filter)
{
    int i;

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    r->filter = filter;
    r->m = mosquitto_new(id, true, r);
    assert_non_null(r->m);
    mosquitto_int_option(r->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(r->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_reconnect_delay_set(r->m, 1, 1, false);
    mosquitto_connect_v5_callback_set(r->m, raw_on_connect);
    mosquitto_subscribe_v5_callback_set(r->m, raw_on_subscribe);
    mosquitto_message_v5_callback_set(r->m, raw_on_message);
    assert_int_equal(mosquitto_connect_bind_v5(r->m, "127.0.0.1", b->port, 10, NULL, NULL), 0);
    assert_int_equal(mosquitto_loop_start(r->m), 0);
    for (i = 0; filter && i < 300 && raw_gen(r) == 0; i++)
        sleep_ms(10);
    if (filter)
        assert_int_equal(raw_gen(r), 1);
}

static void raw_stop(struct raw *r)
{
    if (!r->m)
        return;
    mosquitto_disconnect(r->m);
    mosquitto_loop_stop(r->m, true);
    mosquitto_destroy(r->m);
    r->m = NULL;
    pthread_mutex_destroy(&r->mu);
}

/* ---- the fixture ------------------------------------------------------- */

struct fx {
    struct test_broker broker;
    struct loop *loop;
    struct mqtt_client *client;
    FILE *logf;
    char *logbuf;
    size_t loglen;
    struct raw raw;
    /* what the client handed us */
    int received;
    char topic[128];
    char payload[256];
    size_t len;
    bool retained;
    int ups, downs;
    /* run_until */
    bool (*pred)(struct fx *);
    uint64_t deadline;
    /* stall detector */
    uint64_t tick_last, tick_max_gap;
    int ticks;
};

static void on_msg(void *arg, const char *topic, const void *payload, size_t len, bool retained)
{
    struct fx *fx = arg;

    fx->received++;
    snprintf(fx->topic, sizeof(fx->topic), "%s", topic);
    fx->len = len;
    if (len >= sizeof(fx->payload))
        len = sizeof(fx->payload) - 1;
    memcpy(fx->payload, payload, len);
    fx->payload[len] = '\0';
    fx->retained = retained;
}

static void on_state(void *arg, bool up)
{
    struct fx *fx = arg;

    if (up)
        fx->ups++;
    else
        fx->downs++;
}

static void poll_tick(void *arg)
{
    struct fx *fx = arg;

    if ((fx->pred && fx->pred(fx)) || loop_now_ms(fx->loop) >= fx->deadline) {
        loop_stop(fx->loop);
        return;
    }
    loop_timer_add(fx->loop, 5, poll_tick, fx);
}

/* Run the loop until pred holds (true) or timeout_ms passed (false). NULL: just run. */
static bool run_until(struct fx *fx, bool (*pred)(struct fx *), uint64_t timeout_ms)
{
    fx->pred = pred;
    fx->deadline = loop_now_ms(fx->loop) + timeout_ms;
    loop_timer_add(fx->loop, 0, poll_tick, fx);
    assert_int_equal(loop_run(fx->loop), VEND_OK);
    return pred ? pred(fx) : true;
}

static bool is_up(struct fx *fx)
{
    return mqtt_client_connected(fx->client);
}

static bool is_down(struct fx *fx)
{
    return !mqtt_client_connected(fx->client);
}

static bool got_one(struct fx *fx)
{
    return fx->received >= 1;
}

static size_t count_in_log(struct fx *fx, const char *needle)
{
    size_t n = 0;
    const char *p;

    fflush(fx->logf);
    for (p = fx->logbuf; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static const char *const s_subs[] = {"vm/+/status", "vm/+/dispense_result", "vm/+/telemetry"};

static bool all_subscribed(struct fx *fx)
{
    return count_in_log(fx, "Subscribed to ") >= 3;
}

static bool resubscribed(struct fx *fx)
{
    return count_in_log(fx, "Subscribed to ") >= 6;
}

static void client_new(struct fx *fx, uint16_t port, const char *host)
{
    struct mqtt_config cfg = {
        .host = host,
        .port = port,
        .client_id = "vendd-test",
        .subscriptions = s_subs,
        .nsubscriptions = 3,
        .session_expiry_s = 60,
    };

    assert_int_equal(mqtt_client_new(&fx->client, fx->loop, &cfg, on_msg, on_state, fx), VEND_OK);
}

static void start_connected(struct fx *fx)
{
    client_new(fx, fx->broker.port, "localhost");
    assert_int_equal(mqtt_client_start(fx->client), VEND_OK);
    assert_true(run_until(fx, all_subscribed, 3000));
    assert_true(mqtt_client_connected(fx->client));
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->logf = open_memstream(&fx->logbuf, &fx->loglen);
    assert_non_null(fx->logf);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_DEBUG, fx->logf);
    assert_int_equal(test_broker_start(&fx->broker), 0);
    fx->loop = loop_new();
    assert_non_null(fx->loop);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    raw_stop(&fx->raw);
    mqtt_client_free(fx->client);
    loop_free(fx->loop);
    test_broker_stop(&fx->broker);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
    fclose(fx->logf);
    if (getenv("TEST_MQTT_VERBOSE"))
        fprintf(stderr, "%s", fx->logbuf);
    free(fx->logbuf);
    free(fx);
    return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_config_rejected(void **state)
{
    struct fx *fx = *state;
    struct mqtt_client *c = (struct mqtt_client *)1;
    const char *bad_filter[] = {"vm/#/x"};
    struct mqtt_config cfg = {.host = "localhost", .port = 1883, .client_id = "x"};

    cfg.port = 0;
    assert_int_equal(mqtt_client_new(&c, fx->loop, &cfg, on_msg, NULL, fx), VEND_EINVAL);
    assert_null(c);
    cfg.port = 1883;
    cfg.client_id = NULL;
    assert_int_equal(mqtt_client_new(&c, fx->loop, &cfg, on_msg, NULL, fx), VEND_EINVAL);
    cfg.client_id = "x";
    cfg.subscriptions = bad_filter;
    cfg.nsubscriptions = 1;
    assert_int_equal(mqtt_client_new(&c, fx->loop, &cfg, on_msg, NULL, fx), VEND_EINVAL);
    assert_int_equal(count_in_log(fx, "subscription 0 is not a topic filter"), 1);
    cfg.nsubscriptions = 0;
    cfg.password = "secret";
    assert_int_equal(mqtt_client_new(&c, fx->loop, &cfg, on_msg, NULL, fx), VEND_EINVAL);
    assert_int_equal(count_in_log(fx, "'password' given without 'username'"), 1);
    assert_int_equal(count_in_log(fx, "secret"), 0);
}

/* TCP sockets of this process left corked (mqtt.c corks its socket for a read burst, so the
 * burst's PUBACKs leave together, and must uncork it after: corked data waits up to 200 ms). */
static int corked_sockets(void)
{
    int n = 0;

    for (int fd = 3; fd < 1024; fd++) {
        int v = 0;
        socklen_t len = sizeof(v);

        if (getsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, &len) == 0 && v != 0)
            n++;
    }
    return n;
}

static void test_connect_subscribe_receive(void **state)
{
    struct fx *fx = *state;
    static const char msg[] = "{\"status\":\"ONLINE\",\"door\":\"CLOSED\"}";

    start_connected(fx);
    assert_int_equal(count_in_log(fx, "MQTT connected to broker"), 1);
    assert_int_equal(count_in_log(fx, "Subscribed to vm/+/status"), 1);
    assert_int_equal(count_in_log(fx, "Subscribed to vm/+/dispense_result"), 1);
    assert_int_equal(count_in_log(fx, "Subscribed to vm/+/telemetry"), 1);
    assert_int_equal(fx->ups, 1);
    assert_int_equal(mqtt_client_start(fx->client), VEND_ESTATE);

    raw_start(&fx->raw, &fx->broker, "peer", NULL);
    assert_int_equal(
        mosquitto_publish(fx->raw.m, NULL, "vm/VM01/status", (int)strlen(msg), msg, 1, false), 0);
    assert_true(run_until(fx, got_one, 2000));
    assert_string_equal(fx->topic, "vm/VM01/status");
    assert_int_equal(fx->len, strlen(msg));
    assert_string_equal(fx->payload, msg);
    assert_false(fx->retained);
    assert_int_equal(corked_sockets(), 0);
    /* A topic we did not subscribe to never reaches the handler. */
    assert_int_equal(mosquitto_publish(fx->raw.m, NULL, "vm/VM01/other", 1, "x", 1, false), 0);
    run_until(fx, NULL, 200);
    assert_int_equal(fx->received, 1);
    assert_int_equal(mqtt_client_stats(fx->client)->received, 1);
}

static void test_publish_with_expiry(void **state)
{
    struct fx *fx = *state;
    static const char cmd[] = "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"ORD1\"}";

    start_connected(fx);
    raw_start(&fx->raw, &fx->broker, "machine", "vm/+/command");
    assert_int_equal(
        mqtt_client_publish(fx->client, "vm/VM01/command", cmd, strlen(cmd), 1, false, 30),
        VEND_OK);
    for (int i = 0; i < 200 && raw_count(&fx->raw) < 1; i++)
        run_until(fx, NULL, 10);
    assert_int_equal(raw_count(&fx->raw), 1);
    pthread_mutex_lock(&fx->raw.mu);
    assert_string_equal(fx->raw.topic, "vm/VM01/command");
    assert_string_equal(fx->raw.payload, cmd);
    assert_true(fx->raw.has_expiry);
    assert_true(fx->raw.expiry > 0 && fx->raw.expiry <= 30);
    pthread_mutex_unlock(&fx->raw.mu);

    /* expiry 0: no property. */
    assert_int_equal(mqtt_client_publish(fx->client, "vm/VM01/command", "x", 1, 1, false, 0),
                     VEND_OK);
    for (int i = 0; i < 200 && raw_count(&fx->raw) < 2; i++)
        run_until(fx, NULL, 10);
    assert_int_equal(raw_count(&fx->raw), 2);
    pthread_mutex_lock(&fx->raw.mu);
    assert_false(fx->raw.has_expiry);
    pthread_mutex_unlock(&fx->raw.mu);

    assert_int_equal(mqtt_client_publish(fx->client, "vm/+/command", "x", 1, 1, false, 0),
                     VEND_EINVAL);
    assert_int_equal(mqtt_client_publish(fx->client, "vm/VM01/command", "x", 1, 2, false, 0),
                     VEND_EINVAL);
    assert_int_equal(
        mqtt_client_publish(fx->client, "vm/VM01/command", "x", MQTT_MAX_PUBLISH + 1, 1, false, 0),
        VEND_ETOOBIG);
    assert_int_equal(mqtt_client_stats(fx->client)->published, 2);
}

static void test_publish_while_disconnected(void **state)
{
    struct fx *fx = *state;
    static const char late[] = "late";
    static const char marker[] = "marker";
    int gen;

    client_new(fx, fx->broker.port, "127.0.0.1");
    /* Not started yet: nothing queued. */
    assert_int_equal(mqtt_client_publish(fx->client, "vm/VM01/command", late, 4, 1, false, 0),
                     VEND_EUNAVAILABLE);
    assert_int_equal(mqtt_client_start(fx->client), VEND_OK);
    assert_true(run_until(fx, all_subscribed, 3000));
    raw_start(&fx->raw, &fx->broker, "machine", "vm/+/command");
    gen = raw_gen(&fx->raw);

    assert_int_equal(test_broker_kill(&fx->broker), 0);
    assert_true(run_until(fx, is_down, 2000));
    assert_int_equal(fx->downs, 1);
    assert_int_equal(mqtt_client_publish(fx->client, "vm/VM01/command", late, 4, 1, false, 0),
                     VEND_EUNAVAILABLE);
    assert_int_equal(mqtt_client_stats(fx->client)->published, 0);

    assert_int_equal(test_broker_restart(&fx->broker), 0);
    assert_true(run_until(fx, is_up, 3000));
    for (int i = 0; i < 300 && raw_gen(&fx->raw) == gen; i++)
        run_until(fx, NULL, 10);
    assert_true(raw_gen(&fx->raw) > gen);
    assert_int_equal(
        mqtt_client_publish(fx->client, "vm/VM01/command", marker, strlen(marker), 1, false, 0),
        VEND_OK);
    for (int i = 0; i < 200 && raw_count(&fx->raw) < 1; i++)
        run_until(fx, NULL, 10);
    run_until(fx, NULL, 200); /* room for a wrongly queued "late" to show up */
    assert_int_equal(raw_count(&fx->raw), 1);
    assert_string_equal(fx->raw.payload, marker);
}

static void tick(void *arg)
{
    struct fx *fx = arg;
    uint64_t now = loop_now_ms(fx->loop);

    if (fx->tick_last && now - fx->tick_last > fx->tick_max_gap)
        fx->tick_max_gap = now - fx->tick_last;
    fx->tick_last = now;
    fx->ticks++;
    loop_timer_add(fx->loop, 20, tick, fx);
}

static void test_broker_restart_reconnects(void **state)
{
    struct fx *fx = *state;
    static const char telemetry[] = "{\"temperature\":25.5}";

    start_connected(fx);
    loop_timer_add(fx->loop, 20, tick, fx);

    assert_int_equal(test_broker_kill(&fx->broker), 0);
    assert_true(run_until(fx, is_down, 2000));
    run_until(fx, NULL, 800); /* at least one failed attempt while the port is closed */
    assert_int_equal(count_in_log(fx, "MQTT connection to broker lost"), 1);
    assert_true(count_in_log(fx, "failed: Connection refused; retrying in") >= 1);
    assert_int_equal(test_broker_restart(&fx->broker), 0);
    assert_true(run_until(fx, is_up, 3000));
    assert_true(run_until(fx, resubscribed, 1000));
    run_until(fx, NULL, 100);
    assert_int_equal(count_in_log(fx, "Subscribed to "), 6);
    assert_int_equal(fx->ups, 2);
    assert_int_equal(fx->downs, 1);
    assert_int_equal(mqtt_client_stats(fx->client)->reconnects, 1);
    {
        /* ... and /metrics shows it, beside a zero count of failed publishes. */
        struct metrics m = {0};
        char *text = metrics_render(&m, mqtt_client_stats(fx->client));

        assert_non_null(strstr(text, "\nvendd_mqtt_reconnects_total 1\n"));
        assert_non_null(strstr(text, "\nvendd_mqtt_publish_failed_total 0\n"));
        free(text);
    }
    /* The loop never stalled: the 20 ms timer kept its schedule throughout. The bound on a
     * gap leaves room for a loaded CI machine (ASan, the other suites on both cores) and still
     * catches a blocking connect or a blocking backoff sleep (1 s and more). */
    assert_true(fx->ticks > 40);
    assert_true(fx->tick_max_gap < TICK_GAP_MAX_MS);

    /* The broker lost its state (no persistence): receiving proves we resubscribed. */
    raw_start(&fx->raw, &fx->broker, "machine", NULL);
    assert_int_equal(mosquitto_publish(fx->raw.m, NULL, "vm/VM07/telemetry", (int)strlen(telemetry),
                                       telemetry, 0, false),
                     0);
    assert_true(run_until(fx, got_one, 2000));
    assert_string_equal(fx->topic, "vm/VM07/telemetry");
}

static void test_exactly_once_across_restart(void **state)
{
    struct fx *fx = *state;
    static const char cmd[] = "{\"cmd\":\"dispense\",\"slot\":2,\"orderId\":\"ORD2\"}";
    int gen;

    start_connected(fx);
    raw_start(&fx->raw, &fx->broker, "machine", "vm/+/command");
    gen = raw_gen(&fx->raw);
    assert_int_equal(
        mqtt_client_publish(fx->client, "vm/VM02/command", cmd, strlen(cmd), 1, false, 10),
        VEND_OK);
    for (int i = 0; i < 200 && raw_count(&fx->raw) < 1; i++)
        run_until(fx, NULL, 10);
    assert_int_equal(raw_count(&fx->raw), 1);

    assert_int_equal(test_broker_restart(&fx->broker), 0);
    assert_true(run_until(fx, is_down, 2000));
    assert_true(run_until(fx, is_up, 3000));
    for (int i = 0; i < 300 && raw_gen(&fx->raw) == gen; i++)
        run_until(fx, NULL, 10);
    assert_true(raw_gen(&fx->raw) > gen);
    run_until(fx, NULL, 300);
    assert_int_equal(raw_count(&fx->raw), 1);
    assert_int_equal(mqtt_client_stats(fx->client)->published, 1);
}

static void test_dead_host_does_not_block(void **state)
{
    struct fx *fx = *state;

    /* TEST-NET-1 (RFC 5737): SYNs go nowhere, or the route is missing. */
    client_new(fx, 1883, "192.0.2.1");
    loop_timer_add(fx->loop, 20, tick, fx);
    assert_int_equal(mqtt_client_start(fx->client), VEND_OK);
    run_until(fx, NULL, 1500);
    assert_false(mqtt_client_connected(fx->client));
    /* A blocking connect to a dead host would hold the loop for the whole run (the kernel's
     * SYN retries take minutes): 75 ticks are due, far more than a stalled loop makes. */
    assert_true(fx->ticks > 20);
    assert_true(fx->tick_max_gap < TICK_GAP_MAX_MS);
}

/*
 * Another client with our client id kicks us off each time it reconnects (every second
 * here); mosquitto 2.0.11 just closes our socket. Without a growing backoff the two would
 * take the session from each other twice a second forever; with it, our reconnects thin
 * out (0.5, 1, 2, 4 s ... with jitter) because no connection lasts STABLE_MS.
 */
static void test_flapping_connection_backs_off(void **state)
{
    struct fx *fx = *state;

    start_connected(fx);
    raw_start(&fx->raw, &fx->broker, "vendd-test", NULL);
    run_until(fx, NULL, 6000);
    /* A reset to 0.5 s on every CONNACK gives about 6 connections here; backoff <= 4. */
    if (count_in_log(fx, "MQTT connected to broker") > 4)
        fail_msg("%zu connections in 6 s: no backoff\n%s",
                 count_in_log(fx, "MQTT connected to broker"), fx->logbuf);
    assert_true(count_in_log(fx, "MQTT connection to broker lost") >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flapping_connection_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_subscribe_receive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_with_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_while_disconnected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_restart_reconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exactly_once_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_host_does_not_block, setup, teardown),
    };
    int rc;

    if (mqtt_lib_init() != VEND_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    mqtt_lib_cleanup();
    return rc;
}
