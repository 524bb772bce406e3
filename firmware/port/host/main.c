/*
 * main.c - vmsim: the firmware core (vendfw) on the host, one simulated machine per MQTT
 * client, all in one poll() loop that ticks every core every TICK_MS.
 *
 * Globals: only s_stop, the flag the SIGINT/SIGTERM handler sets (a handler takes no
 * argument). Everything else lives in struct vmsim, built by main(). SIGUSR1 (wake the
 * silent machines, fault.h) and SIGUSR2 (step every machine's wall clock by --clock-step-ms)
 * need no flag: they stay blocked and the loop collects them.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "droplog.h"
#include "fault.h"
#include "mqtt_link.h"
#include "sim_hal.h"
#include "vend/err.h"
#include "vend/fw/machine.h"

#define TICK_MS      10
#define MACHINES_MAX 1000
#define FW_VERSION   "1.0.0-vmsim"
#define DAY_MS       86400000UL /* the bound of the fault timers */

static volatile sig_atomic_t s_stop;

struct vmsim {
    size_t n;
    struct vend_fw_machine *m; /* n of each; never moved once the cores are initialised */
    struct sim *sim;
    struct link *link;
    struct pollfd *pfd;
    size_t *pfd_link; /* pfd[i] belongs to link[pfd_link[i]] */
    struct link_broker broker;
    struct fault *fault;
    struct fault_opts fault_opts;
    int64_t clock_step_ms;
    sigset_t wake_sigs; /* SIGUSR1, SIGUSR2 */
    struct droplog droplog;
    struct droplog_machine *drops; /* n of them: the drop callback of each machine */
};

struct opts {
    unsigned long machines;
    const char *prefix;
    const char *id;
    const char *state_dir;
    const char *drop_log;       /* NULL: none */
    unsigned long telemetry_ms; /* 0: the core's config */
    unsigned long long seed;
    long long clock_step_ms; /* on SIGUSR2 */
    struct sim_opts sim;
    struct fault_opts fault;
};

static void on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vmsim [--id ID | --machines N [--prefix P]] [--slots K] [--stock S]\n"
               "             [--motor-ms MS] [--drop-prob P] [--jam-rate P] [--telemetry-ms MS]\n"
               "             [--door-open-rate P] [--seed N] [--state-dir DIR]\n"
               "             [--drop-log FILE]  (appends each physical drop, for vend-check)\n"
               "faults:      [--crash-after-start] [--silent-after N [--silent-ms MS]]\n"
               "             [--lose-broker-every MS [--lose-broker-for MS]]\n"
               "             a silent machine wakes on SIGUSR1 (or after --silent-ms)\n"
               "clock:       [--clock-offset-ms MS] [--clock-step-ms MS]\n"
               "             the wall clock's error (+: ahead); SIGUSR2 steps it by the step\n"
               "environment: MQTT_BROKER_URL (mqtt://host:port, or mqtts:// for TLS),\n"
               "             MQTT_USERNAME, MQTT_PASSWORD, MQTT_CA_FILE (default: the "
               "system's CAs)\n");
}

static int parse_ulong(const char *name, const char *s, unsigned long min, unsigned long max,
                       unsigned long *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "vmsim: --%s '%s': expected an integer in %lu..%lu\n", name, s, min, max);
        return -1;
    }
    *out = (unsigned long)v;
    return 0;
}

/* A signed number of milliseconds within a day either way (a clock's error or step). */
static int parse_offset(const char *name, const char *s, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < -(long long)DAY_MS || v > (long long)DAY_MS) {
        fprintf(stderr, "vmsim: --%s '%s': expected milliseconds in -%lu..%lu\n", name, s, DAY_MS,
                DAY_MS);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_prob(const char *name, const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0)) {
        fprintf(stderr, "vmsim: --%s '%s': expected a probability in 0..1\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"machines", required_argument, NULL, 'n'},
        {"prefix", required_argument, NULL, 'p'},
        {"id", required_argument, NULL, 'i'},
        {"slots", required_argument, NULL, 'k'},
        {"stock", required_argument, NULL, 's'},
        {"motor-ms", required_argument, NULL, 'm'},
        {"drop-prob", required_argument, NULL, 'd'},
        {"jam-rate", required_argument, NULL, 'j'},
        {"telemetry-ms", required_argument, NULL, 't'},
        {"seed", required_argument, NULL, 'S'},
        {"state-dir", required_argument, NULL, 'D'},
        {"drop-log", required_argument, NULL, 'G'},
        {"door-open-rate", required_argument, NULL, 'o'},
        {"crash-after-start", no_argument, NULL, 'C'},
        {"silent-after", required_argument, NULL, 'A'},
        {"silent-ms", required_argument, NULL, 'W'},
        {"lose-broker-every", required_argument, NULL, 'L'},
        {"lose-broker-for", required_argument, NULL, 'F'},
        {"clock-offset-ms", required_argument, NULL, 'O'},
        {"clock-step-ms", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long v;
    long long off;
    bool lose_for = false;
    int c, rc = 0;

    while (rc == 0 && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            rc = parse_ulong("machines", optarg, 1, MACHINES_MAX, &o->machines);
            break;
        case 'p':
            o->prefix = optarg;
            break;
        case 'i':
            o->id = optarg;
            break;
        case 'k':
            rc = parse_ulong("slots", optarg, 1, SIM_SLOTS_MAX, &v);
            o->sim.nslots = (uint16_t)v;
            break;
        case 's':
            rc = parse_ulong("stock", optarg, 0, 100000, &v);
            o->sim.stock = (uint32_t)v;
            break;
        case 'm':
            rc = parse_ulong("motor-ms", optarg, 1, 600000, &v);
            o->sim.motor_ms = (uint32_t)v;
            break;
        case 'd':
            rc = parse_prob("drop-prob", optarg, &o->sim.drop_prob);
            break;
        case 'j':
            rc = parse_prob("jam-rate", optarg, &o->sim.jam_rate);
            break;
        case 't':
            rc = parse_ulong("telemetry-ms", optarg, VEND_TELEMETRY_INTERVAL_MIN,
                             VEND_TELEMETRY_INTERVAL_MAX, &o->telemetry_ms);
            break;
        case 'S':
            errno = 0;
            o->seed = strtoull(optarg, NULL, 10);
            if (errno != 0) {
                fprintf(stderr, "vmsim: --seed '%s': expected an integer\n", optarg);
                rc = -1;
            }
            break;
        case 'D':
            o->state_dir = optarg;
            break;
        case 'G':
            o->drop_log = optarg;
            break;
        case 'o':
            rc = parse_prob("door-open-rate", optarg, &o->sim.door_open_rate);
            break;
        case 'C':
            o->sim.crash_after_start = true;
            break;
        case 'A':
            rc = parse_ulong("silent-after", optarg, 0, UINT32_MAX, &v);
            o->fault.silent_after = v;
            break;
        case 'W':
            rc = parse_ulong("silent-ms", optarg, 1, DAY_MS, &v);
            o->fault.silent_ms = (uint32_t)v;
            break;
        case 'L':
            rc = parse_ulong("lose-broker-every", optarg, 1, DAY_MS, &v);
            o->fault.lose_every_ms = (uint32_t)v;
            break;
        case 'F':
            rc = parse_ulong("lose-broker-for", optarg, 0, DAY_MS, &v);
            o->fault.lose_for_ms = (uint32_t)v;
            lose_for = true;
            break;
        case 'O':
            rc = parse_offset("clock-offset-ms", optarg, &off);
            o->sim.clock_offset_ms = off;
            break;
        case 'T':
            rc = parse_offset("clock-step-ms", optarg, &o->clock_step_ms);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "vmsim: unexpected argument '%s'\n", argv[optind]);
        rc = -1;
    }
    if (rc == 0 && o->id != NULL && o->machines > 1) {
        fprintf(stderr, "vmsim: --id names one machine, --machines asks for %lu\n", o->machines);
        rc = -1;
    }
    if (rc == 0 && o->fault.silent_ms != 0 && o->fault.silent_after == FAULT_NEVER) {
        fprintf(stderr, "vmsim: --silent-ms needs --silent-after\n");
        rc = -1;
    }
    if (rc == 0 && lose_for && o->fault.lose_every_ms == 0) {
        fprintf(stderr, "vmsim: --lose-broker-for needs --lose-broker-every\n");
        rc = -1;
    }
    return rc;
}

/* The id of machine i: --id, else prefix + two-digit number from 01. */
static int machine_id(const struct opts *o, size_t i, char *buf, size_t size)
{
    int n;

    if (o->id != NULL)
        n = snprintf(buf, size, "%s", o->id);
    else
        n = snprintf(buf, size, "%s%02zu", o->prefix, i + 1);
    if (n < 0 || (size_t)n >= size || !vend_machine_id_valid(buf)) {
        fprintf(stderr, "vmsim: machine id '%s%s' does not match %s\n", o->id ? o->id : o->prefix,
                o->id ? "" : "NN", VEND_MACHINE_ID_PATTERN);
        return -1;
    }
    return 0;
}

static int start(struct vmsim *v, const struct opts *o)
{
    char id[VEND_MACHINE_ID_MAX + 1];
    struct vend_fw_hal hal;
    struct vend_fw_params p;
    size_t i;
    int rc;

    v->m = calloc(v->n, sizeof(*v->m));
    v->sim = calloc(v->n, sizeof(*v->sim));
    v->link = calloc(v->n, sizeof(*v->link));
    v->pfd = calloc(v->n, sizeof(*v->pfd));
    v->pfd_link = calloc(v->n, sizeof(*v->pfd_link));
    v->fault = calloc(v->n, sizeof(*v->fault));
    v->drops = calloc(v->n, sizeof(*v->drops));
    if (!v->m || !v->sim || !v->link || !v->pfd || !v->pfd_link || !v->fault || !v->drops) {
        fprintf(stderr, "vmsim: out of memory for %zu machines\n", v->n);
        return -1;
    }
    for (i = 0; i < v->n; i++)
        v->sim[i].kv_fd = -1;
    if (o->drop_log != NULL && droplog_open(&v->droplog, o->drop_log) < 0)
        return -1;
    for (i = 0; i < v->n; i++) {
        if (machine_id(o, i, id, sizeof(id)) < 0)
            return -1;
        if (sim_open(&v->sim[i], id, &o->sim, o->seed, o->state_dir) < 0)
            return -1;
        sim_hal(&v->sim[i], &hal, link_publish, &v->link[i]);
        v->drops[i] = (struct droplog_machine){.log = &v->droplog, .m = &v->m[i]};
        v->sim[i].on_drop = droplog_drop;
        v->sim[i].drop_arg = &v->drops[i];
        p = (struct vend_fw_params){.machine_id = id, .fw = FW_VERSION, .nslots = o->sim.nslots};
        rc = vend_fw_machine_init(&v->m[i], &hal, &p);
        if (rc != VEND_OK) {
            fprintf(stderr, "vmsim: cannot start the core of '%s': %s\n", id, vend_strerror(rc));
            return -1;
        }
        /* Local default only: a config from the backend replaces it (and is persisted). */
        if (o->telemetry_ms != 0)
            v->m[i].config.telemetry_interval_ms = (uint32_t)o->telemetry_ms;
        droplog_start(&v->droplog, id);
        if (link_open(&v->link[i], &v->m[i], &v->broker) < 0)
            return -1;
        v->link[i].silent_after = o->fault.silent_after;
    }
    v->fault_opts = o->fault;
    v->clock_step_ms = o->clock_step_ms;
    return 0;
}

static void stop(struct vmsim *v)
{
    size_t i;

    for (i = 0; v->link && i < v->n; i++)
        link_close(&v->link[i]);
    for (i = 0; v->sim && i < v->n; i++)
        sim_close(&v->sim[i]);
    free(v->m);
    free(v->sim);
    free(v->link);
    free(v->pfd);
    free(v->pfd_link);
    free(v->fault);
    free(v->drops);
    droplog_close(&v->droplog);
}

static void run(struct vmsim *v)
{
    static const struct timespec no_wait = {0, 0};
    uint64_t now = now_ms(), next_tick = now;
    size_t i, j, npfd;
    int timeout, fd, sig;
    short revents;
    bool wake;

    while (!s_stop) {
        now = now_ms();
        if (now >= next_tick) {
            for (i = 0; i < v->n; i++)
                vend_fw_machine_tick(&v->m[i]);
            next_tick += TICK_MS;
            if (next_tick <= now)
                next_tick = now + TICK_MS;
        }
        npfd = 0;
        for (i = 0; i < v->n; i++) {
            fd = link_socket(&v->link[i]);
            if (fd < 0)
                continue;
            v->pfd[npfd].fd = fd;
            v->pfd[npfd].events = (short)(POLLIN | (link_want_write(&v->link[i]) ? POLLOUT : 0));
            v->pfd[npfd].revents = 0;
            v->pfd_link[npfd++] = i;
        }
        timeout = next_tick > now ? (int)(next_tick - now) : 0;
        if (poll(v->pfd, npfd, timeout) < 0 && errno != EINTR) {
            fprintf(stderr, "vmsim: poll: %s\n", strerror(errno));
            return;
        }
        now = now_ms();
        /* Every link, polled or not: housekeeping and reconnects run on each pass. */
        for (i = 0, j = 0; i < v->n; i++) {
            revents = 0;
            if (j < npfd && v->pfd_link[j] == i)
                revents = v->pfd[j++].revents;
            link_service(&v->link[i], (revents & (POLLIN | POLLHUP | POLLERR)) != 0,
                         (revents & POLLOUT) != 0, now);
        }
        sig = sigtimedwait(&v->wake_sigs, NULL, &no_wait);
        wake = sig == SIGUSR1;
        if (sig == SIGUSR2) {
            for (i = 0; i < v->n; i++)
                sim_clock_step(&v->sim[i], v->clock_step_ms);
            fprintf(stderr, "vmsim: wall clock stepped by %lld ms\n", (long long)v->clock_step_ms);
        }
        for (i = 0; i < v->n; i++)
            fault_service(&v->fault[i], &v->fault_opts, &v->link[i], wake, now);
    }
}

int main(int argc, char **argv)
{
    struct opts o = {
        .machines = 1,
        .prefix = "VM",
        .state_dir = ".",
        .seed = 1,
        .sim = {.nslots = 10, .stock = 10, .motor_ms = 1200, .drop_prob = 0.98, .jam_rate = 0.01},
        .fault = {.silent_after = FAULT_NEVER, .lose_for_ms = 2000},
    };
    struct vmsim v;
    struct sigaction sa;
    const char *url;
    int rc = 1;

    memset(&v, 0, sizeof(v));
    v.droplog.fd = -1;
    if (parse_args(argc, argv, &o) < 0)
        return 2;
    url = getenv("MQTT_BROKER_URL");
    if (link_parse_url(url && *url ? url : "mqtt://localhost:1883", &v.broker) < 0)
        return 2;
    v.broker.username = getenv("MQTT_USERNAME");
    v.broker.password = getenv("MQTT_PASSWORD");
    if (v.broker.username && *v.broker.username == '\0')
        v.broker.username = NULL;
    v.broker.ca_file = getenv("MQTT_CA_FILE");
    if (v.broker.ca_file && *v.broker.ca_file == '\0')
        v.broker.ca_file = NULL;
    v.n = o.machines;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Blocked before the first machine exists, so an early SIGUSR1 waits instead of killing. */
    sigemptyset(&v.wake_sigs);
    sigaddset(&v.wake_sigs, SIGUSR1);
    sigaddset(&v.wake_sigs, SIGUSR2);
    sigprocmask(SIG_BLOCK, &v.wake_sigs, NULL);

    if (link_lib_init() < 0)
        return 1;
    if (start(&v, &o) == 0) {
        fprintf(stderr, "vmsim: %zu machine(s) on %s:%u\n", v.n, v.broker.host,
                (unsigned)v.broker.port);
        run(&v);
        rc = s_stop ? 0 : 1;
    }
    stop(&v);
    link_lib_cleanup();
    if (s_stop)
        fprintf(stderr, "vmsim: stopped\n");
    return rc;
}
