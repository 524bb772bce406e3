/*
 * test_mqtt_tls_os_certs.c - review finding: with tls = true and no ca_file
 * (MQTT_BROKER_URL=mqtts://... without MQTT_CA_FILE), handle_new() sets
 * MOSQ_OPT_TLS_USE_OS_CERTS and then calls mosquitto_tls_set(m, NULL, NULL,
 * ...), which libmosquitto 2.0.11 rejects with MOSQ_ERR_INVAL ("cafile or
 * capath required"). Every attempt fails before any socket I/O, forever.
 *
 * The broker here is plain TCP, so a correct client fails in the TLS
 * handshake; the buggy one never gets that far.
 */
#include "broker.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"

#include <vend/err.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void on_msg(void *arg, const char *topic, const void *payload, size_t len, bool retained)
{
    (void)arg;
    (void)topic;
    (void)payload;
    (void)len;
    (void)retained;
}

static void stop_fire(void *arg)
{
    loop_stop(arg);
}

static void tls_without_ca_file_reaches_the_handshake(void **state)
{
    static const char *const subs[] = {"vm/+/status"};
    struct test_broker broker;
    struct loop *loop;
    struct mqtt_client *c = NULL;
    char *logbuf = NULL;
    size_t loglen = 0;
    FILE *logf = open_memstream(&logbuf, &loglen);
    struct mqtt_config cfg = {
        .host = "127.0.0.1",
        .tls = true,
        .ca_file = NULL, /* use the OS trust store */
        .client_id = "vendd-review-tls",
        .subscriptions = subs,
        .nsubscriptions = 1,
        .session_expiry_s = 0,
    };

    (void)state;
    assert_non_null(logf);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_DEBUG, logf);
    assert_int_equal(mqtt_lib_init(), VEND_OK);
    assert_int_equal(test_broker_start(&broker), 0);
    loop = loop_new();
    assert_non_null(loop);
    cfg.port = broker.port;
    assert_int_equal(mqtt_client_new(&c, loop, &cfg, on_msg, NULL, NULL), VEND_OK);
    assert_int_equal(mqtt_client_start(c), VEND_OK);
    loop_timer_add(loop, 1500, stop_fire, loop);
    assert_int_equal(loop_run(loop), VEND_OK);

    mqtt_client_free(c);
    loop_free(loop);
    test_broker_stop(&broker);
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_INFO, NULL);
    fclose(logf);
    fprintf(stderr, "%s", logbuf);
    /* A configuration error, not a network one: the handle was never usable. */
    assert_null(strstr(logbuf, "Invalid function arguments"));
    free(logbuf);
    mqtt_lib_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tls_without_ca_file_reaches_the_handshake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
