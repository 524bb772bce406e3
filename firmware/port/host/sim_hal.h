/*
 * sim_hal.h - the simulated vending machine behind vmsim's HAL: motors that take motor_ms to
 * push a product into the drop beam, a drop that happens with drop_prob, jams with jam_rate,
 * a stock count per slot, a door that is closed except when a run opens it (door_open_rate),
 * a real monotonic clock, a wall clock that is real but for an error the tests set (an offset,
 * and steps of it: a machine whose SNTP is wrong, or corrects itself), and a file-backed key-value
 * store (one file per machine) so the journal survives a restart of vmsim.
 *
 * The door: with door_open_rate, a motor run has the door opened a quarter of motor_ms after
 * the motor went on (before a jam or a drop can happen), open for SIM_DOOR_OPEN_MS. The core
 * stops the run with DOOR_OPEN and publishes the door in its status. Until the door reads
 * closed again, a dispense for a new unit that passes the checks before it (machine.h:
 * EXPIRED, INVALID_SLOT, MOTOR_FAULT, BUSY) is refused DOOR_OPEN, journaled and answered like
 * any refusal, and never runs; a unit the journal knows gets its stored answer.
 *
 * Random draws (temperature, jam, drop, door) come from one generator per machine, seeded
 * from --seed and the machine id; the door draws only when door_open_rate > 0, so a seed
 * replays the same runs with or without the knob's default.
 *
 * One struct sim per machine; sim_hal() fills the core's HAL with functions over it. The
 * struct must not move once sim_hal() has been called (the HAL's ctx points at it).
 */
#ifndef VMSIM_SIM_HAL_H
#define VMSIM_SIM_HAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vend/fw/hal.h"
#include "vend/msg.h"
#include "vend/topic.h"

#define SIM_SLOTS_MAX  VEND_SLOTS_MAX /* the telemetry carries at most this many levels */
#define SIM_KV_ENTRIES 128            /* the journal needs 2 * 32 + config 2 */
#define SIM_PATH_MAX   512

#define SIM_DOOR_OPEN_MS 2000 /* long enough for a test to send a command meanwhile */

/* The simulated machine's knobs, from the command line. */
struct sim_opts {
    uint16_t nslots;         /* 1..SIM_SLOTS_MAX */
    uint32_t stock;          /* initial units per slot */
    uint32_t motor_ms;       /* motor run until the product reaches the drop beam */
    double drop_prob;        /* 0..1: a product that reaches the beam is seen */
    double jam_rate;         /* 0..1: the spiral stalls halfway */
    double door_open_rate;   /* 0..1: the door is opened during the run */
    bool crash_after_start;  /* exit(1) once the journal says STARTED (motor switched on) */
    int64_t clock_offset_ms; /* the wall clock's error at start (+: ahead) */
};

struct sim_kv_entry {
    char key[VEND_FW_KV_KEY_MAX + 1]; /* "" = free */
    uint8_t present;
    uint8_t value[VEND_FW_KV_VALUE_SIZE];
};

/* A product has physically left slot: called once per drop, whatever the core then
 * decides (vmsim's drop log, main.c). */
typedef void sim_drop_fn(void *arg, uint16_t slot);

/* Publishes for the core: the MQTT link of this machine (mqtt_link.h). */
typedef int sim_publish_fn(void *arg, const char *topic, const char *payload, size_t len, int qos,
                           bool retain);

struct sim {
    char id[VEND_MACHINE_ID_MAX + 1];
    struct sim_opts opts;
    uint64_t rng; /* xorshift64* state, never 0 */
    uint64_t mono_base_ms;
    int64_t clock_offset_ms; /* the wall clock's error now */

    uint32_t stock[SIM_SLOTS_MAX + 1];
    bool motor_on[SIM_SLOTS_MAX + 1];
    uint16_t running;        /* slot whose motor runs; 0 = none */
    uint64_t drop_at;        /* mono ms the product crosses the beam; UINT64_MAX = never */
    unsigned beam_reads;     /* reads of the drop sensor the product still blocks the beam */
    uint64_t beam_until;     /* and the mono ms until which it blocks it at least; 0: clear */
    unsigned reads_since_on; /* reads of the drop sensor since the motor started */
    uint64_t stall_at;       /* mono ms the spiral jams; UINT64_MAX = never */
    uint64_t door_at;        /* mono ms the door opens, for SIM_DOOR_OPEN_MS; UINT64_MAX = never */
    uint64_t motor_on_at;
    uint32_t motor_runs;

    char kv_path[SIM_PATH_MAX];
    int kv_fd;
    struct sim_kv_entry kv[SIM_KV_ENTRIES];

    sim_publish_fn *publish;
    void *publish_arg;
    sim_drop_fn *on_drop; /* NULL: nobody records the drops */
    void *drop_arg;
};

/*
 * Opens (creating) dir/<id>.kv and loads it; seeds the machine. Returns 0, or -1 with a line
 * on stderr naming the file.
 */
int sim_open(struct sim *s, const char *id, const struct sim_opts *o, uint64_t seed,
             const char *dir);
void sim_close(struct sim *s);
/* The machine's wall clock steps by delta_ms (its monotonic clock does not). */
void sim_clock_step(struct sim *s, int64_t delta_ms);
/* The core's HAL over s; publishes go to publish(arg, ...). */
void sim_hal(struct sim *s, struct vend_fw_hal *hal, sim_publish_fn *publish, void *arg);

#endif
