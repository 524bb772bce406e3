/* fake_hal.c - the scripted HAL of the firmware tests (fake_hal.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fake_hal.h"
#include "vend/err.h"

#define GUIDE_WALL_MS 1762252200000ULL /* 2025-11-04T10:30:00Z */

static struct fake *F(void *ctx)
{
    return ctx;
}

static int motor_set(void *ctx, uint16_t slot, bool on)
{
    struct fake *f = F(ctx);

    assert_true(slot >= 1 && slot <= VEND_SLOT_MAX);
    if (on && f->motor_fail_on > 0) {
        f->motor_fail_on--;
        return VEND_EIO;
    }
    if (!on && f->motor_fail_off > 0) {
        f->motor_fail_off--;
        return VEND_EIO;
    }
    if (on && !f->motor_on[slot]) {
        f->motor_starts[slot]++;
        f->motor_starts_total++;
    }
    f->motor_on[slot] = on;
    return VEND_OK;
}

static enum vend_fw_motor motor_state(void *ctx, uint16_t slot)
{
    struct fake *f = F(ctx);

    if (f->motor_on[slot] && f->mono >= f->stall_at)
        return VEND_FW_MOTOR_STALLED;
    return f->motor_state[slot];
}

static bool drop_sensor(void *ctx)
{
    struct fake *f = F(ctx);

    return f->drop_stuck || (f->mono >= f->drop_from && f->mono < f->drop_until);
}

static int slot_level(void *ctx, uint16_t slot, enum vend_level *out)
{
    struct fake *f = F(ctx);

    if (!f->level_present[slot])
        return VEND_ENOTFOUND;
    *out = f->level[slot];
    return VEND_OK;
}

static enum vend_door door(void *ctx)
{
    struct fake *f = F(ctx);

    if (f->mono >= f->door_open_at)
        return VEND_DOOR_OPEN;
    return f->door;
}

static int temperature_centi(void *ctx, int32_t *out)
{
    struct fake *f = F(ctx);

    *out = f->temp_centi;
    return f->temp_ok ? VEND_OK : VEND_EUNAVAILABLE;
}

static int rssi(void *ctx, int16_t *out)
{
    struct fake *f = F(ctx);

    *out = f->rssi;
    return f->rssi_ok ? VEND_OK : VEND_EUNAVAILABLE;
}

static uint64_t mono_ms(void *ctx)
{
    return F(ctx)->mono;
}

static int wall_ms(void *ctx, uint64_t *out)
{
    struct fake *f = F(ctx);

    *out = f->wall + f->mono;
    return f->wall_synced ? VEND_OK : VEND_EUNAVAILABLE;
}

static struct fake_kv_entry *kv_find(struct fake_kv *kv, const char *key, bool create)
{
    size_t i;

    for (i = 0; i < FAKE_KV_KEYS; i++) {
        if (kv->e[i].key[0] != '\0' && strcmp(kv->e[i].key, key) == 0)
            return &kv->e[i];
    }
    if (!create)
        return NULL;
    for (i = 0; i < FAKE_KV_KEYS; i++) {
        if (kv->e[i].key[0] == '\0') {
            memcpy(kv->e[i].key, key, strlen(key) + 1);
            return &kv->e[i];
        }
    }
    fail_msg("fake kv store full");
    return NULL;
}

static int kv_get(void *ctx, const char *key, uint8_t *value)
{
    struct fake *f = F(ctx);
    struct fake_kv_entry *e;

    assert_true(strlen(key) <= VEND_FW_KV_KEY_MAX);
    if (f->get_fails)
        return VEND_EIO;
    e = kv_find(&f->kv, key, false);
    if (e == NULL || !e->present)
        return VEND_ENOTFOUND;
    memcpy(value, e->value, VEND_FW_KV_VALUE_SIZE);
    return VEND_OK;
}

static void snap(struct fake *f)
{
    if (!f->recording)
        return;
    assert_true(f->nsnaps < FAKE_SNAPS_MAX);
    f->snap_pubs[f->nsnaps] = f->npubs;
    f->snap_motor[f->nsnaps] = f->motor_starts_total;
    f->snaps[f->nsnaps++] = f->kv;
}

static int kv_put(void *ctx, const char *key, const uint8_t *value)
{
    struct fake *f = F(ctx);
    struct fake_kv_entry *e;
    size_t n;

    assert_true(strlen(key) <= VEND_FW_KV_KEY_MAX);
    f->puts++;
    e = kv_find(&f->kv, key, true);
    /* A cut before the write starts. */
    snap(f);
    if (f->torn == FAKE_TORN_ERASED || !e->present) {
        memset(e->value, 0xFF, sizeof(e->value));
        e->present = true;
        snap(f);
    }
    if (f->fail_from != 0 && f->puts >= f->fail_from && f->puts <= f->fail_to) {
        /* A failed write leaves the worst: half of the new bytes. */
        memcpy(e->value, value, VEND_FW_KV_VALUE_SIZE / 2);
        return VEND_EIO;
    }
    for (n = FAKE_KV_CHUNK; n < VEND_FW_KV_VALUE_SIZE; n += FAKE_KV_CHUNK) {
        memcpy(e->value, value, n);
        snap(f);
    }
    memcpy(e->value, value, VEND_FW_KV_VALUE_SIZE);
    return VEND_OK;
}

static int kv_erase(void *ctx, const char *key)
{
    struct fake *f = F(ctx);
    struct fake_kv_entry *e = kv_find(&f->kv, key, false);

    if (e != NULL)
        e->present = false;
    return VEND_OK;
}

static int mqtt_publish(void *ctx, const char *topic, const char *payload, size_t len, int qos,
                        bool retain)
{
    struct fake *f = F(ctx);
    struct fake_pub *p;

    if (!f->connected)
        return VEND_EUNAVAILABLE;
    assert_true(f->npubs < FAKE_PUBS_MAX);
    assert_true(len < FAKE_PAYLOAD);
    assert_true(strlen(topic) <= VEND_TOPIC_MAX);
    p = &f->pubs[f->npubs++];
    memcpy(p->topic, topic, strlen(topic) + 1);
    memcpy(p->payload, payload, len);
    p->payload[len] = '\0';
    p->len = len;
    p->qos = qos;
    p->retain = retain;
    return VEND_OK;
}

struct fake *fake_new(void)
{
    struct fake *f = calloc(1, sizeof(*f));
    int s;

    assert_non_null(f);
    f->pubs = calloc(FAKE_PUBS_MAX, sizeof(*f->pubs));
    assert_non_null(f->pubs);
    f->hal = (struct vend_fw_hal){
        .ctx = f,
        .motor_set = motor_set,
        .motor_state = motor_state,
        .drop_sensor = drop_sensor,
        .slot_level = slot_level,
        .door = door,
        .temperature_centi = temperature_centi,
        .rssi = rssi,
        .mono_ms = mono_ms,
        .wall_ms = wall_ms,
        .kv_get = kv_get,
        .kv_put = kv_put,
        .kv_erase = kv_erase,
        .mqtt_publish = mqtt_publish,
    };
    f->wall = GUIDE_WALL_MS;
    f->wall_synced = true;
    f->drop_from = UINT64_MAX;
    f->door_open_at = UINT64_MAX;
    f->stall_at = UINT64_MAX;
    f->door = VEND_DOOR_CLOSED;
    for (s = 0; s <= VEND_SLOT_MAX; s++) {
        f->level_present[s] = true;
        f->level[s] = VEND_LEVEL_FULL;
    }
    f->temp_ok = true;
    f->temp_centi = 2550;
    f->rssi_ok = true;
    f->rssi = -65;
    return f;
}

struct fake *fake_from_kv(const struct fake_kv *kv)
{
    struct fake *f = fake_new();

    f->kv = *kv;
    return f;
}

void fake_free(struct fake *f)
{
    if (f == NULL)
        return;
    free(f->snaps);
    free(f->snap_pubs);
    free(f->snap_motor);
    free(f->pubs);
    free(f);
}

void fake_record(struct fake *f, enum fake_torn torn)
{
    if (f->snaps == NULL) {
        f->snaps = calloc(FAKE_SNAPS_MAX, sizeof(*f->snaps));
        f->snap_pubs = calloc(FAKE_SNAPS_MAX, sizeof(*f->snap_pubs));
        f->snap_motor = calloc(FAKE_SNAPS_MAX, sizeof(*f->snap_motor));
    }
    assert_true(f->snaps != NULL && f->snap_pubs != NULL && f->snap_motor != NULL);
    f->torn = torn;
    f->recording = true;
    f->nsnaps = 0;
}

void fake_run_step(struct fake *f, struct vend_fw_machine *m, uint64_t ms, uint64_t step)
{
    uint64_t end = f->mono + ms;

    while (f->mono < end) {
        f->mono += step;
        if (f->mono > end)
            f->mono = end;
        vend_fw_machine_tick(m);
    }
}

void fake_run(struct fake *f, struct vend_fw_machine *m, uint64_t ms)
{
    fake_run_step(f, m, ms, FAKE_TICK_MS);
}

void fake_drop_in(struct fake *f, uint64_t from_ms, uint64_t len_ms)
{
    f->drop_from = f->mono + from_ms;
    f->drop_until = f->drop_from + len_ms;
}

void fake_connect(struct fake *f, struct vend_fw_machine *m)
{
    f->connected = true;
    vend_fw_machine_on_connect(m);
}

void fake_disconnect(struct fake *f, struct vend_fw_machine *m)
{
    f->connected = false;
    vend_fw_machine_on_disconnect(m);
}

enum vend_topic_kind fake_kind(const struct fake *f, size_t i)
{
    struct vend_topic t;

    assert_int_equal(vend_topic_parse(f->pubs[i].topic, strlen(f->pubs[i].topic), &t), VEND_OK);
    assert_string_equal(t.machine_id, "VM01");
    return t.kind;
}

size_t fake_count(const struct fake *f, size_t from, enum vend_topic_kind k)
{
    size_t i, n = 0;

    for (i = from; i < f->npubs; i++) {
        if (fake_kind(f, i) == k)
            n++;
    }
    return n;
}

bool fake_result(const struct fake *f, size_t from, const char *order_id, uint16_t unit,
                 struct vend_dispense_result *out)
{
    struct vend_dispense_result r;
    bool found = false;
    size_t i;

    for (i = from; i < f->npubs; i++) {
        if (fake_kind(f, i) != VEND_TOPIC_DISPENSE_RESULT)
            continue;
        assert_int_equal(f->pubs[i].qos, 1);
        assert_false(f->pubs[i].retain);
        assert_int_equal(vend_decode_dispense_result(f->pubs[i].payload, f->pubs[i].len, &r, NULL),
                         VEND_OK);
        if (strcmp(r.order_id, order_id) == 0 && (r.unit ? r.unit : 1) == (unit ? unit : 1)) {
            *out = r;
            found = true;
        }
    }
    return found;
}

bool fake_status(const struct fake *f, size_t from, struct vend_status *out)
{
    bool found = false;
    size_t i;

    for (i = from; i < f->npubs; i++) {
        if (fake_kind(f, i) != VEND_TOPIC_STATUS)
            continue;
        assert_int_equal(f->pubs[i].qos, 1);
        assert_true(f->pubs[i].retain);
        assert_int_equal(vend_decode_status(f->pubs[i].payload, f->pubs[i].len, out, NULL),
                         VEND_OK);
        found = true;
    }
    return found;
}

void fake_machine(struct fake *f, struct vend_fw_machine *m, uint16_t nslots)
{
    struct vend_fw_params p = {.machine_id = "VM01", .fw = "1.0.0", .nslots = nslots};

    assert_int_equal(vend_fw_machine_init(m, &f->hal, &p), VEND_OK);
}

static int send(struct vend_fw_machine *m, const struct vend_command *c)
{
    char buf[VEND_PAYLOAD_MAX + 1];
    int n = vend_encode_command(buf, sizeof(buf), c);

    assert_true(n > 0);
    return vend_fw_machine_on_command(m, buf, (size_t)n, NULL);
}

int fake_dispense(struct vend_fw_machine *m, const char *order_id, uint16_t unit, uint16_t slot,
                  uint32_t timeout_ms, uint64_t expires_at_ms)
{
    struct vend_command c;

    memset(&c, 0, sizeof(c));
    c.cmd = VEND_CMD_DISPENSE;
    memcpy(c.order_id, order_id, strlen(order_id) + 1);
    c.unit = unit;
    c.slot = slot;
    c.timeout_ms = timeout_ms;
    c.expires_at_ms = expires_at_ms;
    return send(m, &c);
}

int fake_settle(struct vend_fw_machine *m, const char *order_id, uint16_t unit, uint16_t slot)
{
    struct vend_command c;

    memset(&c, 0, sizeof(c));
    c.cmd = VEND_CMD_SETTLE;
    memcpy(c.order_id, order_id, strlen(order_id) + 1);
    c.unit = unit;
    c.slot = slot;
    return send(m, &c);
}
