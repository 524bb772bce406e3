/*
 * mqtt.c - libmosquitto 2.0 on the daemon's loop. See mqtt.h for the
 * contract and docs/internals/mqtt.md for the design.
 *
 * Connection life cycle (one struct mosquitto per connection):
 *
 *   IDLE --start--> PROBE --TCP ok--> CONNACK --CONNACK 0--> UP
 *                     |                  |                    |
 *                     +--fail--> WAIT <--+--refused/lost------+
 *                                 |
 *                                 +--backoff timer--> PROBE
 *
 * PROBE is a non-blocking TCP connect of our own, so a dead or black-holed
 * host costs the loop nothing; only when the broker accepted a TCP
 * connection do we call the (blocking) mosquitto_connect_bind_v5(), which
 * then returns in about one round trip. libmosquitto callbacks only record
 * what happened; the teardown of a handle happens after the libmosquitto
 * call that fired them has returned (destroying a handle inside its own
 * callback would be a use-after-free).
 */
#include "mqtt.h"

#include "log.h"
#include "loop.h"
#include "xmalloc.h"

#include <vend/err.h>

#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define KEEPALIVE_S        30
#define MISC_INTERVAL_MS   1000
#define PROBE_TIMEOUT_MS   3000
#define CONNACK_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS     500
#define BACKOFF_MAX_MS     30000
/* A connection must last this long before the backoff starts again from the minimum, so a
 * flapping one (another client with our id, a broker that drops us) backs off too. */
#define STABLE_MS 10000
/* A burst of inbound QoS1 (a fleet reconnecting) must not be throttled to 20 in flight. */
#define RECEIVE_MAXIMUM 1000
#define MAX_ADDRS       4
#define REASON_MAX      128

enum conn_state {
    ST_IDLE,    /* not started */
    ST_WAIT,    /* backoff timer pending */
    ST_PROBE,   /* our non-blocking TCP connect in progress */
    ST_CONNACK, /* CONNECT sent, waiting for CONNACK */
    ST_UP,      /* connected */
};

struct mqtt_client {
    struct loop *loop;
    char *host;
    uint16_t port;
    bool tls;
    char *ca_file;
    char *username;
    char *password;
    char *client_id;
    char **subs;
    int *sub_mids; /* mid of the SUBSCRIBE for subs[i] on the current connection */
    size_t nsubs;
    uint32_t session_expiry_s;

    mqtt_message_fn *on_message;
    mqtt_state_fn *on_state;
    void (*after_burst)(void *arg);
    void *arg;
    char *label; /* "" or "telemetry " for log lines */

    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addrlens[MAX_ADDRS];
    size_t naddrs;
    size_t addr_idx;
    int last_errno;

    enum conn_state state;
    struct mosquitto *mosq;
    int mosq_fd;
    unsigned mosq_events;
    int probe_fd;
    uint64_t retry_timer;
    uint64_t probe_timer;
    uint64_t connack_timer;
    uint64_t misc_timer;

    uint32_t backoff_ms;
    uint64_t up_since_ms; /* loop time of the last CONNACK success */
    bool refused;         /* last CONNACK refused us: retry at the maximum interval */
    bool lost;            /* set by on_disconnect; acted on after the library call returns */
    bool ever_up;         /* for stats.reconnects */
    unsigned in_lib;      /* > 0 while inside a mosquitto_loop_* call (callbacks may run) */
    char lost_reason[REASON_MAX];
    char tls_error[REASON_MAX]; /* OpenSSL's first error of this connection attempt, or "" */
    uint64_t rng;               /* jitter only; no need for quality */
    struct mqtt_stats stats;
};

static void attempt(struct mqtt_client *c);
static void probe_next(struct mqtt_client *c);
static void mosq_io(void *arg, int fd, unsigned events);

int mqtt_lib_init(void)
{
    return mosquitto_lib_init() == MOSQ_ERR_SUCCESS ? VEND_OK : VEND_EINTERNAL;
}

void mqtt_lib_cleanup(void)
{
    mosquitto_lib_cleanup();
}

/* libmosquitto's disconnect rc is a MOSQ_ERR_* or, for a server DISCONNECT, a v5 reason. */
static const char *disconnect_reason(int rc)
{
    if (rc >= 0x80)
        return mosquitto_reason_string(rc);
    return mosquitto_strerror(rc);
}

static uint32_t jitter(struct mqtt_client *c, uint32_t base)
{
    /* xorshift64; "equal jitter": uniform in [base/2, base]. */
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return base / 2 + (uint32_t)(c->rng % (base / 2 + 1));
}

static void retry_fire(void *arg)
{
    struct mqtt_client *c = arg;

    c->retry_timer = 0;
    attempt(c);
}

/* Arm the backoff timer; returns the delay for the caller's log line. */
static uint32_t schedule_retry(struct mqtt_client *c)
{
    uint32_t delay;

    if (c->refused)
        c->backoff_ms = BACKOFF_MAX_MS;
    delay = jitter(c, c->backoff_ms);
    c->backoff_ms = c->backoff_ms >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    c->state = ST_WAIT;
    c->retry_timer = loop_timer_add(c->loop, delay, retry_fire, c);
    return delay;
}

/* libmosquitto's texts end in a full stop; ours put them mid-sentence. */
static int text_len(const char *s)
{
    size_t n = strlen(s);

    return (int)(n > 0 && s[n - 1] == '.' ? n - 1 : n);
}

static void connect_failed(struct mqtt_client *c, const char *reason)
{
    uint32_t delay = schedule_retry(c);

    /* libmosquitto says only "A TLS error occurred" or "connection closed": OpenSSL's own
     * reason is what tells a wrong MQTT_CA_FILE from a wrong port. */
    if (c->tls_error[0] != '\0') {
        char hint[REASON_MAX + 4200] = "";

        if (strstr(c->tls_error, "certificate verify failed") != NULL)
            snprintf(hint, sizeof(hint),
                     " (the broker's certificate is not signed by %s%s%s, or names another host)",
                     c->ca_file != NULL ? "MQTT_CA_FILE '" : "the system's CAs",
                     c->ca_file != NULL ? c->ca_file : "", c->ca_file != NULL ? "'" : "");
        log_warnx("MQTT connect to %s:%u failed: TLS: %s%s; retrying in %u ms", c->host,
                  (unsigned)c->port, c->tls_error, hint, (unsigned)delay);
        c->tls_error[0] = '\0';
        return;
    }
    log_warnx("MQTT connect to %s:%u failed: %.*s; retrying in %u ms", c->host, (unsigned)c->port,
              text_len(reason), reason, (unsigned)delay);
}

/* libmosquitto's log: only OpenSSL's errors are kept, for connect_failed(). */
static void on_log(struct mosquitto *m, void *arg, int level, const char *line)
{
    static const char prefix[] = "OpenSSL Error";
    struct mqtt_client *c = arg;
    const char *why;

    (void)m;
    if (!(level & MOSQ_LOG_ERR) || strncmp(line, prefix, sizeof(prefix) - 1) != 0 ||
        c->tls_error[0] != '\0')
        return;
    /* "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed" */
    why = strrchr(line, ':');
    why = why != NULL && why[1] != '\0' ? why + 1 : line;
    snprintf(c->tls_error, sizeof(c->tls_error), "%s", why);
}

/* Keep the loop's interest in the libmosquitto socket in step with the library. */
static void sync_events(struct mqtt_client *c)
{
    int fd = c->mosq ? mosquitto_socket(c->mosq) : -1;
    unsigned want = LOOP_READ;

    if (fd >= 0 && mosquitto_want_write(c->mosq))
        want |= LOOP_WRITE;
    if (fd != c->mosq_fd) {
        if (c->mosq_fd >= 0)
            loop_io_del(c->loop, c->mosq_fd);
        c->mosq_fd = -1;
        if (fd < 0)
            return;
        if (loop_io_add(c->loop, fd, want, mosq_io, c) < 0) {
            /* unreachable: fd is new to the loop */
            fatalx("cannot watch MQTT socket %d", fd);
        }
        c->mosq_fd = fd;
        c->mosq_events = want;
        return;
    }
    if (fd >= 0 && want != c->mosq_events) {
        loop_io_set(c->loop, fd, want);
        c->mosq_events = want;
    }
}

/* Drop the current handle (never from inside one of its callbacks). */
static void teardown(struct mqtt_client *c, const char *reason)
{
    bool was_up = c->state == ST_UP;
    uint32_t delay;

    if (c->mosq_fd >= 0)
        loop_io_del(c->loop, c->mosq_fd);
    c->mosq_fd = -1;
    mosquitto_destroy(c->mosq);
    c->mosq = NULL;
    if (c->connack_timer)
        loop_timer_del(c->loop, c->connack_timer);
    c->connack_timer = 0;
    c->lost = false;

    if (!was_up) {
        connect_failed(c, reason);
        return;
    }
    if (loop_now_ms(c->loop) - c->up_since_ms >= STABLE_MS)
        c->backoff_ms = BACKOFF_MIN_MS;
    delay = schedule_retry(c);
    log_warnx("MQTT %sconnection to broker lost: %s; reconnecting in %u ms", c->label, reason,
              (unsigned)delay);
    if (c->on_state)
        c->on_state(c->arg, false);
}

/* After any libmosquitto call from our loop callbacks: act on what its callbacks recorded. */
static void after_call(struct mqtt_client *c)
{
    if (!c->mosq)
        return;
    if (c->lost || mosquitto_socket(c->mosq) < 0) {
        teardown(c, c->lost ? c->lost_reason : "connection closed");
        return;
    }
    sync_events(c);
}

/*
 * Inside a callback: a connection vendd cannot use as it is (a subscription missing makes
 * it deaf to a topic while it looks healthy). Drop it and retry at the maximum interval, as
 * for a refused CONNACK, so the log says why every 30 s until the broker is fixed.
 */
static void give_up_connection(struct mqtt_client *c, const char *what, const char *topic,
                               const char *why)
{
    if (c->lost)
        return;
    c->refused = true;
    c->lost = true;
    snprintf(c->lost_reason, sizeof(c->lost_reason), "%s '%s': %s", what, topic, why);
}

static void on_connect(struct mosquitto *m, void *arg, int rc, int flags,
                       const mosquitto_property *props)
{
    struct mqtt_client *c = arg;
    size_t i;
    int mrc;

    (void)props;
    if (c->connack_timer)
        loop_timer_del(c->loop, c->connack_timer);
    c->connack_timer = 0;
    if (rc != 0) {
        /* Bad credentials or a banned id: the operator may fix the password
         * file, so keep trying, but slowly. */
        c->refused = true;
        c->lost = true;
        snprintf(c->lost_reason, sizeof(c->lost_reason), "broker refused the connection: %s",
                 mosquitto_reason_string(rc));
        return;
    }
    c->refused = false;
    c->up_since_ms = loop_now_ms(c->loop);
    c->state = ST_UP;
    if (c->ever_up)
        c->stats.reconnects++;
    c->ever_up = true;
    log_info("MQTT %sconnected to broker", c->label);
    log_debug("MQTT broker %s:%u, session %s", c->host, (unsigned)c->port,
              (flags & 1) ? "resumed" : "new");
    /* Always (re)subscribe: a broker restarted without persistence has lost
     * our session even if we asked for one. SEND_RETAIN_NEW keeps a resumed
     * subscription from replaying every retained status. */
    for (i = 0; i < c->nsubs; i++) {
        c->sub_mids[i] = 0;
        mrc = mosquitto_subscribe_v5(m, &c->sub_mids[i], c->subs[i], 1,
                                     MQTT_SUB_OPT_SEND_RETAIN_NEW, NULL);
        if (mrc != MOSQ_ERR_SUCCESS) {
            give_up_connection(c, "cannot subscribe to", c->subs[i], mosquitto_strerror(mrc));
            return;
        }
    }
    if (c->on_state)
        c->on_state(c->arg, true);
}

static void on_disconnect(struct mosquitto *m, void *arg, int rc, const mosquitto_property *props)
{
    struct mqtt_client *c = arg;

    (void)m;
    (void)props;
    if (c->lost)
        return; /* keep the first reason (e.g. CONNACK refused) */

    c->lost = true;
    snprintf(c->lost_reason, sizeof(c->lost_reason), "%.*s", text_len(disconnect_reason(rc)),
             disconnect_reason(rc));
}

static void on_subscribe(struct mosquitto *m, void *arg, int mid, int count, const int *granted,
                         const mosquitto_property *props)
{
    struct mqtt_client *c = arg;
    size_t i;

    (void)m;
    (void)props;
    for (i = 0; i < c->nsubs; i++) {
        if (c->sub_mids[i] != mid)
            continue;
        if (count >= 1 && granted[0] < 0x80)
            log_info("Subscribed to %s", c->subs[i]);
        else
            give_up_connection(c, "broker refused the subscription to", c->subs[i],
                               count >= 1 ? mosquitto_reason_string(granted[0]) : "no reason code");
        return;
    }
}

static void on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct mqtt_client *c = arg;
    const void *payload = msg->payload ? msg->payload : "";
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;

    (void)m;
    (void)props;
    c->stats.received++;
    /* Size policy (> 4 KiB) belongs to the handler, which counts it; the
     * CONNECT Maximum-Packet-Size already bounds what can arrive here. */
    c->on_message(c->arg, msg->topic, payload, len, msg->retain);
}

static void connack_timeout(void *arg)
{
    struct mqtt_client *c = arg;

    c->connack_timer = 0;
    teardown(c, "no CONNACK within 10 s");
}

/* A fresh handle per connection: nothing queued on a dead one survives. */
static int handle_new(struct mqtt_client *c, struct mosquitto **out)
{
    struct mosquitto *m;
    int rc;

    *out = NULL;
    m = mosquitto_new(c->client_id, false, c);
    if (!m)
        return MOSQ_ERR_NOMEM;
    rc = mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (rc != MOSQ_ERR_SUCCESS)
        goto out;
    rc = mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        goto out;
    rc = mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, RECEIVE_MAXIMUM);
    if (rc != MOSQ_ERR_SUCCESS)
        goto out;
    if (c->username) {
        rc = mosquitto_username_pw_set(m, c->username, c->password);
        if (rc != MOSQ_ERR_SUCCESS)
            goto out;
    }
    if (c->tls) {
        /* TLS is on with either; mosquitto_tls_set() refuses a NULL CA file and path, so it
         * is only for an explicit MQTT_CA_FILE. The broker is verified in both cases. */
        if (c->ca_file)
            rc = mosquitto_tls_set(m, c->ca_file, NULL, NULL, NULL, NULL);
        else
            rc = mosquitto_int_option(m, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
        if (rc != MOSQ_ERR_SUCCESS)
            goto out;
        mosquitto_log_callback_set(m, on_log);
    }
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_disconnect_v5_callback_set(m, on_disconnect);
    mosquitto_subscribe_v5_callback_set(m, on_subscribe);
    mosquitto_message_v5_callback_set(m, on_message);
    *out = m;
    m = NULL;
out:
    mosquitto_destroy(m);
    return rc;
}

static int connect_props(const struct mqtt_client *c, mosquitto_property **props)
{
    int rc;

    *props = NULL;
    rc =
        mosquitto_property_add_int32(props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, c->session_expiry_s);
    if (rc != MOSQ_ERR_SUCCESS)
        goto out;
    rc =
        mosquitto_property_add_int32(props, MQTT_PROP_MAXIMUM_PACKET_SIZE, MQTT_MAX_INBOUND_PACKET);
out:
    if (rc != MOSQ_ERR_SUCCESS)
        mosquitto_property_free_all(props);
    return rc;
}

/* The broker accepted TCP on addrs[addr_idx]: now the MQTT (and TLS) handshake. */
static void mosq_connect(struct mqtt_client *c)
{
    char numeric[NI_MAXHOST];
    const char *host = c->host;
    mosquitto_property *props = NULL;
    struct mosquitto *m = NULL;
    int rc, saved_errno = 0;

    /* Plain TCP: the address we just probed, so libmosquitto resolves
     * nothing. TLS: the name, because the certificate is checked against it.
     * NEEDSWORK: with TLS, libmosquitto resolves again and connects in blocking mode to
     * each address in turn; a dead first address (a broken IPv6 record) stalls the loop
     * up to the kernel's connect timeout. Fix: our own SSL_CTX (MOSQ_OPT_SSL_CTX) with the
     * host name checked by X509_VERIFY_PARAM_set1_host, connecting to the probed address. */
    if (!c->tls && getnameinfo((struct sockaddr *)&c->addrs[c->addr_idx], c->addrlens[c->addr_idx],
                               numeric, sizeof(numeric), NULL, 0, NI_NUMERICHOST) == 0)
        host = numeric;
    c->tls_error[0] = '\0';
    rc = handle_new(c, &m);
    if (rc != MOSQ_ERR_SUCCESS)
        goto out;
    rc = connect_props(c, &props);
    if (rc != MOSQ_ERR_SUCCESS)
        goto out;
    rc = mosquitto_connect_bind_v5(m, host, c->port, KEEPALIVE_S, NULL, props);
    saved_errno = errno; /* the cleanup below may clobber it */
    if (rc != MOSQ_ERR_SUCCESS)
        goto out;
    c->mosq = m;
    m = NULL;
    c->lost = false;
    c->state = ST_CONNACK;
    c->connack_timer = loop_timer_add(c->loop, CONNACK_TIMEOUT_MS, connack_timeout, c);
    sync_events(c);
out:
    mosquitto_property_free_all(&props);
    mosquitto_destroy(m);
    if (rc != MOSQ_ERR_SUCCESS)
        connect_failed(c, rc == MOSQ_ERR_ERRNO ? strerror(saved_errno) : mosquitto_strerror(rc));
}

static void probe_close(struct mqtt_client *c)
{
    if (c->probe_timer)
        loop_timer_del(c->loop, c->probe_timer);
    c->probe_timer = 0;
    if (c->probe_fd >= 0) {
        loop_io_del(c->loop, c->probe_fd);
        close(c->probe_fd);
    }
    c->probe_fd = -1;
}

static void probe_io(void *arg, int fd, unsigned events)
{
    struct mqtt_client *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)events;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    probe_close(c);
    if (err == 0) {
        mosq_connect(c);
        return;
    }
    c->last_errno = err;
    c->addr_idx++;
    probe_next(c);
}

static void probe_timeout(void *arg)
{
    struct mqtt_client *c = arg;

    c->probe_timer = 0;
    probe_close(c);
    c->last_errno = ETIMEDOUT;
    c->addr_idx++;
    probe_next(c);
}

/* Try addrs[addr_idx..]: a non-blocking connect, watched by the loop. */
static void probe_next(struct mqtt_client *c)
{
    const struct sockaddr *sa;
    int fd;

    for (; c->addr_idx < c->naddrs; c->addr_idx++) {
        sa = (const struct sockaddr *)&c->addrs[c->addr_idx];
        fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c->last_errno = errno;
            continue;
        }
        if (connect(fd, sa, c->addrlens[c->addr_idx]) == 0) {
            close(fd);
            mosq_connect(c);
            return;
        }
        if (errno != EINPROGRESS) {
            c->last_errno = errno;
            close(fd);
            continue;
        }
        if (loop_io_add(c->loop, fd, LOOP_WRITE, probe_io, c) < 0) {
            c->last_errno = EBADF;
            close(fd);
            continue;
        }
        c->probe_fd = fd;
        c->probe_timer = loop_timer_add(c->loop, PROBE_TIMEOUT_MS, probe_timeout, c);
        c->state = ST_PROBE;
        return;
    }
    /* Every address failed: the broker may have moved, so resolve again next time. */
    c->naddrs = 0;
    connect_failed(c, strerror(c->last_errno));
}

/*
 * Resolve the broker's name: at the first attempt and after every address failed.
 * NEEDSWORK: getaddrinfo blocks the loop while the resolver is slow or down (bounded by
 * the resolver's timeout, once per backoff step); a resolver thread would remove that.
 */
static int resolve(struct mqtt_client *c, const char **reason)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[8];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", (unsigned)c->port);
    rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc != 0) {
        *reason = gai_strerror(rc);
        return VEND_EUNAVAILABLE;
    }
    c->naddrs = 0;
    for (ai = res; ai && c->naddrs < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(c->addrs[0]))
            continue;
        memcpy(&c->addrs[c->naddrs], ai->ai_addr, ai->ai_addrlen);
        c->addrlens[c->naddrs] = ai->ai_addrlen;
        c->naddrs++;
    }
    freeaddrinfo(res);
    if (c->naddrs == 0) {
        *reason = "no usable address";
        return VEND_EUNAVAILABLE;
    }
    return VEND_OK;
}

static void attempt(struct mqtt_client *c)
{
    const char *reason = NULL;

    if (c->naddrs == 0 && resolve(c, &reason) < 0) {
        connect_failed(c, reason);
        return;
    }
    c->addr_idx = 0;
    c->last_errno = ECONNREFUSED;
    probe_next(c);
}

/*
 * Hold (on) or send (off) what is written to fd. libmosquitto writes each PUBACK with its own
 * send() as the PUBLISH is read; with TCP_NODELAY every one was a TCP segment of its own, the
 * broker's to receive: 9 % of vendd's CPU per telemetry message (perf). Corked for the length
 * of a read burst, the burst's acknowledgements leave together at its end. Nothing else
 * waits: what the burst's callbacks publish is queued by libmosquitto until after the burst
 * anyway. Best effort: without TCP_CORK, each PUBACK goes alone as before.
 */
static void cork(int fd, bool on)
{
#ifdef TCP_CORK
    int v = on ? 1 : 0;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, sizeof(v));
#else
    (void)fd;
    (void)on;
#endif
}

static void mosq_io(void *arg, int fd, unsigned events)
{
    struct mqtt_client *c = arg;
    int corked = -1;

    (void)fd;
    if (!c->mosq)
        return;
    c->in_lib++;
    if (events & LOOP_READ) {
        corked = mosquitto_socket(c->mosq);
        if (corked >= 0)
            cork(corked, true);
        /* libmosquitto reads one packet per call: keep reading while packets keep
         * delivering messages, so a burst is handled (and committed) as one. */
        for (unsigned i = 0; i < MQTT_READ_BURST; i++) {
            uint64_t before = c->stats.received;

            if (mosquitto_loop_read(c->mosq, 1) != MOSQ_ERR_SUCCESS || c->lost ||
                c->stats.received == before || mosquitto_socket(c->mosq) < 0)
                break;
        }
        if (c->after_burst != NULL)
            c->after_burst(c->arg);
    }
    /* Also flush what callbacks just queued (SUBSCRIBEs after CONNACK,
     * replies from on_message) instead of waiting one more poll. */
    if (!c->lost && mosquitto_socket(c->mosq) >= 0 &&
        ((events & LOOP_WRITE) || mosquitto_want_write(c->mosq)))
        mosquitto_loop_write(c->mosq, 1);
    /* Only the socket corked above, if it is still this connection's (a lost one is closed,
     * and its number may already be another's). */
    if (corked >= 0 && !c->lost && mosquitto_socket(c->mosq) == corked)
        cork(corked, false);
    c->in_lib--;
    after_call(c);
}

static void misc_fire(void *arg)
{
    struct mqtt_client *c = arg;

    c->misc_timer = loop_timer_add(c->loop, MISC_INTERVAL_MS, misc_fire, c);
    if (!c->mosq)
        return;
    /* Keepalive: sends PINGREQ, and drops a connection whose PINGRESP is overdue. */
    c->in_lib++;
    mosquitto_loop_misc(c->mosq);
    c->in_lib--;
    after_call(c);
}

static int check_str(const char *field, const char *s, size_t max, bool required)
{
    if (!s) {
        if (!required)
            return VEND_OK;
        log_warnx("invalid MQTT configuration: '%s' is missing", field);
        return VEND_EINVAL;
    }
    if (s[0] == '\0' || strnlen(s, max + 1) > max) {
        log_warnx("invalid MQTT configuration: '%s' must be 1..%zu bytes", field, max);
        return VEND_EINVAL;
    }
    return VEND_OK;
}

static int check_config(const struct mqtt_config *cfg)
{
    size_t i;
    int rc;

    rc = check_str("host", cfg->host, MQTT_MAX_HOST, true);
    if (rc < 0)
        return rc;
    rc = check_str("client_id", cfg->client_id, MQTT_MAX_CLIENT_ID, true);
    if (rc < 0)
        return rc;
    if (mosquitto_validate_utf8(cfg->client_id, (int)strlen(cfg->client_id)) != MOSQ_ERR_SUCCESS) {
        log_warnx("invalid MQTT configuration: 'client_id' is not UTF-8");
        return VEND_EINVAL;
    }
    rc = check_str("username", cfg->username, 65535, false);
    if (rc < 0)
        return rc;
    if (cfg->password && !cfg->username) {
        log_warnx("invalid MQTT configuration: 'password' given without 'username'");
        return VEND_EINVAL;
    }
    if (cfg->password && strnlen(cfg->password, 65536) > 65535) {
        log_warnx("invalid MQTT configuration: 'password' is longer than 65535 bytes");
        return VEND_EINVAL;
    }
    rc = check_str("ca_file", cfg->ca_file, 4096, false);
    if (rc < 0)
        return rc;
    if (cfg->port == 0) {
        log_warnx("invalid MQTT configuration: 'port' must be 1..65535");
        return VEND_EINVAL;
    }
    if (cfg->nsubscriptions > MQTT_MAX_SUBSCRIPTIONS ||
        (cfg->nsubscriptions > 0 && !cfg->subscriptions)) {
        log_warnx("invalid MQTT configuration: 'subscriptions' must be 0..%d filters",
                  MQTT_MAX_SUBSCRIPTIONS);
        return VEND_EINVAL;
    }
    for (i = 0; i < cfg->nsubscriptions; i++) {
        if (!cfg->subscriptions[i] || strnlen(cfg->subscriptions[i], 65536) > 65535 ||
            mosquitto_sub_topic_check(cfg->subscriptions[i]) != MOSQ_ERR_SUCCESS) {
            log_warnx("invalid MQTT configuration: subscription %zu is not a topic filter", i);
            return VEND_EINVAL;
        }
    }
    return VEND_OK;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

int mqtt_client_new(struct mqtt_client **out, struct loop *loop, const struct mqtt_config *cfg,
                    mqtt_message_fn *on_message_fn, mqtt_state_fn *on_state, void *arg)
{
    struct mqtt_client *c;
    size_t i, n;
    int rc;

    *out = NULL;
    if (!loop || !cfg || !on_message_fn) {
        log_warnx("mqtt_client_new: loop, configuration and message handler are required");
        return VEND_EINVAL;
    }
    rc = check_config(cfg);
    if (rc < 0)
        return rc;
    c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->host = xstrdup(cfg->host);
    c->port = cfg->port;
    c->tls = cfg->tls;
    c->ca_file = dup_or_null(cfg->ca_file);
    c->username = dup_or_null(cfg->username);
    c->password = dup_or_null(cfg->password);
    c->client_id = xstrdup(cfg->client_id);
    c->nsubs = cfg->nsubscriptions;
    c->subs = xcalloc(c->nsubs ? c->nsubs : 1, sizeof(*c->subs));
    c->sub_mids = xcalloc(c->nsubs ? c->nsubs : 1, sizeof(*c->sub_mids));
    for (i = 0; i < c->nsubs; i++)
        c->subs[i] = xstrdup(cfg->subscriptions[i]);
    c->session_expiry_s = cfg->session_expiry_s;
    c->on_message = on_message_fn;
    c->after_burst = cfg->after_burst;
    n = cfg->label != NULL ? strnlen(cfg->label, MQTT_MAX_LABEL) + 2 : 1;
    c->label = xmalloc(n);
    snprintf(c->label, n, "%.*s%s", MQTT_MAX_LABEL, cfg->label != NULL ? cfg->label : "",
             cfg->label != NULL ? " " : "");
    c->on_state = on_state;
    c->arg = arg;
    c->state = ST_IDLE;
    c->mosq_fd = -1;
    c->probe_fd = -1;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->rng = ((uint64_t)(uintptr_t)c << 16) ^ loop_now_ms(loop) ^ (uint64_t)getpid();
    if (c->rng == 0)
        c->rng = 0x9e3779b97f4a7c15u;
    *out = c;
    return VEND_OK;
}

int mqtt_client_start(struct mqtt_client *c)
{
    if (c->state != ST_IDLE)
        return VEND_ESTATE;
    c->misc_timer = loop_timer_add(c->loop, MISC_INTERVAL_MS, misc_fire, c);
    attempt(c);
    return VEND_OK;
}

bool mqtt_client_connected(const struct mqtt_client *c)
{
    return c != NULL && c->state == ST_UP && !c->lost;
}

const struct mqtt_stats *mqtt_client_stats(const struct mqtt_client *c)
{
    return &c->stats;
}

static int publish_rc(int mrc)
{
    switch (mrc) {
    case MOSQ_ERR_SUCCESS:
        return VEND_OK;
    case MOSQ_ERR_NO_CONN:
        /* The handle is dropped before any reconnect, so this is never sent. */
        return VEND_EUNAVAILABLE;
    case MOSQ_ERR_NOMEM:
        return VEND_ENOMEM;
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_OVERSIZE_PACKET:
        return VEND_ETOOBIG;
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_MALFORMED_UTF8:
    case MOSQ_ERR_QOS_NOT_SUPPORTED:
        return VEND_EINVAL;
    default:
        return VEND_EIO;
    }
}

int mqtt_client_publish(struct mqtt_client *c, const char *topic, const void *payload, size_t len,
                        int qos, bool retain, uint32_t expiry_s)
{
    mosquitto_property *props = NULL;
    int mrc, rc;

    if (!topic || mosquitto_pub_topic_check(topic) != MOSQ_ERR_SUCCESS ||
        strnlen(topic, 65536) > 65535) {
        log_warnx("cannot publish to '%s': not a valid topic name", topic ? topic : "(null)");
        return VEND_EINVAL;
    }
    if (qos != 0 && qos != 1) {
        log_warnx("cannot publish to '%s': QoS %d not supported", topic, qos);
        return VEND_EINVAL;
    }
    if (len > MQTT_MAX_PUBLISH || (len > 0 && !payload)) {
        log_warnx("cannot publish to '%s': payload of %zu bytes over %d", topic, len,
                  MQTT_MAX_PUBLISH);
        return VEND_ETOOBIG;
    }
    /* Never hand libmosquitto a message while down: it would queue a QoS1
     * message and deliver it late (docs/internals/mqtt.md, "Publishing once"). */
    if (!mqtt_client_connected(c) || !c->mosq)
        return VEND_EUNAVAILABLE;
    if (expiry_s > 0) {
        mrc = mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, expiry_s);
        if (mrc != MOSQ_ERR_SUCCESS) {
            rc = VEND_ENOMEM;
            goto out;
        }
    }
    mrc = mosquitto_publish_v5(c->mosq, NULL, topic, (int)len, payload, qos, retain, props);
    rc = publish_rc(mrc);
    if (rc == VEND_OK) {
        c->stats.published++;
    } else {
        c->stats.publish_failed++;
        log_warnx("cannot publish to '%s': %.*s", topic, text_len(mosquitto_strerror(mrc)),
                  mosquitto_strerror(mrc));
    }
    /* Inside a libmosquitto callback the packet is only queued; the io
     * callback that is running syncs write interest when it returns. */
    if (c->in_lib == 0)
        after_call(c);
out:
    mosquitto_property_free_all(&props);
    return rc;
}

void mqtt_client_free(struct mqtt_client *c)
{
    size_t i;

    if (!c)
        return;
    if (c->mosq && c->state == ST_UP && !c->lost) {
        /* Outside a callback this writes the DISCONNECT at once. */
        mosquitto_disconnect_v5(c->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        if (mosquitto_want_write(c->mosq))
            mosquitto_loop_write(c->mosq, 1);
    }
    if (c->mosq_fd >= 0)
        loop_io_del(c->loop, c->mosq_fd);
    mosquitto_destroy(c->mosq);
    probe_close(c);
    if (c->retry_timer)
        loop_timer_del(c->loop, c->retry_timer);
    if (c->connack_timer)
        loop_timer_del(c->loop, c->connack_timer);
    if (c->misc_timer)
        loop_timer_del(c->loop, c->misc_timer);
    for (i = 0; i < c->nsubs; i++)
        free(c->subs[i]);
    free(c->subs);
    free(c->sub_mids);
    if (c->password)
        explicit_bzero(c->password, strlen(c->password));
    free(c->password);
    free(c->username);
    free(c->ca_file);
    free(c->client_id);
    free(c->label);
    free(c->host);
    free(c);
}
