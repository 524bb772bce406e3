/* test_codec.c - payload decoders and encoders against the integration guide. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "vend/codec.h"
#include "vend/err.h"

/* The guide's example payloads, byte for byte as printed there. */
static const char guide_command[] = "{\n"
                                    "  \"cmd\": \"dispense\",\n"
                                    "  \"slot\": 1,\n"
                                    "  \"orderId\": \"ORD123456\",\n"
                                    "  \"timeoutMs\": 2150\n"
                                    "}\n";
static const char guide_result[] = "{\n"
                                   "  \"orderId\": \"ORD123456\",\n"
                                   "  \"slot\": 1,\n"
                                   "  \"success\": true,\n"
                                   "  \"dropDetected\": true,\n"
                                   "  \"durationMs\": 1850,\n"
                                   "  \"error\": null\n"
                                   "}\n";
static const char guide_telemetry[] = "{\n"
                                      "  \"timestamp\": \"2025-11-04T10:30:00Z\",\n"
                                      "  \"slots\": [\n"
                                      "    {\n"
                                      "      \"id\": 1,\n"
                                      "      \"level\": \"FULL\"\n"
                                      "    },\n"
                                      "    {\n"
                                      "      \"id\": 2,\n"
                                      "      \"level\": \"LOW\"\n"
                                      "    }\n"
                                      "  ],\n"
                                      "  \"temperature\": 25.5,\n"
                                      "  \"door\": \"CLOSED\"\n"
                                      "}\n";
static const char guide_status[] = "{\n"
                                   "  \"status\": \"ONLINE\",\n"
                                   "  \"door\": \"CLOSED\",\n"
                                   "  \"rssi\": -65,\n"
                                   "  \"fw\": \"1.0.0\"\n"
                                   "}\n";
static const char guide_config[] = "{\n"
                                   "  \"motorTimeout\": 3000,\n"
                                   "  \"dropSensorDelay\": 50,\n"
                                   "  \"telemetryInterval\": 60000\n"
                                   "}\n";
/* The guide's mosquitto_pub test result (test-order-123), as the shell passes it. */
static const char guide_pub_result[] = "{\n"
                                       "    \"orderId\": \"test-order-123\",\n"
                                       "    \"slot\": 1,\n"
                                       "    \"success\": true,\n"
                                       "    \"dropDetected\": true,\n"
                                       "    \"durationMs\": 1850,\n"
                                       "    \"error\": null\n"
                                       "  }";

/*
 * Temperatures are exact in hundredths; the double is the nearest one except on
 * i386 x87, whose double rounding may land one ulp away, hence the tolerance.
 */
static int temp_is(double t, double want)
{
    return fabs(t - want) < 1e-9;
}

enum kind { K_COMMAND, K_RESULT, K_TELEMETRY, K_STATUS, K_CONFIG };

union any {
    struct vend_command c;
    struct vend_dispense_result r;
    struct vend_telemetry t;
    struct vend_status s;
    struct vend_config g;
};

static int decode(enum kind k, const char *json, size_t len, union any *o, struct vend_diag *dg)
{
    switch (k) {
    case K_COMMAND:
        return vend_decode_command(json, len, &o->c, dg);
    case K_RESULT:
        return vend_decode_dispense_result(json, len, &o->r, dg);
    case K_TELEMETRY:
        return vend_decode_telemetry(json, len, &o->t, dg);
    case K_STATUS:
        return vend_decode_status(json, len, &o->s, dg);
    case K_CONFIG:
        return vend_decode_config(json, len, &o->g, dg);
    }
    return VEND_EINTERNAL;
}

static void guide_examples(void **state)
{
    struct vend_diag dg;
    union any o;

    (void)state;
    assert_int_equal(vend_decode_command(guide_command, strlen(guide_command), &o.c, &dg), VEND_OK);
    assert_int_equal(dg.err, VEND_OK);
    assert_string_equal(dg.field, "");
    assert_int_equal(o.c.cmd, VEND_CMD_DISPENSE);
    assert_int_equal(o.c.slot, 1);
    assert_string_equal(o.c.order_id, "ORD123456");
    assert_int_equal(o.c.timeout_ms, 2150);
    assert_int_equal(o.c.unit, 0);

    assert_int_equal(vend_decode_dispense_result(guide_result, strlen(guide_result), &o.r, &dg),
                     VEND_OK);
    assert_string_equal(o.r.order_id, "ORD123456");
    assert_int_equal(o.r.slot, 1);
    assert_true(o.r.success);
    assert_true(o.r.drop_detected);
    assert_true(o.r.has_duration);
    assert_int_equal(o.r.duration_ms, 1850);
    assert_false(o.r.has_error);
    assert_string_equal(o.r.error, "");
    assert_int_equal(o.r.unit, 0);

    assert_int_equal(
        vend_decode_dispense_result(guide_pub_result, strlen(guide_pub_result), &o.r, &dg),
        VEND_OK);
    assert_string_equal(o.r.order_id, "test-order-123");

    assert_int_equal(vend_decode_telemetry(guide_telemetry, strlen(guide_telemetry), &o.t, &dg),
                     VEND_OK);
    assert_true(o.t.has_timestamp);
    assert_string_equal(o.t.timestamp, "2025-11-04T10:30:00Z");
    assert_int_equal(o.t.nslots, 2);
    assert_int_equal(o.t.slots[0].id, 1);
    assert_int_equal(o.t.slots[0].level, VEND_LEVEL_FULL);
    assert_int_equal(o.t.slots[1].id, 2);
    assert_int_equal(o.t.slots[1].level, VEND_LEVEL_LOW);
    assert_true(o.t.has_temperature);
    assert_true(temp_is(o.t.temperature, 25.5));
    assert_int_equal(o.t.door, VEND_DOOR_CLOSED);

    assert_int_equal(vend_decode_status(guide_status, strlen(guide_status), &o.s, &dg), VEND_OK);
    assert_int_equal(o.s.status, VEND_PRESENCE_ONLINE);
    assert_int_equal(o.s.door, VEND_DOOR_CLOSED);
    assert_true(o.s.has_rssi);
    assert_int_equal(o.s.rssi, -65);
    assert_true(o.s.has_fw);
    assert_string_equal(o.s.fw, "1.0.0");

    assert_int_equal(vend_decode_config(guide_config, strlen(guide_config), &o.g, &dg), VEND_OK);
    assert_int_equal(o.g.motor_timeout_ms, 3000);
    assert_int_equal(o.g.drop_sensor_delay_ms, 50);
    assert_int_equal(o.g.telemetry_interval_ms, 60000);
}

static void will_payload(void **state)
{
    struct vend_status s;
    char buf[64];

    (void)state;
    memset(&s, 0x55, sizeof(s));
    assert_int_equal(vend_decode_status("{\"status\":\"OFFLINE\"}", 20, &s, NULL), VEND_OK);
    assert_int_equal(s.status, VEND_PRESENCE_OFFLINE);
    assert_int_equal(s.door, VEND_DOOR_UNKNOWN);
    assert_false(s.has_rssi);
    assert_false(s.has_fw);
    assert_int_equal(vend_encode_status(buf, sizeof(buf), &s), 20);
    assert_string_equal(buf, "{\"status\":\"OFFLINE\"}");
}

/* The compact forms of SPEC §3, which the encoders must produce byte for byte. */
static const char spec_command[] =
    "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"ORD123456\",\"timeoutMs\":2150}";
static const char spec_result[] = "{\"orderId\":\"ORD123456\",\"slot\":1,\"success\":true,"
                                  "\"dropDetected\":true,\"durationMs\":1850,\"error\":null}";
static const char spec_telemetry[] = "{\"timestamp\":\"2025-11-04T10:30:00Z\",\"slots\":[{\"id\":1,"
                                     "\"level\":\"FULL\"}],\"temperature\":25.5,\"door\":"
                                     "\"CLOSED\"}";
static const char spec_status[] =
    "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,\"fw\":\"1.0.0\"}";
static const char spec_config[] =
    "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":60000}";

/* Shared pieces of the payloads below. */
#define CMD_TAIL "\"orderId\":\"O1\",\"timeoutMs\":2150"
#define RES_HEAD "{\"orderId\":\"O1\",\"slot\":1,\"success\":true,\"dropDetected\":true"
#define CFG_TAIL "\"dropSensorDelay\":50,\"telemetryInterval\":60000}"

typedef int encode_fn(char *buf, size_t size, const union any *in);

static int enc_command(char *buf, size_t size, const union any *in)
{
    return vend_encode_command(buf, size, in != NULL ? &in->c : NULL);
}
static int enc_result(char *buf, size_t size, const union any *in)
{
    return vend_encode_dispense_result(buf, size, in != NULL ? &in->r : NULL);
}
static int enc_telemetry(char *buf, size_t size, const union any *in)
{
    return vend_encode_telemetry(buf, size, in != NULL ? &in->t : NULL);
}
static int enc_status(char *buf, size_t size, const union any *in)
{
    return vend_encode_status(buf, size, in != NULL ? &in->s : NULL);
}
static int enc_config(char *buf, size_t size, const union any *in)
{
    return vend_encode_config(buf, size, in != NULL ? &in->g : NULL);
}

static encode_fn *const encoders[] = {enc_command, enc_result, enc_telemetry, enc_status,
                                      enc_config};

/* Decodes spec, re-encodes, and expects the very same bytes; then every short buffer fails. */
static void encode_exact(enum kind k, const char *spec)
{
    char buf[VEND_PAYLOAD_MAX + 1];
    union any o;
    size_t len = strlen(spec), size;

    assert_int_equal(decode(k, spec, len, &o, NULL), VEND_OK);
    assert_int_equal(encoders[k](buf, sizeof(buf), &o), (int)len);
    assert_string_equal(buf, spec);
    for (size = 0; size <= len; size++)
        assert_int_equal(encoders[k](buf, size, &o), VEND_ENOSPACE);
    assert_int_equal(encoders[k](buf, len + 1, &o), (int)len);
    assert_int_equal(encoders[k](buf, sizeof(buf), NULL), VEND_EINVAL);
}

static void encode_spec_forms(void **state)
{
    (void)state;
    encode_exact(K_COMMAND, spec_command);
    encode_exact(K_RESULT, spec_result);
    encode_exact(K_TELEMETRY, spec_telemetry);
    encode_exact(K_STATUS, spec_status);
    encode_exact(K_CONFIG, spec_config);
    encode_exact(K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":255,\"orderId\":\"a.b~c_d-E\","
                            "\"timeoutMs\":60000,\"unit\":100}");
    encode_exact(K_RESULT, "{\"orderId\":\"o\",\"slot\":3,\"success\":false,\"dropDetected\":"
                           "false,\"error\":\"NO_DROP\",\"unit\":2}");
    encode_exact(K_TELEMETRY, "{\"slots\":[]}");
    encode_exact(K_TELEMETRY, "{\"slots\":[{\"id\":9,\"level\":\"EMPTY\"},{\"id\":8,\"level\":"
                              "\"MEDIUM\"}],\"temperature\":-60,\"door\":\"OPEN\"}");
    encode_exact(K_TELEMETRY, "{\"timestamp\":\"2024-02-29T23:59:60.123456789Z\",\"slots\":[],"
                              "\"temperature\":-0.05}");
    encode_exact(K_STATUS, "{\"status\":\"ONLINE\",\"rssi\":0,\"fw\":\"v5.1+g1_x-dirty\"}");
    encode_exact(K_CONFIG,
                 "{\"motorTimeout\":100,\"dropSensorDelay\":0,\"telemetryInterval\":86400000}");
    /* The settling extension (docs/PROTOCOL.md). */
    encode_exact(K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"ORD123456\","
                            "\"timeoutMs\":2150,\"expiresAt\":1762252207150}");
    encode_exact(K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":2,\"orderId\":\"O\",\"timeoutMs\":100,"
                            "\"unit\":3,\"expiresAt\":4102444800000}");
    encode_exact(K_COMMAND, "{\"cmd\":\"settle\",\"slot\":1,\"orderId\":\"ORD123456\"}");
    encode_exact(K_COMMAND, "{\"cmd\":\"settle\",\"slot\":255,\"orderId\":\"O\",\"unit\":100}");
    encode_exact(K_RESULT, "{\"orderId\":\"O\",\"slot\":1,\"success\":false,\"dropDetected\":"
                           "false,\"error\":\"CANCELLED\",\"unit\":2}");
    encode_exact(K_RESULT, "{\"orderId\":\"O\",\"slot\":1,\"success\":false,\"dropDetected\":"
                           "false,\"error\":\"POWER_LOSS\"}");
    encode_exact(K_STATUS,
                 "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,\"fw\":\"1.0.0\","
                 "\"settle\":true}");
    encode_exact(K_STATUS, "{\"status\":\"ONLINE\",\"settle\":false,\"configError\":"
                           "\"motorTimeout\"}");
    encode_exact(K_STATUS, "{\"status\":\"ONLINE\",\"configError\":\"(root)\"}");
}

/* What the extension adds to the command and the status, decoded field by field. */
static void settle_and_expiry(void **state)
{
    struct vend_command c;
    struct vend_status s;
    struct vend_diag dg;
    const char *j;

    (void)state;
    /* The guide's command has no expiry: 0. */
    assert_int_equal(vend_decode_command(spec_command, strlen(spec_command), &c, &dg), VEND_OK);
    assert_int_equal(c.expires_at_ms, 0);
    j = "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":1577836800000}";
    assert_int_equal(vend_decode_command(j, strlen(j), &c, &dg), VEND_OK);
    assert_true(c.expires_at_ms == 1577836800000ULL);
    j = "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":4102444800000}";
    assert_int_equal(vend_decode_command(j, strlen(j), &c, &dg), VEND_OK);
    assert_true(c.expires_at_ms == 4102444800000ULL);

    /* A settle: no timeout, no expiry; the keys, even bad ones, are not read. */
    j = "{\"cmd\":\"settle\",\"slot\":4,\"orderId\":\"ORD-9\",\"unit\":2}";
    memset(&c, 0x55, sizeof(c));
    assert_int_equal(vend_decode_command(j, strlen(j), &c, &dg), VEND_OK);
    assert_int_equal(c.cmd, VEND_CMD_SETTLE);
    assert_int_equal(c.slot, 4);
    assert_string_equal(c.order_id, "ORD-9");
    assert_int_equal(c.unit, 2);
    assert_int_equal(c.timeout_ms, 0);
    assert_int_equal(c.expires_at_ms, 0);
    j = "{\"cmd\":\"settle\",\"slot\":4,\"orderId\":\"O\",\"timeoutMs\":\"x\",\"expiresAt\":-1}";
    assert_int_equal(vend_decode_command(j, strlen(j), &c, &dg), VEND_OK);
    assert_int_equal(c.unit, 0);
    assert_int_equal(c.timeout_ms, 0);
    assert_int_equal(c.expires_at_ms, 0);

    /* The guide's status has no "settle": the machine does not settle. */
    assert_int_equal(vend_decode_status(spec_status, strlen(spec_status), &s, &dg), VEND_OK);
    assert_false(s.has_settle);
    assert_false(s.has_config_error);
    j = "{\"status\":\"ONLINE\",\"configError\":\"telemetryInterval\",\"settle\":true}";
    assert_int_equal(vend_decode_status(j, strlen(j), &s, &dg), VEND_OK);
    assert_true(s.has_settle);
    assert_true(s.settle);
    assert_true(s.has_config_error);
    assert_string_equal(s.config_error, "telemetryInterval");
    j = "{\"status\":\"OFFLINE\",\"settle\":false}";
    assert_int_equal(vend_decode_status(j, strlen(j), &s, &dg), VEND_OK);
    assert_true(s.has_settle);
    assert_false(s.settle);
}

static void round_trip_structs(void **state)
{
    char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_telemetry t, t2;
    struct vend_dispense_result r, r2;
    size_t i;
    int n;

    (void)state;
    /* A full telemetry: 64 slots, every optional field; fits the token budget. */
    memset(&t, 0, sizeof(t));
    t.has_timestamp = true;
    memcpy(t.timestamp, "2026-01-31T00:00:00.5Z", 23);
    t.nslots = VEND_SLOTS_MAX;
    for (i = 0; i < VEND_SLOTS_MAX; i++) {
        t.slots[i].id = (uint16_t)(200 - i);
        t.slots[i].level = (enum vend_level)(i % 5);
    }
    t.has_temperature = true;
    t.temperature = -12.34;
    t.door = VEND_DOOR_OPEN;
    n = vend_encode_telemetry(buf, sizeof(buf), &t);
    assert_true(n > 0 && n <= VEND_PAYLOAD_MAX);
    assert_int_equal(vend_decode_telemetry(buf, (size_t)n, &t2, NULL), VEND_OK);
    assert_string_equal(t2.timestamp, t.timestamp);
    assert_int_equal(t2.nslots, VEND_SLOTS_MAX);
    for (i = 0; i < VEND_SLOTS_MAX; i++) {
        assert_int_equal(t2.slots[i].id, t.slots[i].id);
        assert_int_equal(t2.slots[i].level, t.slots[i].level);
    }
    assert_true(temp_is(t2.temperature, -12.34));
    assert_int_equal(t2.door, VEND_DOOR_OPEN);

    /* Temperature keeps two decimals: 25.567 goes out as 25.57. */
    t.nslots = 0;
    t.has_timestamp = false;
    t.door = VEND_DOOR_UNKNOWN;
    t.temperature = 25.567;
    n = vend_encode_telemetry(buf, sizeof(buf), &t);
    assert_string_equal(buf, "{\"slots\":[],\"temperature\":25.57}");
    assert_int_equal(vend_decode_telemetry(buf, (size_t)n, &t2, NULL), VEND_OK);
    assert_true(temp_is(t2.temperature, 25.57));

    memset(&r, 0, sizeof(r));
    memcpy(r.order_id, "test-order-123", 15);
    r.slot = 12;
    r.success = true;
    r.has_error = true;
    memcpy(r.error, "SOME_NEW_CODE_42", 17);
    r.unit = 7;
    n = vend_encode_dispense_result(buf, sizeof(buf), &r);
    assert_true(n > 0);
    assert_int_equal(vend_decode_dispense_result(buf, (size_t)n, &r2, NULL), VEND_OK);
    assert_string_equal(r2.order_id, r.order_id);
    assert_int_equal(r2.slot, 12);
    assert_true(r2.success);
    assert_false(r2.drop_detected);
    assert_false(r2.has_duration);
    assert_true(r2.has_error);
    assert_string_equal(r2.error, "SOME_NEW_CODE_42");
    assert_false(vend_result_error_known(r2.error));
    assert_int_equal(r2.unit, 7);
}

static void encode_invalid(void **state)
{
    char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_command c;
    struct vend_dispense_result r;
    struct vend_telemetry t;
    struct vend_status s;
    struct vend_config g;

    (void)state;
    memset(&c, 0, sizeof(c));
    c.slot = 1;
    c.timeout_ms = 2150;
    memcpy(c.order_id, "A", 2);
    assert_true(vend_encode_command(buf, sizeof(buf), &c) > 0);
    c.slot = 0;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.slot = 256;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.slot = 1;
    c.timeout_ms = 99;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.timeout_ms = 60001;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.timeout_ms = 2150;
    c.unit = 101;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.unit = 0;
    c.cmd = (enum vend_cmd)2;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.cmd = VEND_CMD_DISPENSE;
    c.expires_at_ms = VEND_EXPIRES_AT_MIN - 1;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.expires_at_ms = VEND_EXPIRES_AT_MAX + 1;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.expires_at_ms = UINT64_MAX;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.expires_at_ms = VEND_EXPIRES_AT_MAX;
    assert_true(vend_encode_command(buf, sizeof(buf), &c) > 0);
    /* A settle with a timeout or an expiry would not decode to the same struct. */
    c.cmd = VEND_CMD_SETTLE;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.expires_at_ms = 0;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.timeout_ms = 0;
    assert_true(vend_encode_command(buf, sizeof(buf), &c) > 0);
    c.expires_at_ms = VEND_EXPIRES_AT_MIN;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.expires_at_ms = 0;
    c.slot = 0;
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    c.slot = 1;
    c.cmd = VEND_CMD_DISPENSE;
    c.timeout_ms = 2150;
    c.order_id[0] = '\0';
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    memcpy(c.order_id, "a\"b", 4);
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);
    memset(c.order_id, 'x', sizeof(c.order_id)); /* unterminated */
    assert_int_equal(vend_encode_command(buf, sizeof(buf), &c), VEND_EINVAL);

    memset(&r, 0, sizeof(r));
    memcpy(r.order_id, "A", 2);
    r.slot = 1;
    r.has_error = true;
    memcpy(r.error, "lower", 6);
    assert_int_equal(vend_encode_dispense_result(buf, sizeof(buf), &r), VEND_EINVAL);
    r.error[0] = '\0';
    assert_int_equal(vend_encode_dispense_result(buf, sizeof(buf), &r), VEND_EINVAL);
    r.has_error = false;
    r.has_duration = true;
    r.duration_ms = VEND_DURATION_MS_MAX + 1;
    assert_int_equal(vend_encode_dispense_result(buf, sizeof(buf), &r), VEND_EINVAL);

    memset(&t, 0, sizeof(t));
    t.has_temperature = true;
    t.temperature = NAN;
    assert_int_equal(vend_encode_telemetry(buf, sizeof(buf), &t), VEND_EINVAL);
    t.temperature = 150.01;
    assert_int_equal(vend_encode_telemetry(buf, sizeof(buf), &t), VEND_EINVAL);
    t.has_temperature = false;
    t.nslots = 2;
    t.slots[0].id = 3;
    t.slots[1].id = 3;
    assert_int_equal(vend_encode_telemetry(buf, sizeof(buf), &t), VEND_EINVAL);
    t.slots[1].id = 4;
    t.slots[1].level = (enum vend_level)9;
    assert_int_equal(vend_encode_telemetry(buf, sizeof(buf), &t), VEND_EINVAL);
    t.slots[1].level = VEND_LEVEL_LOW;
    t.nslots = VEND_SLOTS_MAX + 1;
    assert_int_equal(vend_encode_telemetry(buf, sizeof(buf), &t), VEND_EINVAL);
    t.nslots = 0;
    t.has_timestamp = true;
    memcpy(t.timestamp, "2025-02-29T10:30:00Z", 21);
    assert_int_equal(vend_encode_telemetry(buf, sizeof(buf), &t), VEND_EINVAL);

    memset(&s, 0, sizeof(s));
    s.has_rssi = true;
    s.rssi = 1;
    assert_int_equal(vend_encode_status(buf, sizeof(buf), &s), VEND_EINVAL);
    s.has_rssi = false;
    s.door = (enum vend_door)7;
    assert_int_equal(vend_encode_status(buf, sizeof(buf), &s), VEND_EINVAL);
    s.door = VEND_DOOR_UNKNOWN;
    s.has_fw = true;
    memcpy(s.fw, "1 0", 4);
    assert_int_equal(vend_encode_status(buf, sizeof(buf), &s), VEND_EINVAL);
    s.has_fw = false;
    s.has_config_error = true;
    assert_int_equal(vend_encode_status(buf, sizeof(buf), &s), VEND_EINVAL); /* empty */
    memcpy(s.config_error, "x.y", 4);
    assert_int_equal(vend_encode_status(buf, sizeof(buf), &s), VEND_EINVAL);
    memset(s.config_error, 'x', sizeof(s.config_error)); /* unterminated */
    assert_int_equal(vend_encode_status(buf, sizeof(buf), &s), VEND_EINVAL);

    memset(&g, 0, sizeof(g));
    g.motor_timeout_ms = 3000;
    g.telemetry_interval_ms = 999;
    assert_int_equal(vend_encode_config(buf, sizeof(buf), &g), VEND_EINVAL);
    g.telemetry_interval_ms = 1000;
    g.drop_sensor_delay_ms = 5001;
    assert_int_equal(vend_encode_config(buf, sizeof(buf), &g), VEND_EINVAL);
}

struct bad {
    enum kind kind;
    const char *json;
    int err;
    const char *field;
};

static const struct bad bad_inputs[] = {
    /* Whole-payload errors. */
    {K_COMMAND, "", VEND_ESYNTAX, "(root)"},
    {K_COMMAND, "[]", VEND_ESYNTAX, "(root)"},
    {K_COMMAND, "null", VEND_ESYNTAX, "(root)"},
    {K_COMMAND, "{\"cmd\":\"dispense\"", VEND_ESYNTAX, "(root)"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL "} x", VEND_ETRAILING, "(root)"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL "}}", VEND_ETRAILING, "(root)"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":NaN," CMD_TAIL "}", VEND_ESYNTAX, "(root)"},
    {K_TELEMETRY, "{\"slots\":[],\"temperature\":Infinity}", VEND_ESYNTAX, "(root)"},
    {K_TELEMETRY, "{\"slots\":[],\"temperature\":-Infinity}", VEND_ESYNTAX, "(root)"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":01," CMD_TAIL "}", VEND_ESYNTAX, "(root)"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"x\":{\"y\":[[[[[[[1]]]]]]]}}", VEND_EDEPTH, "(root)"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"x\":\"\\ud800\"}", VEND_ESYNTAX, "(root)"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"x\":\"\x80\"}", VEND_ESYNTAX, "(root)"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"x\":\"a\nb\"}", VEND_ESYNTAX, "(root)"},
    /* Duplicate keys, at every level, compared after unescaping. */
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"slot\":2," CMD_TAIL "}", VEND_EDUPKEY, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"sl\\u006ft\":2," CMD_TAIL "}", VEND_EDUPKEY,
     "sl\\u006ft"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"x\":{\"a\":1,\"b\":{\"c\":1,\"c\":1}}}", VEND_EDUPKEY,
     "x.b.c"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"x\":[{},{\"a\":1,\"a\":[]}]}", VEND_EDUPKEY, "x[1].a"},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1,\"level\":\"LOW\",\"id\":2}]}", VEND_EDUPKEY,
     "slots[0].id"},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1,\"level\":\"LOW\"},{\"id\":1,\"level\":\"FULL\"}]}",
     VEND_EDUPKEY, "slots[1].id"},
    /* command */
    {K_COMMAND, "{\"slot\":1," CMD_TAIL "}", VEND_EMISSING, "cmd"},
    {K_COMMAND, "{\"cmd\":\"DISPENSE\",\"slot\":1," CMD_TAIL "}", VEND_EENUM, "cmd"},
    {K_COMMAND, "{\"cmd\":\"dispense_all_of_it_now\",\"slot\":1," CMD_TAIL "}", VEND_EENUM, "cmd"},
    {K_COMMAND, "{\"cmd\":1,\"slot\":1," CMD_TAIL "}", VEND_ETYPE, "cmd"},
    {K_COMMAND, "{\"cmd\":\"dispense\"," CMD_TAIL "}", VEND_EMISSING, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":\"1\"," CMD_TAIL "}", VEND_ETYPE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1.5," CMD_TAIL "}", VEND_ETYPE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1.0," CMD_TAIL "}", VEND_ETYPE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1e0," CMD_TAIL "}", VEND_ETYPE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":-0," CMD_TAIL "}", VEND_ETYPE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":true," CMD_TAIL "}", VEND_ETYPE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":null," CMD_TAIL "}", VEND_ETYPE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":0," CMD_TAIL "}", VEND_ERANGE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":256," CMD_TAIL "}", VEND_ERANGE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":-1," CMD_TAIL "}", VEND_ERANGE, "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":99999999999999999999," CMD_TAIL "}", VEND_ERANGE,
     "slot"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"timeoutMs\":2150}", VEND_EMISSING, "orderId"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"\",\"timeoutMs\":2150}",
     VEND_ERANGE, "orderId"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"a b\",\"timeoutMs\":2150}",
     VEND_ERANGE, "orderId"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"a\\u0000\",\"timeoutMs\":2150}",
     VEND_ERANGE, "orderId"},
    {K_COMMAND,
     "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":"
     "\"12345678901234567890123456789012345678901234567890123456789012345\",\"timeoutMs\":2150}",
     VEND_ERANGE, "orderId"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":7,\"timeoutMs\":2150}", VEND_ETYPE,
     "orderId"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"O\"}", VEND_EMISSING, "timeoutMs"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"O\",\"timeoutMs\":99}", VEND_ERANGE,
     "timeoutMs"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"O\",\"timeoutMs\":60001}",
     VEND_ERANGE, "timeoutMs"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"unit\":0}", VEND_ERANGE, "unit"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"unit\":101}", VEND_ERANGE, "unit"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"unit\":\"2\"}", VEND_ETYPE,
     "unit"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":0}", VEND_ERANGE,
     "expiresAt"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":-1}", VEND_ERANGE,
     "expiresAt"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":1762252207}",
     VEND_ERANGE, "expiresAt"}, /* seconds, not milliseconds */
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":1577836799999}",
     VEND_ERANGE, "expiresAt"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":4102444800001}",
     VEND_ERANGE, "expiresAt"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":1e16}", VEND_ETYPE,
     "expiresAt"},
    {K_COMMAND,
     "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":99999999999999999999999}",
     VEND_ERANGE, "expiresAt"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":1762252207150.5}",
     VEND_ETYPE, "expiresAt"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":\"1762252207150\"}",
     VEND_ETYPE, "expiresAt"},
    {K_COMMAND, "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"expiresAt\":null}", VEND_ETYPE,
     "expiresAt"},
    /* the unit is checked before the expiry: wire order */
    {K_COMMAND, "{\"cmd\":\"dispense\",\"expiresAt\":0,\"slot\":1," CMD_TAIL ",\"unit\":0}",
     VEND_ERANGE, "unit"},
    /* settle: cmd, slot and orderId required; unit optional */
    {K_COMMAND, "{\"cmd\":\"settle\",\"orderId\":\"O1\",\"unit\":1}", VEND_EMISSING, "slot"},
    {K_COMMAND, "{\"cmd\":\"settle\",\"slot\":1,\"unit\":1}", VEND_EMISSING, "orderId"},
    {K_COMMAND, "{\"cmd\":\"settle\",\"slot\":0,\"orderId\":\"O1\"}", VEND_ERANGE, "slot"},
    {K_COMMAND, "{\"cmd\":\"settle\",\"slot\":1,\"orderId\":\"O 1\"}", VEND_ERANGE, "orderId"},
    {K_COMMAND, "{\"cmd\":\"settle\",\"slot\":1,\"orderId\":\"O1\",\"unit\":101}", VEND_ERANGE,
     "unit"},
    {K_COMMAND, "{\"cmd\":\"settle\",\"slot\":1,\"orderId\":\"O1\",\"unit\":null}", VEND_ETYPE,
     "unit"},
    {K_COMMAND, "{\"cmd\":\"SETTLE\",\"slot\":1,\"orderId\":\"O1\"}", VEND_EENUM, "cmd"},
    {K_COMMAND, "{\"cmd\":\"settle\",\"slot\":1,\"slot\":1,\"orderId\":\"O1\"}", VEND_EDUPKEY,
     "slot"},
    /* dispense_result */
    {K_RESULT, "{\"slot\":1,\"success\":true,\"dropDetected\":true}", VEND_EMISSING, "orderId"},
    {K_RESULT, "{\"orderId\":\"O1\",\"success\":true,\"dropDetected\":true}", VEND_EMISSING,
     "slot"},
    {K_RESULT, "{\"orderId\":\"O1\",\"slot\":1,\"dropDetected\":true}", VEND_EMISSING, "success"},
    {K_RESULT, "{\"orderId\":\"O1\",\"slot\":1,\"success\":1,\"dropDetected\":true}", VEND_ETYPE,
     "success"},
    {K_RESULT, "{\"orderId\":\"O1\",\"slot\":1,\"success\":\"true\",\"dropDetected\":true}",
     VEND_ETYPE, "success"},
    {K_RESULT, "{\"orderId\":\"O1\",\"slot\":1,\"success\":true}", VEND_EMISSING, "dropDetected"},
    {K_RESULT, "{\"orderId\":\"O1\",\"slot\":1,\"success\":true,\"dropDetected\":null}", VEND_ETYPE,
     "dropDetected"},
    {K_RESULT, RES_HEAD ",\"durationMs\":-1}", VEND_ERANGE, "durationMs"},
    {K_RESULT, RES_HEAD ",\"durationMs\":600001}", VEND_ERANGE, "durationMs"},
    {K_RESULT, RES_HEAD ",\"durationMs\":null}", VEND_ETYPE, "durationMs"},
    {K_RESULT, RES_HEAD ",\"error\":\"timeout\"}", VEND_ERANGE, "error"},
    {K_RESULT, RES_HEAD ",\"error\":\"\"}", VEND_ERANGE, "error"},
    {K_RESULT, RES_HEAD ",\"error\":\"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\"}", VEND_ERANGE, "error"},
    {K_RESULT, RES_HEAD ",\"error\":false}", VEND_ETYPE, "error"},
    {K_RESULT, RES_HEAD ",\"error\":{}}", VEND_ETYPE, "error"},
    {K_RESULT, RES_HEAD ",\"unit\":0}", VEND_ERANGE, "unit"},
    /* telemetry */
    {K_TELEMETRY, "{}", VEND_EMISSING, "slots"},
    {K_TELEMETRY, "{\"slots\":{}}", VEND_ETYPE, "slots"},
    {K_TELEMETRY, "{\"slots\":null}", VEND_ETYPE, "slots"},
    {K_TELEMETRY, "{\"slots\":[1]}", VEND_ETYPE, "slots[0]"},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1,\"level\":\"LOW\"},{\"level\":\"LOW\"}]}", VEND_EMISSING,
     "slots[1].id"},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1}]}", VEND_EMISSING, "slots[0].level"},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1,\"level\":\"low\"}]}", VEND_EENUM, "slots[0].level"},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1,\"level\":3}]}", VEND_ETYPE, "slots[0].level"},
    {K_TELEMETRY,
     "{\"slots\":[{\"id\":1,\"level\":\"LOW\"},{\"id\":2,\"level\":\"LOW\"},"
     "{\"id\":256,\"level\":\"LOW\"}]}",
     VEND_ERANGE, "slots[2].id"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":\"2025-11-04 10:30:00Z\"}", VEND_ERANGE,
     "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":\"2025-11-04T10:30:00+07:00\"}", VEND_ERANGE,
     "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":\"2025-13-04T10:30:00Z\"}", VEND_ERANGE,
     "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":\"2025-02-29T10:30:00Z\"}", VEND_ERANGE,
     "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":\"2025-11-04T24:00:00Z\"}", VEND_ERANGE,
     "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":\"2025-11-04T10:30:00.Z\"}", VEND_ERANGE,
     "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":\"2025-11-04T10:30:00.1234567890Z\"}", VEND_ERANGE,
     "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"timestamp\":1730716200}", VEND_ETYPE, "timestamp"},
    {K_TELEMETRY, "{\"slots\":[],\"temperature\":150.01}", VEND_ERANGE, "temperature"},
    {K_TELEMETRY, "{\"slots\":[],\"temperature\":-60.01}", VEND_ERANGE, "temperature"},
    {K_TELEMETRY, "{\"slots\":[],\"temperature\":1e400}", VEND_ERANGE, "temperature"},
    {K_TELEMETRY, "{\"slots\":[],\"temperature\":\"25.5\"}", VEND_ETYPE, "temperature"},
    {K_TELEMETRY, "{\"slots\":[],\"door\":\"AJAR\"}", VEND_EENUM, "door"},
    {K_TELEMETRY, "{\"slots\":[],\"door\":null}", VEND_ETYPE, "door"},
    /* status */
    {K_STATUS, "{\"door\":\"CLOSED\"}", VEND_EMISSING, "status"},
    {K_STATUS, "{\"status\":\"Online\"}", VEND_EENUM, "status"},
    {K_STATUS, "{\"status\":true}", VEND_ETYPE, "status"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"door\":\"closed\"}", VEND_EENUM, "door"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"rssi\":1}", VEND_ERANGE, "rssi"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"rssi\":-128}", VEND_ERANGE, "rssi"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"rssi\":-65.5}", VEND_ETYPE, "rssi"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"fw\":\"\"}", VEND_ERANGE, "fw"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"fw\":\"1.0 beta\"}", VEND_ERANGE, "fw"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"fw\":\"123456789012345678901234567890123\"}", VEND_ERANGE,
     "fw"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"fw\":1}", VEND_ETYPE, "fw"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"settle\":\"true\"}", VEND_ETYPE, "settle"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"settle\":1}", VEND_ETYPE, "settle"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"settle\":null}", VEND_ETYPE, "settle"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"settle\":true,\"fw\":\"\"}", VEND_ERANGE, "fw"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"configError\":\"\"}", VEND_ERANGE, "configError"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"configError\":\"x.y\"}", VEND_ERANGE, "configError"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"configError\":\"123456789012345678901234567890123\"}",
     VEND_ERANGE, "configError"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"configError\":null}", VEND_ETYPE, "configError"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"configError\":1,\"settle\":0}", VEND_ETYPE, "settle"},
    /* config */
    {K_CONFIG, "{" CFG_TAIL, VEND_EMISSING, "motorTimeout"},
    {K_CONFIG, "{\"motorTimeout\":99," CFG_TAIL, VEND_ERANGE, "motorTimeout"},
    {K_CONFIG, "{\"motorTimeout\":60001," CFG_TAIL, VEND_ERANGE, "motorTimeout"},
    {K_CONFIG, "{\"motorTimeout\":3000,\"telemetryInterval\":60000}", VEND_EMISSING,
     "dropSensorDelay"},
    {K_CONFIG, "{\"motorTimeout\":3000,\"dropSensorDelay\":5001,\"telemetryInterval\":60000}",
     VEND_ERANGE, "dropSensorDelay"},
    {K_CONFIG, "{\"motorTimeout\":3000,\"dropSensorDelay\":50}", VEND_EMISSING,
     "telemetryInterval"},
    {K_CONFIG, "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":999}",
     VEND_ERANGE, "telemetryInterval"},
    {K_CONFIG, "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":86400001}",
     VEND_ERANGE, "telemetryInterval"},
    {K_CONFIG, "{\"motorTimeout\":3e3," CFG_TAIL, VEND_ETYPE, "motorTimeout"},
};

static void bad_input_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad_inputs) / sizeof(bad_inputs[0]); i++) {
        const struct bad *b = &bad_inputs[i];
        struct vend_diag dg;
        union any o;
        int rc = decode(b->kind, b->json, strlen(b->json), &o, &dg);

        if (rc != b->err || dg.err != b->err || strcmp(dg.field, b->field) != 0)
            fail_msg("case %zu %s: got %s '%s', want %s '%s'", i, b->json, vend_errname(rc),
                     dg.field, vend_errname(b->err), b->field);
    }
}

static void good_variants(void **state)
{
    struct vend_command c;
    struct vend_dispense_result r;
    struct vend_telemetry t;
    struct vend_diag dg;
    const char *j;

    (void)state;
    /* Unknown keys of any type are ignored; escapes decode; key order is free. */
    j = "{\"extra\":{\"deep\":[1,{\"x\":null}],\"s\":\"\\ud83d\\ude00\"},\"timeoutMs\":100,"
        "\"orderId\":\"\\u004fRD\\u002d1\",\"slot\":255,\"cmd\":\"dispens\\u0065\",\"unit\":1}";
    assert_int_equal(vend_decode_command(j, strlen(j), &c, &dg), VEND_OK);
    assert_string_equal(c.order_id, "ORD-1");
    assert_int_equal(c.slot, 255);
    assert_int_equal(c.timeout_ms, 100);
    assert_int_equal(c.unit, 1);

    /* error absent, error a code, durationMs 0. */
    j = RES_HEAD "}";
    assert_int_equal(vend_decode_dispense_result(j, strlen(j), &r, &dg), VEND_OK);
    assert_false(r.has_error);
    assert_false(r.has_duration);
    j = RES_HEAD ",\"durationMs\":0,\"error\":\"JAMMED\"}";
    assert_int_equal(vend_decode_dispense_result(j, strlen(j), &r, &dg), VEND_OK);
    assert_true(r.has_duration);
    assert_int_equal(r.duration_ms, 0);
    assert_true(r.has_error);
    assert_string_equal(r.error, "JAMMED");
    assert_true(vend_result_error_known(r.error));

    /* Empty slots, no optional fields. */
    j = " {\"slots\" : [ ] } \r\n";
    assert_int_equal(vend_decode_telemetry(j, strlen(j), &t, &dg), VEND_OK);
    assert_int_equal(t.nslots, 0);
    assert_false(t.has_timestamp);
    assert_false(t.has_temperature);
    assert_int_equal(t.door, VEND_DOOR_UNKNOWN);
    j = "{\"slots\":[],\"temperature\":2.5555e1,\"timestamp\":\"2024-02-29T00:00:00.000Z\"}";
    assert_int_equal(vend_decode_telemetry(j, strlen(j), &t, &dg), VEND_OK);
    assert_true(temp_is(t.temperature, 25.56));
    assert_string_equal(t.timestamp, "2024-02-29T00:00:00.000Z");

    /* A NULL diag is allowed on success and on failure. */
    assert_int_equal(vend_decode_telemetry("{}", 2, &t, NULL), VEND_EMISSING);
    assert_int_equal(vend_decode_telemetry(NULL, 0, &t, &dg), VEND_EINVAL);
    assert_int_equal(vend_decode_telemetry("{}", 2, NULL, &dg), VEND_EINVAL);
}

/*
 * Duplicate keys and key comparison, pinned as they behaved before the decoder
 * learnt its fast paths (no backslash in the payload, no path built on success):
 * the code and the exact diag.field of the first duplicate in document order.
 */
static const struct bad dup_inputs[] = {
    /* At the root, in an object below an unknown key, inside array elements. */
    {K_TELEMETRY, "{\"slots\":[],\"door\":\"OPEN\",\"door\":\"CLOSED\"}", VEND_EDUPKEY, "door"},
    {K_TELEMETRY, "{\"slots\":[],\"x\":{\"a\":1,\"b\":2,\"a\":3}}", VEND_EDUPKEY, "x.a"},
    {K_TELEMETRY,
     "{\"slots\":[{\"id\":1,\"level\":\"LOW\"},{\"id\":2,\"level\":\"LOW\",\"level\":1}]}",
     VEND_EDUPKEY, "slots[1].level"},
    {K_TELEMETRY, "{\"slots\":[],\"x\":[[{\"a\":1}],[0,{\"a\":1,\"a\":2}]]}", VEND_EDUPKEY,
     "x[1][1].a"},
    /* The first duplicate in document order: a key's value is walked before the next key. */
    {K_TELEMETRY, "{\"x\":{\"a\":1,\"a\":2},\"x\":3,\"slots\":[]}", VEND_EDUPKEY, "x.a"},
    {K_TELEMETRY, "{\"x\":3,\"x\":{\"a\":1,\"a\":2},\"slots\":[]}", VEND_EDUPKEY, "x"},
    /* Compared after unescaping; the field is the raw key as written. */
    {K_TELEMETRY, "{\"slots\":[],\"a\":1,\"\\u0061\":2}", VEND_EDUPKEY, "\\u0061"},
    {K_TELEMETRY, "{\"slots\":[],\"\\u0061\":1,\"a\":2}", VEND_EDUPKEY, "a"},
    {K_TELEMETRY, "{\"slots\":[],\"\\u0061\":1,\"\\u0061\":2}", VEND_EDUPKEY, "\\u0061"},
    {K_TELEMETRY, "{\"slots\":[],\"a/\":1,\"a\\/\":2}", VEND_EDUPKEY, "a\\/"},
    {K_TELEMETRY, "{\"slots\":[],\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}", VEND_EDUPKEY,
     "\xf0\x9f\x98\x80"},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1,\"level\":\"LOW\",\"\\u0069d\":2}]}", VEND_EDUPKEY,
     "slots[0].\\u0069d"},
    {K_TELEMETRY, "{\"sl\\u006fts\":[],\"slots\":[]}", VEND_EDUPKEY, "slots"},
    /* A backslash elsewhere in the payload changes nothing. */
    {K_TELEMETRY, "{\"x\":\"\\n\",\"slots\":[],\"slots\":[]}", VEND_EDUPKEY, "slots"},
    {K_TELEMETRY, "{\"slots\":[],\"x\":{\"q\":\"\\\"\",\"q\":1}}", VEND_EDUPKEY, "x.q"},
    /* The empty key; a path longer than diag.field is truncated to 47 bytes. */
    {K_TELEMETRY, "{\"slots\":[],\"\":1,\"\":2}", VEND_EDUPKEY, "(root)"},
    {K_TELEMETRY, "{\"slots\":[],\"x\":{\"\":1,\"\":2}}", VEND_EDUPKEY, "x."},
    {K_TELEMETRY,
     "{\"slots\":[],\"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz\":{\"b\":1,\"b\":2}}",
     VEND_EDUPKEY, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstu"},
    {K_STATUS, "{\"status\":\"ONLINE\",\"x\":[{\"y\":[{\"z\":{\"k\":1,\"k\":2}}]}]}", VEND_EDUPKEY,
     "x[0].y[0].z.k"},
    /* Not duplicates: equal lengths, different bytes or different unescaped values. */
    {K_TELEMETRY, "{\"slots\":[],\"ab\":1,\"ba\":2,\"aa\":3,\"bb\":4}", VEND_OK, ""},
    {K_TELEMETRY, "{\"slots\":[],\"\\u0061b\":1,\"abcdefg\":2,\"\\u0041b\":3,\"ab\\n\":4}", VEND_OK,
     ""},
    {K_TELEMETRY, "{\"slots\":[],\"a\":1,\"A\":2,\"\\u0061\\u0062\":3,\"a\\u0062c\":4}", VEND_OK,
     ""},
    {K_TELEMETRY, "{\"slots\":[{\"id\":1,\"level\":\"LOW\"}],\"x\":{\"id\":1,\"level\":2}}",
     VEND_OK, ""},
};

static void duplicate_keys(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(dup_inputs) / sizeof(dup_inputs[0]); i++) {
        const struct bad *b = &dup_inputs[i];
        struct vend_diag dg;
        union any o;
        int rc = decode(b->kind, b->json, strlen(b->json), &o, &dg);

        if (rc != b->err || dg.err != b->err || strcmp(dg.field, b->field) != 0)
            fail_msg("case %zu %s: got %s '%s', want %s '%s'", i, b->json, vend_errname(rc),
                     dg.field, vend_errname(b->err), b->field);
    }
}

/* Schema keys found with and without escapes, with backslashes in the values around them. */
static void escaped_keys_and_values(void **state)
{
    struct vend_telemetry t;
    struct vend_status s;
    struct vend_diag dg;
    const char *j;

    (void)state;
    j = "{\"x\":\"a\\\\b\\\"c\",\"slots\":[{\"id\":3,\"level\":\"HIGH\"}],\"door\":\"OPEN\"}";
    assert_int_equal(vend_decode_telemetry(j, strlen(j), &t, &dg), VEND_OK);
    assert_int_equal(t.nslots, 1);
    assert_int_equal(t.slots[0].id, 3);
    assert_int_equal(t.slots[0].level, VEND_LEVEL_HIGH);
    assert_int_equal(t.door, VEND_DOOR_OPEN);
    assert_string_equal(dg.field, "");

    j = "{\"sl\\u006fts\":[{\"\\u0069d\":4,\"lev\\u0065l\":\"\\u004cOW\"}],\"d\\u006for\":"
        "\"CLOSE\\u0044\",\"timestamp\":\"2025-11-04T10:30:00\\u005a\"}";
    assert_int_equal(vend_decode_telemetry(j, strlen(j), &t, &dg), VEND_OK);
    assert_int_equal(t.nslots, 1);
    assert_int_equal(t.slots[0].id, 4);
    assert_int_equal(t.slots[0].level, VEND_LEVEL_LOW);
    assert_int_equal(t.door, VEND_DOOR_CLOSED);
    assert_true(t.has_timestamp);
    assert_string_equal(t.timestamp, "2025-11-04T10:30:00Z");

    /* A key that only starts like a schema key, or is one with a suffix, is unknown. */
    j = "{\"slot\":1,\"slotss\":2,\"slots\\u0000\":3,\"slots\":[],\"doo\":\"OPEN\"}";
    assert_int_equal(vend_decode_telemetry(j, strlen(j), &t, &dg), VEND_OK);
    assert_int_equal(t.door, VEND_DOOR_UNKNOWN);

    /* Escaped string values too long for their field: the same error as plain ones. */
    j = "{\"status\":\"ONLINE\",\"fw\":\"\\u00312345678901234567890123456789012\\u0033\"}";
    assert_int_equal(vend_decode_status(j, strlen(j), &s, &dg), VEND_ERANGE);
    assert_string_equal(dg.field, "fw");
    j = "{\"status\":\"ONLINE\",\"fw\":\"\\u0031234567890123456789012345678901\"}";
    assert_int_equal(vend_decode_status(j, strlen(j), &s, &dg), VEND_OK);
    assert_string_equal(s.fw, "1234567890123456789012345678901");
    /* Unescaped (a backslash elsewhere in the second): 32 bytes fit, 33 do not. */
    j = "{\"status\":\"ONLINE\",\"fw\":\"12345678901234567890123456789012\"}";
    assert_int_equal(vend_decode_status(j, strlen(j), &s, &dg), VEND_OK);
    assert_string_equal(s.fw, "12345678901234567890123456789012");
    j = "{\"status\":\"ONLINE\",\"fw\":\"123456789012345678901234567890123\",\"x\":\"\\\\\"}";
    assert_int_equal(vend_decode_status(j, strlen(j), &s, &dg), VEND_ERANGE);
    assert_string_equal(dg.field, "fw");
}

/* A valid command of exactly len bytes: the unknown key "pad" takes up the slack. */
static void make_padded(char *buf, size_t len)
{
    const char *head = "{\"cmd\":\"dispense\",\"slot\":1," CMD_TAIL ",\"pad\":\"";
    size_t h = strlen(head);

    memcpy(buf, head, h);
    memset(buf + h, 'p', len - h - 2);
    buf[len - 2] = '"';
    buf[len - 1] = '}';
    buf[len] = '\0';
}

static void size_boundary(void **state)
{
    static char buf[VEND_PAYLOAD_MAX + 2];
    struct vend_command c;
    struct vend_diag dg;

    (void)state;
    make_padded(buf, VEND_PAYLOAD_MAX);
    assert_int_equal(vend_decode_command(buf, VEND_PAYLOAD_MAX, &c, &dg), VEND_OK);
    make_padded(buf, VEND_PAYLOAD_MAX + 1);
    assert_int_equal(vend_decode_command(buf, VEND_PAYLOAD_MAX + 1, &c, &dg), VEND_ETOOBIG);
    assert_string_equal(dg.field, "(root)");
    /* The length is what counts: the first 4096 bytes of it are not parsed at all. */
    memcpy(buf, "not json", 8);
    assert_int_equal(vend_decode_command(buf, VEND_PAYLOAD_MAX + 1, &c, &dg), VEND_ETOOBIG);
}

/* Appends the NUL-terminated s at buf + *n (callers size buf for it). */
static void append(char *buf, size_t *n, const char *s)
{
    size_t len = strlen(s);

    memcpy(buf + *n, s, len + 1);
    *n += len;
}

static void too_many_tokens(void **state)
{
    static char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_status s;
    struct vend_diag dg;
    size_t n = 0;
    int i;

    (void)state;
    append(buf, &n, "{\"status\":\"ONLINE\",\"x\":[0");
    for (i = 1; i < VEND_JSON_TOKENS_MAX; i++)
        append(buf, &n, ",0");
    append(buf, &n, "]}");
    assert_true(n <= VEND_PAYLOAD_MAX);
    assert_int_equal(vend_decode_status(buf, n, &s, &dg), VEND_ETOOBIG);
    assert_string_equal(dg.field, "(root)");
    /* One element less in the array still fits: root, 2 keys, 2 values, N - 5 zeros. */
    n = 0;
    append(buf, &n, "{\"status\":\"ONLINE\",\"x\":[0");
    for (i = 1; i < VEND_JSON_TOKENS_MAX - 5; i++)
        append(buf, &n, ",0");
    append(buf, &n, "]}");
    assert_int_equal(vend_decode_status(buf, n, &s, &dg), VEND_OK);
}

static void nesting_depth(void **state)
{
    char buf[128];
    struct vend_status s;
    struct vend_diag dg;
    int depth;

    (void)state;
    /* The root object is depth 1; "x" adds depth - 1 arrays. */
    for (depth = 2; depth <= 12; depth++) {
        size_t n = 0;
        int i;

        append(buf, &n, "{\"status\":\"ONLINE\",\"x\":");
        for (i = 1; i < depth; i++)
            buf[n++] = '[';
        for (i = 1; i < depth; i++)
            buf[n++] = ']';
        buf[n++] = '}';
        assert_int_equal(vend_decode_status(buf, n, &s, &dg),
                         depth <= VEND_JSON_DEPTH_MAX ? VEND_OK : VEND_EDEPTH);
    }
}

static void no_read_past_len(void **state)
{
    /* The payload is followed by bytes that would change the answer if they were read. */
    const char buf[] = "{\"status\":\"ONLINE\"}, \"rssi\":-1}";
    struct vend_status s;

    (void)state;
    assert_int_equal(vend_decode_status(buf, 19, &s, NULL), VEND_OK);
    assert_false(s.has_rssi);
    assert_int_equal(vend_decode_status(buf, 18, &s, NULL), VEND_ESYNTAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(guide_examples),    cmocka_unit_test(will_payload),
        cmocka_unit_test(encode_spec_forms), cmocka_unit_test(round_trip_structs),
        cmocka_unit_test(encode_invalid),    cmocka_unit_test(bad_input_table),
        cmocka_unit_test(good_variants),     cmocka_unit_test(size_boundary),
        cmocka_unit_test(too_many_tokens),   cmocka_unit_test(nesting_depth),
        cmocka_unit_test(no_read_past_len),  cmocka_unit_test(settle_and_expiry),
        cmocka_unit_test(duplicate_keys),    cmocka_unit_test(escaped_keys_and_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
