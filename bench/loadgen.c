/*
 * loadgen.c - a fleet of machines publishing telemetry or status at a fixed rate, from one
 * process and one thread: N MQTT connections (vm00001, vm00002, ...), libmosquitto without
 * its thread, every socket on one epoll set (bench_fleet.h). docs/BENCH.md.
 *
 *   loadgen --port P --machines N [--first K] [--prefix vm] [--client-prefix lg-]
 *           [--qos 0|1] [--window W] [--host 127.0.0.1]
 *           (--kind telemetry|status --rate R --seconds S | --control)
 *
 * Pacing: message k of a run is due at t0 + k/R (R = 0: as fast as the sockets take them,
 * for S seconds). Due messages go round-robin to the next client that can take one: its
 * socket has taken its last packet and, at QoS 1, it has fewer than W (default 10) messages
 * without a PUBACK. No client ever queues more than one packet in memory, so a broker that
 * cannot keep up shows as lag (the run falls behind its schedule, reported as lag_max_ms and
 * the achieved rate), never as a growing heap.
 *
 * Payloads, the integration guide's (docs/PROTOCOL.md): telemetry
 * {"timestamp":"2025-11-04T10:30:00Z","slots":[{"id":1,"level":"FULL"},{"id":2,"level":"LOW"}],
 * "temperature":25.5,"door":"CLOSED"} on vm/{id}/telemetry; status
 * {"status":"ONLINE","door":"CLOSED","rssi":-65,"fw":"1.0.0"} on vm/{id}/status, retained as
 * the protocol has it.
 *
 * --control connects once and then runs one command per line of stdin, so a rate sweep does
 * not reconnect 10,000 clients per step: "pub KIND RATE SECONDS", "quit" (or EOF).
 * Every run prints one line:
 *   loadgen: kind=K qos=Q machines=N rate_target=R sent=N acked=N seconds=S rate=R
 *            lag_max_ms=X unacked=N lost_clients=N
 * where seconds is first publish to last publish, rate = sent / seconds, acked counts
 * PUBACKs (QoS 0: packets written), waited for up to 10 s after the last publish.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench_fleet.h"
#include "bench_util.h"

#define TOOL         "loadgen"
#define MACHINES_MAX 20000
#define ACK_WAIT_US  10000000u
#define CONNECT_MS   60000
#define LINE_MAX_    256
#define STDIN_TAG    0x53544449 /* "STDI": stdin's epoll tag */

static const char TELEMETRY[] =
    "{\"timestamp\":\"2025-11-04T10:30:00Z\",\"slots\":[{\"id\":1,\"level\":\"FULL\"},"
    "{\"id\":2,\"level\":\"LOW\"}],\"temperature\":25.5,\"door\":\"CLOSED\"}";
static const char STATUS[] =
    "{\"status\":\"ONLINE\",\"door\":\"CLOSED\",\"rssi\":-65,\"fw\":\"1.0.0\"}";

static volatile sig_atomic_t s_stop;

struct opts {
    const char *host, *prefix, *client_prefix, *kind;
    uint64_t port, machines, first, qos, window, rate, seconds;
    bool control;
};

struct loadgen {
    struct opts o;
    struct fleet f;
    int epfd;
    int stdin_tag; /* &stdin_tag is stdin's epoll data.ptr */
    char (*topic)[FLEET_TOPIC_MAX];
    size_t cursor;
    char line[LINE_MAX_];
    size_t line_len;
    bool eof;
};

static void on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen --port P --machines N [--first K] [--prefix vm] "
                    "[--client-prefix lg-] [--qos 0|1] [--window W] [--host H]\n"
                    "               (--kind telemetry|status --rate R --seconds S | --control)\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    int rc = 0;

    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--control") == 0) {
            o->control = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "%s: option '%s' needs a value (or is unknown)\n", TOOL, a);
            return -1;
        }
        i++;
        if (strcmp(a, "--host") == 0)
            o->host = v;
        else if (strcmp(a, "--prefix") == 0)
            o->prefix = v;
        else if (strcmp(a, "--client-prefix") == 0)
            o->client_prefix = v;
        else if (strcmp(a, "--kind") == 0)
            o->kind = v;
        else if (strcmp(a, "--port") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 65535, &o->port);
        else if (strcmp(a, "--machines") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, MACHINES_MAX, &o->machines);
        else if (strcmp(a, "--first") == 0)
            rc = bu_parse_u64(TOOL, a, v, 0, 99999, &o->first);
        else if (strcmp(a, "--qos") == 0)
            rc = bu_parse_u64(TOOL, a, v, 0, 1, &o->qos);
        else if (strcmp(a, "--window") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 1000, &o->window);
        else if (strcmp(a, "--rate") == 0)
            rc = bu_parse_u64(TOOL, a, v, 0, 10000000, &o->rate);
        else if (strcmp(a, "--seconds") == 0)
            rc = bu_parse_u64(TOOL, a, v, 1, 3600, &o->seconds);
        else {
            fprintf(stderr, "%s: unknown option '%s'\n", TOOL, a);
            rc = -1;
        }
    }
    if (rc == 0 && o->port == 0) {
        fprintf(stderr, "%s: --port is required\n", TOOL);
        rc = -1;
    }
    if (rc == 0 && o->first + o->machines > 100000) {
        fprintf(stderr, "%s: machine numbers must stay below 100000 (five digits)\n", TOOL);
        rc = -1;
    }
    if (rc == 0 && !o->control && (o->kind == NULL || o->seconds == 0)) {
        fprintf(stderr, "%s: give --kind, --rate and --seconds, or --control\n", TOOL);
        rc = -1;
    }
    return rc;
}

static bool kind_ok(const char *kind)
{
    return strcmp(kind, "telemetry") == 0 || strcmp(kind, "status") == 0;
}

/* Wait for events until deadline_us (0: just poll) and handle them. */
static void pump(struct loadgen *lg, uint64_t wait_us)
{
    struct epoll_event ev[512];
    struct timespec ts = {.tv_sec = (time_t)(wait_us / 1000000u),
                          .tv_nsec = (long)(wait_us % 1000000u) * 1000L};
    int n = epoll_pwait2(lg->epfd, ev, 512, &ts, NULL);

    for (int k = 0; k < n; k++) {
        int *tag = ev[k].data.ptr;

        if (*tag == FLEET_KIND)
            fleet_event(ev[k].data.ptr, ev[k].events);
    }
    fleet_misc(&lg->f);
}

/* One run: publish kind at rate (0: unpaced) for seconds; prints its line. */
static void run(struct loadgen *lg, const char *kind, uint64_t rate, uint64_t seconds)
{
    struct fleet *f = &lg->f;
    bool status = strcmp(kind, "status") == 0;
    const char *payload = status ? STATUS : TELEMETRY;
    int len = (int)strlen(payload), qos = (int)lg->o.qos;
    uint64_t total = rate > 0 ? rate * seconds : UINT64_MAX, sent = 0, acked0 = f->acked;
    uint64_t t0, now, due, t_last = 0, lag_max = 0, span = seconds * 1000000u;
    unsigned window = (unsigned)lg->o.window;
    size_t dead0 = f->dead, unacked;

    for (size_t i = 0; i < f->n; i++)
        snprintf(lg->topic[i], sizeof(lg->topic[i]), "vm/%s/%s", f->c[i].id, kind);
    t0 = bu_now_us();
    while (sent < total && !s_stop) {
        size_t blocked = 0;

        now = bu_now_us();
        if (rate == 0 && now - t0 >= span)
            break;
        due = rate > 0 ? (now - t0) * rate / 1000000u + 1 : sent + 4096;
        if (due > total)
            due = total;
        while (sent < due && blocked < f->n) {
            size_t i = lg->cursor;

            lg->cursor = (lg->cursor + 1) % f->n;
            if (!fleet_can_publish(f, i, qos, window)) {
                blocked++;
                continue;
            }
            blocked = 0;
            if (fleet_publish(f, i, lg->topic[i], payload, len, qos, status) == 0)
                sent++;
        }
        t_last = bu_now_us();
        if (rate > 0 && sent > 0) {
            uint64_t sched = t0 + (sent - 1) * 1000000u / rate;

            if (t_last > sched && t_last - sched > lag_max)
                lag_max = t_last - sched;
        }
        if (sent < due || rate == 0) {
            pump(lg, sent < due ? 1000 : 0); /* blocked: wait for sockets or PUBACKs */
        } else {
            uint64_t next = t0 + sent * 1000000u / rate;

            now = bu_now_us();
            pump(lg, next > now ? next - now : 0);
        }
    }
    for (now = bu_now_us(); f->acked - acked0 < sent && bu_now_us() - now < ACK_WAIT_US;)
        pump(lg, 10000);
    unacked = 0;
    for (size_t i = 0; i < f->n; i++)
        unacked += f->c[i].inflight;
    {
        double secs = t_last > t0 ? (double)(t_last - t0) / 1e6 : 0.0;

        printf("loadgen: kind=%s qos=%d machines=%zu rate_target=%llu sent=%llu acked=%llu "
               "seconds=%.3f rate=%.0f lag_max_ms=%.1f unacked=%zu lost_clients=%zu\n",
               kind, qos, f->n, (unsigned long long)rate, (unsigned long long)sent,
               (unsigned long long)(f->acked - acked0), secs, secs > 0 ? (double)sent / secs : 0.0,
               (double)lag_max / 1000.0, unacked, f->dead - dead0);
        fflush(stdout);
    }
}

/* Service the fleet until stdin is readable (at most 200 ms). stdin is on the epoll set only
 * here: during a run a readable stdin (EOF above all) would keep every wait from sleeping. */
static void wait_stdin(struct loadgen *lg)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &lg->stdin_tag};

    lg->stdin_tag = STDIN_TAG;
    if (epoll_ctl(lg->epfd, EPOLL_CTL_ADD, 0, &ev) < 0) {
        pump(lg, 10000); /* not pollable (a regular file): reads never wait anyway */
        return;
    }
    pump(lg, 200000);
    epoll_ctl(lg->epfd, EPOLL_CTL_DEL, 0, NULL);
}

/* --control: the next complete line of stdin, servicing the fleet meanwhile; NULL at EOF. */
static const char *next_line(struct loadgen *lg)
{
    char *nl;
    ssize_t r;

    for (;;) {
        nl = memchr(lg->line, '\n', lg->line_len);
        if (nl != NULL) {
            *nl = '\0';
            return lg->line;
        }
        if (lg->eof || s_stop)
            return NULL;
        if (lg->line_len == sizeof(lg->line) - 1) {
            fprintf(stderr, "%s: command line longer than %d bytes\n", TOOL, LINE_MAX_ - 1);
            return NULL;
        }
        r = read(0, lg->line + lg->line_len, sizeof(lg->line) - 1 - lg->line_len);
        if (r > 0) {
            lg->line_len += (size_t)r;
        } else if (r == 0) {
            lg->eof = true;
            if (lg->line_len > 0) /* a last line without its newline */
                lg->line[lg->line_len++] = '\n';
        } else if (errno == EAGAIN || errno == EINTR) {
            wait_stdin(lg);
        } else {
            fprintf(stderr, "%s: reading stdin: %s\n", TOOL, strerror(errno));
            return NULL;
        }
    }
}

/* Drop the line next_line() returned. */
static void consume_line(struct loadgen *lg)
{
    size_t n = strlen(lg->line) + 1;

    memmove(lg->line, lg->line + n, lg->line_len - n);
    lg->line_len -= n;
}

static int control(struct loadgen *lg)
{
    char kind[16];
    unsigned long long rate, secs;
    const char *line;

    while ((line = next_line(lg)) != NULL) {
        if (strcmp(line, "quit") == 0)
            break;
        if (sscanf(line, "pub %15s %llu %llu", kind, &rate, &secs) == 3 && kind_ok(kind) &&
            secs >= 1 && secs <= 3600) {
            run(lg, kind, rate, secs);
        } else {
            fprintf(stderr, "%s: unknown command '%s' (pub KIND RATE SECONDS | quit)\n", TOOL,
                    line);
            printf("loadgen: error\n");
            fflush(stdout);
        }
        consume_line(lg);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct loadgen lg = {.o = {.host = "127.0.0.1",
                               .prefix = "vm",
                               .client_prefix = "lg-",
                               .first = 1,
                               .qos = 1,
                               .window = 10}};
    struct fleet_config cfg;
    struct sigaction sa;
    uint64_t t0;
    int rc = 1;

    if (parse_args(argc, argv, &lg.o) < 0) {
        usage();
        return 64;
    }
    if (!lg.o.control && !kind_ok(lg.o.kind)) {
        fprintf(stderr, "%s: --kind '%s': expected telemetry or status\n", TOOL, lg.o.kind);
        return 64;
    }
    if (bu_raise_nofile(TOOL, (unsigned long)lg.o.machines + 64) < 0)
        return 1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (lg.o.control)
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    lg.epfd = epoll_create1(EPOLL_CLOEXEC);
    lg.topic = calloc(lg.o.machines, sizeof(*lg.topic));
    if (lg.epfd < 0 || lg.topic == NULL) {
        fprintf(stderr, "%s: cannot set up: %s\n", TOOL, strerror(errno));
        return 1;
    }
    mosquitto_lib_init();
    cfg = (struct fleet_config){.host = lg.o.host,
                                .port = (uint16_t)lg.o.port,
                                .prefix = lg.o.prefix,
                                .client_prefix = lg.o.client_prefix,
                                .first = (unsigned)lg.o.first,
                                .n = lg.o.machines};
    t0 = bu_now_us();
    if (fleet_open(&lg.f, lg.epfd, &cfg, CONNECT_MS) == 0) {
        printf("loadgen: ready machines=%zu connect_ms=%.0f\n", lg.f.n,
               (double)(bu_now_us() - t0) / 1000.0);
        fflush(stdout);
        if (lg.o.control)
            rc = control(&lg) < 0 ? 1 : 0;
        else {
            run(&lg, lg.o.kind, lg.o.rate, lg.o.seconds);
            rc = 0;
        }
        fleet_close(&lg.f);
    }
    mosquitto_lib_cleanup();
    free(lg.topic);
    close(lg.epfd);
    return rc;
}
