/*
 * broker.c - see broker.h.
 */
#include "broker.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 5000
#define MAX_TRACKED      8

/* Brokers still running, for the atexit handler (which takes no argument):
 * the one piece of file-static state here, so a failing test that skips
 * its teardown still leaves no mosquitto behind. */
static struct test_broker *s_live[MAX_TRACKED];
static bool s_atexit_done;

static void stop_all(void)
{
    size_t i;

    for (i = 0; i < MAX_TRACKED; i++) {
        if (s_live[i])
            test_broker_stop(s_live[i]);
    }
}

static void track(struct test_broker *b)
{
    size_t i;

    if (!s_atexit_done) {
        atexit(stop_all);
        s_atexit_done = true;
    }
    for (i = 0; i < MAX_TRACKED; i++) {
        if (s_live[i] == b)
            return;
    }
    for (i = 0; i < MAX_TRACKED; i++) {
        if (!s_live[i]) {
            s_live[i] = b;
            return;
        }
    }
}

static void untrack(struct test_broker *b)
{
    size_t i;

    for (i = 0; i < MAX_TRACKED; i++) {
        if (s_live[i] == b)
            s_live[i] = NULL;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int free_port(uint16_t *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd, rc = -1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto out;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        goto out;
    *port = ntohs(sa.sin_port);
    rc = 0;
out:
    close(fd);
    return rc;
}

static bool tcp_ready(uint16_t port)
{
    struct sockaddr_in sa;
    int fd;
    bool ok;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static int default_config(const struct test_broker *b, FILE *f, void *arg)
{
    (void)arg;
    if (b->persistent)
        fprintf(f, "persistence true\npersistence_location %s/\n", b->dir);
    else
        fprintf(f, "persistence false\n");
    fprintf(f,
            "listener %u 127.0.0.1\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 10000\n"
            /* $SYS every second: vendd's broker gauges follow it in tests. */
            "sys_interval 1\n"
            "log_dest file %s/mosquitto.log\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            (unsigned)b->port, b->dir);
    return 0;
}

static int write_config(const struct test_broker *b, test_broker_conf_fn *conf, void *arg)
{
    char path[300];
    struct passwd *pw;
    FILE *f;
    int n, rc;

    n = snprintf(path, sizeof(path), "%s/mosquitto.conf", b->dir);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -1;
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "test_broker: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    /* As root, mosquitto would switch to user "mosquitto": it could not
     * write the log here, and the change of credentials clears
     * PR_SET_PDEATHSIG. Name ourselves so it stays who we are. */
    pw = getpwuid(geteuid());
    fprintf(f, "user %s\n", pw ? pw->pw_name : "root");
    rc = conf(b, f, arg);
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static pid_t spawn(const struct test_broker *b)
{
    char conf[300], errlog[300];
    pid_t parent = getpid();
    sigset_t none;
    pid_t pid;
    int fd;

    snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->dir);
    snprintf(errlog, sizeof(errlog), "%s/stderr.log", b->dir);
    pid = fork();
    if (pid != 0)
        return pid;
    /* Child. The test process blocks SIGTERM/SIGINT for the loop's
     * signalfd and libmosquitto ignores SIGPIPE: both would be inherited
     * across exec, and a broker with SIGTERM blocked cannot be stopped. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    /* Die with the test process even if it crashes. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(1);
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        close(fd);
    }
    /* Startup errors (bad config, port in use) land next to the log. */
    fd = open(errlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
    execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
    execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
    fprintf(stderr, "test_broker: cannot run mosquitto: %s\n", strerror(errno));
    _exit(127);
}

/* Start on b->port; 0 when it accepts connections, -1 if it exited or timed out. */
static int launch(struct test_broker *b)
{
    uint64_t deadline = now_ms() + START_TIMEOUT_MS;
    int status;

    b->pid = spawn(b);
    if (b->pid < 0) {
        b->pid = 0;
        return -1;
    }
    track(b);
    while (now_ms() < deadline) {
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            b->pid = 0; /* most likely: the port was taken meanwhile */
            return -1;
        }
        if (tcp_ready(b->port))
            return 0;
        sleep_ms(10);
    }
    test_broker_kill(b);
    return -1;
}

int test_broker_start(struct test_broker *b)
{
    return test_broker_start_with(b, NULL, NULL);
}

int test_broker_start_with(struct test_broker *b, test_broker_conf_fn *conf, void *arg)
{
    const char *tmp = getenv("TMPDIR");
    int attempt, n;

    memset(b, 0, sizeof(*b));
    if (!tmp || !*tmp)
        tmp = "/tmp";
    n = snprintf(b->dir, sizeof(b->dir), "%s/vendd-broker-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(b->dir) || !mkdtemp(b->dir)) {
        fprintf(stderr, "test_broker: cannot create a directory in '%s'\n", tmp);
        b->dir[0] = '\0';
        return -1;
    }
    for (attempt = 0; attempt < 5; attempt++) {
        if (free_port(&b->port) < 0 ||
            write_config(b, conf != NULL ? conf : default_config, arg) < 0)
            break;
        if (launch(b) == 0)
            return 0;
    }
    fprintf(stderr, "test_broker: mosquitto did not start (log in '%s')\n", b->dir);
    test_broker_stop(b);
    return -1;
}

int test_broker_kill(struct test_broker *b)
{
    uint64_t deadline = now_ms() + 3000;
    int status;
    pid_t r;

    if (b->pid <= 0)
        return 0;
    kill(b->pid, SIGTERM);
    /* Bounded: a broker that ignores SIGTERM gets SIGKILL, never a hung test. */
    for (;;) {
        r = waitpid(b->pid, &status, WNOHANG);
        if (r == b->pid || (r < 0 && errno != EINTR))
            break;
        if (now_ms() >= deadline) {
            kill(b->pid, SIGKILL);
            deadline = UINT64_MAX;
        }
        sleep_ms(5);
    }
    b->pid = 0;
    return 0;
}

int test_broker_set_persistence(struct test_broker *b, bool on)
{
    b->persistent = on;
    return write_config(b, default_config, NULL); /* the default config only */
}

int test_broker_restart(struct test_broker *b)
{
    uint64_t deadline = now_ms() + START_TIMEOUT_MS;

    test_broker_kill(b);
    /* The port may be briefly unavailable (sockets closing): retry. */
    while (now_ms() < deadline) {
        if (launch(b) == 0)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "test_broker: cannot restart mosquitto on port %u\n", (unsigned)b->port);
    return -1;
}

void test_broker_stop(struct test_broker *b)
{
    DIR *d;
    struct dirent *e;

    test_broker_kill(b);
    untrack(b);
    if (!b->dir[0])
        return;
    d = opendir(b->dir);
    if (d) {
        /* Flat directory: config, logs and the persistence file. */
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    }
    rmdir(b->dir);
    b->dir[0] = '\0';
}
