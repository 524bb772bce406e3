/*
 * mqtt_link.c - the MQTT v5 client of one simulated machine (mqtt_link.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "mqtt_link.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "vend/err.h"

#define KEEPALIVE_S 30

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct link *l = obj;
    char *subs[2] = {l->t_command, l->t_config};
    int src;

    (void)flags;
    (void)props;
    if (rc != 0) {
        fprintf(stderr, "vmsim: MQTT broker refused '%s': %s\n", l->id,
                mosquitto_reason_string(rc));
        return;
    }
    src = mosquitto_subscribe_multiple(mosq, NULL, 2, subs, 1, 0, NULL);
    if (src != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "vmsim: cannot subscribe '%s': %s\n", l->id, mosquitto_strerror(src));
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
                         const int *granted, const mosquitto_property *props)
{
    struct link *l = obj;
    int i;

    (void)mosq;
    (void)mid;
    (void)props;
    for (i = 0; i < qos_count; i++) {
        if (granted[i] > 2) {
            fprintf(stderr, "vmsim: broker refused a subscription of '%s' (reason %d)\n", l->id,
                    granted[i]);
            return;
        }
    }
    if (l->connected)
        return;
    l->connected = true;
    l->retry_gap_ms = LINK_RETRY_MIN_MS;
    fprintf(stderr, "vmsim: '%s' connected%s\n", l->id, l->silent ? " (silent)" : "");
    if (!l->silent)
        vend_fw_machine_on_connect(l->m);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct link *l = obj;
    struct vend_diag diag;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    const char *payload = msg->payload ? msg->payload : "";
    int rc;

    (void)mosq;
    (void)props;
    if (!l->silent && strcmp(msg->topic, l->t_command) == 0 && l->commands++ == l->silent_after) {
        fprintf(stderr, "vmsim: '%s' goes silent after %llu command(s)\n", l->id,
                (unsigned long long)l->silent_after);
        l->silent = true;
        vend_fw_machine_on_disconnect(l->m);
    }
    if (l->silent) {
        fprintf(stderr, "vmsim: '%s' is silent: dropped a message on '%s'\n", l->id, msg->topic);
        return;
    }
    memset(&diag, 0, sizeof(diag));
    if (strcmp(msg->topic, l->t_command) == 0) {
        rc = vend_fw_machine_on_command(l->m, payload, len, &diag);
        if (rc != VEND_OK)
            fprintf(stderr, "vmsim: '%s' dropped a command: %s%s%s\n", l->id, vend_strerror(rc),
                    diag.field[0] ? " at " : "", diag.field);
    } else if (strcmp(msg->topic, l->t_config) == 0) {
        rc = vend_fw_machine_on_config(l->m, payload, len, &diag);
        if (rc != VEND_OK)
            fprintf(stderr, "vmsim: '%s' refused a config: %s%s%s\n", l->id, vend_strerror(rc),
                    diag.field[0] ? " at " : "", diag.field);
    }
}

static void lost(struct link *l)
{
    if (l->connected) {
        fprintf(stderr, "vmsim: '%s' lost the broker connection\n", l->id);
        l->connected = false;
        vend_fw_machine_on_disconnect(l->m);
    }
    l->socket_up = false;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    (void)mosq;
    (void)rc;
    (void)props;
    lost(obj);
}

int link_parse_url(const char *url, struct link_broker *b)
{
    const char *host, *end, *p;
    size_t hlen;
    long port = 1883;
    char *endp;

    if (strncmp(url, "mqtt://", 7) == 0) {
        host = url + 7;
        b->tls = false;
    } else if (strncmp(url, "mqtts://", 8) == 0) {
        host = url + 8;
        port = 8883;
        b->tls = true;
    } else {
        fprintf(stderr, "vmsim: MQTT_BROKER_URL '%s': only mqtt:// and mqtts:// are supported\n",
                url);
        return -1;
    }
    if (*host == '[') {
        end = strchr(host, ']');
        if (end == NULL)
            goto bad;
        host++;
        p = end + 1;
    } else {
        end = host + strcspn(host, ":/");
        p = end;
    }
    hlen = (size_t)(end - host);
    if (hlen == 0 || hlen >= sizeof(b->host))
        goto bad;
    if (*p == ':') {
        port = strtol(p + 1, &endp, 10);
        if (endp == p + 1 || port < 1 || port > 65535)
            goto bad;
        p = endp;
    }
    if (*p == '/')
        p++;
    if (*p != '\0')
        goto bad;
    memcpy(b->host, host, hlen);
    b->host[hlen] = '\0';
    b->port = (uint16_t)port;
    return 0;
bad:
    fprintf(stderr, "vmsim: MQTT_BROKER_URL '%s': expected mqtt[s]://host[:port]\n", url);
    return -1;
}

int link_lib_init(void)
{
    int rc = mosquitto_lib_init();

    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "vmsim: libmosquitto: %s\n", mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

void link_lib_cleanup(void)
{
    mosquitto_lib_cleanup();
}

static void try_connect(struct link *l, uint64_t now_ms)
{
    int rc;

    if (l->mosq == NULL || l->socket_up || now_ms < l->retry_at_ms || now_ms < l->away_until_ms)
        return;
    rc = mosquitto_connect_bind_v5(l->mosq, l->broker->host, l->broker->port, KEEPALIVE_S, NULL,
                                   NULL);
    if (rc == MOSQ_ERR_SUCCESS) {
        l->socket_up = true;
        return;
    }
    fprintf(stderr, "vmsim: '%s' cannot connect to %s:%u: %s (retry in %u ms)\n", l->id,
            l->broker->host, (unsigned)l->broker->port, mosquitto_strerror(rc),
            (unsigned)l->retry_gap_ms);
    l->retry_at_ms = now_ms + l->retry_gap_ms;
    l->retry_gap_ms =
        l->retry_gap_ms * 2 > LINK_RETRY_MAX_MS ? LINK_RETRY_MAX_MS : l->retry_gap_ms * 2;
}

int link_open(struct link *l, struct vend_fw_machine *m, const struct link_broker *b)
{
    char wtopic[VEND_TOPIC_MAX + 1], wpayload[64];
    int wlen, rc;

    memset(l, 0, sizeof(*l));
    l->m = m;
    l->broker = b;
    l->retry_gap_ms = LINK_RETRY_MIN_MS;
    l->silent_after = UINT64_MAX;
    memcpy(l->id, m->machine_id, sizeof(l->id));
    if (vend_topic_format(l->t_command, sizeof(l->t_command), l->id, VEND_TOPIC_COMMAND) < 0 ||
        vend_topic_format(l->t_config, sizeof(l->t_config), l->id, VEND_TOPIC_CONFIG) < 0) {
        fprintf(stderr, "vmsim: bad machine id '%s'\n", l->id);
        return -1;
    }
    wlen = vend_fw_machine_will(m, wtopic, sizeof(wtopic), wpayload, sizeof(wpayload));
    if (wlen < 0) {
        fprintf(stderr, "vmsim: no will for '%s': %s\n", l->id, vend_strerror(wlen));
        return -1;
    }
    /* Clean start: a command queued while we were away has expired or will be settled. */
    l->mosq = mosquitto_new(l->id, true, l);
    if (l->mosq == NULL) {
        fprintf(stderr, "vmsim: cannot create the MQTT client of '%s'\n", l->id);
        return -1;
    }
    mosquitto_int_option(l->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(l->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    rc = mosquitto_will_set_v5(l->mosq, wtopic, wlen, wpayload, 1, true, NULL);
    if (rc == MOSQ_ERR_SUCCESS && (l->broker->username || l->broker->password))
        rc = mosquitto_username_pw_set(l->mosq, l->broker->username, l->broker->password);
    /* As the ESP32 port: the broker's certificate checked against the CA and the host name. */
    if (rc == MOSQ_ERR_SUCCESS && l->broker->tls && l->broker->ca_file != NULL)
        rc = mosquitto_tls_set(l->mosq, l->broker->ca_file, NULL, NULL, NULL, NULL);
    else if (rc == MOSQ_ERR_SUCCESS && l->broker->tls)
        rc = mosquitto_int_option(l->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "vmsim: cannot set up the MQTT client of '%s': %s\n", l->id,
                mosquitto_strerror(rc));
        mosquitto_destroy(l->mosq);
        l->mosq = NULL;
        return -1;
    }
    mosquitto_connect_v5_callback_set(l->mosq, on_connect);
    mosquitto_subscribe_v5_callback_set(l->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(l->mosq, on_message);
    mosquitto_disconnect_v5_callback_set(l->mosq, on_disconnect);
    try_connect(l, 0);
    return 0;
}

void link_close(struct link *l)
{
    int i;

    if (l->mosq == NULL)
        return;
    l->connected = false; /* shutting down: not a lost connection */
    if (l->socket_up) {
        /* 0x04: disconnect with will, so the retained status reads OFFLINE. */
        mosquitto_disconnect_v5(l->mosq, MQTT_RC_DISCONNECT_WITH_WILL_MSG, NULL);
        for (i = 0; i < 100 && mosquitto_socket(l->mosq) >= 0 && mosquitto_want_write(l->mosq);
             i++) {
            if (mosquitto_loop_write(l->mosq, 1) != MOSQ_ERR_SUCCESS)
                break;
        }
    }
    mosquitto_destroy(l->mosq);
    l->mosq = NULL;
}

int link_publish(void *arg, const char *topic, const char *payload, size_t len, int qos,
                 bool retain)
{
    struct link *l = arg;
    int rc;

    if (!l->connected || len > VEND_PAYLOAD_MAX)
        return VEND_EUNAVAILABLE;
    rc = mosquitto_publish_v5(l->mosq, NULL, topic, (int)len, payload, qos, retain, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "vmsim: '%s' cannot publish on '%s': %s\n", l->id, topic,
                mosquitto_strerror(rc));
        return VEND_EUNAVAILABLE;
    }
    return VEND_OK;
}

int link_socket(const struct link *l)
{
    return l->mosq && l->socket_up ? mosquitto_socket(l->mosq) : -1;
}

bool link_want_write(const struct link *l)
{
    return l->mosq && l->socket_up && mosquitto_want_write(l->mosq);
}

void link_service(struct link *l, bool readable, bool writable, uint64_t now_ms)
{
    int rc = MOSQ_ERR_SUCCESS;

    if (l->mosq == NULL)
        return;
    if (l->socket_up && readable)
        rc = mosquitto_loop_read(l->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && l->socket_up && writable)
        rc = mosquitto_loop_write(l->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && l->socket_up)
        rc = mosquitto_loop_misc(l->mosq);
    if (rc != MOSQ_ERR_SUCCESS || (l->socket_up && mosquitto_socket(l->mosq) < 0)) {
        if (l->socket_up)
            l->retry_at_ms = now_ms + l->retry_gap_ms;
        lost(l);
    }
    try_connect(l, now_ms);
}

void link_wake(struct link *l)
{
    if (!l->silent)
        return;
    l->silent = false;
    fprintf(stderr, "vmsim: '%s' wakes up\n", l->id);
    if (l->connected)
        vend_fw_machine_on_connect(l->m);
}

void link_drop(struct link *l, uint64_t until_ms)
{
    int fd = link_socket(l);

    if (fd < 0)
        return;
    /*
     * No DISCONNECT: to the broker the connection just ends, which is unclean, so it
     * publishes the will. Our next read sees the end and takes the lost-connection path.
     */
    shutdown(fd, SHUT_RDWR);
    l->away_until_ms = until_ms;
}
