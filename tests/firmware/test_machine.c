/*
 * test_machine.c - the firmware core on the scripted HAL: every dispense outcome, every
 * refusal, duplicates, expiry, settling, config, status and telemetry, re-publishing, and
 * the faults: jam, no drop, door, flash write failures, a full journal, an unreadable one,
 * and a power cut at every step of every journal write.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "fake_hal.h"
#include "vend/err.h"
#include "vend/fw/machine.h"

#define NOW_WALL(f) ((f)->wall + (f)->mono)

static struct vend_fw_machine *machine_new(void)
{
    return test_calloc(1, sizeof(struct vend_fw_machine));
}

/* The payload of the last result for order_id + unit since publish index from, or NULL. */
static const char *result_json(const struct fake *f, size_t from, const char *order_id,
                               uint16_t unit)
{
    struct vend_dispense_result r;
    const char *json = NULL;
    size_t i;

    for (i = from; i < f->npubs; i++) {
        if (fake_kind(f, i) != VEND_TOPIC_DISPENSE_RESULT)
            continue;
        assert_int_equal(vend_decode_dispense_result(f->pubs[i].payload, f->pubs[i].len, &r, NULL),
                         VEND_OK);
        if (strcmp(r.order_id, order_id) == 0 && (r.unit ? r.unit : 1) == (unit ? unit : 1))
            json = f->pubs[i].payload;
    }
    return json;
}

static void expect_result(const struct fake *f, size_t from, const char *order_id, uint16_t unit,
                          const char *want)
{
    const char *got = result_json(f, from, order_id, unit);

    if (got == NULL)
        fail_msg("no result for '%s' unit %u, want %s", order_id, (unsigned)unit, want);
    assert_string_equal(got, want);
}

/* The payload of the last publish of kind k since from, or NULL. */
static const char *last_json(const struct fake *f, size_t from, enum vend_topic_kind k)
{
    const char *json = NULL;
    size_t i;

    for (i = from; i < f->npubs; i++) {
        if (fake_kind(f, i) == k)
            json = f->pubs[i].payload;
    }
    return json;
}

/* Runs one unit on slot that drops 500 ms in: success with durationMs 550. */
static void complete_unit(struct fake *f, struct vend_fw_machine *m, const char *id, uint16_t unit,
                          uint16_t slot)
{
    fake_drop_in(f, 500, 100);
    assert_int_equal(fake_dispense(m, id, unit, slot, 2150, 0), VEND_OK);
    assert_int_equal(m->phase, VEND_FW_RUNNING);
    fake_run(f, m, 600);
    assert_int_equal(m->phase, VEND_FW_IDLE);
    assert_false(f->motor_on[slot]);
}

static int config(struct vend_fw_machine *m, const char *json)
{
    return vend_fw_machine_on_config(m, json, strlen(json), NULL);
}

static void boot_status_will_telemetry(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    char topic[VEND_TOPIC_MAX + 1], payload[64];
    size_t from;

    (void)state;
    fake_machine(f, m, 2);
    assert_int_equal(vend_fw_machine_will(m, topic, sizeof(topic), payload, sizeof(payload)), 20);
    assert_string_equal(topic, "vm/VM01/status");
    assert_string_equal(payload, "{\"status\":\"OFFLINE\"}");
    assert_int_equal(vend_fw_machine_will(m, topic, sizeof(topic), payload, 20), VEND_ENOSPACE);
    fake_run(f, m, 1000);
    assert_int_equal(f->npubs, 0); /* nothing while disconnected */

    fake_connect(f, m);
    assert_int_equal(f->npubs, 2);
    assert_string_equal(f->pubs[0].topic, "vm/VM01/status");
    assert_int_equal(f->pubs[0].qos, 1);
    assert_true(f->pubs[0].retain);
    assert_string_equal(f->pubs[0].payload,
                        "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,"
                        "\"fw\":\"1.0.0\",\"settle\":true}");
    assert_string_equal(f->pubs[1].topic, "vm/VM01/telemetry");
    assert_int_equal(f->pubs[1].qos, 0);
    assert_false(f->pubs[1].retain);
    assert_string_equal(f->pubs[1].payload,
                        "{\"timestamp\":\"2025-11-04T10:30:01Z\",\"slots\":[{\"id\":1,\"level\":"
                        "\"FULL\"},{\"id\":2,\"level\":\"FULL\"}],\"temperature\":25.5,\"door\":"
                        "\"CLOSED\"}");

    /* Telemetry every telemetryInterval (60 s by default). */
    from = f->npubs;
    fake_run(f, m, 59990);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_TELEMETRY), 0);
    fake_run(f, m, 10);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_TELEMETRY), 1);

    /* What the sensors cannot tell is left out; so is a time from an unsynced clock. */
    f->level_present[2] = false;
    f->level[1] = VEND_LEVEL_LOW;
    f->temp_centi = 15001;
    f->wall_synced = false;
    fake_run(f, m, 60000);
    assert_string_equal(last_json(f, from, VEND_TOPIC_TELEMETRY),
                        "{\"slots\":[{\"id\":1,\"level\":\"LOW\"}],\"door\":\"CLOSED\"}");
    f->temp_ok = false;
    f->temp_centi = 2550;
    f->wall_synced = true;
    fake_run(f, m, 60000);
    assert_string_equal(last_json(f, from, VEND_TOPIC_TELEMETRY),
                        "{\"timestamp\":\"2025-11-04T10:33:01Z\",\"slots\":[{\"id\":1,\"level\":"
                        "\"LOW\"}],\"door\":\"CLOSED\"}");

    /* The door changes the retained status at once. */
    from = f->npubs;
    f->door = VEND_DOOR_OPEN;
    fake_run(f, m, 10);
    assert_string_equal(last_json(f, from, VEND_TOPIC_STATUS),
                        "{\"status\":\"ONLINE\",\"door\":\"OPEN\",\"rssi\":-65,\"fw\":\"1.0.0\","
                        "\"settle\":true}");
    fake_run(f, m, 1000);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_STATUS), 1);

    /* Reconnect: status again, without an rssi nobody knows. */
    fake_disconnect(f, m);
    f->rssi_ok = false;
    from = f->npubs;
    fake_connect(f, m);
    assert_string_equal(
        last_json(f, from, VEND_TOPIC_STATUS),
        "{\"status\":\"ONLINE\",\"door\":\"OPEN\",\"fw\":\"1.0.0\",\"settle\":true}");
    test_free(m);
    fake_free(f);
}

static void init_rejects_bad_params(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    struct vend_fw_params p = {.machine_id = "VM01", .fw = "1.0.0", .nslots = 8};
    struct vend_fw_hal h = f->hal;

    (void)state;
    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_OK);
    p.nslots = 0;
    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_EINVAL);
    p.nslots = VEND_SLOTS_MAX + 1;
    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_EINVAL);
    p.nslots = 8;
    p.machine_id = "VM/01";
    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_EINVAL);
    p.machine_id = "VM01";
    p.fw = "1.0 beta";
    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_EINVAL);
    p.fw = "123456789012345678901234567890123";
    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_EINVAL);
    p.fw = "1.0.0";
    h.kv_put = NULL;
    assert_int_equal(vend_fw_machine_init(m, &h, &p), VEND_EINVAL);
    h = f->hal;
    h.rssi = NULL; /* optional */
    assert_int_equal(vend_fw_machine_init(m, &h, &p), VEND_OK);
    /* Init switches every motor off, whatever was on before. */
    f->motor_on[3] = true;
    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_OK);
    assert_false(f->motor_on[3]);
    test_free(m);
    fake_free(f);
}

static void dispense_drop(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;
    fake_drop_in(f, 1800, 200);
    assert_int_equal(fake_dispense(m, "ORD123456", 0, 1, 2150, 0), VEND_OK);
    /* The STARTED write comes first, then the motor. */
    assert_int_equal(f->puts, 1);
    assert_true(f->motor_on[1]);
    assert_int_equal(f->motor_starts[1], 1);
    fake_run(f, m, 1840);
    assert_true(f->motor_on[1]);
    assert_null(result_json(f, from, "ORD123456", 0));
    fake_run(f, m, 10); /* 50 ms of beam: a drop */
    assert_false(f->motor_on[1]);
    expect_result(f, from, "ORD123456", 0,
                  "{\"orderId\":\"ORD123456\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                  "\"durationMs\":1850,\"error\":null}");
    assert_int_equal(f->puts, 2);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 1);
    assert_int_equal(f->motor_starts_total, 1);
    test_free(m);
    fake_free(f);
}

static void no_drop_and_debounce(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;

    /* A 30 ms flicker is not a drop (dropSensorDelay 50): the run times out. */
    fake_drop_in(f, 500, 30);
    assert_int_equal(fake_dispense(m, "ORD-G", 0, 2, 2150, 0), VEND_OK);
    fake_run(f, m, 2140);
    assert_true(f->motor_on[2]);
    fake_run(f, m, 10);
    assert_false(f->motor_on[2]);
    expect_result(f, from, "ORD-G", 0,
                  "{\"orderId\":\"ORD-G\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":2150,\"error\":\"NO_DROP\"}");

    /* motorTimeout caps timeoutMs; a shorter timeoutMs wins over motorTimeout. */
    assert_int_equal(
        config(m, "{\"motorTimeout\":1000,\"dropSensorDelay\":50,\"telemetryInterval\":60000}"),
        VEND_OK);
    assert_int_equal(fake_dispense(m, "ORD-C", 0, 2, 2150, 0), VEND_OK);
    fake_run(f, m, 1000);
    expect_result(f, from, "ORD-C", 0,
                  "{\"orderId\":\"ORD-C\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":1000,\"error\":\"NO_DROP\"}");
    assert_int_equal(fake_dispense(m, "ORD-T", 0, 2, 500, 0), VEND_OK);
    fake_run(f, m, 500);
    expect_result(f, from, "ORD-T", 0,
                  "{\"orderId\":\"ORD-T\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":500,\"error\":\"NO_DROP\"}");
    assert_int_equal(
        config(m, "{\"motorTimeout\":3000,\"dropSensorDelay\":50,\"telemetryInterval\":60000}"),
        VEND_OK);

    /* A beam blocked before the run is no drop, however long it stays blocked. */
    f->drop_stuck = true;
    assert_int_equal(fake_dispense(m, "ORD-S", 0, 2, 2150, 0), VEND_OK);
    fake_run(f, m, 2150);
    expect_result(f, from, "ORD-S", 0,
                  "{\"orderId\":\"ORD-S\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":2150,\"error\":\"NO_DROP\"}");
    f->drop_stuck = false;

    /* In the beam as time runs out: the motor stops, the debounce decides. */
    fake_drop_in(f, 2130, 200);
    assert_int_equal(fake_dispense(m, "ORD-P", 0, 2, 2150, 0), VEND_OK);
    fake_run(f, m, 2150);
    assert_false(f->motor_on[2]);
    assert_int_equal(m->phase, VEND_FW_STOPPING);
    assert_null(result_json(f, from, "ORD-P", 0));
    fake_run(f, m, 30);
    expect_result(f, from, "ORD-P", 0,
                  "{\"orderId\":\"ORD-P\",\"slot\":2,\"success\":true,\"dropDetected\":true,"
                  "\"durationMs\":2150,\"error\":null}");
    /* ... and a beam that clears before the debounce ends was no drop. */
    fake_drop_in(f, 2140, 20);
    assert_int_equal(fake_dispense(m, "ORD-Q", 0, 2, 2150, 0), VEND_OK);
    fake_run(f, m, 2150);
    assert_int_equal(m->phase, VEND_FW_STOPPING);
    fake_run(f, m, 10);
    expect_result(f, from, "ORD-Q", 0,
                  "{\"orderId\":\"ORD-Q\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":2150,\"error\":\"NO_DROP\"}");

    /* dropSensorDelay 0: one reading is a drop. */
    assert_int_equal(
        config(m, "{\"motorTimeout\":3000,\"dropSensorDelay\":0,\"telemetryInterval\":60000}"),
        VEND_OK);
    fake_drop_in(f, 700, 10);
    assert_int_equal(fake_dispense(m, "ORD-Z", 0, 2, 2150, 0), VEND_OK);
    fake_run(f, m, 700);
    expect_result(f, from, "ORD-Z", 0,
                  "{\"orderId\":\"ORD-Z\",\"slot\":2,\"success\":true,\"dropDetected\":true,"
                  "\"durationMs\":700,\"error\":null}");
    assert_int_equal(f->motor_starts_total, 7);
    test_free(m);
    fake_free(f);
}

static void jam_and_motor_faults(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;

    f->stall_at = f->mono + 700;
    assert_int_equal(fake_dispense(m, "ORD-J", 0, 3, 2150, 0), VEND_OK);
    fake_run(f, m, 700);
    assert_false(f->motor_on[3]);
    expect_result(f, from, "ORD-J", 0,
                  "{\"orderId\":\"ORD-J\",\"slot\":3,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":700,\"error\":\"JAMMED\"}");
    f->stall_at = UINT64_MAX;

    f->motor_state[3] = VEND_FW_MOTOR_FAULT;
    assert_int_equal(fake_dispense(m, "ORD-K", 0, 3, 2150, 0), VEND_OK);
    fake_run(f, m, 10);
    assert_false(f->motor_on[3]);
    expect_result(f, from, "ORD-K", 0,
                  "{\"orderId\":\"ORD-K\",\"slot\":3,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":10,\"error\":\"MOTOR_FAULT\"}");
    f->motor_state[3] = VEND_FW_MOTOR_OK;

    /* The driver refuses to start: reported at once, nothing turned. */
    f->motor_fail_on = 1;
    assert_int_equal(fake_dispense(m, "ORD-M", 0, 3, 2150, 0), VEND_OK);
    assert_int_equal(m->phase, VEND_FW_IDLE);
    assert_int_equal(f->motor_starts[3], 2);
    expect_result(f, from, "ORD-M", 0,
                  "{\"orderId\":\"ORD-M\",\"slot\":3,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":0,\"error\":\"MOTOR_FAULT\"}");

    /* The driver refuses to stop: the product fell, but the fault is told, and no new unit
     * runs until the motor is off. */
    f->motor_fail_off = 3;
    fake_drop_in(f, 500, 100);
    assert_int_equal(fake_dispense(m, "ORD-N", 0, 3, 2150, 0), VEND_OK);
    fake_run(f, m, 550);
    expect_result(f, from, "ORD-N", 0,
                  "{\"orderId\":\"ORD-N\",\"slot\":3,\"success\":true,\"dropDetected\":true,"
                  "\"durationMs\":550,\"error\":\"MOTOR_FAULT\"}");
    assert_true(f->motor_on[3]);
    assert_int_equal(m->motor_stuck, 3);
    assert_int_equal(fake_dispense(m, "ORD-X", 0, 4, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD-X", 0,
                  "{\"orderId\":\"ORD-X\",\"slot\":4,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"MOTOR_FAULT\"}");
    assert_int_equal(f->motor_starts[4], 0);
    fake_run(f, m, 20);
    assert_false(f->motor_on[3]);
    assert_int_equal(m->motor_stuck, 0);
    complete_unit(f, m, "ORD-Y", 0, 4);
    assert_int_equal(m->stats.motor_errors, 2); /* ORD-M on, ORD-N off; retries not counted */
    test_free(m);
    fake_free(f);
}

static void door(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;

    /* Opened mid-dispense: the motor stops at once. */
    f->door_open_at = f->mono + 400;
    assert_int_equal(fake_dispense(m, "ORD-D", 0, 1, 2150, 0), VEND_OK);
    fake_run(f, m, 390);
    assert_true(f->motor_on[1]);
    fake_run(f, m, 10);
    assert_false(f->motor_on[1]);
    expect_result(f, from, "ORD-D", 0,
                  "{\"orderId\":\"ORD-D\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"durationMs\":400,\"error\":\"DOOR_OPEN\"}");
    assert_string_equal(last_json(f, from, VEND_TOPIC_STATUS),
                        "{\"status\":\"ONLINE\",\"door\":\"OPEN\",\"rssi\":-65,\"fw\":\"1.0.0\","
                        "\"settle\":true}");

    /* Open when the command comes: refused, and the refusal is final. */
    assert_int_equal(fake_dispense(m, "ORD-E", 0, 1, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD-E", 0,
                  "{\"orderId\":\"ORD-E\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"DOOR_OPEN\"}");
    f->door_open_at = UINT64_MAX;
    fake_run(f, m, 10);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD-E", 0, 1, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD-E", 0,
                  "{\"orderId\":\"ORD-E\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"DOOR_OPEN\"}");
    assert_int_equal(f->motor_starts_total, 1);
    /* A machine without a door switch counts the door as closed. */
    f->door = VEND_DOOR_UNKNOWN;
    complete_unit(f, m, "ORD-F", 0, 1);
    test_free(m);
    fake_free(f);
}

static void invalid_slot_and_busy(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD-I", 0, 9, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD-I", 0,
                  "{\"orderId\":\"ORD-I\",\"slot\":9,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"INVALID_SLOT\"}");

    fake_drop_in(f, 1000, 100);
    assert_int_equal(fake_dispense(m, "ORD-A", 0, 1, 2150, 0), VEND_OK);
    fake_run(f, m, 300);
    assert_int_equal(fake_dispense(m, "ORD-B", 2, 2, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD-B", 2,
                  "{\"orderId\":\"ORD-B\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"BUSY\",\"unit\":2}");
    assert_true(f->motor_on[1]);
    fake_run(f, m, 800);
    expect_result(f, from, "ORD-A", 0,
                  "{\"orderId\":\"ORD-A\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                  "\"durationMs\":1050,\"error\":null}");
    /* Busy is final too: the unit was failed, and must not drop later. */
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD-B", 2, 2, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD-B", 2,
                  "{\"orderId\":\"ORD-B\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"BUSY\",\"unit\":2}");
    assert_int_equal(f->motor_starts_total, 1);
    test_free(m);
    fake_free(f);
}

static void duplicates(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    const char *want = "{\"orderId\":\"ORD1\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                       "\"durationMs\":550,\"error\":null}";
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    complete_unit(f, m, "ORD1", 0, 1);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD1", 0, 1, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD1", 0, want);
    /* No unit and unit 1 are one unit. */
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD1", 1, 1, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD1", 1, want);
    fake_run(f, m, 1000);
    assert_int_equal(f->motor_starts_total, 1);
    assert_int_equal(m->stats.answered, 2);

    /* Unit 2 of the same order is another unit; repeated while it runs, it waits. */
    fake_drop_in(f, 500, 100);
    assert_int_equal(fake_dispense(m, "ORD1", 2, 1, 2150, 0), VEND_OK);
    fake_run(f, m, 100);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD1", 2, 1, 2150, 0), VEND_OK);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 0);
    assert_int_equal(f->motor_starts_total, 2);
    fake_run(f, m, 500);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 1);

    /* After a reboot the journal answers: no motor. */
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    fake_connect(g, m2);
    from = g->npubs;
    assert_int_equal(fake_dispense(m2, "ORD1", 0, 1, 2150, 0), VEND_OK);
    expect_result(g, from, "ORD1", 0, want);
    assert_int_equal(fake_dispense(m2, "ORD1", 2, 1, 2150, 0), VEND_OK);
    expect_result(g, from, "ORD1", 2,
                  "{\"orderId\":\"ORD1\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                  "\"durationMs\":550,\"error\":null,\"unit\":2}");
    fake_run(g, m2, 3000);
    assert_int_equal(g->motor_starts_total, 0);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
}

static void expiry(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    const char *want = "{\"orderId\":\"EXP1\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                       "\"error\":\"EXPIRED\"}";
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    fake_run(f, m, 5000);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "EXP1", 0, 1, 2150, NOW_WALL(f) - 1), VEND_OK);
    expect_result(f, from, "EXP1", 0, want);
    assert_int_equal(fake_dispense(m, "EXP2", 0, 1, 2150, NOW_WALL(f)), VEND_OK);
    expect_result(f, from, "EXP2", 0,
                  "{\"orderId\":\"EXP2\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"EXPIRED\"}");
    assert_int_equal(f->motor_starts_total, 0);
    /* Not yet expired: it runs. */
    fake_drop_in(f, 500, 100);
    assert_int_equal(fake_dispense(m, "EXP3", 0, 1, 2150, NOW_WALL(f) + 1), VEND_OK);
    assert_int_equal(f->motor_starts_total, 1);
    fake_run(f, m, 600);
    /* Without a synced clock the machine cannot tell: it runs. */
    f->wall_synced = false;
    complete_unit(f, m, "EXP4", 0, 1);
    /* EXP4 had no expiresAt at all; EXP5 has one long gone, unknowable. */
    fake_drop_in(f, 500, 100);
    assert_int_equal(fake_dispense(m, "EXP5", 0, 1, 2150, NOW_WALL(f) - 3600000), VEND_OK);
    assert_int_equal(f->motor_starts_total, 3);
    fake_run(f, m, 600);
    /* The refusal was journaled: unsynced now, it still holds, also after a reboot. */
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "EXP1", 0, 1, 2150, NOW_WALL(f) + 100000), VEND_OK);
    expect_result(f, from, "EXP1", 0, want);
    g = fake_from_kv(&f->kv);
    g->wall_synced = false;
    fake_machine(g, m2, 8);
    fake_connect(g, m2);
    from = g->npubs;
    assert_int_equal(fake_dispense(m2, "EXP1", 0, 1, 2150, 0), VEND_OK);
    expect_result(g, from, "EXP1", 0, want);
    assert_int_equal(g->motor_starts_total, 0);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
}

static void settle_before_during_after(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    const char *cancelled = "{\"orderId\":\"ORD5\",\"slot\":3,\"success\":false,\"dropDetected\":"
                            "false,\"error\":\"CANCELLED\",\"unit\":2}";
    const char *done = "{\"orderId\":\"ORD7\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                       "\"durationMs\":1000,\"error\":null}";
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;

    /* Before: the unit is cancelled for good, and a late command for it never runs. */
    assert_int_equal(fake_settle(m, "ORD5", 2, 3), VEND_OK);
    expect_result(f, from, "ORD5", 2, cancelled);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD5", 2, 3, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD5", 2, cancelled);
    assert_int_equal(f->motor_starts_total, 0);
    /* A settle without a unit is unit 1, as in the command. */
    assert_int_equal(fake_settle(m, "ORD6", 0, 1), VEND_OK);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD6", 1, 1, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD6", 1,
                  "{\"orderId\":\"ORD6\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"CANCELLED\"}");
    assert_int_equal(f->motor_starts_total, 0);

    /* During: no answer until the unit ends, then exactly one. */
    fake_drop_in(f, 950, 100);
    assert_int_equal(fake_dispense(m, "ORD7", 0, 1, 2150, 0), VEND_OK);
    fake_run(f, m, 500);
    from = f->npubs;
    assert_int_equal(fake_settle(m, "ORD7", 0, 1), VEND_OK);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 0);
    fake_run(f, m, 500);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 1);
    expect_result(f, from, "ORD7", 0, done);

    /* After: the stored result, also for a refused unit. */
    from = f->npubs;
    assert_int_equal(fake_settle(m, "ORD7", 1, 1), VEND_OK);
    expect_result(f, from, "ORD7", 0, done);
    assert_int_equal(fake_dispense(m, "ORD8", 0, 99, 2150, 0), VEND_OK);
    from = f->npubs;
    assert_int_equal(fake_settle(m, "ORD8", 0, 99), VEND_OK);
    expect_result(f, from, "ORD8", 0,
                  "{\"orderId\":\"ORD8\",\"slot\":99,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"INVALID_SLOT\"}");
    assert_int_equal(f->motor_starts_total, 1);

    /* All of it survives a reboot. */
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    fake_connect(g, m2);
    from = g->npubs;
    assert_int_equal(fake_dispense(m2, "ORD5", 2, 3, 2150, 0), VEND_OK);
    expect_result(g, from, "ORD5", 2, cancelled);
    assert_int_equal(fake_settle(m2, "ORD7", 0, 1), VEND_OK);
    expect_result(g, from, "ORD7", 0, done);
    assert_int_equal(g->motor_starts_total, 0);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
}

static void power_loss_reported(void **state)
{
    struct fake *f = fake_new(), *g, *h;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    const char *want = "{\"orderId\":\"ORD-PL\",\"slot\":5,\"success\":false,\"dropDetected\":"
                       "false,\"error\":\"POWER_LOSS\",\"unit\":3}";
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    fake_drop_in(f, 500, 100);
    assert_int_equal(fake_dispense(m, "ORD-PL", 3, 5, 2150, 0), VEND_OK);
    fake_run(f, m, 300);
    assert_true(f->motor_on[5]);

    /* The power goes: only the flash is left. */
    g = fake_from_kv(&f->kv);
    g->motor_on[5] = true; /* as the GPIO may come up */
    fake_machine(g, m2, 8);
    assert_false(g->motor_on[5]);
    fake_connect(g, m2);
    expect_result(g, 0, "ORD-PL", 3, want);
    from = g->npubs;
    assert_int_equal(fake_dispense(m2, "ORD-PL", 3, 5, 2150, 0), VEND_OK);
    expect_result(g, from, "ORD-PL", 3, want);
    from = g->npubs;
    assert_int_equal(fake_settle(m2, "ORD-PL", 3, 5), VEND_OK);
    expect_result(g, from, "ORD-PL", 3, want);
    fake_run(g, m2, 3000);
    assert_int_equal(g->motor_starts_total, 0);

    /* The verdict was journaled: the next boot says the same without writing. */
    h = fake_from_kv(&g->kv);
    fake_machine(h, m2, 8);
    assert_int_equal(h->puts, 0);
    fake_connect(h, m2);
    expect_result(h, 0, "ORD-PL", 3, want);
    assert_int_equal(h->motor_starts_total, 0);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
    fake_free(h);
}

/*
 * Restarts a fresh core from kv, the state a power cut left, and checks what must hold:
 * nothing runs at boot; every result published before the cut is answered the same; a unit
 * whose motor had started is known and never runs again; the units no write touched are all
 * still there; the config is the old or the new one.
 */
struct cut {
    const struct fake *orig;
    size_t pubs_from;       /* results from here on were published during the recording */
    size_t pubs_before;     /* published before the cut */
    unsigned motor_from;    /* motor starts before the recording */
    unsigned motor_before;  /* motor starts before the cut */
    const char *run_ids[2]; /* the units run during the recording, in order */
};

static void check_cut(const struct fake_kv *kv, const struct cut *c)
{
    struct fake *g = fake_from_kv(kv);
    struct vend_fw_machine *m = machine_new();
    struct vend_dispense_result r;
    char id[8];
    size_t i, from;
    int k;

    fake_machine(g, m, 4);
    fake_connect(g, m);
    assert_int_equal(g->motor_starts_total, 0);
    for (i = c->pubs_from; i < c->pubs_before; i++) {
        if (fake_kind(c->orig, i) != VEND_TOPIC_DISPENSE_RESULT)
            continue;
        assert_int_equal(
            vend_decode_dispense_result(c->orig->pubs[i].payload, c->orig->pubs[i].len, &r, NULL),
            VEND_OK);
        from = g->npubs;
        assert_int_equal(fake_dispense(m, r.order_id, r.unit, r.slot, 2150, 0), VEND_OK);
        expect_result(g, from, r.order_id, r.unit, c->orig->pubs[i].payload);
    }
    /* The recording's four new units evict OLD00..OLD03; the rest stay. */
    for (k = 4; k < VEND_FW_JOURNAL_CAP; k++) {
        snprintf(id, sizeof(id), "OLD%02d", k);
        from = g->npubs;
        assert_int_equal(fake_dispense(m, id, 0, 1, 2150, 0), VEND_OK);
        assert_non_null(result_json(g, from, id, 0));
    }
    for (k = 0; k < 2; k++) {
        const char *json;

        if (c->motor_before <= c->motor_from + (unsigned)k)
            continue; /* this unit's motor had not started: it may be unknown */
        from = g->npubs;
        assert_int_equal(fake_dispense(m, c->run_ids[k], 0, 2, 2150, 0), VEND_OK);
        json = result_json(g, from, c->run_ids[k], 0);
        assert_non_null(json);
        assert_true(strstr(json, "\"success\":true") != NULL ||
                    strstr(json, "\"error\":\"POWER_LOSS\"") != NULL);
    }
    assert_true(m->config.motor_timeout_ms == VEND_FW_DEFAULT_MOTOR_TIMEOUT_MS ||
                m->config.motor_timeout_ms == 2000);
    fake_run(g, m, 100);
    assert_int_equal(g->motor_starts_total, 0);
    test_free(m);
    fake_free(g);
}

static void power_cut_at_every_write_step(enum fake_torn torn)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    struct cut c = {.orig = f, .run_ids = {"CUT", "NEXT"}};
    char id[8];
    size_t s;
    int k;

    fake_machine(f, m, 4);
    fake_connect(f, m);
    /* A full journal, so that every new unit evicts one. */
    for (k = 0; k < VEND_FW_JOURNAL_CAP; k++) {
        snprintf(id, sizeof(id), "OLD%02d", k);
        complete_unit(f, m, id, 0, 1);
    }
    fake_record(f, torn);
    c.pubs_from = f->npubs;
    c.motor_from = f->motor_starts_total;
    /* Every kind of write: STARTED, DONE, CANCELLED, REFUSED, config, and again. */
    complete_unit(f, m, "CUT", 0, 2);
    assert_int_equal(fake_settle(m, "SET", 3, 3), VEND_OK);
    assert_int_equal(
        config(m, "{\"motorTimeout\":2000,\"dropSensorDelay\":50,\"telemetryInterval\":60000}"),
        VEND_OK);
    fake_drop_in(f, 500, 100);
    assert_int_equal(fake_dispense(m, "NEXT", 0, 2, 2150, 0), VEND_OK);
    assert_int_equal(fake_dispense(m, "BUSY", 0, 3, 2150, 0), VEND_OK);
    fake_run(f, m, 600);
    assert_int_equal(f->motor_starts_total, c.motor_from + 2);
    assert_int_equal(f->puts - VEND_FW_JOURNAL_CAP * 2, 7);
    assert_true(f->nsnaps > 7 * 10);

    for (s = 0; s <= f->nsnaps; s++) {
        bool final = s == f->nsnaps;

        c.pubs_before = final ? f->npubs : f->snap_pubs[s];
        c.motor_before = final ? f->motor_starts_total : f->snap_motor[s];
        check_cut(final ? &f->kv : &f->snaps[s], &c);
    }
    test_free(m);
    fake_free(f);
}

static void power_cut_erase_then_program(void **state)
{
    (void)state;
    power_cut_at_every_write_step(FAKE_TORN_ERASED);
}

static void power_cut_overwrite_in_place(void **state)
{
    (void)state;
    power_cut_at_every_write_step(FAKE_TORN_OLD);
}

/* The POWER_LOSS verdict written at boot can itself be cut: the unit still never runs. */
static void power_cut_during_boot_verdict(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new();
    size_t s;

    (void)state;
    fake_machine(f, m, 4);
    assert_int_equal(fake_dispense(m, "PL", 0, 2, 2150, 0), VEND_OK);
    assert_true(f->motor_on[2]);
    g = fake_from_kv(&f->kv);
    fake_record(g, FAKE_TORN_ERASED);
    fake_machine(g, m, 4);
    assert_int_equal(g->puts, 1);
    for (s = 0; s <= g->nsnaps; s++) {
        struct fake *h = fake_from_kv(s == g->nsnaps ? &g->kv : &g->snaps[s]);
        struct vend_fw_machine *m2 = machine_new();
        size_t from;

        fake_machine(h, m2, 4);
        fake_connect(h, m2);
        expect_result(h, 0, "PL", 0,
                      "{\"orderId\":\"PL\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                      "\"error\":\"POWER_LOSS\"}");
        from = h->npubs;
        assert_int_equal(fake_dispense(m2, "PL", 0, 2, 2150, 0), VEND_OK);
        assert_non_null(result_json(h, from, "PL", 0));
        assert_int_equal(h->motor_starts_total, 0);
        test_free(m2);
        fake_free(h);
    }
    test_free(m);
    fake_free(f);
    fake_free(g);
}

static void flash_failure_before_the_run(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    const char *want_g = "{\"orderId\":\"ORD-G\",\"slot\":1,\"success\":false,\"dropDetected\":"
                         "false,\"error\":\"JOURNAL_FAULT\"}";
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;
    /* One failed write (STARTED): no run; the refusal written next is told at once. */
    f->fail_from = f->fail_to = f->puts + 1;
    assert_int_equal(fake_dispense(m, "ORD-F", 0, 1, 2150, 0), VEND_OK);
    assert_int_equal(f->motor_starts_total, 0);
    expect_result(f, from, "ORD-F", 0,
                  "{\"orderId\":\"ORD-F\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"JOURNAL_FAULT\"}");

    /* A dead flash: no run, and no answer that a reboot could take back. */
    from = f->npubs;
    f->fail_from = f->puts + 1;
    f->fail_to = UINT_MAX;
    assert_int_equal(fake_dispense(m, "ORD-G", 0, 1, 2150, 0), VEND_OK);
    assert_int_equal(fake_dispense(m, "ORD-G", 0, 1, 2150, 0), VEND_OK); /* redelivered */
    fake_run(f, m, 5000);
    assert_int_equal(f->motor_starts_total, 0);
    assert_null(result_json(f, from, "ORD-G", 0));
    assert_true(m->journal.write_errors >= 5);
    /* The flash recovers: the refusal is written, then told. */
    f->fail_from = f->fail_to = 0;
    fake_run(f, m, VEND_FW_RETRY_MS);
    expect_result(f, from, "ORD-G", 0, want_g);
    from = f->npubs;
    assert_int_equal(fake_dispense(m, "ORD-G", 0, 1, 2150, 0), VEND_OK);
    expect_result(f, from, "ORD-G", 0, want_g);
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    fake_connect(g, m2);
    from = g->npubs;
    assert_int_equal(fake_dispense(m2, "ORD-G", 0, 1, 2150, 0), VEND_OK);
    expect_result(g, from, "ORD-G", 0, want_g);
    assert_int_equal(f->motor_starts_total + g->motor_starts_total, 0);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
}

static void flash_failure_after_the_run(void **state)
{
    struct fake *f = fake_new(), *g, *h;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    const char *done = "{\"orderId\":\"ORD-H\",\"slot\":1,\"success\":true,\"dropDetected\":true,"
                       "\"durationMs\":550,\"error\":null}";

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    f->fail_from = f->fail_to = f->puts + 2; /* the DONE write */
    complete_unit(f, m, "ORD-H", 0, 1);
    /* The motor ran: the truth goes out though the flash did not take it. */
    expect_result(f, 0, "ORD-H", 0, done);
    assert_true(vend_fw_journal_dirty(&m->journal));
    /* A reboot now would find STARTED: the honest answer is POWER_LOSS, never a rerun. */
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    fake_connect(g, m2);
    expect_result(g, 0, "ORD-H", 0,
                  "{\"orderId\":\"ORD-H\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"POWER_LOSS\"}");
    assert_int_equal(g->motor_starts_total, 0);
    /* Without a reboot, the retry writes the result. */
    fake_run(f, m, VEND_FW_RETRY_MS);
    assert_false(vend_fw_journal_dirty(&m->journal));
    h = fake_from_kv(&f->kv);
    fake_machine(h, m2, 8);
    fake_connect(h, m2);
    expect_result(h, 0, "ORD-H", 0, done);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
    fake_free(h);
}

static void flash_failure_settle(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;
    f->fail_from = f->puts + 1;
    f->fail_to = UINT_MAX;
    assert_int_equal(fake_settle(m, "ORD-S", 0, 1), VEND_OK);
    fake_run(f, m, 3000);
    assert_null(result_json(f, from, "ORD-S", 0));
    /* Not promised yet, but not forgotten either: a command for it does not run. */
    assert_int_equal(fake_dispense(m, "ORD-S", 0, 1, 2150, 0), VEND_OK);
    assert_int_equal(f->motor_starts_total, 0);
    f->fail_from = f->fail_to = 0;
    fake_run(f, m, VEND_FW_RETRY_MS);
    expect_result(f, from, "ORD-S", 0,
                  "{\"orderId\":\"ORD-S\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"CANCELLED\"}");
    test_free(m);
    fake_free(f);
}

static void journal_full(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    char id[16];
    size_t from;
    int k;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    /* More units than entries: the oldest go, the last VEND_FW_JOURNAL_CAP stay. */
    for (k = 0; k < VEND_FW_JOURNAL_CAP + 8; k++) {
        snprintf(id, sizeof(id), "U%02d", k);
        complete_unit(f, m, id, 0, 1);
    }
    assert_int_equal(m->journal.evictions, 8);
    for (k = 8; k < VEND_FW_JOURNAL_CAP + 8; k++) {
        snprintf(id, sizeof(id), "U%02d", k);
        from = f->npubs;
        assert_int_equal(fake_dispense(m, id, 0, 1, 2150, 0), VEND_OK);
        assert_non_null(result_json(f, from, id, 0));
    }
    assert_int_equal(f->motor_starts_total, VEND_FW_JOURNAL_CAP + 8);

    /* A flood of commands while one runs never evicts the running unit. */
    assert_int_equal(fake_dispense(m, "RUN", 0, 2, 2150, 0), VEND_OK);
    for (k = 0; k < VEND_FW_JOURNAL_CAP + 8; k++) {
        snprintf(id, sizeof(id), "B%02d", k);
        assert_int_equal(fake_dispense(m, id, 0, 1, 2150, 0), VEND_OK);
    }
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    fake_connect(g, m2);
    expect_result(g, 0, "RUN", 0,
                  "{\"orderId\":\"RUN\",\"slot\":2,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"POWER_LOSS\"}");
    fake_free(g);
    fake_free(f);

    /* Settles without a dispense between them are not acknowledged: they cannot be evicted,
     * and one too many is not answered (nor promised) until vendd moves on. */
    f = fake_new();
    fake_machine(f, m, 8);
    fake_connect(f, m);
    for (k = 0; k < VEND_FW_JOURNAL_CAP; k++) {
        snprintf(id, sizeof(id), "S%02d", k);
        assert_int_equal(fake_settle(m, id, 0, 1), VEND_OK);
    }
    from = f->npubs;
    assert_int_equal(fake_settle(m, "S99", 0, 1), VEND_ENOSPACE);
    assert_null(result_json(f, from, "S99", 0));
    assert_int_equal(m->stats.unjournaled, 1);
    complete_unit(f, m, "D1", 0, 1);
    assert_int_equal(fake_settle(m, "S99", 0, 1), VEND_OK);
    assert_non_null(result_json(f, from, "S99", 0));
    test_free(m);
    test_free(m2);
    fake_free(f);
}

static void config_validated_and_persisted(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    const char *ok = "{\"motorTimeout\":1000,\"dropSensorDelay\":0,\"telemetryInterval\":1000}";
    const char *bad = "{\"motorTimeout\":99,\"dropSensorDelay\":50,\"telemetryInterval\":60000}";
    struct vend_diag dg;
    unsigned puts;
    size_t from;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    from = f->npubs;
    puts = f->puts;
    assert_int_equal(vend_fw_machine_on_config(m, bad, strlen(bad), &dg), VEND_ERANGE);
    assert_string_equal(dg.field, "motorTimeout");
    assert_string_equal(last_json(f, from, VEND_TOPIC_STATUS),
                        "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,\"fw\":\"1.0.0\","
                        "\"settle\":true,\"configError\":\"motorTimeout\"}");
    assert_int_equal(m->config.motor_timeout_ms, VEND_FW_DEFAULT_MOTOR_TIMEOUT_MS);
    assert_int_equal(config(m, "not json"), VEND_ESYNTAX);
    assert_string_equal(m->config_error, "(root)");
    assert_int_equal(config(m, "{\"motorTimeout\":1000,\"dropSensorDelay\":50}"), VEND_EMISSING);
    assert_string_equal(m->config_error, "telemetryInterval");
    assert_int_equal(config(m, "{\"motorTimeout\":1000,\"dropSensorDelay\":50,"
                               "\"telemetryInterval\":1000,\"x\":{\"a\":1,\"a\":2}}"),
                     VEND_EDUPKEY);
    assert_string_equal(m->config_error, "(root)");
    assert_int_equal(m->stats.configs_bad, 4);
    assert_int_equal(f->puts, puts); /* nothing refused is written */
    assert_int_equal(m->config.telemetry_interval_ms, VEND_FW_DEFAULT_TELEMETRY_INTERVAL_MS);

    /* A good one clears the error, applies and persists. */
    from = f->npubs;
    assert_int_equal(config(m, ok), VEND_OK);
    assert_string_equal(last_json(f, from, VEND_TOPIC_STATUS),
                        "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,\"fw\":\"1.0.0\","
                        "\"settle\":true}");
    assert_int_equal(f->puts, puts + 1);
    assert_int_equal(config(m, ok), VEND_OK); /* the retained copy again: no write */
    assert_int_equal(f->puts, puts + 1);
    from = f->npubs;
    fake_run(f, m, 3000);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_TELEMETRY), 3);
    assert_int_equal(fake_dispense(m, "ORD-C", 0, 1, 2150, 0), VEND_OK);
    fake_run(f, m, 1000);
    assert_non_null(strstr(result_json(f, from, "ORD-C", 0), "\"durationMs\":1000"));

    /* A failed write: applied now, written on the retry. */
    f->fail_from = f->fail_to = f->puts + 1;
    assert_int_equal(
        config(m, "{\"motorTimeout\":2000,\"dropSensorDelay\":0,\"telemetryInterval\":1000}"),
        VEND_OK);
    assert_int_equal(m->config.motor_timeout_ms, 2000);
    assert_true(m->config_dirty);
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    assert_int_equal(m2->config.motor_timeout_ms, 1000);
    fake_free(g);
    fake_run(f, m, VEND_FW_RETRY_MS);
    assert_false(m->config_dirty);
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    assert_int_equal(m2->config.motor_timeout_ms, 2000);
    fake_free(g);
    /* The running unit keeps the limits it started with. */
    assert_int_equal(fake_dispense(m, "ORD-D", 0, 1, 2150, 0), VEND_OK);
    assert_int_equal(
        config(m, "{\"motorTimeout\":500,\"dropSensorDelay\":0,\"telemetryInterval\":1000}"),
        VEND_OK);
    fake_run(f, m, 2000);
    assert_non_null(strstr(result_json(f, from, "ORD-D", 0), "\"durationMs\":2000"));
    assert_false(m->config_dirty);
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    assert_int_equal(m2->config.motor_timeout_ms, 500);
    assert_int_equal(m2->config.drop_sensor_delay_ms, 0);
    assert_int_equal(m2->config.telemetry_interval_ms, 1000);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
}

static void republish_until_acknowledged(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();
    size_t from, mark;
    int i;

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    complete_unit(f, m, "R1", 0, 1); /* the result went out 50 ms before it returned */
    from = f->npubs;
    fake_run(f, m, VEND_FW_REPUBLISH_FIRST_MS - 60);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 0);
    fake_run(f, m, 10);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 1);
    fake_run(f, m, 2 * VEND_FW_REPUBLISH_FIRST_MS - 10);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 1);
    fake_run(f, m, 10);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 2);
    /* Offline nothing goes out; every connect sends what is outstanding. */
    fake_disconnect(f, m);
    fake_run_step(f, m, 600000, 1000);
    from = f->npubs;
    fake_connect(f, m);
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 1);
    assert_non_null(result_json(f, from, "R1", 0));
    /* The gap doubles up to VEND_FW_REPUBLISH_MAX_MS. */
    fake_run_step(f, m, 4 * 3600000, 1000);
    assert_int_equal(m->republish_gap_ms[vend_fw_journal_find(&m->journal, "R1", 0)],
                     VEND_FW_REPUBLISH_MAX_MS);
    /* Gaps of 30 60 120 240 480 960 s, then 1800 s: 12 re-publishes in four hours. */
    assert_int_equal(fake_count(f, from, VEND_TOPIC_DISPENSE_RESULT), 1 + 12);

    /* A dispense for a new unit acknowledges R1: it is not sent again. */
    complete_unit(f, m, "R2", 0, 1);
    mark = f->npubs;
    for (i = 0; i < 3; i++)
        fake_run_step(f, m, 3600000, 1000);
    assert_null(result_json(f, mark, "R1", 0));
    assert_non_null(result_json(f, mark, "R2", 0));
    /* The mark is journaled: after a reboot only R2 is outstanding. */
    g = fake_from_kv(&f->kv);
    fake_machine(g, m2, 8);
    fake_connect(g, m2);
    assert_int_equal(fake_count(g, 0, VEND_TOPIC_DISPENSE_RESULT), 1);
    assert_non_null(result_json(g, 0, "R2", 0));
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
}

static void journal_unreadable_at_boot(void **state)
{
    struct fake *f = fake_new(), *g;
    struct vend_fw_machine *m = machine_new(), *m2 = machine_new();

    (void)state;
    fake_machine(f, m, 8);
    assert_int_equal(fake_dispense(m, "ORD-U", 0, 1, 2150, 0), VEND_OK);
    assert_true(f->motor_on[1]);
    g = fake_from_kv(&f->kv);
    g->get_fails = true;
    fake_machine(g, m2, 8);
    assert_false(m2->journal_ready);
    fake_connect(g, m2);
    /* Blind, it cannot tell a repeat from a new unit: nothing runs, nothing is said. */
    assert_int_equal(fake_dispense(m2, "ORD-U", 0, 1, 2150, 0), VEND_EUNAVAILABLE);
    assert_int_equal(fake_dispense(m2, "ORD-V", 0, 1, 2150, 0), VEND_EUNAVAILABLE);
    assert_int_equal(fake_settle(m2, "ORD-W", 0, 1), VEND_EUNAVAILABLE);
    fake_run(g, m2, 3000);
    assert_int_equal(g->motor_starts_total, 0);
    assert_int_equal(fake_count(g, 0, VEND_TOPIC_DISPENSE_RESULT), 0);
    assert_int_equal(m2->stats.unjournaled, 3);
    /* A config applies, but is not written over copies that could not be read. */
    assert_int_equal(
        config(m2, "{\"motorTimeout\":1500,\"dropSensorDelay\":50,\"telemetryInterval\":60000}"),
        VEND_OK);
    assert_int_equal(m2->config.motor_timeout_ms, 1500);
    fake_run(g, m2, 3000);
    assert_int_equal(g->puts, 0);
    /* Readable again: the interrupted unit is reported, new ones run, the config is kept. */
    g->get_fails = false;
    fake_run(g, m2, VEND_FW_RETRY_MS);
    assert_true(m2->journal_ready);
    assert_false(m2->config_dirty);
    expect_result(g, 0, "ORD-U", 0,
                  "{\"orderId\":\"ORD-U\",\"slot\":1,\"success\":false,\"dropDetected\":false,"
                  "\"error\":\"POWER_LOSS\"}");
    complete_unit(g, m2, "ORD-V", 0, 1);
    assert_int_equal(g->motor_starts_total, 1);
    fake_free(f);
    f = fake_from_kv(&g->kv);
    fake_machine(f, m, 8);
    assert_int_equal(m->config.motor_timeout_ms, 1500);
    test_free(m);
    test_free(m2);
    fake_free(f);
    fake_free(g);
}

static void bad_command_dropped(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_machine *m = machine_new();
    struct vend_diag dg;
    const char *j = "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"O\"}";

    (void)state;
    fake_machine(f, m, 8);
    fake_connect(f, m);
    assert_int_equal(vend_fw_machine_on_command(m, "garbage", 7, &dg), VEND_ESYNTAX);
    assert_string_equal(dg.field, "(root)");
    assert_int_equal(vend_fw_machine_on_command(m, j, strlen(j), &dg), VEND_EMISSING);
    assert_string_equal(dg.field, "timeoutMs");
    assert_int_equal(vend_fw_machine_on_command(m, j, strlen(j), NULL), VEND_EMISSING);
    assert_int_equal(m->stats.commands_bad, 3);
    assert_int_equal(fake_count(f, 0, VEND_TOPIC_DISPENSE_RESULT), 0);
    assert_int_equal(f->motor_starts_total, 0);
    assert_int_equal(f->puts, 0);
    test_free(m);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(boot_status_will_telemetry),
        cmocka_unit_test(init_rejects_bad_params),
        cmocka_unit_test(dispense_drop),
        cmocka_unit_test(no_drop_and_debounce),
        cmocka_unit_test(jam_and_motor_faults),
        cmocka_unit_test(door),
        cmocka_unit_test(invalid_slot_and_busy),
        cmocka_unit_test(duplicates),
        cmocka_unit_test(expiry),
        cmocka_unit_test(settle_before_during_after),
        cmocka_unit_test(power_loss_reported),
        cmocka_unit_test(power_cut_erase_then_program),
        cmocka_unit_test(power_cut_overwrite_in_place),
        cmocka_unit_test(power_cut_during_boot_verdict),
        cmocka_unit_test(flash_failure_before_the_run),
        cmocka_unit_test(flash_failure_after_the_run),
        cmocka_unit_test(flash_failure_settle),
        cmocka_unit_test(journal_full),
        cmocka_unit_test(config_validated_and_persisted),
        cmocka_unit_test(republish_until_acknowledged),
        cmocka_unit_test(journal_unreadable_at_boot),
        cmocka_unit_test(bad_command_dropped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
