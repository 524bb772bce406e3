/*
 * fake_hal.h - a scripted machine behind the firmware core's HAL, for the host tests.
 *
 * Time moves only when a test says so (fake_run()). The drop sensor, door and motor driver
 * follow scripts set in struct fake. The kv store can fail chosen writes and can record,
 * for every write, each state a power cut could leave behind: the state before it, the
 * erased key, and every prefix of the new bytes (fake_snapshots()). A test restarts a fresh
 * core from each of them.
 */
#ifndef VEND_FAKE_HAL_H
#define VEND_FAKE_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vend/codec.h"
#include "vend/fw/hal.h"
#include "vend/fw/machine.h"

#define FAKE_KV_KEYS   80 /* journal 2 x 32, config 2, room to spare */
#define FAKE_KV_CHUNK  8  /* a torn write lands this many bytes at a time */
#define FAKE_PUBS_MAX  512
#define FAKE_PAYLOAD   2048
#define FAKE_SNAPS_MAX 4096
#define FAKE_TICK_MS   10

struct fake_kv_entry {
    char key[VEND_FW_KV_KEY_MAX + 1];
    bool present;
    uint8_t value[VEND_FW_KV_VALUE_SIZE];
};

struct fake_kv {
    struct fake_kv_entry e[FAKE_KV_KEYS];
};

/* How the bytes not yet written look in a torn write. */
enum fake_torn {
    FAKE_TORN_ERASED, /* erase first (0xFF), then program: NOR flash */
    FAKE_TORN_OLD,    /* overwrite in place: the old bytes remain past the cut */
};

struct fake_pub {
    char topic[VEND_TOPIC_MAX + 1];
    char payload[FAKE_PAYLOAD];
    size_t len;
    int qos;
    bool retain;
};

struct fake {
    struct vend_fw_hal hal;

    uint64_t mono;
    uint64_t wall; /* epoch ms at mono == 0 */
    bool wall_synced;

    bool motor_on[VEND_SLOT_MAX + 1];
    unsigned motor_starts[VEND_SLOT_MAX + 1]; /* off -> on transitions per slot */
    unsigned motor_starts_total;
    enum vend_fw_motor motor_state[VEND_SLOT_MAX + 1];
    int motor_fail_on;  /* the next N "on" calls fail */
    int motor_fail_off; /* the next N "off" calls fail (the motor stays as it was) */

    /* The drop sensor reads "something" while drop_from <= mono < drop_until. */
    uint64_t drop_from, drop_until;
    /* Sensor blocked regardless of the script (a stuck beam). */
    bool drop_stuck;
    /* Opens the door at this mono time (UINT64_MAX: never). */
    uint64_t door_open_at;
    enum vend_door door;
    /* Stalls the motor of the running slot at this mono time (UINT64_MAX: never). */
    uint64_t stall_at;

    bool level_present[VEND_SLOT_MAX + 1];
    enum vend_level level[VEND_SLOT_MAX + 1];
    bool temp_ok;
    int32_t temp_centi;
    bool rssi_ok;
    int16_t rssi;

    struct fake_kv kv;
    unsigned puts;               /* kv_put calls so far, the first is 1 */
    unsigned fail_from, fail_to; /* puts numbered fail_from..fail_to fail (0: none) */
    bool get_fails;              /* every kv_get fails with VEND_EIO */
    enum fake_torn torn;
    bool recording;
    struct fake_kv *snaps; /* FAKE_SNAPS_MAX, allocated by fake_record() */
    size_t *snap_pubs;     /* npubs when each snapshot was taken */
    unsigned *snap_motor;  /* motor_starts_total then */
    size_t nsnaps;

    bool connected;
    struct fake_pub *pubs; /* FAKE_PUBS_MAX */
    size_t npubs;
};

/* A fresh fake: machine clock 0, wall clock synced at 2025-11-04T10:30:00Z, door closed,
 * every slot FULL, 25.5 degrees, rssi -65, empty kv store, nothing scripted. */
struct fake *fake_new(void);
void fake_free(struct fake *f);

/* A fresh fake whose kv store is kv (a power cut restarts with only the flash). */
struct fake *fake_from_kv(const struct fake_kv *kv);

/* Starts recording power-cut states of the kv store at every write step. */
void fake_record(struct fake *f, enum fake_torn torn);

/* Advances the clock to mono + ms in FAKE_TICK_MS steps, ticking m at each. */
void fake_run(struct fake *f, struct vend_fw_machine *m, uint64_t ms);
/* The same in steps of step ms: for long idle stretches. */
void fake_run_step(struct fake *f, struct vend_fw_machine *m, uint64_t ms, uint64_t step);

/* Sets the drop sensor to read "something" from mono + from_ms for len_ms. */
void fake_drop_in(struct fake *f, uint64_t from_ms, uint64_t len_ms);

/* Connects: f->connected, then vend_fw_machine_on_connect(). */
void fake_connect(struct fake *f, struct vend_fw_machine *m);
void fake_disconnect(struct fake *f, struct vend_fw_machine *m);

/* Publishes on topic kind k since index from. */
size_t fake_count(const struct fake *f, size_t from, enum vend_topic_kind k);

/* The last result published since index from for order_id + unit (0 == 1); false if none. */
bool fake_result(const struct fake *f, size_t from, const char *order_id, uint16_t unit,
                 struct vend_dispense_result *out);

/* The last status published since index from; false if none. */
bool fake_status(const struct fake *f, size_t from, struct vend_status *out);

/* The kind of topic of publish i. */
enum vend_topic_kind fake_kind(const struct fake *f, size_t i);

/* Starts and inits a machine on f with id VM01, fw 1.0.0 and nslots slots; asserts success. */
void fake_machine(struct fake *f, struct vend_fw_machine *m, uint16_t nslots);

/* Sends a dispense / settle command through vend_fw_machine_on_command(); returns its rc. */
int fake_dispense(struct vend_fw_machine *m, const char *order_id, uint16_t unit, uint16_t slot,
                  uint32_t timeout_ms, uint64_t expires_at_ms);
int fake_settle(struct vend_fw_machine *m, const char *order_id, uint16_t unit, uint16_t slot);

#endif
