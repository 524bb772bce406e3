/*
 * machine.h - the vending machine: dispense state machine, journal, config, status and
 * telemetry, on top of the HAL (hal.h) and the shared codec (vend/codec.h).
 *
 * The port owns one struct vend_fw_machine (static storage: it holds a 4 KiB payload buffer
 * and the journal's RAM mirror; see sizeof) and calls, all from one task or under one lock:
 *
 *   vend_fw_machine_init()          once at boot, before connecting; the struct must not move
 *                                   afterwards (the journal points into it)
 *   vend_fw_machine_will()          the retained will to give the MQTT client: {"status":"OFFLINE"}
 *   vend_fw_machine_on_connect()    on every (re)connect, after subscribing to command and config
 *   vend_fw_machine_on_disconnect() when the connection is lost
 *   vend_fw_machine_on_command()    for each message on vm/{id}/command
 *   vend_fw_machine_on_config()     for each message on vm/{id}/config
 *   vend_fw_machine_tick()          every 10 ms or so: the resolution of the drop-sensor
 *                                   debounce and of the motor timeout
 *
 * Dispense. A "dispense" for a unit the journal does not know is checked, in this order:
 * EXPIRED ("expiresAt" given, wall clock synced, now >= expiresAt), INVALID_SLOT (slot above
 * nslots), MOTOR_FAULT (a motor that would not switch off is still on), BUSY (another unit
 * is running), DOOR_OPEN. A refusal is journaled (REFUSED), then published; the unit never
 * runs. Otherwise the unit is journaled STARTED, and only once that is durable the motor of
 * its slot goes on. It stays on until the first of:
 *   - a drop: the sensor reads "something" continuously for dropSensorDelay ms (0: one
 *     reading), after having read "nothing" at least once since the run began, so a sensor
 *     blocked before the run counts as no drop;
 *   - the door opens (DOOR_OPEN), the driver reports a stall (JAMMED) or a fault
 *     (MOTOR_FAULT);
 *   - min(timeoutMs, motorTimeout) ms pass (NO_DROP).
 * The motor goes off at once. If a drop was being debounced when it stopped, the core waits
 * for the debounce to end (at most dropSensorDelay ms) before it decides. The result:
 * success = dropDetected = (a drop was confirmed), durationMs = how long the motor ran,
 * error = null on success, else the reason; MOTOR_FAULT also when the motor would not switch
 * off (then success still tells whether the product fell). It is journaled DONE and
 * published, even if the journal write failed (the motor has run; the result is the truth).
 *
 * Journal answers. A command or settle for a unit the journal knows never runs the motor:
 * DONE, REFUSED and CANCELLED units are answered with the stored result (REFUSED and
 * CANCELLED only once durable, because a refusal not yet on flash could be forgotten by a
 * reboot), a running unit gets its result when it ends. A "settle" for an unknown unit is
 * journaled CANCELLED and then answered {"success":false,"dropDetected":false,
 * "error":"CANCELLED"}; a later dispense for it is answered the same, without running.
 *
 * Reboot mid-dispense. A STARTED entry found at init is a unit whose motor may have run:
 * it becomes DONE with success false, dropDetected false (no drop was journaled), no
 * durationMs and error POWER_LOSS, and is never run.
 *
 * Flash failures. If the STARTED write fails the motor does not run; the unit is refused
 * JOURNAL_FAULT, answered once that refusal is durable (the core retries every
 * VEND_FW_RETRY_MS). A settle that cannot be journaled (write failure, or no entry to evict:
 * journal.h) is not answered until it can be; vendd asks again. If the journal cannot be
 * read at init, commands and settles are dropped (counted in stats.unjournaled) until a
 * retry reads it.
 *
 * Results re-published. A result is re-published until vendd acknowledges it, which vendd
 * does by sending a dispense for a new unit (journal.h, "Acknowledgement"): on every
 * connect, and while connected VEND_FW_REPUBLISH_FIRST_MS after the last publish, doubling
 * up to VEND_FW_REPUBLISH_MAX_MS. The acknowledgement mark is journaled, so a reboot
 * re-publishes only what was outstanding.
 *
 * Status and telemetry. On connect: the retained status {"status":"ONLINE","door":...,
 * "rssi":...,"fw":...,"settle":true} (QoS 1), again whenever the door or the config error
 * changes; telemetry (QoS 0) at connect and every telemetryInterval while connected, with
 * a timestamp only when the wall clock is synced.
 *
 * Config. A config that does not decode (out of range, missing key, bad JSON) is refused:
 * the running config stays, and the retained status reports "configError" with the key
 * ("(root)" if the payload as a whole was bad) until a valid config arrives. A valid config
 * applies to the next unit (the running one keeps its limits) and is persisted (two-copy
 * record "cfg", store.h; retried on failure; not rewritten when unchanged). Until one is
 * received the last persisted config applies, else VEND_FW_DEFAULT_*.
 *
 * No OS headers: compiled freestanding for the ESP32.
 */
#ifndef VEND_FW_MACHINE_H
#define VEND_FW_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vend/codec.h"
#include "vend/fw/hal.h"
#include "vend/fw/journal.h"
#include "vend/fw/store.h"
#include "vend/msg.h"
#include "vend/topic.h"

/* esp-mqtt drops an unacknowledged outbox entry after 30 s (protocols.md §4.3). */
#define VEND_FW_REPUBLISH_FIRST_MS 30000
#define VEND_FW_REPUBLISH_MAX_MS   1800000 /* 30 min */
#define VEND_FW_RETRY_MS           1000    /* flash retries: journal, config */

/* The guide's example config, until vendd sends one. */
#define VEND_FW_DEFAULT_MOTOR_TIMEOUT_MS      3000
#define VEND_FW_DEFAULT_DROP_SENSOR_DELAY_MS  50
#define VEND_FW_DEFAULT_TELEMETRY_INTERVAL_MS 60000

#define VEND_FW_CONFIG_KIND 'C' /* store.h kind byte of the config record */

/* What the port tells the core about the machine. */
struct vend_fw_params {
    const char *machine_id; /* VEND_MACHINE_ID_PATTERN */
    const char *fw;         /* [A-Za-z0-9._+-]{1,32}, reported in the status */
    uint16_t nslots;        /* slots 1..nslots, at most VEND_SLOTS_MAX */
};

enum vend_fw_phase {
    VEND_FW_IDLE = 0,
    VEND_FW_RUNNING,  /* motor on */
    VEND_FW_STOPPING, /* motor off, a drop still being debounced */
};

/* Counters for the port's log and for tests. */
struct vend_fw_stats {
    uint32_t commands_bad;   /* command payloads that did not decode */
    uint32_t configs_bad;    /* config payloads refused */
    uint32_t answered;       /* commands and settles answered from the journal */
    uint32_t unjournaled;    /* commands and settles dropped: journal unreadable or full */
    uint32_t publish_errors; /* publishes the client did not take */
    uint32_t motor_errors;   /* motor_set() failures */
};

struct vend_fw_machine {
    struct vend_fw_hal hal;
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    char fw[VEND_FW_MAX + 1];
    uint16_t nslots;

    struct vend_config config;
    struct vend_fw_store config_store;
    uint32_t config_seq;
    bool config_dirty;  /* config not yet persisted */
    bool config_unread; /* the stored config could not be read: read before writing */
    bool has_config_error;
    char config_error[VEND_CONFIG_ERROR_MAX + 1];

    struct vend_fw_journal journal;
    bool journal_ready; /* false while the journal could not be read */

    /* The unit in progress (phase != VEND_FW_IDLE). */
    enum vend_fw_phase phase;
    int run;                           /* its journal entry */
    uint64_t run_start_ms;             /* motor on */
    uint32_t run_limit_ms;             /* min(timeoutMs, motorTimeout) */
    uint32_t run_delay_ms;             /* dropSensorDelay at the start */
    uint32_t run_ms;                   /* how long the motor ran, once stopped */
    enum vend_result_error run_reason; /* why it stopped, if not for a drop */
    bool saw_clear;                    /* the sensor read "nothing" since the run began */
    bool drop_pending;                 /* the sensor reads "something": debouncing */
    uint64_t drop_since_ms;
    uint16_t motor_stuck; /* slot whose motor would not switch off; 0 = none */

    bool connected;
    enum vend_door door; /* as last reported in the status */
    uint64_t telemetry_at_ms;
    uint64_t retry_at_ms;
    uint64_t republish_at_ms[VEND_FW_JOURNAL_CAP];
    uint32_t republish_gap_ms[VEND_FW_JOURNAL_CAP];

    struct vend_fw_stats stats;
    char topic[VEND_TOPIC_MAX + 1];
    char payload[VEND_PAYLOAD_MAX + 1];
};

/*
 * Starts the machine: checks params and hal (VEND_EINVAL), switches every motor off, loads
 * the config and the journal and turns STARTED entries into POWER_LOSS results. A journal
 * that cannot be read is not an error here: the machine retries (see above).
 */
int vend_fw_machine_init(struct vend_fw_machine *m, const struct vend_fw_hal *hal,
                         const struct vend_fw_params *p);

/* Drives the motor, the debounce, retries, re-publishing and telemetry. */
void vend_fw_machine_tick(struct vend_fw_machine *m);

/* The client is connected (and subscribed): status, outstanding results, telemetry. */
void vend_fw_machine_on_connect(struct vend_fw_machine *m);
void vend_fw_machine_on_disconnect(struct vend_fw_machine *m);

/*
 * A message on vm/{id}/command. VEND_OK once handled, answered or not; the decoder's error
 * for a payload that does not decode (dropped: without an order id there is no one to
 * answer; diag, if not NULL, names the field); VEND_EUNAVAILABLE or VEND_ENOSPACE for a
 * command or settle dropped because the journal cannot record it.
 */
int vend_fw_machine_on_command(struct vend_fw_machine *m, const char *payload, size_t len,
                               struct vend_diag *diag);

/* A message on vm/{id}/config: VEND_OK (applied), or the decoder's error (refused). */
int vend_fw_machine_on_config(struct vend_fw_machine *m, const char *payload, size_t len,
                              struct vend_diag *diag);

/*
 * The last will for the MQTT client (QoS 1, retained): its topic and payload, NUL-terminated.
 * Returns the payload length, or VEND_ENOSPACE.
 */
int vend_fw_machine_will(const struct vend_fw_machine *m, char *topic, size_t topic_size,
                         char *payload, size_t payload_size);

#endif
