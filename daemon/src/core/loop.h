/*
 * loop.h - the daemon's one event loop: poll() over file descriptors, a
 * min-heap of one-shot timers, and signals read through a signalfd (so no
 * signal handler and no global flag is needed).
 *
 * Everything in vendd runs on this loop in one thread: the libmosquitto
 * socket, libmicrohttpd's epoll fd and the order deadlines. Callbacks must
 * not block.
 *
 * Ownership: the loop never owns the fds or the callback arguments it is
 * given. A callback may add or delete any fd or timer, including its own.
 */
#ifndef VENDD_LOOP_H
#define VENDD_LOOP_H

#include <stdint.h>

struct loop;

enum loop_events {
    LOOP_READ = 1u << 0,
    LOOP_WRITE = 1u << 1,
};

/* events: the LOOP_* bits that are ready, never outside the watched ones. Errors and
 * hang-ups report as every watched event (LOOP_READ for a reader), so the callback's
 * read() or write() sees the error. */
typedef void loop_io_fn(void *arg, int fd, unsigned events);
typedef void loop_timer_fn(void *arg);
typedef void loop_signal_fn(void *arg, int signo);
/* Called once per iteration before the loop sleeps: the place to re-arm
 * write interest (mosquitto_want_write) or recompute a library's timeout. */
typedef void loop_prepare_fn(void *arg);

/* Returns a new loop, or NULL with errno set. SIGTERM and SIGINT stop it by default.
 * Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (they are read through a
 * signalfd) and ignores SIGPIPE: create the loop before any thread so threads inherit
 * the mask. */
struct loop *loop_new(void);
/* Frees the loop; pending timers are dropped without being called. Discards pending
 * handled signals, then restores the signal mask and SIGPIPE disposition loop_new found.
 * NULL is fine. */
void loop_free(struct loop *loop);

/* Watch fd for events (0 is allowed: watched but not polled). VEND_EINVAL if fd is
 * negative, too large (>= 2^20), already watched, fn is NULL or events has unknown bits. */
int loop_io_add(struct loop *loop, int fd, unsigned events, loop_io_fn *fn, void *arg);
/* Change the events watched for fd. VEND_ENOTFOUND if fd is not watched. */
int loop_io_set(struct loop *loop, int fd, unsigned events);
/* Stop watching fd; unknown fds are ignored. Safe inside that fd's callback. */
void loop_io_del(struct loop *loop, int fd);

/* Call fn(arg) once after delay_ms, counted from loop_now_ms(). Equal deadlines fire in
 * the order added; a timer added by a timer callback fires in a later iteration at the
 * earliest. Returns an id > 0 for loop_timer_del (never reused), or 0 if fn is NULL or
 * 2^20 timers are pending. */
uint64_t loop_timer_add(struct loop *loop, uint64_t delay_ms, loop_timer_fn *fn, void *arg);
/* Cancel a pending timer; unknown or fired ids are ignored. */
void loop_timer_del(struct loop *loop, uint64_t id);

/* Add a prepare hook (see loop_prepare_fn); hooks run in the order added.
 * VEND_EINVAL if fn is NULL, VEND_ENOSPACE beyond 32 hooks. */
int loop_prepare_add(struct loop *loop, loop_prepare_fn *fn, void *arg);
/* Remove the hook added with this fn and arg (the oldest, if added twice); unknown pairs
 * are ignored. Safe inside any hook, including the one removed. */
void loop_prepare_del(struct loop *loop, loop_prepare_fn *fn, void *arg);

/* Add a turn-end hook: called once per iteration after the ready fds were dispatched (also
 * when none was), before the next iteration's timers, so that what those fds brought is
 * finished in the same turn (a group commit) and not behind the timers that are due.
 * Rules as for prepare hooks (at most 32, safe to add or delete inside one). */
int loop_turn_end_add(struct loop *loop, loop_prepare_fn *fn, void *arg);
void loop_turn_end_del(struct loop *loop, loop_prepare_fn *fn, void *arg);

/* Handle signo through fn instead of the default (SIGTERM/SIGINT: stop; others: ignored);
 * fn NULL restores the default. A signal not yet handled is blocked and added to the
 * signalfd. VEND_EINVAL for KILL, STOP, synchronous signals (SEGV, BUS, FPE, ILL, TRAP,
 * ABRT) and out-of-range numbers; VEND_EIO if the signalfd cannot be updated. */
int loop_signal_set(struct loop *loop, int signo, loop_signal_fn *fn, void *arg);

/* Monotonic milliseconds, read once per iteration (cheap, consistent within a callback). */
uint64_t loop_now_ms(const struct loop *loop);

/* Run until loop_stop() or a stopping signal; each iteration fires due timers, runs the
 * prepare hooks, polls, dispatches fds and runs the turn-end hooks. Clears an earlier stop
 * on entry, so a loop can be run again. Returns 0, or VEND_EIO on a poll failure (EINTR is
 * not one). */
int loop_run(struct loop *loop);
/* Make loop_run return after the current iteration. */
void loop_stop(struct loop *loop);

#endif
