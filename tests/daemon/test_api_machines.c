/*
 * test_api_machines.c - the machines, slots, stock and config routes through the
 * real HTTP server (api_routes) on loopback: the loop runs in a second thread, the
 * test thread is a libcurl client and checks the database on its own connection.
 * The config push runs against a real mosquitto (tests/support/broker.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "api.h"
#include "broker.h"
#include "fixture.h"
#include "http.h"
#include "loop.h"
#include "mqtt.h"
#include "vend/err.h"

/* ---- the server fixture ------------------------------------------------------------------ */

struct hfx {
    struct dfx d;
    struct db *check; /* the test thread's own connection */
    struct test_broker broker;
    bool has_broker;
    pthread_t thread;
    int pipefd[2];
    char base[64];
    CURL *curl;
};

static void on_stop(void *arg, int fd, unsigned events)
{
    (void)fd;
    (void)events;
    loop_stop(arg);
}

static void *loop_thread(void *arg)
{
    struct hfx *h = arg;

    /* cmocka's asserts must not run off the test thread. */
    if (loop_run(h->d.v.loop) != VEND_OK)
        abort();
    return NULL;
}

static void on_mqtt_message(void *arg, const char *topic, const void *payload, size_t len,
                            bool retained)
{
    (void)arg, (void)topic, (void)payload, (void)len, (void)retained;
}

/* The broker seam wired to the real client, as app.c wires it. */
static int seam_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                        bool retain, uint32_t expiry_s)
{
    return mqtt_client_publish(ctx, topic, payload, len, qos, retain, expiry_s);
}

static bool seam_up(void *ctx)
{
    return mqtt_client_connected(ctx);
}

static struct hfx *hfx_start(bool with_broker)
{
    struct hfx *h = calloc(1, sizeof(*h));
    struct http_config cfg = {.host = "127.0.0.1", .port = 0};
    char err[256] = "";

    assert_non_null(h);
    dfx_open(&h->d);
    assert_int_equal(db_open(&h->check, h->d.url, err, sizeof(err)), VEND_OK);
    assert_int_equal(
        http_server_start(&h->d.v.http, h->d.v.loop, &cfg, api_routes, api_nroutes, &h->d.v),
        VEND_OK);
    snprintf(h->base, sizeof(h->base), "http://127.0.0.1:%u",
             (unsigned)http_server_port(h->d.v.http));
    if (with_broker) {
        struct mqtt_config mc = {.host = "127.0.0.1", .client_id = "vendd-test-api"};

        assert_int_equal(test_broker_start(&h->broker), 0);
        h->has_broker = true;
        mc.port = h->broker.port;
        /* Created and started before the loop thread exists: only that thread runs it after. */
        assert_int_equal(
            mqtt_client_new(&h->d.v.mqtt, h->d.v.loop, &mc, on_mqtt_message, NULL, &h->d.v),
            VEND_OK);
        assert_int_equal(mqtt_client_start(h->d.v.mqtt), VEND_OK);
        h->d.v.broker = (struct broker){.publish = seam_publish, .up = seam_up, .ctx = h->d.v.mqtt};
    }
    assert_int_equal(pipe(h->pipefd), 0);
    assert_int_equal(loop_io_add(h->d.v.loop, h->pipefd[0], LOOP_READ, on_stop, h->d.v.loop),
                     VEND_OK);
    assert_int_equal(pthread_create(&h->thread, NULL, loop_thread, h), 0);
    h->curl = curl_easy_init();
    assert_non_null(h->curl);
    return h;
}

static void hfx_stop(struct hfx *h)
{
    assert_int_equal(write(h->pipefd[1], "x", 1), 1);
    assert_int_equal(pthread_join(h->thread, NULL), 0);
    curl_easy_cleanup(h->curl);
    mqtt_client_free(h->d.v.mqtt);
    http_server_free(h->d.v.http);
    loop_io_del(h->d.v.loop, h->pipefd[0]);
    close(h->pipefd[0]);
    close(h->pipefd[1]);
    db_close(h->check);
    dfx_close(&h->d);
    if (h->has_broker)
        test_broker_stop(&h->broker);
    free(h);
}

/* ---- the client --------------------------------------------------------------------------- */

struct body {
    char data[64 * 1024];
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = size * n;

    if (len > sizeof(b->data) - 1 - b->len)
        return 0;
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

/* One request; asserts the status and a JSON reply, which it returns (caller decrefs). */
static json_t *call(struct hfx *h, const char *method, const char *path, const char *json,
                    long want)
{
    struct body *b = calloc(1, sizeof(*b));
    struct curl_slist *hl = NULL;
    char url[512];
    long status = 0;
    json_t *reply;
    CURLcode cc;

    assert_non_null(b);
    curl_easy_reset(h->curl);
    snprintf(url, sizeof(url), "%s%s", h->base, path);
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    if (json != NULL) {
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, json);
        hl = curl_slist_append(hl, "Content-Type: application/json");
    }
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hl);
    cc = curl_easy_perform(h->curl);
    curl_slist_free_all(hl);
    if (cc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(cc));
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != want)
        fail_msg("%s %s %s: got %ld, want %ld: %s", method, path, json ? json : "", status, want,
                 b->data);
    reply = json_loadb(b->data, b->len, 0, NULL);
    if (reply == NULL)
        fail_msg("%s %s: not JSON: %s", method, path, b->data);
    free(b);
    return reply;
}

/* An error reply with code; returns nothing. */
static void call_err(struct hfx *h, const char *method, const char *path, const char *json,
                     long want, const char *code)
{
    json_t *r = call(h, method, path, json, want);
    const char *got = json_string_value(json_object_get(json_object_get(r, "error"), "code"));

    if (got == NULL || strcmp(got, code) != 0)
        fail_msg("%s %s %s: code %s, want %s", method, path, json ? json : "", got ? got : "(none)",
                 code);
    json_decref(r);
}

/* Like call_err, and asserts that no table changed. */
static void call_rejected(struct hfx *h, const char *method, const char *path, const char *json,
                          long want, const char *code)
{
    char *before = dfx_snapshot(h->check), *after;

    call_err(h, method, path, json, want, code);
    after = dfx_snapshot(h->check);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

static int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_integer(v))
        fail_msg("'%s' is not an integer", key);
    return json_integer_value(v);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    if (s == NULL)
        fail_msg("'%s' is not a string", key);
    return s;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- machines ----------------------------------------------------------------------------- */

static void test_machines(void **state)
{
    struct hfx *h = hfx_start(false);
    json_t *r, *list;
    char long_name[120], body[400];

    (void)state;
    r = call(h, "POST", "/api/machines",
             "{\"id\":\"VM01\",\"name\":\"Lobby\",\"location\":\"Floor 1\"}", 201);
    assert_string_equal(jstr(r, "id"), "VM01");
    assert_string_equal(jstr(r, "name"), "Lobby");
    assert_string_equal(jstr(r, "location"), "Floor 1");
    assert_string_equal(jstr(r, "status"), "OFFLINE");
    assert_string_equal(jstr(r, "created_at"), "2025-11-27T09:30:00.000Z");
    assert_true(json_is_null(json_object_get(r, "last_seen")));
    assert_null(json_object_get(r, "mqtt_username"));
    json_decref(r);

    r = call(h, "POST", "/api/machines", "{\"id\":\"VM02\"}", 201);
    assert_string_equal(jstr(r, "name"), "VM02"); /* the name defaults to the id */
    assert_true(json_is_null(json_object_get(r, "location")));
    json_decref(r);

    call_rejected(h, "POST", "/api/machines", "{\"id\":\"VM01\",\"name\":\"Other\"}", 409,
                  "CONFLICT");
    /* vendd's own broker user: the ACL's machine patterns would give it vendd's topics. */
    call_rejected(h, "POST", "/api/machines", "{\"id\":\"vendd\"}", 422, "INVALID_FIELD");
    memset(long_name, 'n', 101);
    long_name[101] = '\0';
    snprintf(body, sizeof(body), "{\"id\":\"VM03\",\"name\":\"%s\"}", long_name);
    call_rejected(h, "POST", "/api/machines", body, 422, "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"id\":\"bad id!\"}", 422, "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"id\":\"a.b\"}", 422, "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"id\":\"\"}", 422, "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"id\":\"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\"}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"id\":7}", 422, "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"name\":\"x\"}", 422, "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"id\":\"VM03\",\"name\":\"\"}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "POST", "/api/machines", "{\"id\":\"VM03\",\"location\":5}", 422,
                  "INVALID_FIELD");
    {
        char loc[202], big[300];

        memset(loc, 'l', 201);
        loc[201] = '\0';
        snprintf(big, sizeof(big), "{\"id\":\"VM03\",\"location\":\"%s\"}", loc);
        call_rejected(h, "POST", "/api/machines", big, 422, "INVALID_FIELD");
    }
    assert_int_equal(dfx_int(h->check, "SELECT count(*) FROM machines"), 2);

    /* The list shows presence; a status message makes it ONLINE. */
    dfx_sql(h->check, "UPDATE machines SET status = 'ONLINE', rssi = -60, fw = '1.0.0', "
                      "mqtt_username = 'secret-user' WHERE id = 'VM02'");
    r = call(h, "GET", "/api/machines", NULL, 200);
    list = json_object_get(r, "machines");
    assert_int_equal(json_array_size(list), 2);
    assert_string_equal(jstr(json_array_get(list, 0), "id"), "VM01");
    assert_string_equal(jstr(json_array_get(list, 1), "status"), "ONLINE");
    assert_int_equal(jint(json_array_get(list, 1), "rssi"), -60);
    assert_string_equal(jstr(json_array_get(list, 1), "fw"), "1.0.0");
    assert_null(json_object_get(json_array_get(list, 1), "mqtt_username"));
    json_decref(r);

    r = call(h, "GET", "/api/machines/VM01", NULL, 200);
    assert_string_equal(jstr(r, "name"), "Lobby");
    assert_int_equal(json_array_size(json_object_get(r, "slots")), 0);
    json_decref(r);
    call_err(h, "GET", "/api/machines/NOPE", NULL, 404, "NOT_FOUND");
    call_err(h, "GET", "/api/machines/a.b", NULL, 404, "NOT_FOUND");
    hfx_stop(h);
}

/* ---- slots and stock ---------------------------------------------------------------------- */

static void assert_stock_logs(struct hfx *h, const char *want)
{
    char buf[1024];

    dfx_join(h->check,
             "SELECT l.change_type || ':' || sl.slot_number || ':' || l.quantity_before || '>' "
             "|| l.quantity_after || ':' || l.quantity_change || ':' || l.performed_by "
             "FROM stock_logs l JOIN slots sl ON sl.id = l.slot_id ORDER BY l.id",
             " ", buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void test_slots_and_stock(void **state)
{
    struct hfx *h = hfx_start(false);
    json_t *r, *slots, *err;

    (void)state;
    json_decref(call(h, "POST", "/api/machines", "{\"id\":\"VM01\"}", 201));

    /* A new slot with stock: one RESTOCK row 0 -> 8. */
    r = call(h, "PUT", "/api/machines/VM01/slots/1",
             "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10,\"current_stock\":8}", 201);
    assert_int_equal(jint(r, "slot_number"), 1);
    assert_string_equal(jstr(r, "product_name"), "Cola");
    assert_int_equal(jint(r, "price"), 5000);
    assert_int_equal(jint(r, "capacity"), 10);
    assert_int_equal(jint(r, "current_stock"), 8);
    assert_int_equal(jint(r, "motor_duration_ms"), 1500);
    assert_int_equal(jint(r, "version"), 1);
    assert_true(json_is_false(json_object_get(r, "needs_inspection")));
    json_decref(r);
    assert_stock_logs(h, "RESTOCK:1:0>8:8:operator");

    /* A new slot without stock: no stock log; same product, its price updated. */
    r = call(h, "PUT", "/api/machines/VM01/slots/2",
             "{\"product_name\":\"Cola\",\"price\":6000,\"capacity\":5,"
             "\"motor_duration_ms\":2500}",
             201);
    assert_int_equal(jint(r, "current_stock"), 0);
    assert_int_equal(jint(r, "motor_duration_ms"), 2500);
    assert_int_equal(jint(r, "price"), 6000);
    json_decref(r);
    assert_int_equal(dfx_int(h->check, "SELECT count(*) FROM products"), 1);
    assert_int_equal(dfx_int(h->check, "SELECT price FROM products WHERE name = 'Cola'"), 6000);
    assert_stock_logs(h, "RESTOCK:1:0>8:8:operator");
    /* Slot 1 shows that price too, so its version moved: a stale version must not win. */
    assert_int_equal(dfx_int(h->check, "SELECT version FROM slots WHERE slot_number = 1"), 2);

    /* A stock change without the version the operator saw is refused, nothing changed. */
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"current_stock\":5}", 422,
                  "INVALID_FIELD");

    /* An adjustment with the right version: MANUAL_ADJUST 8 -> 3, version 3. */
    r = call(h, "PUT", "/api/machines/VM01/slots/1", "{\"current_stock\":3,\"version\":2}", 200);
    assert_int_equal(jint(r, "current_stock"), 3);
    assert_int_equal(jint(r, "version"), 3);
    json_decref(r);
    assert_stock_logs(h, "RESTOCK:1:0>8:8:operator MANUAL_ADJUST:1:8>3:-5:operator");

    /* A stale version: 409 with the current one, nothing changed. */
    {
        char *before = dfx_snapshot(h->check), *after;

        r = call(h, "PUT", "/api/machines/VM01/slots/1", "{\"current_stock\":4,\"version\":2}",
                 409);
        err = json_object_get(r, "error");
        assert_string_equal(jstr(err, "code"), "CONFLICT");
        assert_int_equal(jint(err, "version"), 3);
        json_decref(r);
        after = dfx_snapshot(h->check);
        assert_string_equal(after, before);
        free(before);
        free(after);
    }
    /* A version for a slot that does not exist yet. */
    r = call(h, "PUT", "/api/machines/VM01/slots/3",
             "{\"product_name\":\"Water\",\"price\":3000,\"capacity\":4,\"version\":1}", 409);
    assert_true(json_is_null(json_object_get(json_object_get(r, "error"), "version")));
    json_decref(r);

    /* Without a version the update applies; capacity, motor: no stock log, version bumps. */
    r = call(h, "PUT", "/api/machines/VM01/slots/1", "{\"capacity\":12,\"motor_duration_ms\":2000}",
             200);
    assert_int_equal(jint(r, "capacity"), 12);
    assert_int_equal(jint(r, "current_stock"), 3);
    assert_int_equal(jint(r, "version"), 4);
    json_decref(r);
    /* Nothing to change: same version. */
    r = call(h, "PUT", "/api/machines/VM01/slots/1", "{}", 200);
    assert_int_equal(jint(r, "version"), 4);
    json_decref(r);
    /* A stock increase by hand is a MANUAL_ADJUST too. */
    r = call(h, "PUT", "/api/machines/VM01/slots/1", "{\"current_stock\":12,\"version\":4}", 200);
    assert_int_equal(jint(r, "version"), 5);
    json_decref(r);
    assert_stock_logs(h, "RESTOCK:1:0>8:8:operator MANUAL_ADJUST:1:8>3:-5:operator "
                         "MANUAL_ADJUST:1:3>12:9:operator");

    /* Price alone changes the slot's product. */
    r = call(h, "PUT", "/api/machines/VM01/slots/2", "{\"price\":7000}", 200);
    assert_int_equal(jint(r, "price"), 7000);
    assert_int_equal(jint(r, "version"), 3);
    assert_int_equal(dfx_int(h->check, "SELECT version FROM slots WHERE slot_number = 1"), 6);
    json_decref(r);
    /* A new product by name for an existing slot. */
    r = call(h, "PUT", "/api/machines/VM01/slots/2", "{\"product_name\":\"Tea\",\"price\":4000}",
             200);
    assert_string_equal(jstr(r, "product_name"), "Tea");
    assert_int_equal(jint(r, "price"), 4000);
    assert_int_equal(jint(r, "version"), 4);
    json_decref(r);
    assert_int_equal(dfx_int(h->check, "SELECT price FROM products WHERE name = 'Cola'"), 7000);

    /* Every bad request: the right code, nothing changed. */
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"capacity\":11}", 422,
                  "INVALID_FIELD"); /* below the stock of 12 */
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"current_stock\":13}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"price\":-1}", 422, "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"price\":100000001}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"price\":1.5}", 422, "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"capacity\":1001}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"current_stock\":\"3\"}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"current_stock\":-1}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"motor_duration_ms\":99}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"motor_duration_ms\":60001}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"product_name\":\"\"}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"version\":0}", 422, "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/1", "{\"product_name\":\"Chips\"}", 422,
                  "INVALID_FIELD"); /* a new product needs a price */
    call_rejected(h, "PUT", "/api/machines/VM01/slots/3", "{\"product_name\":\"Chips\"}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/3",
                  "{\"product_name\":\"Chips\",\"price\":1000}", 422, "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/3", "{\"price\":1000,\"capacity\":3}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/0",
                  "{\"product_name\":\"Chips\",\"price\":1000,\"capacity\":3}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/256",
                  "{\"product_name\":\"Chips\",\"price\":1000,\"capacity\":3}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/slots/x1", "{}", 422, "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/NOPE/slots/1",
                  "{\"product_name\":\"Chips\",\"price\":1000,\"capacity\":3}", 404, "NOT_FOUND");

    /* Stock view: every slot, effective price, sensor fields, version. */
    r = call(h, "GET", "/api/stock/VM01", NULL, 200);
    assert_string_equal(jstr(r, "machine_id"), "VM01");
    slots = json_object_get(r, "slots");
    assert_int_equal(json_array_size(slots), 2);
    assert_int_equal(jint(json_array_get(slots, 0), "slot_number"), 1);
    assert_string_equal(jstr(json_array_get(slots, 0), "product_name"), "Cola");
    assert_int_equal(jint(json_array_get(slots, 0), "price"), 7000);
    assert_int_equal(jint(json_array_get(slots, 0), "current_stock"), 12);
    assert_int_equal(jint(json_array_get(slots, 0), "version"), 6);
    assert_true(json_is_null(json_object_get(json_array_get(slots, 0), "sensor_level")));
    assert_true(json_is_null(json_object_get(json_array_get(slots, 0), "sensor_at")));
    assert_true(json_is_false(json_object_get(json_array_get(slots, 0), "needs_inspection")));
    assert_string_equal(jstr(json_array_get(slots, 1), "product_name"), "Tea");
    json_decref(r);
    call_err(h, "GET", "/api/stock/NOPE", NULL, 404, "NOT_FOUND");

    r = call(h, "GET", "/api/machines/VM01", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r, "slots")), 2);
    json_decref(r);
    hfx_stop(h);
}

/* ---- dispense logs of a machine ----------------------------------------------------------- */

static void test_dispense_logs(void **state)
{
    struct hfx *h = hfx_start(false);
    json_t *r, *logs;

    (void)state;
    json_decref(call(h, "POST", "/api/machines", "{\"id\":\"VM01\"}", 201));
    json_decref(call(h, "PUT", "/api/machines/VM01/slots/1",
                     "{\"product_name\":\"Cola\",\"price\":5000,\"capacity\":10}", 201));
    r = call(h, "GET", "/api/dispense/logs/VM01", NULL, 200);
    assert_string_equal(jstr(r, "machine_id"), "VM01");
    assert_int_equal(json_array_size(json_object_get(r, "logs")), 0);
    json_decref(r);

    dfx_sql(h->check, "INSERT INTO orders (id, machine_id, quantity, total_amount, status, origin, "
                      "payment_method, created_at, updated_at) VALUES ('o-1', 'VM01', 3, 15000, "
                      "'DISPENSING', 'operator', 'manual', '2025-11-27T09:30:00.000Z', "
                      "'2025-11-27T09:30:00.000Z')");
    dfx_sql(h->check,
            "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, slot_number, "
            "timeout_ms, status, command_sent_at, created_at) SELECT 'o-1', u.n, 'VM01', s.id, 1, "
            "5000, u.st, u.sent, '2025-11-27T09:30:00.000Z' FROM slots s, (SELECT 1 AS n, "
            "'SUCCEEDED' AS st, '2025-11-27T09:30:01.000Z' AS sent UNION ALL SELECT 2, "
            "'SENT', '2025-11-27T09:30:05.000Z' UNION ALL SELECT 3, 'QUEUED', NULL) u");
    /* Newest command first; a unit not sent yet comes last. */
    r = call(h, "GET", "/api/dispense/logs/VM01", NULL, 200);
    logs = json_object_get(r, "logs");
    assert_int_equal(json_array_size(logs), 3);
    assert_int_equal(jint(json_array_get(logs, 0), "unit"), 2);
    assert_string_equal(jstr(json_array_get(logs, 0), "status"), "SENT");
    assert_int_equal(jint(json_array_get(logs, 1), "unit"), 1);
    assert_int_equal(jint(json_array_get(logs, 2), "unit"), 3);
    assert_string_equal(jstr(json_array_get(logs, 0), "order_id"), "o-1");
    assert_int_equal(jint(json_array_get(logs, 0), "timeout_ms"), 5000);
    json_decref(r);
    r = call(h, "GET", "/api/dispense/logs/VM01?limit=1", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(r, "logs")), 1);
    json_decref(r);

    call_err(h, "GET", "/api/dispense/logs/VM01?limit=0", NULL, 422, "INVALID_FIELD");
    call_err(h, "GET", "/api/dispense/logs/VM01?limit=501", NULL, 422, "INVALID_FIELD");
    call_err(h, "GET", "/api/dispense/logs/VM01?limit=x", NULL, 422, "INVALID_FIELD");
    r = call(h, "GET", "/api/dispense/logs/NOPE", NULL, 404);
    assert_string_equal(jstr(json_object_get(r, "error"), "code"), "NOT_FOUND");
    assert_string_equal(jstr(json_object_get(r, "error"), "message"), "no machine 'NOPE'");
    json_decref(r);
    hfx_stop(h);
}

/* ---- config ------------------------------------------------------------------------------- */

#define CONFIG_BODY "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":60000}"
#define CONFIG_WIRE CONFIG_BODY

static void test_config_without_broker(void **state)
{
    struct hfx *h = hfx_start(false);

    (void)state;
    json_decref(call(h, "POST", "/api/machines", "{\"id\":\"VM01\"}", 201));
    call_rejected(h, "PUT", "/api/machines/VM01/config", CONFIG_BODY, 503, "BROKER_UNAVAILABLE");
    call_rejected(h, "PUT", "/api/machines/NOPE/config", CONFIG_BODY, 404, "NOT_FOUND");
    call_rejected(h, "PUT", "/api/machines/VM01/config",
                  "{\"motorTimeout\":99,\"dropSensorDelay\":50,\"telemetryInterval\":60000}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/config",
                  "{\"motorTimeout\":3000,\"dropSensorDelay\":5001,\"telemetryInterval\":60000}",
                  422, "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/config",
                  "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":999}", 422,
                  "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/config",
                  "{\"motorTimeout\":3000,\"dropSensorDelay\":50}", 422, "INVALID_FIELD");
    call_rejected(h, "PUT", "/api/machines/VM01/config",
                  "{\"motorTimeout\":\"3000\",\"dropSensorDelay\":50,\"telemetryInterval\":60000}",
                  422, "INVALID_FIELD");
    assert_int_equal(dfx_int(h->check, "SELECT count(*) FROM machines WHERE config IS NULL"), 1);
    hfx_stop(h);
}

/* A subscriber on its own libmosquitto thread. */
struct sub {
    pthread_mutex_t mu;
    const char *topic;
    int count;
    bool retained;
    char payload[256];
};

static void sub_on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct sub *s = arg;

    if (rc == 0)
        mosquitto_subscribe(m, NULL, s->topic, 1);
}

static void sub_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    struct sub *s = arg;
    size_t len = (size_t)msg->payloadlen;

    (void)m;
    pthread_mutex_lock(&s->mu);
    s->count++;
    s->retained = msg->retain;
    if (len >= sizeof(s->payload))
        len = sizeof(s->payload) - 1;
    memcpy(s->payload, msg->payload != NULL ? msg->payload : "", len);
    s->payload[len] = '\0';
    pthread_mutex_unlock(&s->mu);
}

/* Waits up to 5 s for a message on topic; returns how many came. */
static int sub_wait(const struct test_broker *b, const char *topic, struct sub *s)
{
    struct mosquitto *m;
    int n = 0;

    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    s->topic = topic;
    m = mosquitto_new("vendd-test-sub", true, s);
    assert_non_null(m);
    mosquitto_connect_callback_set(m, sub_on_connect);
    mosquitto_message_callback_set(m, sub_on_message);
    assert_int_equal(mosquitto_connect(m, "127.0.0.1", b->port, 10), MOSQ_ERR_SUCCESS);
    assert_int_equal(mosquitto_loop_start(m), MOSQ_ERR_SUCCESS);
    for (int i = 0; i < 500 && n == 0; i++) {
        sleep_ms(10);
        pthread_mutex_lock(&s->mu);
        n = s->count;
        pthread_mutex_unlock(&s->mu);
    }
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
    pthread_mutex_destroy(&s->mu);
    return n;
}

/* Polls /health until mqtt_connected is want (up to 10 s). */
static void wait_broker(struct hfx *h, bool want)
{
    for (int i = 0; i < 1000; i++) {
        json_t *r = call(h, "GET", "/health", NULL, 200);
        bool up = json_is_true(json_object_get(r, "mqtt_connected"));

        json_decref(r);
        if (up == want)
            return;
        sleep_ms(10);
    }
    fail_msg("the broker connection never became %s", want ? "up" : "down");
}

static void test_config_push(void **state)
{
    struct hfx *h = hfx_start(true);
    struct sub s;
    char buf[256];
    json_t *r;

    (void)state;
    json_decref(call(h, "POST", "/api/machines", "{\"id\":\"VM01\"}", 201));
    wait_broker(h, true);

    r = call(h, "PUT", "/api/machines/VM01/config", CONFIG_BODY, 200);
    assert_string_equal(jstr(r, "topic"), "vm/VM01/config");
    assert_int_equal(jint(json_object_get(r, "config"), "motorTimeout"), 3000);
    assert_int_equal(jint(json_object_get(r, "config"), "dropSensorDelay"), 50);
    assert_int_equal(jint(json_object_get(r, "config"), "telemetryInterval"), 60000);
    json_decref(r);
    dfx_text(h->check, "SELECT config FROM machines WHERE id = 'VM01'", buf, sizeof(buf));
    assert_string_equal(buf, CONFIG_WIRE);

    /* Retained: a machine connecting later still gets it, byte for byte. */
    assert_int_equal(sub_wait(&h->broker, "vm/VM01/config", &s), 1);
    assert_true(s.retained);
    assert_string_equal(s.payload, CONFIG_WIRE);

    r = call(h, "GET", "/api/machines/VM01", NULL, 200);
    assert_int_equal(jint(json_object_get(r, "config"), "motorTimeout"), 3000);
    json_decref(r);

    /* Broker gone: 503 and the stored config stays. */
    assert_int_equal(test_broker_kill(&h->broker), 0);
    wait_broker(h, false);
    call_rejected(h, "PUT", "/api/machines/VM01/config",
                  "{\"motorTimeout\":4000,\"dropSensorDelay\":0,\"telemetryInterval\":1000}", 503,
                  "BROKER_UNAVAILABLE");
    dfx_text(h->check, "SELECT config FROM machines WHERE id = 'VM01'", buf, sizeof(buf));
    assert_string_equal(buf, CONFIG_WIRE);
    hfx_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_machines),      cmocka_unit_test(test_slots_and_stock),
        cmocka_unit_test(test_dispense_logs), cmocka_unit_test(test_config_without_broker),
        cmocka_unit_test(test_config_push),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (mqtt_lib_init() != VEND_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    mqtt_lib_cleanup();
    curl_global_cleanup();
    return rc;
}
