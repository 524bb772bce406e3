/*
 * hal_esp32.h - the firmware core's HAL (vend/fw/hal.h) on an ESP32: one GPIO per slot motor,
 * an IR break-beam drop sensor and a door switch on GPIOs, NVS blobs as the key-value store,
 * esp_timer and the SNTP-set wall clock, optionally the chip's own temperature sensor.
 *
 * Pins and levels come from Kconfig (main/Kconfig.projbuild) and are checked at boot. The
 * struct must not move once hal_esp32_open() has filled the HAL (the HAL's ctx points at it).
 * The HAL's functions run in the core's task only; hal_esp32_clock_synced() runs in lwIP's.
 *
 * NEEDSWORK: no motor current sensing (motor_state always says OK, so JAMMED and driver
 * faults are never seen), no slot level sensors (slot_level says VEND_ENOTFOUND: telemetry
 * carries no levels), one GPIO per motor (a motor matrix or an I/O expander for more slots).
 */
#ifndef HAL_ESP32_H
#define HAL_ESP32_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "nvs.h"
#include "sdkconfig.h"
#include "vend/fw/hal.h"
#if CONFIG_VEND_TEMP_CHIP
#include "driver/temperature_sensor.h"
#endif

#define HAL_ESP32_MOTORS_MAX 32       /* slots; a chip has fewer free GPIOs than that */
#define HAL_ESP32_NVS_NS     "vendfw" /* the NVS namespace of the journal and the config */

/* Hands a publish of the core to the MQTT side (hal.h, mqtt_publish). */
typedef int hal_esp32_publish_fn(void *arg, const char *topic, const char *payload, size_t len,
                                 int qos, bool retain);

struct hal_esp32 {
    uint8_t motor_pin[HAL_ESP32_MOTORS_MAX + 1]; /* by slot; [0] unused */
    uint16_t nslots;
    int drop_pin;
    int door_pin;  /* -1: no door switch */
    bool nvs_open; /* false: every kv call says VEND_EIO */
    nvs_handle_t nvs;
#if CONFIG_VEND_TEMP_CHIP
    temperature_sensor_handle_t tsens; /* NULL if it did not start */
#endif
    hal_esp32_publish_fn *publish;
    void *publish_arg;
};

/*
 * Checks the pins from Kconfig, drives every motor off and configures the GPIOs, opens the
 * NVS namespace and the temperature sensor, and fills hal. Returns 0, or -1 after a log line
 * naming the Kconfig option or pin at fault: the machine must then not run. NVS that cannot
 * be opened is no error here: the kv functions answer VEND_EIO, so the core cannot read its
 * journal and refuses every command, which is safe.
 */
int hal_esp32_open(struct hal_esp32 *h, struct vend_fw_hal *hal, hal_esp32_publish_fn *publish,
                   void *arg);

/* SNTP's sync callback (esp_sntp_time_cb_t): the wall clock is trusted from now on. */
void hal_esp32_clock_synced(struct timeval *tv);

#endif
