/*
 * msg.h - the five MQTT payloads as C structs, their bounds and enums.
 *
 * These structs are what vend_decode_*() fill and vend_encode_*() read
 * (codec.h). Every bound of the wire contract is a #define here or a row in
 * docs/PROTOCOL.md; char arrays are sized MAX + 1 and always NUL-terminated
 * after a successful decode.
 *
 * Optional numeric fields use either a has_* flag or the value 0 where 0 is
 * not a legal wire value (unit). Enums that can be absent have an UNKNOWN
 * member equal to 0, so a zeroed struct means "nothing reported".
 *
 * No OS headers: compiled freestanding for the ESP32.
 */
#ifndef VEND_MSG_H
#define VEND_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEND_PAYLOAD_MAX      4096 /* bytes of one MQTT payload, both directions */
#define VEND_MACHINE_ID_MAX   32   /* VEND_MACHINE_ID_PATTERN (topic.h) */
#define VEND_ORDER_ID_MAX     64   /* VEND_ORDER_ID_PATTERN (topic.h), Midtrans' order_id */
#define VEND_SLOTS_MAX        64   /* entries in telemetry "slots" */
#define VEND_FW_MAX           32   /* [A-Za-z0-9._+-]{1,32} */
#define VEND_ERROR_CODE_MAX   32   /* [A-Z0-9_]{1,32} */
#define VEND_TIMESTAMP_MAX    40   /* RFC 3339 UTC, YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z */
#define VEND_CONFIG_ERROR_MAX 32   /* status "configError": [A-Za-z0-9_()]{1,32} */

/* Numeric bounds, inclusive; docs/PROTOCOL.md has the same table. */
#define VEND_SLOT_MIN               1
#define VEND_SLOT_MAX               255
#define VEND_UNIT_MIN               1
#define VEND_UNIT_MAX               100
#define VEND_TIMEOUT_MS_MIN         100
#define VEND_TIMEOUT_MS_MAX         60000
#define VEND_DURATION_MS_MAX        600000
#define VEND_RSSI_MIN               (-127)
#define VEND_RSSI_MAX               0
#define VEND_TEMP_CENTI_MIN         (-6000) /* -60.00 degrees C */
#define VEND_TEMP_CENTI_MAX         15000   /* 150.00 degrees C */
#define VEND_MOTOR_TIMEOUT_MS_MIN   100
#define VEND_MOTOR_TIMEOUT_MS_MAX   60000
#define VEND_DROP_DELAY_MS_MAX      5000
#define VEND_TELEMETRY_INTERVAL_MIN 1000
#define VEND_TELEMETRY_INTERVAL_MAX 86400000
/*
 * Command "expiresAt", epoch milliseconds on vendd's clock. The floor rejects a value sent
 * in seconds by mistake (it would read as 1970 and expire every command at once); the
 * ceiling keeps the value far inside what every parser reads exactly.
 */
#define VEND_EXPIRES_AT_MIN 1577836800000LL /* 2020-01-01T00:00:00Z */
#define VEND_EXPIRES_AT_MAX 4102444800000LL /* 2100-01-01T00:00:00Z */

/* The "cmd" of a command payload. */
enum vend_cmd {
    VEND_CMD_DISPENSE = 0, /* "dispense": run the motor for one unit */
    VEND_CMD_SETTLE,       /* "settle": answer for a unit from the journal (docs/PROTOCOL.md) */
};

/* Telemetry slot fill level; ordered so that level <= VEND_LEVEL_LOW means "refill soon". */
enum vend_level {
    VEND_LEVEL_EMPTY = 0,
    VEND_LEVEL_LOW,
    VEND_LEVEL_MEDIUM,
    VEND_LEVEL_HIGH,
    VEND_LEVEL_FULL,
};

enum vend_door {
    VEND_DOOR_UNKNOWN = 0, /* not reported; has no wire name */
    VEND_DOOR_OPEN,
    VEND_DOOR_CLOSED,
};

enum vend_presence {
    VEND_PRESENCE_OFFLINE = 0,
    VEND_PRESENCE_ONLINE,
};

/* The result error codes the project knows; others are stored as given. */
enum vend_result_error {
    VEND_RESULT_ERROR_TIMEOUT = 0,
    VEND_RESULT_ERROR_NO_DROP,
    VEND_RESULT_ERROR_JAMMED,
    VEND_RESULT_ERROR_INVALID_SLOT,
    VEND_RESULT_ERROR_BUSY,
    VEND_RESULT_ERROR_DOOR_OPEN,
    VEND_RESULT_ERROR_EXPIRED,
    VEND_RESULT_ERROR_MOTOR_FAULT,
    /* The settling extension (docs/PROTOCOL.md, "Settling a unit"). */
    VEND_RESULT_ERROR_CANCELLED,     /* never ran, and journaled never to run */
    VEND_RESULT_ERROR_POWER_LOSS,    /* the machine restarted mid-dispense: outcome unknown */
    VEND_RESULT_ERROR_JOURNAL_FAULT, /* not run: the journal could not record it first */
    VEND_RESULT_ERROR_COUNT,
};

/*
 * vm/{id}/command, backend -> machine. A settle has no timeout and no expiry: timeout_ms and
 * expires_at_ms are 0 for it (the decoder does not read those keys; the encoder refuses them).
 */
struct vend_command {
    enum vend_cmd cmd;
    uint16_t slot;                        /* VEND_SLOT_MIN..VEND_SLOT_MAX */
    char order_id[VEND_ORDER_ID_MAX + 1]; /* vend_order_id_valid() */
    uint32_t timeout_ms;                  /* dispense: VEND_TIMEOUT_MS_MIN..MAX; settle: 0 */
    uint16_t unit;                        /* 0 = absent, else VEND_UNIT_MIN..MAX */
    uint64_t expires_at_ms; /* dispense: 0 = absent, else VEND_EXPIRES_AT_MIN..MAX; settle: 0 */
};

/* vm/{id}/dispense_result, machine -> backend. */
struct vend_dispense_result {
    char order_id[VEND_ORDER_ID_MAX + 1];
    uint16_t slot;
    bool success;
    bool drop_detected;
    bool has_duration;
    uint32_t duration_ms;                /* 0..VEND_DURATION_MS_MAX, valid if has_duration */
    bool has_error;                      /* false: "error" was null or absent */
    char error[VEND_ERROR_CODE_MAX + 1]; /* the code as given; see vend_result_error_known() */
    uint16_t unit;                       /* 0 = absent */
};

struct vend_slot_level {
    uint16_t id; /* VEND_SLOT_MIN..VEND_SLOT_MAX, unique within one message */
    enum vend_level level;
};

/* vm/{id}/telemetry, machine -> backend. */
struct vend_telemetry {
    bool has_timestamp;
    char timestamp[VEND_TIMESTAMP_MAX + 1];
    size_t nslots; /* 0..VEND_SLOTS_MAX */
    struct vend_slot_level slots[VEND_SLOTS_MAX];
    bool has_temperature;
    /*
     * Degrees C with 0.01 resolution: decode rounds to hundredths and stores
     * hundredths / 100.0. On i386 x87 (double rounding) that may be one ulp off
     * the nearest double; round(temperature * 100) is exact everywhere.
     */
    double temperature;
    enum vend_door door; /* VEND_DOOR_UNKNOWN if absent */
};

/* vm/{id}/status, machine -> backend, retained; the will is {"status":"OFFLINE"}. */
struct vend_status {
    enum vend_presence status;
    enum vend_door door; /* VEND_DOOR_UNKNOWN if absent */
    bool has_rssi;
    int16_t rssi; /* dBm, VEND_RSSI_MIN..VEND_RSSI_MAX */
    bool has_fw;
    char fw[VEND_FW_MAX + 1];
    bool has_settle; /* "settle": the machine takes the settle command (docs/PROTOCOL.md) */
    bool settle;
    bool has_config_error; /* "configError": the key of the last refused config */
    char config_error[VEND_CONFIG_ERROR_MAX + 1];
};

/* vm/{id}/config, backend -> machine, retained. Wire keys drop the "_ms". */
struct vend_config {
    uint32_t motor_timeout_ms;      /* "motorTimeout" */
    uint32_t drop_sensor_delay_ms;  /* "dropSensorDelay" */
    uint32_t telemetry_interval_ms; /* "telemetryInterval" */
};

/*
 * Enum <-> wire name. *_name() returns the static wire spelling, or NULL for a
 * value without one (VEND_DOOR_UNKNOWN, out-of-range values). *_parse() takes
 * a length-delimited, case-sensitive name (no NUL needed) and returns VEND_OK
 * or VEND_EENUM, leaving *out untouched on error.
 */
const char *vend_cmd_name(enum vend_cmd c);
int vend_cmd_parse(const char *s, size_t len, enum vend_cmd *out);
const char *vend_level_name(enum vend_level l);
int vend_level_parse(const char *s, size_t len, enum vend_level *out);
const char *vend_door_name(enum vend_door d);
int vend_door_parse(const char *s, size_t len, enum vend_door *out);
const char *vend_presence_name(enum vend_presence p);
int vend_presence_parse(const char *s, size_t len, enum vend_presence *out);
const char *vend_result_error_name(enum vend_result_error e);
int vend_result_error_parse(const char *s, size_t len, enum vend_result_error *out);

/* True if the NUL-terminated code is one of the known result error codes. */
bool vend_result_error_known(const char *code);

#endif
