/*
 * broker.h - a real mosquitto on 127.0.0.1 and a random free port, for tests.
 *
 * test_broker_start() writes a config into a fresh mkdtemp directory
 * ($TMPDIR or /tmp), runs `mosquitto -c` (from PATH, else /usr/sbin) and
 * returns once the broker accepts TCP connections. The broker log is
 * <dir>/mosquitto.log. Config: anonymous, no persistence (see test_broker_set_persistence()),
 * set_tcp_nodelay,
 * max_inflight_messages 0 and max_queued_messages 10000 (mosquitto's defaults
 * silently drop QoS 1 messages to a subscriber that falls behind; see
 * deploy/mosquitto/dev.conf).
 *
 * Cleanup is guaranteed three ways: test_broker_stop() (call it from a
 * cmocka teardown), an atexit handler that stops every broker still running,
 * and PR_SET_PDEATHSIG so the broker dies with a crashed test process.
 *
 * All functions return 0 on success, -1 on failure with a line on stderr.
 */
#ifndef VEND_TEST_BROKER_H
#define VEND_TEST_BROKER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct test_broker {
    uint16_t port;   /* loopback port, stable across test_broker_restart() */
    pid_t pid;       /* 0 while not running */
    char dir[256];   /* the temporary directory; "" once removed */
    bool persistent; /* sessions and retained messages kept in <dir>/mosquitto.db */
};

/* Pick a free port, write the config, start and wait (up to 5 s) for it. */
int test_broker_start(struct test_broker *b);
/*
 * The same with the test's own config: conf writes it to f (after the "user" line that keeps
 * a broker started as root from dropping to user mosquitto), for b->port and in b->dir,
 * (removed with what is in it, flat). conf runs again for each port tried. 0, or -1.
 */
typedef int test_broker_conf_fn(const struct test_broker *b, FILE *f, void *arg);
int test_broker_start_with(struct test_broker *b, test_broker_conf_fn *conf, void *arg);
/* SIGTERM + waitpid, keeping the port and directory (a broker outage). */
int test_broker_kill(struct test_broker *b);
/* Kill if running, then start again on the SAME port (retrying while it is in use). */
int test_broker_restart(struct test_broker *b);
/*
 * Persistence on or off from the next start on (test_broker_restart()): on, the broker saves
 * its sessions, their queued messages and the retained ones in <dir>/mosquitto.db when it
 * stops (SIGTERM) and reads them back when it starts, as a production broker does. It rewrites
 * the default config: not for a broker started with test_broker_start_with().
 */
int test_broker_set_persistence(struct test_broker *b, bool on);
/* Kill if running and remove the directory. Safe to call twice. */
void test_broker_stop(struct test_broker *b);

#endif
