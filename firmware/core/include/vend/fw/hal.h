/*
 * hal.h - what the firmware core needs from the hardware, as one struct of function pointers.
 *
 * The core (machine.h, journal.h) reaches the world only through this struct: time, storage,
 * GPIO and the MQTT client. A port (ESP-IDF, vmsim, the host tests' fake) fills it in and
 * passes the same ctx to every call. Nothing here is called from an interrupt: the core runs
 * in one task, and every function must return promptly (no blocking beyond a flash write or
 * an MQTT enqueue).
 *
 * Errors are VEND_E* codes (vend/err.h). Every pointer is required, except rssi, which may be
 * NULL (not reported).
 *
 * No OS headers: compiled freestanding for the ESP32.
 */
#ifndef VEND_FW_HAL_H
#define VEND_FW_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vend/msg.h"

/*
 * The key-value store holds fixed-size values: every get and put moves exactly this many
 * bytes. ESP-IDF's NVS stores them as blobs; keys are at most VEND_FW_KV_KEY_MAX characters
 * (NVS allows 15).
 */
#define VEND_FW_KV_VALUE_SIZE 96
#define VEND_FW_KV_KEY_MAX    15

/* What the motor driver senses while a motor runs. */
enum vend_fw_motor {
    VEND_FW_MOTOR_OK = 0,  /* running (or off) as commanded */
    VEND_FW_MOTOR_STALLED, /* over-current or no rotation: the spiral is jammed */
    VEND_FW_MOTOR_FAULT,   /* driver fault: open load, thermal shutdown, ... */
};

struct vend_fw_hal {
    void *ctx; /* passed to every function below */

    /* Switches the motor of slot (1..nslots) on or off. VEND_EIO if the driver refused. */
    int (*motor_set)(void *ctx, uint16_t slot, bool on);
    /* What the driver of slot senses now. */
    enum vend_fw_motor (*motor_state)(void *ctx, uint16_t slot);
    /* True while the drop sensor sees something (a product falling through the beam). The
     * core polls it once a tick and wants it blocked for dropSensorDelay: a HAL whose beam
     * pulse can be shorter than that plus a tick must latch it (an interrupt) and report it
     * for at least that long from the first read, or a slow tick misses a drop. */
    bool (*drop_sensor)(void *ctx);
    /* The fill level of slot; VEND_ENOTFOUND if the slot has no level sensor. */
    int (*slot_level)(void *ctx, uint16_t slot, enum vend_level *out);
    /* The service door; VEND_DOOR_UNKNOWN if the machine has no door switch (counts as closed). */
    enum vend_door (*door)(void *ctx);
    /* Cabinet temperature in hundredths of a degree C; VEND_EUNAVAILABLE without a sensor. */
    int (*temperature_centi)(void *ctx, int32_t *out);
    /* Wi-Fi signal in dBm (-127..0); VEND_EUNAVAILABLE if unknown. May be NULL. */
    int (*rssi)(void *ctx, int16_t *out);

    /* Milliseconds since boot: never goes back, never jumps with the wall clock. */
    uint64_t (*mono_ms)(void *ctx);
    /*
     * Epoch milliseconds (UTC). VEND_EUNAVAILABLE while the clock is not synced (no SNTP
     * answer since boot): the core then neither checks "expiresAt" nor stamps telemetry.
     */
    int (*wall_ms)(void *ctx, uint64_t *out);

    /*
     * Persistent key-value store. key is NUL-terminated, at most VEND_FW_KV_KEY_MAX chars;
     * value is VEND_FW_KV_VALUE_SIZE bytes.
     *   kv_get:   VEND_OK; VEND_ENOTFOUND if the key is absent; VEND_EIO if it cannot be read.
     *   kv_put:   VEND_OK once the value is durable; VEND_EIO otherwise.
     *   kv_erase: VEND_OK (also if absent); VEND_EIO.
     * The core assumes no atomicity: a put interrupted by a power cut, or one that failed, may
     * leave the key with any bytes at all. journal.h explains why that is enough.
     */
    int (*kv_get)(void *ctx, const char *key, uint8_t *value);
    int (*kv_put)(void *ctx, const char *key, const uint8_t *value);
    int (*kv_erase)(void *ctx, const char *key);

    /*
     * Hands a message to the MQTT client (esp-mqtt: esp_mqtt_client_enqueue). VEND_OK when
     * queued; VEND_EUNAVAILABLE when the client cannot take it (disconnected, outbox full).
     * VEND_OK is no proof of delivery: the core re-publishes results (machine.h).
     */
    int (*mqtt_publish)(void *ctx, const char *topic, const char *payload, size_t len, int qos,
                        bool retain);
};

#endif
