/*
 * test_config_push.c - PUT /api/machines/{id}/config against a fake broker seam
 * (broker_seam.h): what is stored and what is answered for each answer the broker can give.
 * The config is the one publish made inside its transaction (docs/HACKING.md, Database), so
 * a refused publish stores nothing, an uncertain one (VEND_EIO) keeps the stored copy in
 * step with what the broker may retain, and the fake checks the row is not yet committed
 * when the publish happens. Handlers are called directly on the dfx fixture.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "fixture.h"
#include "http.h"
#include "vend/err.h"

#define T0_ISO      "2025-11-27T09:30:00.000Z"
#define CONFIG_BODY "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":60000}"
#define CONFIG_WIRE CONFIG_BODY
#define CONFIG_SQL  "SELECT coalesce(config, '(null)') FROM machines WHERE id = 'VM01'"

/* A broker that answers what the test says and remembers what it was given. */
struct fake_broker {
    bool up;
    int answer; /* what publish returns */
    int calls;
    char topic[64];
    char payload[256];
    int qos;
    bool retain;
    /* machines.config during the publish: on vendd's connection, and on another one. */
    char seen_by_vendd[256];
    char seen_by_others[256];
};

struct cfx {
    struct dfx d;
    struct db *check; /* a second connection: sees only what is committed */
    struct fake_broker fb;
};

static int fake_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                        bool retain, uint32_t expiry_s)
{
    struct cfx *c = ctx;
    struct fake_broker *fb = &c->fb;

    (void)expiry_s;
    fb->calls++;
    snprintf(fb->topic, sizeof(fb->topic), "%s", topic);
    snprintf(fb->payload, sizeof(fb->payload), "%.*s", (int)len, (const char *)payload);
    fb->qos = qos;
    fb->retain = retain;
    dfx_text(c->d.v.db, CONFIG_SQL, fb->seen_by_vendd, sizeof(fb->seen_by_vendd));
    dfx_text(c->check, CONFIG_SQL, fb->seen_by_others, sizeof(fb->seen_by_others));
    return fb->answer;
}

static bool fake_up(void *ctx)
{
    return ((struct cfx *)ctx)->fb.up;
}

static int setup(void **state)
{
    struct cfx *c = calloc(1, sizeof(*c));
    char err[256] = "";

    assert_non_null(c);
    dfx_open(&c->d);
    assert_int_equal(db_open(&c->check, c->d.url, err, sizeof(err)), VEND_OK);
    dfx_sql(c->d.v.db, "INSERT INTO machines (id, name, created_at, updated_at) "
                       "VALUES ('VM01', 'VM01', '" T0_ISO "', '" T0_ISO "')");
    c->fb.up = true;
    c->d.v.broker = (struct broker){.publish = fake_publish, .up = fake_up, .ctx = c};
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct cfx *c = *state;

    db_close(c->check);
    dfx_close(&c->d);
    free(c);
    return 0;
}

/* PUT /api/machines/{machine}/config with body; returns the status, *out the reply. */
static int put_config(struct cfx *c, const char *machine, const char *body, json_t **out)
{
    struct http_request req = {0};
    struct http_response res = {0};
    json_error_t err;
    int status;

    req.method = HTTP_PUT;
    req.path = "/api/machines/x/config";
    req.pattern_ = "/api/machines/{id}/config";
    req.params[0] = machine;
    req.nparams = 1;
    req.body = body;
    req.body_len = strlen(body);
    req.json = json_loads(body, 0, &err);
    req.loopback = true;
    assert_non_null(req.json);
    api_machines_put_config(&c->d.v, &req, &res);
    json_decref(req.json);
    status = res.status;
    *out = json_loads(res.body, 0, &err);
    assert_non_null(*out);
    free(res.body);
    return status;
}

static const char *error_code(const json_t *r)
{
    return json_string_value(json_object_get(json_object_get(r, "error"), "code"));
}

static const char *error_message(const json_t *r)
{
    return json_string_value(json_object_get(json_object_get(r, "error"), "message"));
}

static void assert_stored(struct cfx *c, const char *want)
{
    char buf[256];

    dfx_text(c->check, CONFIG_SQL, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

/* Published retained at QoS 1, while the new row was still uncommitted: stored on success. */
static void test_published_inside_the_transaction(void **state)
{
    struct cfx *c = *state;
    json_t *r;

    assert_int_equal(put_config(c, "VM01", CONFIG_BODY, &r), 200);
    assert_string_equal(json_string_value(json_object_get(r, "topic")), "vm/VM01/config");
    json_decref(r);
    assert_int_equal(c->fb.calls, 1);
    assert_string_equal(c->fb.topic, "vm/VM01/config");
    assert_string_equal(c->fb.payload, CONFIG_WIRE);
    assert_int_equal(c->fb.qos, 1);
    assert_true(c->fb.retain);
    assert_string_equal(c->fb.seen_by_vendd, CONFIG_WIRE);
    assert_string_equal(c->fb.seen_by_others, "(null)");
    assert_stored(c, CONFIG_WIRE);
}

/* The broker took nothing: nothing is stored, and the answer says the broker is away. */
static void test_refused_publish_stores_nothing(void **state)
{
    struct cfx *c = *state;
    char *before = dfx_snapshot(c->check), *after;
    json_t *r;

    c->fb.answer = VEND_EUNAVAILABLE;
    assert_int_equal(put_config(c, "VM01", CONFIG_BODY, &r), 503);
    assert_string_equal(error_code(r), "BROKER_UNAVAILABLE");
    json_decref(r);
    c->fb.answer = VEND_ENOMEM;
    assert_int_equal(put_config(c, "VM01", CONFIG_BODY, &r), 500);
    assert_string_equal(error_code(r), "INTERNAL");
    json_decref(r);
    assert_int_equal(c->fb.calls, 2);
    after = dfx_snapshot(c->check);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

/* VEND_EIO: the broker may retain it, so it is stored too, and the operator is told to
 * repeat the idempotent PUT, which then succeeds. */
static void test_uncertain_publish_is_stored(void **state)
{
    struct cfx *c = *state;
    json_t *r;

    c->fb.answer = VEND_EIO;
    assert_int_equal(put_config(c, "VM01", CONFIG_BODY, &r), 503);
    assert_string_equal(error_code(r), "BROKER_UNAVAILABLE");
    assert_non_null(strstr(error_message(r), "stored"));
    assert_non_null(strstr(error_message(r), "PUT it again"));
    json_decref(r);
    assert_stored(c, CONFIG_WIRE);
    c->fb.answer = VEND_OK;
    assert_int_equal(put_config(c, "VM01", CONFIG_BODY, &r), 200);
    json_decref(r);
    assert_int_equal(c->fb.calls, 2);
}

/* A broker that is down, or no broker wired at all, is never handed the config. */
static void test_broker_down_is_not_asked(void **state)
{
    struct cfx *c = *state;
    char *before = dfx_snapshot(c->check), *after;
    json_t *r;

    c->fb.up = false;
    assert_int_equal(put_config(c, "VM01", CONFIG_BODY, &r), 503);
    assert_string_equal(error_code(r), "BROKER_UNAVAILABLE");
    assert_string_equal(error_message(r),
                        "the MQTT broker is not connected; config of 'VM01' not changed");
    json_decref(r);
    c->d.v.broker = (struct broker){0};
    assert_int_equal(put_config(c, "VM01", CONFIG_BODY, &r), 503);
    json_decref(r);
    /* An unknown machine is 404 before the broker is asked. */
    c->d.v.broker = (struct broker){.publish = fake_publish, .up = fake_up, .ctx = c};
    c->fb.up = true;
    assert_int_equal(put_config(c, "VM02", CONFIG_BODY, &r), 404);
    assert_string_equal(error_code(r), "NOT_FOUND");
    json_decref(r);
    assert_int_equal(c->fb.calls, 0);
    after = dfx_snapshot(c->check);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_published_inside_the_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_publish_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uncertain_publish_is_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_down_is_not_asked, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
