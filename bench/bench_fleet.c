/* bench_fleet.c - many libmosquitto clients on one epoll set, without libmosquitto's thread. */
#define _GNU_SOURCE
#include "bench_fleet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

#include <mqtt_protocol.h>

#include "bench_util.h"

#define HANDSHAKES_MAX 64
#define KEEPALIVE_S    60
#define READS_MAX      256 /* packets read per readiness before others get their turn */

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
    struct fleet_client *c = arg;
    char topic[FLEET_TOPIC_MAX + FLEET_ID_MAX];

    if (rc != 0) {
        fprintf(stderr, "fleet: broker refused client '%s': %s\n", c->id,
                mosquitto_connack_string(rc));
        return;
    }
    c->connected = true;
    c->f->connected++;
    if (c->f->sub_fmt[0] == '\0')
        return;
        /* The format is the caller's, with one %s: checked in fleet_open(). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(topic, sizeof(topic), c->f->sub_fmt, c->id);
#pragma GCC diagnostic pop
    if (mosquitto_subscribe(m, NULL, topic, 1) != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "fleet: cannot subscribe '%s' to '%s'\n", c->id, topic);
}

static void on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *granted)
{
    struct fleet_client *c = arg;

    (void)m;
    (void)mid;
    if (n >= 1 && granted[0] <= 1 && !c->subscribed) {
        c->subscribed = true;
        c->f->subscribed++;
    }
}

static void on_publish(struct mosquitto *m, void *arg, int mid)
{
    struct fleet_client *c = arg;

    (void)m;
    (void)mid;
    /* QoS 1: the PUBACK. QoS 0: libmosquitto calls this once the packet is written. */
    if (c->inflight > 0)
        c->inflight--;
    c->f->acked++;
}

static void on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    struct fleet_client *c = arg;

    (void)m;
    c->f->received++;
    if (c->f->on_msg != NULL)
        c->f->on_msg(c->f, c->idx, msg->topic, msg->payload, msg->payloadlen, c->f->arg);
}

static void mark_dead(struct fleet_client *c, int rc)
{
    if (c->dead)
        return;
    fprintf(stderr, "fleet: client '%s' lost its connection: %s\n", c->id, mosquitto_strerror(rc));
    c->dead = true;
    c->f->dead++;
    if (c->fd >= 0)
        epoll_ctl(c->f->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->fd = -1;
}

/* Write what libmosquitto holds, then ask epoll for writability only while some remains. */
void fleet_flush(struct fleet_client *c)
{
    struct epoll_event ev;
    bool want;
    int rc;

    if (c->dead || c->fd < 0)
        return;
    if (mosquitto_want_write(c->m)) {
        rc = mosquitto_loop_write(c->m, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            mark_dead(c, rc);
            return;
        }
    }
    want = mosquitto_want_write(c->m);
    if (want == c->epollout)
        return;
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(c->f->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->epollout = want;
}

void fleet_event(struct fleet_client *c, uint32_t events)
{
    int rc, avail;

    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        /* One packet per call: read while the socket holds more, bounded for fairness. */
        for (int k = 0; k < READS_MAX; k++) {
            rc = mosquitto_loop_read(c->m, 1);
            if (rc != MOSQ_ERR_SUCCESS) {
                mark_dead(c, rc);
                return;
            }
            if (ioctl(c->fd, FIONREAD, &avail) < 0 || avail <= 0)
                break;
        }
    }
    fleet_flush(c);
}

void fleet_misc(struct fleet *f)
{
    uint64_t now = bu_now_us();

    if (now - f->last_misc_us < 1000000)
        return;
    f->last_misc_us = now;
    for (size_t i = 0; i < f->n; i++) {
        if (!f->c[i].dead && f->c[i].m != NULL) {
            mosquitto_loop_misc(f->c[i].m);
            fleet_flush(&f->c[i]);
        }
    }
}

bool fleet_can_publish(const struct fleet *f, size_t i, int qos, unsigned window)
{
    const struct fleet_client *c = &f->c[i];

    return c->connected && !c->dead && !c->epollout && !mosquitto_want_write(c->m) &&
           (qos == 0 || c->inflight < window);
}

int fleet_publish(struct fleet *f, size_t i, const char *topic, const void *payload, int len,
                  int qos, bool retain)
{
    struct fleet_client *c = &f->c[i];
    int rc;

    if (qos == 1)
        c->inflight++;
    rc = mosquitto_publish(c->m, NULL, topic, len, payload, qos, retain);
    if (rc != MOSQ_ERR_SUCCESS) {
        if (qos == 1)
            c->inflight--;
        fprintf(stderr, "fleet: '%s' cannot publish on '%s': %s\n", c->id, topic,
                mosquitto_strerror(rc));
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST)
            mark_dead(c, rc);
        return -1;
    }
    f->published++;
    if (!c->epollout && mosquitto_want_write(c->m))
        fleet_flush(c);
    return 0;
}

static int client_start(struct fleet *f, const struct fleet_config *cfg, size_t i)
{
    struct fleet_client *c = &f->c[i];
    char cid[FLEET_ID_MAX * 2 + 2];
    struct epoll_event ev;
    int rc;

    c->kind = FLEET_KIND;
    c->f = f;
    c->idx = i;
    c->fd = -1;
    if (snprintf(c->id, sizeof(c->id), "%s%05u", cfg->prefix, cfg->first + (unsigned)i) >=
        (int)sizeof(c->id)) {
        fprintf(stderr, "fleet: machine id prefix '%s' too long\n", cfg->prefix);
        return -1;
    }
    snprintf(cid, sizeof(cid), "%s%s", cfg->client_prefix, c->id);
    c->m = mosquitto_new(cid, true, c);
    if (c->m == NULL) {
        fprintf(stderr, "fleet: cannot create client '%s': %s\n", cid, strerror(errno));
        return -1;
    }
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_message_callback_set(c->m, on_message);
    rc = mosquitto_connect(c->m, cfg->host, cfg->port, KEEPALIVE_S);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "fleet: client '%s' cannot connect to %s:%u: %s\n", cid, cfg->host,
                (unsigned)cfg->port,
                rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        return -1;
    }
    c->fd = mosquitto_socket(c->m);
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (c->fd < 0 || epoll_ctl(f->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        fprintf(stderr, "fleet: cannot watch the socket of '%s': %s\n", cid, strerror(errno));
        return -1;
    }
    fleet_flush(c);
    return 0;
}

static bool ready(const struct fleet *f, size_t upto)
{
    return f->connected >= upto && (f->sub_fmt[0] == '\0' || f->subscribed >= upto);
}

static void pump(struct fleet *f, int timeout_ms)
{
    struct epoll_event ev[256];
    int n = epoll_wait(f->epfd, ev, 256, timeout_ms);

    for (int k = 0; k < n; k++) {
        struct fleet_client *c = ev[k].data.ptr;

        if (c != NULL && c->kind == FLEET_KIND)
            fleet_event(c, ev[k].events);
    }
}

int fleet_open(struct fleet *f, int epfd, const struct fleet_config *cfg, int timeout_ms)
{
    uint64_t deadline = bu_now_us() + (uint64_t)timeout_ms * 1000u;
    const char *pct;
    size_t started = 0;

    memset(f, 0, sizeof(*f));
    f->epfd = epfd;
    f->on_msg = cfg->on_msg;
    f->arg = cfg->arg;
    if (cfg->sub_fmt != NULL) {
        pct = strchr(cfg->sub_fmt, '%');
        if (pct == NULL || pct[1] != 's' || strchr(pct + 1, '%') != NULL ||
            strlen(cfg->sub_fmt) >= sizeof(f->sub_fmt)) {
            fprintf(stderr, "fleet: subscription '%s' needs exactly one %%s\n", cfg->sub_fmt);
            return -1;
        }
        snprintf(f->sub_fmt, sizeof(f->sub_fmt), "%s", cfg->sub_fmt);
    }
    f->c = calloc(cfg->n, sizeof(*f->c));
    if (f->c == NULL) {
        fprintf(stderr, "fleet: out of memory for %zu clients\n", cfg->n);
        return -1;
    }
    f->n = cfg->n;
    for (size_t i = 0; i < f->n; i++)
        f->c[i].fd = -1;
    while (!ready(f, f->n)) {
        if (bu_now_us() > deadline || f->dead > 0) {
            fprintf(stderr,
                    "fleet: %zu of %zu clients connected, %zu subscribed, %zu lost after %d ms\n",
                    f->connected, f->n, f->subscribed, f->dead, timeout_ms);
            fleet_close(f);
            return -1;
        }
        while (started < f->n && started - f->connected < HANDSHAKES_MAX) {
            if (client_start(f, cfg, started++) < 0) {
                fleet_close(f);
                return -1;
            }
        }
        pump(f, 5);
    }
    f->last_misc_us = bu_now_us();
    return 0;
}

void fleet_close(struct fleet *f)
{
    if (f->c == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        struct fleet_client *c = &f->c[i];

        if (c->m == NULL)
            continue;
        if (c->fd >= 0) {
            epoll_ctl(f->epfd, EPOLL_CTL_DEL, c->fd, NULL);
            if (!c->dead && c->connected) {
                mosquitto_disconnect(c->m);
                mosquitto_loop_write(c->m, 1);
            }
        }
        mosquitto_destroy(c->m);
    }
    free(f->c);
    f->c = NULL;
    f->n = 0;
}
