/*
 * mqtt_link.h - one libmosquitto client (MQTT v5) per simulated machine, driven by vmsim's
 * poll() loop: retained will {"status":"OFFLINE"} on vm/{id}/status, subscriptions to
 * vm/{id}/command and vm/{id}/config at QoS 1, messages handed to the firmware core, and
 * the core's publishes handed to the client.
 *
 * The core learns it is connected (vend_fw_machine_on_connect) once the broker has granted
 * both subscriptions, so nothing the core publishes on connect can race a command it would
 * miss. A lost connection is retried every second, up to LINK_RETRY_MAX_MS apart.
 *
 * Fault modes (fault.h): a silent link drops what it receives and keeps its core believing
 * it is disconnected until link_wake(); link_drop() cuts the connection the unclean way.
 *
 * NEEDSWORK: the (re)connect is mosquitto_connect_bind_v5(), which blocks the loop for the
 * TCP handshake: instant on loopback, not for a remote broker with a fleet of clients.
 */
#ifndef VMSIM_MQTT_LINK_H
#define VMSIM_MQTT_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vend/fw/machine.h"

#define LINK_HOST_MAX     256
#define LINK_CRED_MAX     256
#define LINK_RETRY_MIN_MS 1000
#define LINK_RETRY_MAX_MS 30000

/* The broker and credentials, shared by every link. */
struct link_broker {
    char host[LINK_HOST_MAX];
    uint16_t port;
    const char *username; /* NULL: none */
    const char *password; /* NULL: none */
    bool tls;             /* mqtts://: the broker verified against ca_file */
    const char *ca_file;  /* NULL: the system's CAs */
};

struct mosquitto;

struct link {
    struct mosquitto *mosq;
    struct vend_fw_machine *m;
    const struct link_broker *broker;
    char id[VEND_MACHINE_ID_MAX + 1];
    char t_command[VEND_TOPIC_MAX + 1];
    char t_config[VEND_TOPIC_MAX + 1];
    bool connected; /* CONNACK and SUBACK seen: the core is told */
    bool socket_up; /* a TCP connection exists (maybe not yet acknowledged) */
    uint64_t retry_at_ms;
    uint32_t retry_gap_ms;

    bool silent;            /* drops what it receives; the core is told it is disconnected */
    uint64_t commands;      /* commands received while not silent */
    uint64_t silent_after;  /* silent at the command after this many; UINT64_MAX: never */
    uint64_t away_until_ms; /* link_drop(): no reconnect before */
};

/*
 * Parses mqtt://host[:port][/] (port 1883 by default) or mqtts://host[:port][/] (TLS, 8883)
 * into b. 0, or -1 with a line on stderr.
 */
int link_parse_url(const char *url, struct link_broker *b);

/* Once per process, before link_open / after the last link_close. */
int link_lib_init(void);
void link_lib_cleanup(void);

/*
 * Creates the client of machine m (already initialised: the will comes from it) and starts
 * connecting; silent_after is UINT64_MAX (the caller may lower it before the first
 * link_service). 0, or -1 with a line on stderr naming the machine.
 */
int link_open(struct link *l, struct vend_fw_machine *m, const struct link_broker *b);
/* Disconnects with the will (so the status reads OFFLINE) and frees the client. */
void link_close(struct link *l);

/* The sim's publish hook (sim_publish_fn): arg is the struct link. */
int link_publish(void *arg, const char *topic, const char *payload, size_t len, int qos,
                 bool retain);

/* The socket to poll (-1 while none) and whether it has bytes to send. */
int link_socket(const struct link *l);
bool link_want_write(const struct link *l);
/* After poll(): reads and/or writes, housekeeping, reconnects when due. */
void link_service(struct link *l, bool readable, bool writable, uint64_t now_ms);

/* Ends the silence: if connected, the core is told so (status, unacknowledged results). */
void link_wake(struct link *l);
/*
 * Cuts the TCP connection without a DISCONNECT, so the broker publishes the will; the link
 * does not reconnect before until_ms. Nothing if there is no connection.
 */
void link_drop(struct link *l, uint64_t until_ms);

#endif
