/*
 * sim_hal.c - the simulated machine and its file-backed key-value store (sim_hal.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "sim_hal.h"

/* How long, and for how many reads at least, a falling product blocks the beam (see
 * drop_sensor()). */
#define BEAM_MS    80
#define BEAM_READS 12

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vend/err.h"

static struct sim *S(void *ctx)
{
    return ctx;
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* xorshift64*: deterministic per --seed and machine. */
static double rnd(struct sim *s)
{
    uint64_t x = s->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static uint64_t mono_ms(void *ctx)
{
    return clock_ms(CLOCK_MONOTONIC) - S(ctx)->mono_base_ms;
}

static int motor_set(void *ctx, uint16_t slot, bool on)
{
    struct sim *s = S(ctx);
    uint64_t now = mono_ms(ctx);
    bool door;

    if (slot < 1 || slot > s->opts.nslots)
        return VEND_EIO;
    if (!on) {
        if (s->motor_on[slot])
            fprintf(stderr, "vmsim: '%s' slot %u motor off after %llu ms\n", s->id, (unsigned)slot,
                    (unsigned long long)(now - s->motor_on_at));
        s->motor_on[slot] = false;
        if (s->running == slot)
            s->running = 0;
        return VEND_OK;
    }
    if (s->motor_on[slot])
        return VEND_OK;
    /* The core switches a motor on only once the STARTED entry is durable. */
    if (s->opts.crash_after_start) {
        fprintf(stderr, "vmsim: '%s' slot %u: --crash-after-start, exiting\n", s->id,
                (unsigned)slot);
        exit(1);
    }
    s->motor_on[slot] = true;
    s->motor_on_at = now;
    /* A new run: the last product is gone, the beam clear. */
    s->beam_reads = 0;
    s->beam_until = 0;
    s->reads_since_on = 0;
    s->running = slot;
    s->motor_runs++;
    s->drop_at = UINT64_MAX;
    s->stall_at = UINT64_MAX;
    if (rnd(s) < s->opts.jam_rate)
        s->stall_at = now + s->opts.motor_ms / 2;
    else if (s->stock[slot] > 0 && rnd(s) < s->opts.drop_prob)
        s->drop_at = now + s->opts.motor_ms;
    /* Drawn last and only when asked for, so the knob leaves a seed's other draws alone. */
    door = s->opts.door_open_rate > 0.0 && rnd(s) < s->opts.door_open_rate;
    if (door)
        s->door_at = now + s->opts.motor_ms / 4;
    fprintf(stderr, "vmsim: '%s' slot %u motor on (run %u, stock %u)%s\n", s->id, (unsigned)slot,
            (unsigned)s->motor_runs, (unsigned)s->stock[slot], door ? ", the door will open" : "");
    return VEND_OK;
}

static enum vend_fw_motor motor_state(void *ctx, uint16_t slot)
{
    struct sim *s = S(ctx);

    if (slot >= 1 && slot <= s->opts.nslots && s->motor_on[slot] && mono_ms(ctx) >= s->stall_at)
        return VEND_FW_MOTOR_STALLED;
    return VEND_FW_MOTOR_OK;
}

static bool drop_sensor(void *ctx)
{
    struct sim *s = S(ctx);
    uint64_t now = mono_ms(ctx);

    /* The first read of a run sees a clear beam, however late it comes: a product takes at
     * least a tick to fall. (The core ignores a beam that is blocked at its first read,
     * "blocked since before the run"; a loop kept off the CPU past drop_at would otherwise
     * lose the drop.) */
    if (s->running != 0 && s->reads_since_on++ == 0)
        return false;
    if (s->drop_at == UINT64_MAX || now < s->drop_at)
        return false;
    if (s->running != 0 && s->stock[s->running] > 0) {
        /* The product has left the spiral: counted once, whatever the core decides. */
        s->stock[s->running]--;
        fprintf(stderr, "vmsim: '%s' slot %u product fell (stock %u)\n", s->id,
                (unsigned)s->running, (unsigned)s->stock[s->running]);
        if (s->on_drop != NULL)
            s->on_drop(s->drop_arg, s->running);
        s->running = 0;
        /* A latched sensor, as a real HAL keeps one (an interrupt holds the pulse): the
         * product blocks the beam for BEAM_MS from the first read that sees it AND for the
         * next BEAM_READS reads, so neither a loop kept off the CPU (100 machines, a slow
         * fdatasync, a busy host) nor one ticking fast can miss it. */
        s->beam_reads = BEAM_READS;
        s->beam_until = now + BEAM_MS;
    }
    if (s->beam_reads == 0 && now >= s->beam_until)
        return false;
    if (s->beam_reads > 0)
        s->beam_reads--;
    return true;
}

static int slot_level(void *ctx, uint16_t slot, enum vend_level *out)
{
    struct sim *s = S(ctx);
    uint32_t full = s->opts.stock ? s->opts.stock : 1;
    uint32_t pct;

    if (slot < 1 || slot > s->opts.nslots)
        return VEND_ENOTFOUND;
    pct = (uint32_t)((uint64_t)s->stock[slot] * 100u / full);
    if (s->stock[slot] == 0)
        *out = VEND_LEVEL_EMPTY;
    else if (pct <= 25)
        *out = VEND_LEVEL_LOW;
    else if (pct <= 50)
        *out = VEND_LEVEL_MEDIUM;
    else if (pct < 100)
        *out = VEND_LEVEL_HIGH;
    else
        *out = VEND_LEVEL_FULL;
    return VEND_OK;
}

static enum vend_door door(void *ctx)
{
    struct sim *s = S(ctx);
    uint64_t now = mono_ms(ctx);

    if (s->door_at != UINT64_MAX && now >= s->door_at && now < s->door_at + SIM_DOOR_OPEN_MS)
        return VEND_DOOR_OPEN;
    return VEND_DOOR_CLOSED;
}

static int temperature_centi(void *ctx, int32_t *out)
{
    *out = 2500 + (int32_t)(rnd(S(ctx)) * 100.0);
    return VEND_OK;
}

static int rssi(void *ctx, int16_t *out)
{
    (void)ctx;
    *out = -65;
    return VEND_OK;
}

static int wall_ms(void *ctx, uint64_t *out)
{
    int64_t wall = (int64_t)clock_ms(CLOCK_REALTIME) + S(ctx)->clock_offset_ms;

    /* Before 1970 is no time a synced clock tells. */
    if (wall <= 0)
        return VEND_EUNAVAILABLE;
    *out = (uint64_t)wall;
    return VEND_OK;
}

void sim_clock_step(struct sim *s, int64_t delta_ms)
{
    s->clock_offset_ms += delta_ms;
}

static int kv_find(struct sim *s, const char *key, bool create)
{
    int i;

    for (i = 0; i < SIM_KV_ENTRIES; i++) {
        if (s->kv[i].key[0] != '\0' && strcmp(s->kv[i].key, key) == 0)
            return i;
    }
    if (!create)
        return -1;
    for (i = 0; i < SIM_KV_ENTRIES; i++) {
        if (s->kv[i].key[0] == '\0')
            return i;
    }
    return -1;
}

/* Writes entry i to its fixed place in the file, durably. */
static int kv_sync(struct sim *s, int i)
{
    off_t off = (off_t)i * (off_t)sizeof(s->kv[0]);
    ssize_t n = pwrite(s->kv_fd, &s->kv[i], sizeof(s->kv[0]), off);

    if (n != (ssize_t)sizeof(s->kv[0]) || fdatasync(s->kv_fd) < 0) {
        fprintf(stderr, "vmsim: cannot write '%s': %s\n", s->kv_path,
                n < 0 ? strerror(errno) : "short write");
        return VEND_EIO;
    }
    return VEND_OK;
}

static int kv_get(void *ctx, const char *key, uint8_t *value)
{
    struct sim *s = S(ctx);
    int i = kv_find(s, key, false);

    if (i < 0 || !s->kv[i].present)
        return VEND_ENOTFOUND;
    memcpy(value, s->kv[i].value, VEND_FW_KV_VALUE_SIZE);
    return VEND_OK;
}

static int kv_put(void *ctx, const char *key, const uint8_t *value)
{
    struct sim *s = S(ctx);
    size_t len = strlen(key);
    int i;

    if (len == 0 || len > VEND_FW_KV_KEY_MAX)
        return VEND_EIO;
    i = kv_find(s, key, true);
    if (i < 0) {
        fprintf(stderr, "vmsim: '%s': key-value store full (%d keys) for '%s'\n", s->kv_path,
                SIM_KV_ENTRIES, key);
        return VEND_EIO;
    }
    memcpy(s->kv[i].key, key, len + 1);
    s->kv[i].present = 1;
    memcpy(s->kv[i].value, value, VEND_FW_KV_VALUE_SIZE);
    return kv_sync(s, i);
}

static int kv_erase(void *ctx, const char *key)
{
    struct sim *s = S(ctx);
    int i = kv_find(s, key, false);

    if (i < 0)
        return VEND_OK;
    memset(&s->kv[i], 0, sizeof(s->kv[i]));
    return kv_sync(s, i);
}

static int mqtt_publish(void *ctx, const char *topic, const char *payload, size_t len, int qos,
                        bool retain)
{
    struct sim *s = S(ctx);

    return s->publish(s->publish_arg, topic, payload, len, qos, retain);
}

static int kv_load(struct sim *s)
{
    ssize_t n;
    int i;

    for (i = 0; i < SIM_KV_ENTRIES; i++) {
        n = pread(s->kv_fd, &s->kv[i], sizeof(s->kv[i]), (off_t)i * (off_t)sizeof(s->kv[i]));
        if (n < 0) {
            fprintf(stderr, "vmsim: cannot read '%s': %s\n", s->kv_path, strerror(errno));
            return -1;
        }
        if (n < (ssize_t)sizeof(s->kv[i])) {
            /* Past the end (or a torn tail): free from here on. */
            memset(&s->kv[i], 0, (size_t)(SIM_KV_ENTRIES - i) * sizeof(s->kv[i]));
            return 0;
        }
        s->kv[i].key[VEND_FW_KV_KEY_MAX] = '\0';
        if (s->kv[i].key[0] == '\0')
            s->kv[i].present = 0;
    }
    return 0;
}

int sim_open(struct sim *s, const char *id, const struct sim_opts *o, uint64_t seed,
             const char *dir)
{
    size_t len = strlen(id);
    uint16_t slot;
    int n;

    memset(s, 0, sizeof(*s));
    s->kv_fd = -1;
    if (len == 0 || len > VEND_MACHINE_ID_MAX || o->nslots < 1 || o->nslots > SIM_SLOTS_MAX) {
        fprintf(stderr, "vmsim: bad machine '%s' or slot count %u\n", id, (unsigned)o->nslots);
        return -1;
    }
    memcpy(s->id, id, len + 1);
    s->opts = *o;
    s->clock_offset_ms = o->clock_offset_ms;
    s->rng = (seed ^ 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL;
    for (n = 0; id[n] != '\0'; n++)
        s->rng = (s->rng ^ (uint8_t)id[n]) * 0x100000001B3ULL;
    if (s->rng == 0)
        s->rng = 1;
    s->mono_base_ms = clock_ms(CLOCK_MONOTONIC) - 1; /* mono 0 is "never" to some cores */
    s->drop_at = UINT64_MAX;
    s->stall_at = UINT64_MAX;
    s->door_at = UINT64_MAX;
    for (slot = 1; slot <= o->nslots; slot++)
        s->stock[slot] = o->stock;
    n = snprintf(s->kv_path, sizeof(s->kv_path), "%s/%s.kv", dir, id);
    if (n < 0 || (size_t)n >= sizeof(s->kv_path)) {
        fprintf(stderr, "vmsim: state directory '%s' too long\n", dir);
        return -1;
    }
    s->kv_fd = open(s->kv_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->kv_fd < 0) {
        fprintf(stderr, "vmsim: cannot open '%s': %s\n", s->kv_path, strerror(errno));
        return -1;
    }
    if (kv_load(s) < 0) {
        sim_close(s);
        return -1;
    }
    return 0;
}

void sim_close(struct sim *s)
{
    if (s->kv_fd >= 0)
        close(s->kv_fd);
    s->kv_fd = -1;
}

void sim_hal(struct sim *s, struct vend_fw_hal *hal, sim_publish_fn *publish, void *arg)
{
    s->publish = publish;
    s->publish_arg = arg;
    *hal = (struct vend_fw_hal){
        .ctx = s,
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
}
