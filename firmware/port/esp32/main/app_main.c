/*
 * app_main.c - the vending machine on ESP-IDF: Wi-Fi station, SNTP, esp-mqtt, and the firmware
 * core (vend/fw/machine.h) over the HAL of hal_esp32.c.
 *
 * Tasks. Only core_task enters the core: it starts it, then ticks it every TICK_MS. esp-mqtt's
 * event handler runs in the MQTT task and only copies what the core must hear (link up, link
 * down, a command, a config) into the ring buffer to_core. The core's publishes travel the
 * other way, through to_broker, to publish_task, which calls esp_mqtt_client_publish(). That
 * call can block for seconds (it waits for the client's lock, which the MQTT task holds while
 * it connects or writes), and the core must never wait: it is what stops a running motor.
 *
 * Globals: none here. The one struct app lives in static storage inside app_main() (it holds
 * the core, 8 KiB) and reaches every task and handler as their argument.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>

#include "esp_app_desc.h"
#include "esp_check.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_task_wdt.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/ringbuf.h"
#include "freertos/task.h"
#include "mqtt_client.h"
#include "nvs_flash.h"
#include "sdkconfig.h"
#if CONFIG_VEND_MQTT_TLS_BUNDLE
#include "esp_crt_bundle.h"
#endif

#include "hal_esp32.h"
#include "vend/err.h"
#include "vend/fw/machine.h"
#include "vend/topic.h"

#define TICK_MS       10
#define CORE_PRIO     6    /* above esp-mqtt's task (5): a late tick is a motor running late */
#define PUBLISH_PRIO  4    /* below it: it only feeds the client */
#define PUBLISH_STACK 4096 /* esp_mqtt_client_publish() runs the TLS write in this task */
#define RING_SIZE     (10 * 1024) /* a NOSPLIT ring takes items up to half its size */
#define HANDOFF_MS    2000        /* how long the MQTT task waits for room in to_core */
#define KEEPALIVE_S   30          /* the broker sends the will 45 s after the machine went silent */
/* The client's buffer holds any valid message whole: payload, topic and MQTT v5 properties. */
#define MQTT_BUFFER (VEND_PAYLOAD_MAX + 1024)

/* What the MQTT task tells the core: the first byte of each to_core item. */
enum link_event {
    LINK_UP,      /* connected and subscribed */
    LINK_DOWN,    /* disconnected, or a connect attempt failed */
    LINK_COMMAND, /* a message on vm/{id}/command follows */
    LINK_CONFIG,  /* a message on vm/{id}/config follows */
};

struct app {
    struct vend_fw_machine m; /* core_task's alone */
    struct hal_esp32 hal;     /* core_task's alone */
    esp_mqtt_client_handle_t mqtt;
    RingbufHandle_t to_core;   /* MQTT task -> core_task: enum link_event, payload */
    RingbufHandle_t to_broker; /* core_task -> publish_task: qos, retain, topic NUL, payload */
    int sub_msg_id;            /* the MQTT task's: the SUBSCRIBE whose SUBACK means LINK_UP */
    char t_command[VEND_TOPIC_MAX + 1];
    char t_config[VEND_TOPIC_MAX + 1];
    char will_topic[VEND_TOPIC_MAX + 1];
    char will[32];
};

#if CONFIG_VEND_MQTT_TLS_CA_FILE
/* main/broker_ca.pem, embedded by main/CMakeLists.txt (EMBED_TXTFILES adds the NUL). */
extern const uint8_t broker_ca_pem[] __asm__("_binary_broker_ca_pem_start");
#endif

static const char *TAG = "vend";

/* In the MQTT task: one item for the core, waiting at most HANDOFF_MS for room. */
static bool hand_to_core(struct app *a, enum link_event ev, const char *data, size_t len)
{
    static const char *const what[] = {"link up", "link down", "a command", "a config"};
    void *item;

    if (xRingbufferSendAcquire(a->to_core, &item, len + 1, pdMS_TO_TICKS(HANDOFF_MS)) != pdTRUE) {
        ESP_LOGE(TAG, "the core missed %s: its inbox stayed full", what[ev]);
        return false;
    }
    *(uint8_t *)item = (uint8_t)ev;
    if (len > 0)
        memcpy((uint8_t *)item + 1, data, len);
    xRingbufferSendComplete(a->to_core, item);
    return true;
}

static bool topic_is(const esp_mqtt_event_t *ev, const char *topic)
{
    size_t n = strlen(topic);

    return ev->topic != NULL && ev->topic_len == (int)n && memcmp(ev->topic, topic, n) == 0;
}

static void on_data(struct app *a, const esp_mqtt_event_t *ev)
{
    size_t len = ev->data_len > 0 ? (size_t)ev->data_len : 0;
    enum link_event kind;

    if (ev->current_data_offset != 0)
        return; /* the rest of a message too long to be valid */
    if (topic_is(ev, a->t_command)) {
        kind = LINK_COMMAND;
    } else if (topic_is(ev, a->t_config)) {
        kind = LINK_CONFIG;
    } else {
        return;
    }
    if (ev->total_data_len > ev->data_len && len <= VEND_PAYLOAD_MAX) {
        ESP_LOGW(TAG, "dropped a %d-byte message on '%.*s': it came in pieces", ev->total_data_len,
                 ev->topic_len, ev->topic);
        return;
    }
    /* Past the limit, these bytes are as good as all: the decoder says VEND_ETOOBIG. */
    if (len > VEND_PAYLOAD_MAX)
        len = VEND_PAYLOAD_MAX + 1;
    hand_to_core(a, kind, ev->data, len);
}

static void log_mqtt_error(const esp_mqtt_error_codes_t *e)
{
    /* Not the broker URI: it may carry a password. */
    if (e != NULL && e->error_type == MQTT_ERROR_TYPE_TCP_TRANSPORT)
        ESP_LOGW(TAG, "cannot reach the MQTT broker: %s (TLS 0x%x, errno %d)",
                 esp_err_to_name(e->esp_tls_last_esp_err), e->esp_tls_stack_err,
                 e->esp_transport_sock_errno);
    else if (e != NULL && e->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED)
        ESP_LOGW(TAG, "MQTT broker refused '%s': CONNACK code %d", CONFIG_VEND_MACHINE_ID,
                 (int)e->connect_return_code);
}

/* esp-mqtt's event handler, in the MQTT task; arg is the struct app. */
static void on_mqtt_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    struct app *a = arg;
    esp_mqtt_event_handle_t ev = data;
    const esp_mqtt_topic_t subs[] = {{.filter = a->t_command, .qos = 1},
                                     {.filter = a->t_config, .qos = 1}};

    (void)base;
    switch ((esp_mqtt_event_id_t)id) {
    case MQTT_EVENT_CONNECTED:
        /*
         * The core hears of the link once both subscriptions are granted, so nothing it
         * publishes on connect races a command it would miss.
         */
        a->sub_msg_id = esp_mqtt_client_subscribe_multiple(ev->client, subs, 2);
        if (a->sub_msg_id < 0) {
            ESP_LOGE(TAG, "cannot subscribe to '%s' and '%s'; reconnecting", a->t_command,
                     a->t_config);
            esp_mqtt_client_disconnect(ev->client);
        }
        break;
    case MQTT_EVENT_SUBSCRIBED:
        if (ev->msg_id != a->sub_msg_id)
            break;
        a->sub_msg_id = -1;
        if (ev->error_handle->error_type == MQTT_ERROR_TYPE_SUBSCRIBE_FAILED) {
            ESP_LOGE(TAG, "MQTT broker refused the subscriptions of '%s'; reconnecting",
                     CONFIG_VEND_MACHINE_ID);
            esp_mqtt_client_disconnect(ev->client);
        } else {
            hand_to_core(a, LINK_UP, NULL, 0);
        }
        break;
    case MQTT_EVENT_DISCONNECTED:
        a->sub_msg_id = -1;
        hand_to_core(a, LINK_DOWN, NULL, 0);
        break;
    case MQTT_EVENT_DATA:
        on_data(a, ev);
        break;
    case MQTT_EVENT_ERROR:
        log_mqtt_error(ev->error_handle);
        break;
    default:
        break;
    }
}

/* The core's mqtt_publish (hal_esp32_publish_fn), in core_task: queue, never wait. */
static int queue_publish(void *arg, const char *topic, const char *payload, size_t len, int qos,
                         bool retain)
{
    struct app *a = arg;
    size_t tlen = strlen(topic);
    void *item;
    uint8_t *p;

    if (len == 0 || xRingbufferSendAcquire(a->to_broker, &item, 2 + tlen + 1 + len, 0) != pdTRUE)
        return VEND_EUNAVAILABLE;
    p = item;
    p[0] = (uint8_t)qos;
    p[1] = retain ? 1 : 0;
    memcpy(p + 2, topic, tlen + 1);
    memcpy(p + 2 + tlen + 1, payload, len);
    xRingbufferSendComplete(a->to_broker, item);
    return VEND_OK;
}

static void publish_task(void *arg)
{
    struct app *a = arg;
    const char *topic;
    size_t size, tlen;
    uint8_t *p;

    for (;;) {
        p = xRingbufferReceive(a->to_broker, &size, portMAX_DELAY);
        if (p == NULL)
            continue;
        topic = (const char *)p + 2;
        tlen = strlen(topic);
        /*
         * CONFIG_MQTT_SKIP_PUBLISH_IF_DISCONNECTED: a message for a link just lost fails here
         * instead of waiting in esp-mqtt's outbox; the core re-publishes what matters.
         */
        if (esp_mqtt_client_publish(a->mqtt, topic, topic + tlen + 1, (int)(size - 2 - tlen - 1),
                                    p[0], p[1]) < 0)
            ESP_LOGW(TAG, "MQTT client did not take a message on '%s'", topic);
        vRingbufferReturnItem(a->to_broker, p);
    }
}

/* In core_task, once the core has started: the will comes from it. */
static int link_start(struct app *a)
{
    const char *id = a->m.machine_id;
    int wlen;

    if (vend_topic_format(a->t_command, sizeof(a->t_command), id, VEND_TOPIC_COMMAND) < 0 ||
        vend_topic_format(a->t_config, sizeof(a->t_config), id, VEND_TOPIC_CONFIG) < 0)
        return -1;
    wlen =
        vend_fw_machine_will(&a->m, a->will_topic, sizeof(a->will_topic), a->will, sizeof(a->will));
    if (wlen < 0) {
        ESP_LOGE(TAG, "no MQTT will for '%s': %s", id, vend_strerror(wlen));
        return -1;
    }
    a->sub_msg_id = -1;
    /* Clean session (the default): a command queued while away has expired or is settled. */
    const esp_mqtt_client_config_t cfg = {
        .broker.address.uri = CONFIG_VEND_MQTT_BROKER_URI,
#if CONFIG_VEND_MQTT_TLS_CA_FILE
        .broker.verification.certificate = (const char *)broker_ca_pem,
#elif CONFIG_VEND_MQTT_TLS_BUNDLE
        .broker.verification.crt_bundle_attach = esp_crt_bundle_attach,
#endif
        .credentials.client_id = id,
        .credentials.username = CONFIG_VEND_MQTT_USERNAME[0] ? CONFIG_VEND_MQTT_USERNAME : NULL,
        .credentials.authentication.password =
            CONFIG_VEND_MQTT_PASSWORD[0] ? CONFIG_VEND_MQTT_PASSWORD : NULL,
        .session.last_will =
            {.topic = a->will_topic, .msg = a->will, .msg_len = wlen, .qos = 1, .retain = 1},
        .session.keepalive = KEEPALIVE_S,
#if CONFIG_MQTT_PROTOCOL_5
        .session.protocol_ver = MQTT_PROTOCOL_V_5,
#else
        .session.protocol_ver = MQTT_PROTOCOL_V_3_1_1,
#endif
        .buffer.size = MQTT_BUFFER,
    };

    a->mqtt = esp_mqtt_client_init(&cfg);
    if (a->mqtt == NULL) {
        ESP_LOGE(TAG, "cannot create the MQTT client of '%s' (check CONFIG_VEND_MQTT_BROKER_URI)",
                 id);
        return -1;
    }
    if (xTaskCreate(publish_task, "vend_publish", PUBLISH_STACK, a, PUBLISH_PRIO, NULL) != pdPASS ||
        esp_mqtt_client_register_event(a->mqtt, MQTT_EVENT_ANY, on_mqtt_event, a) != ESP_OK ||
        esp_mqtt_client_start(a->mqtt) != ESP_OK) {
        ESP_LOGE(TAG, "cannot start the MQTT client of '%s'", id);
        return -1;
    }
    return 0;
}

/* One to_core item: the core hears it here, in core_task. */
static void dispatch(struct app *a, const uint8_t *item, size_t size)
{
    const char *payload = (const char *)item + 1;
    struct vend_diag diag;
    int rc = VEND_OK;

    memset(&diag, 0, sizeof(diag));
    switch ((enum link_event)item[0]) {
    case LINK_UP:
        ESP_LOGI(TAG, "'%s' connected to the MQTT broker", a->m.machine_id);
        vend_fw_machine_on_connect(&a->m);
        break;
    case LINK_DOWN:
        /* esp-mqtt says so after every failed attempt too: log only a lost link. */
        if (a->m.connected)
            ESP_LOGW(TAG, "'%s' lost the MQTT broker", a->m.machine_id);
        vend_fw_machine_on_disconnect(&a->m);
        break;
    case LINK_COMMAND:
        rc = vend_fw_machine_on_command(&a->m, payload, size - 1, &diag);
        if (rc != VEND_OK)
            ESP_LOGW(TAG, "dropped a command to '%s': %s%s%s", a->m.machine_id, vend_strerror(rc),
                     diag.field[0] ? " at " : "", diag.field);
        break;
    case LINK_CONFIG:
        rc = vend_fw_machine_on_config(&a->m, payload, size - 1, &diag);
        if (rc != VEND_OK)
            ESP_LOGW(TAG, "refused a config for '%s': %s%s%s", a->m.machine_id, vend_strerror(rc),
                     diag.field[0] ? " at " : "", diag.field);
        break;
    }
}

static void core_task(void *arg)
{
    struct app *a = arg;
    struct vend_fw_hal hal;
    struct vend_fw_params p;
    TickType_t wake;
    uint8_t *item;
    size_t size;
    int rc;

    if (hal_esp32_open(&a->hal, &hal, queue_publish, a) < 0)
        goto out;
    p = (struct vend_fw_params){.machine_id = CONFIG_VEND_MACHINE_ID,
                                .fw = esp_app_get_description()->version,
                                .nslots = a->hal.nslots};
    if (!vend_machine_id_valid(p.machine_id)) {
        ESP_LOGE(TAG, "CONFIG_VEND_MACHINE_ID '%s' does not match %s", p.machine_id,
                 VEND_MACHINE_ID_PATTERN);
        goto out;
    }
    rc = vend_fw_machine_init(&a->m, &hal, &p);
    if (rc != VEND_OK) {
        ESP_LOGE(TAG, "cannot start the core of '%s' (fw '%s'): %s", p.machine_id, p.fw,
                 vend_strerror(rc));
        goto out;
    }
    /* Without a link the core still runs: the motors stay off, the journal is kept. */
    if (link_start(a) < 0)
        ESP_LOGE(TAG, "'%s' runs offline", p.machine_id);
    /* A core that stops ticking could leave a motor on: the task watchdog resets the chip. */
    if (esp_task_wdt_add(NULL) != ESP_OK)
        ESP_LOGW(TAG, "core task not watched: the task watchdog is off (CONFIG_ESP_TASK_WDT_INIT)");
    wake = xTaskGetTickCount();
    for (;;) {
        for (;;) {
            item = xRingbufferReceive(a->to_core, &size, 0);
            if (item == NULL)
                break;
            dispatch(a, item, size);
            vRingbufferReturnItem(a->to_core, item);
        }
        vend_fw_machine_tick(&a->m);
        esp_task_wdt_reset();
        xTaskDelayUntil(&wake, pdMS_TO_TICKS(TICK_MS));
    }
out:
    ESP_LOGE(TAG, "the machine does not run: fix the configuration above (idf.py menuconfig)");
    vTaskDelete(NULL);
}

static void on_net_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    const wifi_event_sta_disconnected_t *lost = data;

    (void)arg;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
        esp_wifi_connect();
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        ESP_LOGW(TAG, "no Wi-Fi '%s' (reason %u); retrying", CONFIG_VEND_WIFI_SSID,
                 (unsigned)lost->reason);
        esp_wifi_connect();
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        ESP_LOGI(TAG, "Wi-Fi '%s' up", CONFIG_VEND_WIFI_SSID);
        esp_netif_sntp_start();
    }
}

/* Wi-Fi station and SNTP; esp-mqtt reconnects by itself once there is an address. */
static esp_err_t network_start(void)
{
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    wifi_config_t wc = {
        .sta = {.ssid = CONFIG_VEND_WIFI_SSID, .password = CONFIG_VEND_WIFI_PASSWORD},
    };
    esp_sntp_config_t sntp = ESP_NETIF_SNTP_DEFAULT_CONFIG(CONFIG_VEND_SNTP_SERVER);

    /* WPA2 at least, unless the network has no password. */
    wc.sta.threshold.authmode = CONFIG_VEND_WIFI_PASSWORD[0] ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
    sntp.start = false; /* on every new address: on_net_event() */
    sntp.wait_for_sync = false;
    sntp.sync_cb = hal_esp32_clock_synced;
    ESP_RETURN_ON_ERROR(esp_netif_init(), TAG, "TCP/IP stack");
    ESP_RETURN_ON_ERROR(esp_event_loop_create_default(), TAG, "default event loop");
    ESP_RETURN_ON_FALSE(esp_netif_create_default_wifi_sta() != NULL, ESP_FAIL, TAG,
                        "Wi-Fi station interface");
    ESP_RETURN_ON_ERROR(esp_wifi_init(&init), TAG, "Wi-Fi driver");
    ESP_RETURN_ON_ERROR(
        esp_event_handler_instance_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_net_event, NULL, NULL),
        TAG, "Wi-Fi events");
    ESP_RETURN_ON_ERROR(esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP,
                                                            on_net_event, NULL, NULL),
                        TAG, "IP events");
    ESP_RETURN_ON_ERROR(esp_netif_sntp_init(&sntp), TAG, "SNTP");
    ESP_RETURN_ON_ERROR(esp_wifi_set_mode(WIFI_MODE_STA), TAG, "Wi-Fi station mode");
    ESP_RETURN_ON_ERROR(esp_wifi_set_config(WIFI_IF_STA, &wc), TAG, "Wi-Fi '%s'",
                        CONFIG_VEND_WIFI_SSID);
    ESP_RETURN_ON_ERROR(esp_wifi_start(), TAG, "Wi-Fi start");
    /* Mains-powered: modem sleep would hold a command back for a beacon interval or more. */
    esp_wifi_set_ps(WIFI_PS_NONE);
    return ESP_OK;
}

void app_main(void)
{
    static struct app a; /* static storage: the core must never move (machine.h) */
    esp_err_t err;

    /*
     * No nvs_flash_erase() on failure, unlike ESP-IDF's examples: erasing would forget the
     * journal, and with it which units already ran. The kv store then fails, and the core
     * refuses every command until someone looks.
     */
    err = nvs_flash_init();
    if (err != ESP_OK)
        ESP_LOGE(TAG, "NVS does not start: %s; commands will be refused", esp_err_to_name(err));
    a.to_core = xRingbufferCreate(RING_SIZE, RINGBUF_TYPE_NOSPLIT);
    a.to_broker = xRingbufferCreate(RING_SIZE, RINGBUF_TYPE_NOSPLIT);
    if (a.to_core == NULL || a.to_broker == NULL) {
        ESP_LOGE(TAG, "no memory for the MQTT ring buffers (2 x %d bytes)", RING_SIZE);
        return;
    }
    err = network_start();
    if (err != ESP_OK)
        ESP_LOGE(TAG, "network does not start: %s; the machine runs offline", esp_err_to_name(err));
    if (xTaskCreate(core_task, "vend_core", CONFIG_VEND_CORE_STACK, &a, CORE_PRIO, NULL) != pdPASS)
        ESP_LOGE(TAG, "cannot create the core task (%d bytes of stack)", CONFIG_VEND_CORE_STACK);
}
