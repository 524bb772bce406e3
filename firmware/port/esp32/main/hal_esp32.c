/*
 * hal_esp32.c - the core's HAL on ESP-IDF (hal_esp32.h): motors, drop sensor and door on
 * GPIOs, NVS blobs as the key-value store, esp_timer, the wall clock once SNTP has set it.
 *
 * Globals: s_clock_synced only. SNTP's sync callback takes no argument to reach a struct by.
 */
#include "hal_esp32.h"

#include <stdatomic.h>
#include <string.h>

#include "driver/gpio.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "vend/err.h"

/* Kconfig's levels (0 or 1): a motor on, the beam blocked, the door open. */
#define MOTOR_ON_LEVEL     CONFIG_VEND_MOTOR_ON_LEVEL
#define DROP_BLOCKED_LEVEL CONFIG_VEND_DROP_BLOCKED_LEVEL
#define DOOR_OPEN_LEVEL    CONFIG_VEND_DOOR_OPEN_LEVEL

/* hal.h bounds its keys by what NVS takes. */
_Static_assert(VEND_FW_KV_KEY_MAX <= NVS_KEY_NAME_MAX_SIZE - 1, "kv keys longer than NVS keys");

static const char *TAG = "vend_hal";

static atomic_bool s_clock_synced;

static struct hal_esp32 *H(void *ctx)
{
    return ctx;
}

static int motor_set(void *ctx, uint16_t slot, bool on)
{
    struct hal_esp32 *h = H(ctx);
    uint32_t lvl = on ? MOTOR_ON_LEVEL : !MOTOR_ON_LEVEL;

    if (slot < 1 || slot > h->nslots)
        return VEND_EIO;
    return gpio_set_level((gpio_num_t)h->motor_pin[slot], lvl) == ESP_OK ? VEND_OK : VEND_EIO;
}

/* NEEDSWORK: no current sensing; a jammed spiral runs out its time and ends NO_DROP. */
static enum vend_fw_motor motor_state(void *ctx, uint16_t slot)
{
    (void)ctx;
    (void)slot;
    return VEND_FW_MOTOR_OK;
}

/*
 * Polled at each tick (10 ms), the core debounces. NEEDSWORK: a product that crosses the beam
 * faster than a tick can be missed; an edge latched by a GPIO interrupt would catch it.
 */
static bool drop_sensor(void *ctx)
{
    return gpio_get_level((gpio_num_t)H(ctx)->drop_pin) == DROP_BLOCKED_LEVEL;
}

/* NEEDSWORK: no level sensors; hal.h's answer for that is VEND_ENOTFOUND, not a guess. */
static int slot_level(void *ctx, uint16_t slot, enum vend_level *out)
{
    (void)ctx;
    (void)slot;
    (void)out;
    return VEND_ENOTFOUND;
}

static enum vend_door door(void *ctx)
{
    struct hal_esp32 *h = H(ctx);

    if (h->door_pin < 0)
        return VEND_DOOR_UNKNOWN;
    return gpio_get_level((gpio_num_t)h->door_pin) == DOOR_OPEN_LEVEL ? VEND_DOOR_OPEN
                                                                      : VEND_DOOR_CLOSED;
}

/* The die temperature, not the cabinet's: off unless CONFIG_VEND_TEMP_CHIP says otherwise. */
static int temperature_centi(void *ctx, int32_t *out)
{
#if CONFIG_VEND_TEMP_CHIP
    struct hal_esp32 *h = H(ctx);
    float c;

    if (h->tsens == NULL || temperature_sensor_get_celsius(h->tsens, &c) != ESP_OK)
        return VEND_EUNAVAILABLE;
    *out = (int32_t)(c * 100.0f + (c < 0.0f ? -0.5f : 0.5f));
    return VEND_OK;
#else
    (void)ctx;
    (void)out;
    return VEND_EUNAVAILABLE;
#endif
}

static int rssi(void *ctx, int16_t *out)
{
    wifi_ap_record_t ap;

    (void)ctx;
    if (esp_wifi_sta_get_ap_info(&ap) != ESP_OK)
        return VEND_EUNAVAILABLE;
    /* The driver may report a very strong signal as slightly above 0 dBm. */
    *out = (int16_t)(ap.rssi > 0 ? 0 : ap.rssi);
    return VEND_OK;
}

static uint64_t mono_ms(void *ctx)
{
    (void)ctx;
    return (uint64_t)esp_timer_get_time() / 1000u;
}

/* Until SNTP has answered once, the RTC counts from a made-up epoch: report no clock. */
static int wall_ms(void *ctx, uint64_t *out)
{
    struct timeval tv;

    (void)ctx;
    if (!atomic_load(&s_clock_synced) || gettimeofday(&tv, NULL) != 0 || tv.tv_sec < 0)
        return VEND_EUNAVAILABLE;
    *out = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    return VEND_OK;
}

void hal_esp32_clock_synced(struct timeval *tv)
{
    (void)tv;
    if (!atomic_exchange(&s_clock_synced, true))
        ESP_LOGI(TAG, "wall clock set by SNTP");
}

/* The core only passes its own keys; a bad one would be a bug, reported as a failed store. */
static bool kv_usable(const struct hal_esp32 *h, const char *key)
{
    size_t n = strnlen(key, VEND_FW_KV_KEY_MAX + 1);

    if (n == 0 || n > VEND_FW_KV_KEY_MAX) {
        ESP_LOGE(TAG, "rejected kv key '%.*s': not 1..%d characters", (int)n, key,
                 VEND_FW_KV_KEY_MAX);
        return false;
    }
    return h->nvs_open;
}

static int kv_get(void *ctx, const char *key, uint8_t *value)
{
    struct hal_esp32 *h = H(ctx);
    size_t len = VEND_FW_KV_VALUE_SIZE;
    esp_err_t err;

    if (!kv_usable(h, key))
        return VEND_EIO;
    err = nvs_get_blob(h->nvs, key, value, &len);
    if (err == ESP_ERR_NVS_NOT_FOUND)
        return VEND_ENOTFOUND;
    if (err == ESP_ERR_NVS_INVALID_LENGTH) {
        len = 0; /* longer than any value we write */
    } else if (err != ESP_OK) {
        ESP_LOGE(TAG, "cannot read NVS key '%s': %s", key, esp_err_to_name(err));
        return VEND_EIO;
    }
    /*
     * A value of another size is not one we wrote, but it is readable: "any bytes at all"
     * (hal.h), which the store's CRC rejects. VEND_EIO would keep the journal closed forever.
     */
    if (len > VEND_FW_KV_VALUE_SIZE)
        len = 0;
    memset(value + len, 0, VEND_FW_KV_VALUE_SIZE - len);
    return VEND_OK;
}

/* NVS replaces a blob atomically across power cuts; the core assumes less (journal.h). */
static int kv_put(void *ctx, const char *key, const uint8_t *value)
{
    struct hal_esp32 *h = H(ctx);
    esp_err_t err;

    if (!kv_usable(h, key))
        return VEND_EIO;
    err = nvs_set_blob(h->nvs, key, value, VEND_FW_KV_VALUE_SIZE);
    if (err == ESP_OK)
        err = nvs_commit(h->nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "cannot write NVS key '%s': %s", key, esp_err_to_name(err));
        return VEND_EIO;
    }
    return VEND_OK;
}

static int kv_erase(void *ctx, const char *key)
{
    struct hal_esp32 *h = H(ctx);
    esp_err_t err;

    if (!kv_usable(h, key))
        return VEND_EIO;
    err = nvs_erase_key(h->nvs, key);
    if (err == ESP_ERR_NVS_NOT_FOUND)
        return VEND_OK;
    if (err == ESP_OK)
        err = nvs_commit(h->nvs);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "cannot erase NVS key '%s': %s", key, esp_err_to_name(err));
        return VEND_EIO;
    }
    return VEND_OK;
}

static int mqtt_publish(void *ctx, const char *topic, const char *payload, size_t len, int qos,
                        bool retain)
{
    struct hal_esp32 *h = H(ctx);

    return h->publish(h->publish_arg, topic, payload, len, qos, retain);
}

/* Takes pin for opt if the chip has it (as an output if out) and nothing else uses it. */
static bool claim(const char *opt, int pin, bool out, uint64_t *used)
{
    bool ok = pin >= 0 && pin < GPIO_PIN_COUNT &&
              (out ? GPIO_IS_VALID_OUTPUT_GPIO(pin) : GPIO_IS_VALID_GPIO(pin));

    if (!ok || ((*used >> pin) & 1u) != 0) {
        ESP_LOGE(TAG, "%s: GPIO %d is %s", opt, pin,
                 ok    ? "already in use"
                 : out ? "not an output of this chip"
                       : "not on this chip");
        return false;
    }
    *used |= 1ull << pin;
    return true;
}

/* CONFIG_VEND_MOTOR_GPIOS, "4,5,6": the pin of slot 1, 2, 3 ... */
static int parse_motors(struct hal_esp32 *h, const char *s, uint64_t *used)
{
    const char *p = s;
    int pin;

    for (;;) {
        while (*p == ' ')
            p++;
        if (*p < '0' || *p > '9' || h->nslots == HAL_ESP32_MOTORS_MAX)
            break;
        for (pin = 0; *p >= '0' && *p <= '9' && pin < 1000; p++)
            pin = pin * 10 + (*p - '0');
        if (!claim("CONFIG_VEND_MOTOR_GPIOS", pin, true, used))
            return -1;
        h->motor_pin[++h->nslots] = (uint8_t)pin;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return 0;
        if (*p++ != ',')
            break;
    }
    ESP_LOGE(TAG, "CONFIG_VEND_MOTOR_GPIOS '%s': expected 1..%d GPIO numbers separated by commas",
             s, HAL_ESP32_MOTORS_MAX);
    return -1;
}

static int gpio_setup(int pin, gpio_mode_t mode)
{
    /*
     * Inputs get the pad's pull-up, for open-collector sensors and switches to ground. Input-only
     * pads (ESP32 GPIO 34-39) have none: wire one on the board.
     */
    bool pull = mode == GPIO_MODE_INPUT && GPIO_IS_VALID_OUTPUT_GPIO(pin);
    gpio_config_t io = {
        .pin_bit_mask = 1ull << pin,
        .mode = mode,
        .pull_up_en = pull ? GPIO_PULLUP_ENABLE : GPIO_PULLUP_DISABLE,
        .pull_down_en = GPIO_PULLDOWN_DISABLE,
        .intr_type = GPIO_INTR_DISABLE,
    };
    esp_err_t err = gpio_config(&io);

    if (err != ESP_OK)
        ESP_LOGE(TAG, "cannot configure GPIO %d: %s", pin, esp_err_to_name(err));
    return err == ESP_OK ? 0 : -1;
}

int hal_esp32_open(struct hal_esp32 *h, struct vend_fw_hal *hal, hal_esp32_publish_fn *publish,
                   void *arg)
{
    uint64_t used = 0;
    esp_err_t err;
    uint16_t s;

    memset(h, 0, sizeof(*h));
    h->drop_pin = CONFIG_VEND_DROP_GPIO;
    h->door_pin = CONFIG_VEND_DOOR_GPIO;
    h->publish = publish;
    h->publish_arg = arg;
    if (parse_motors(h, CONFIG_VEND_MOTOR_GPIOS, &used) < 0 ||
        !claim("CONFIG_VEND_DROP_GPIO", h->drop_pin, false, &used) ||
        (h->door_pin >= 0 && !claim("CONFIG_VEND_DOOR_GPIO", h->door_pin, false, &used)))
        return -1;
    for (s = 1; s <= h->nslots; s++) {
        /* Level first: the pin drives "off" from the moment it becomes an output. */
        (void)gpio_set_level((gpio_num_t)h->motor_pin[s], !MOTOR_ON_LEVEL);
        if (gpio_setup(h->motor_pin[s], GPIO_MODE_OUTPUT) < 0)
            return -1;
    }
    if (gpio_setup(h->drop_pin, GPIO_MODE_INPUT) < 0 ||
        (h->door_pin >= 0 && gpio_setup(h->door_pin, GPIO_MODE_INPUT) < 0))
        return -1;

    err = nvs_open(HAL_ESP32_NVS_NS, NVS_READWRITE, &h->nvs);
    h->nvs_open = err == ESP_OK;
    if (!h->nvs_open)
        ESP_LOGE(TAG,
                 "cannot open NVS namespace '%s': %s; the journal is unreadable, commands "
                 "are refused",
                 HAL_ESP32_NVS_NS, esp_err_to_name(err));
#if CONFIG_VEND_TEMP_CHIP
    temperature_sensor_config_t tc = TEMPERATURE_SENSOR_CONFIG_DEFAULT(-10, 80);

    err = temperature_sensor_install(&tc, &h->tsens);
    if (err == ESP_OK) {
        err = temperature_sensor_enable(h->tsens);
        if (err != ESP_OK)
            temperature_sensor_uninstall(h->tsens);
    }
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "no temperature: the chip's sensor did not start: %s", esp_err_to_name(err));
        h->tsens = NULL;
    }
#endif
    *hal = (struct vend_fw_hal){
        .ctx = h,
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
    ESP_LOGI(TAG, "%u slot motor(s), drop sensor GPIO %d, door %s", (unsigned)h->nslots,
             h->drop_pin, h->door_pin >= 0 ? "switch" : "unknown (no switch)");
    return 0;
}
