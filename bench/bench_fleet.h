/*
 * bench_fleet.h - many MQTT clients in one process and one thread: libmosquitto without its
 * thread, every socket on the caller's epoll set (docs/BENCH.md).
 *
 * Client i plays machine "<prefix><first + i>" (five digits: vm00001), MQTT v5, clean start,
 * TCP_NODELAY as the firmware and vmsim set it, client id "<client_prefix><machine id>".
 * The memory stays bounded however fast a caller publishes: fleet_can_publish() is false
 * while a client's socket has not taken its last packet (libmosquitto would otherwise queue
 * without bound) or, at QoS 1, while it has `window` messages without a PUBACK.
 *
 * epoll: each client registers its socket with data.ptr pointing at its struct fleet_client,
 * whose first member is `kind` (FLEET_KIND), so a caller that shares the epoll set with other
 * sockets tells them apart by their own first member.
 */
#ifndef VEND_BENCH_FLEET_H
#define VEND_BENCH_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>

#define FLEET_KIND      0x4d515454 /* "MQTT" */
#define FLEET_ID_MAX    32
#define FLEET_TOPIC_MAX 96

struct fleet;

/* A message for client index i (the callback runs inside libmosquitto: a publish from it is
 * queued and flushed when the read returns). */
typedef void fleet_msg_fn(struct fleet *f, size_t i, const char *topic, const void *payload,
                          int len, void *arg);

struct fleet_client {
    int kind; /* FLEET_KIND; first, see above */
    struct fleet *f;
    struct mosquitto *m;
    size_t idx;
    int fd;
    bool connected, subscribed, dead, epollout;
    unsigned inflight; /* QoS 1 publishes without a PUBACK */
    char id[FLEET_ID_MAX + 1];
};

struct fleet {
    int epfd;
    struct fleet_client *c;
    size_t n;
    size_t connected, subscribed, dead;
    uint64_t published, acked, received;
    char sub_fmt[FLEET_TOPIC_MAX]; /* "vm/%s/command" or "": no subscription */
    fleet_msg_fn *on_msg;
    void *arg;
    uint64_t last_misc_us;
};

struct fleet_config {
    const char *host;
    uint16_t port;
    const char *prefix;        /* machine ids: prefix + %05u */
    const char *client_prefix; /* client id = client_prefix + machine id */
    unsigned first;            /* number of client 0's machine, e.g. 1 */
    size_t n;
    const char *sub_fmt;  /* per-client subscription with one %s for the machine id, or NULL */
    fleet_msg_fn *on_msg; /* needed with sub_fmt */
    void *arg;
};

/*
 * Create and connect every client, keeping at most 64 handshakes open at once (a burst of
 * thousands overflows the broker's listen backlog, and a dropped SYN costs a second), and
 * wait until all are connected (and subscribed) or timeout_ms passes. 0, or -1 after a line
 * on stderr; fleet_close() in either case.
 */
int fleet_open(struct fleet *f, int epfd, const struct fleet_config *cfg, int timeout_ms);
void fleet_close(struct fleet *f);

/* Handle an epoll event of one of the fleet's clients. */
void fleet_event(struct fleet_client *c, uint32_t events);
/* Keepalive for every client; call at least once a second (cheap otherwise: rate limited). */
void fleet_misc(struct fleet *f);

bool fleet_can_publish(const struct fleet *f, size_t i, int qos, unsigned window);
/* Publish from outside libmosquitto's callbacks (written at once) or inside one (queued). */
int fleet_publish(struct fleet *f, size_t i, const char *topic, const void *payload, int len,
                  int qos, bool retain);
/* After a publish inside a callback of another client: flush it. */
void fleet_flush(struct fleet_client *c);

#endif
