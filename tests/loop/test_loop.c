/*
 * test_loop.c - the event loop against real pipes, real timers and real signals.
 *
 * Every test arms a guard timer that stops the loop after a few seconds and
 * records that it fired, so a broken loop fails the test instead of hanging it.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "vend/err.h"

#define GUARD_MS 3000

struct guard {
    struct loop *loop;
    int fired;
};

static void guard_fire(void *arg)
{
    struct guard *g = arg;

    g->fired = 1;
    loop_stop(g->loop);
}

static void guard_arm(struct guard *g, struct loop *loop)
{
    g->loop = loop;
    g->fired = 0;
    assert_true(loop_timer_add(loop, GUARD_MS, guard_fire, g) > 0);
}

static void stop_cb(void *arg)
{
    loop_stop(arg);
}

/* ---- timers ---- */

struct order {
    struct loop *loop;
    int seen[16];
    int n;
    int stop_after;
};

struct order_item {
    struct order *o;
    int tag;
};

static void order_cb(void *arg)
{
    struct order_item *it = arg;

    it->o->seen[it->o->n++] = it->tag;
    if (it->o->n == it->o->stop_after)
        loop_stop(it->o->loop);
}

static void test_timers_fire_in_deadline_then_insertion_order(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct order o = {.loop = loop, .stop_after = 6};
    /* tag = expected position; delays chosen so insertion order differs from firing order. */
    const struct {
        uint64_t delay;
        int tag;
    } plan[] = {{30, 5}, {10, 1}, {20, 4}, {10, 2}, {0, 0}, {10, 3}};
    struct order_item items[6];

    assert_non_null(loop);
    guard_arm(&g, loop);
    for (size_t i = 0; i < 6; i++) {
        items[i].o = &o;
        items[i].tag = plan[i].tag;
        assert_true(loop_timer_add(loop, plan[i].delay, order_cb, &items[i]) > 0);
    }
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(o.n, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(o.seen[i], i);
    loop_free(loop);
}

static void flag_cb(void *arg)
{
    (*(int *)arg)++;
}

static void test_deleted_timer_never_fires(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    int fired = 0;

    assert_non_null(loop);
    guard_arm(&g, loop);
    uint64_t a = loop_timer_add(loop, 5, flag_cb, &fired);
    uint64_t b = loop_timer_add(loop, 0, flag_cb, &fired);
    assert_true(a > 0);
    assert_true(b > a);
    loop_timer_del(loop, a);
    loop_timer_del(loop, a);       /* twice: ignored */
    loop_timer_del(loop, 0);       /* never an id: ignored */
    loop_timer_del(loop, a + 100); /* unknown: ignored */
    assert_true(loop_timer_add(loop, 30, stop_cb, loop) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(fired, 1); /* only b */
    loop_timer_del(loop, b);    /* already fired: ignored */
    loop_free(loop);
}

struct killer {
    struct loop *loop;
    uint64_t victims[2];
    int ran;
};

static void killer_cb(void *arg)
{
    struct killer *k = arg;

    k->ran++;
    loop_timer_del(k->loop, k->victims[0]);
    loop_timer_del(k->loop, k->victims[1]);
}

static void test_timer_deletes_other_pending_timer(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct killer k = {.loop = loop};
    int victim_fired = 0;

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_true(loop_timer_add(loop, 5, killer_cb, &k) > 0);
    /* Same deadline, added later: due in the very iteration the killer runs in. */
    k.victims[0] = loop_timer_add(loop, 5, flag_cb, &victim_fired);
    k.victims[1] = loop_timer_add(loop, 20, flag_cb, &victim_fired);
    assert_true(loop_timer_add(loop, 40, stop_cb, loop) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(k.ran, 1);
    assert_int_equal(victim_fired, 0);
    loop_free(loop);
}

#define MANY 10000

struct many {
    struct loop *loop;
    uint64_t deadline[MANY];
    uint64_t id[MANY];
    int fired[MANY];
    int nfired;
    int expected;
    uint64_t last_deadline;
    uint64_t last_id;
    int out_of_order;
    int early;
};

struct many_item {
    struct many *m;
    int i;
};

static void many_cb(void *arg)
{
    struct many_item *it = arg;
    struct many *m = it->m;
    uint64_t d = m->deadline[it->i];
    uint64_t id = m->id[it->i];

    if (d < m->last_deadline || (d == m->last_deadline && id < m->last_id))
        m->out_of_order++;
    if (loop_now_ms(m->loop) < d)
        m->early++;
    m->last_deadline = d;
    m->last_id = id;
    m->fired[it->i]++;
    if (++m->nfired == m->expected)
        loop_stop(m->loop);
}

static void test_ten_thousand_random_timers_fire_in_order(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct many *m = calloc(1, sizeof(*m));
    struct many_item *items = calloc(MANY, sizeof(*items));
    struct guard g;
    unsigned seed = 12345;

    assert_non_null(loop);
    assert_non_null(m);
    assert_non_null(items);
    m->loop = loop;
    guard_arm(&g, loop);
    uint64_t now = loop_now_ms(loop);
    for (int i = 0; i < MANY; i++) {
        uint64_t delay = (uint64_t)(rand_r(&seed) % 50);
        items[i].m = m;
        items[i].i = i;
        m->deadline[i] = now + delay;
        m->id[i] = loop_timer_add(loop, delay, many_cb, &items[i]);
        assert_true(m->id[i] > 0);
    }
    /* Cancel every third one: deletion in the middle of a big heap. */
    for (int i = 0; i < MANY; i += 3)
        loop_timer_del(loop, m->id[i]);
    m->expected = MANY - (MANY + 2) / 3;
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(m->nfired, m->expected);
    assert_int_equal(m->out_of_order, 0);
    assert_int_equal(m->early, 0);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(m->fired[i], i % 3 == 0 ? 0 : 1);
    loop_free(loop);
    free(items);
    free(m);
}

static void test_stop_from_timer_and_run_again(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;

    assert_non_null(loop);
    guard_arm(&g, loop);
    uint64_t t0 = loop_now_ms(loop);
    assert_true(loop_timer_add(loop, 20, stop_cb, loop) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_true(loop_now_ms(loop) - t0 >= 20);
    /* The stop does not stick: a second run needs its own stop. */
    assert_true(loop_timer_add(loop, 10, stop_cb, loop) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    loop_free(loop);
}

/* ---- fds ---- */

struct pipe_io {
    struct loop *loop;
    int rfd, wfd;
    int writes, reads, rounds;
    int bad;
};

static void pipe_write_cb(void *arg, int fd, unsigned events)
{
    struct pipe_io *p = arg;

    if (fd != p->wfd || events != LOOP_WRITE) {
        p->bad++;
        return;
    }
    char c = (char)('a' + p->writes);
    if (write(fd, &c, 1) != 1)
        p->bad++;
    p->writes++;
    /* One byte per round: drop write interest or a writable pipe would spin. */
    assert_int_equal(loop_io_set(p->loop, fd, 0), VEND_OK);
}

static void pipe_read_cb(void *arg, int fd, unsigned events)
{
    struct pipe_io *p = arg;
    char c;

    if (fd != p->rfd || events != LOOP_READ) {
        p->bad++;
        return;
    }
    if (read(fd, &c, 1) != 1 || c != (char)('a' + p->reads))
        p->bad++;
    p->reads++;
    if (p->reads == p->rounds)
        loop_stop(p->loop);
    else
        assert_int_equal(loop_io_set(p->loop, p->wfd, LOOP_WRITE), VEND_OK);
}

static void test_pipe_read_write_and_toggled_write_interest(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct pipe_io p = {.loop = loop, .rounds = 5};
    int fds[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    p.rfd = fds[0];
    p.wfd = fds[1];
    assert_int_equal(loop_io_add(loop, p.rfd, LOOP_READ, pipe_read_cb, &p), VEND_OK);
    assert_int_equal(loop_io_add(loop, p.wfd, LOOP_WRITE, pipe_write_cb, &p), VEND_OK);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(p.bad, 0);
    assert_int_equal(p.writes, 5);
    assert_int_equal(p.reads, 5);
    loop_io_del(loop, p.rfd);
    loop_io_del(loop, p.wfd);
    close(fds[0]);
    close(fds[1]);
    loop_free(loop);
}

struct selfdel {
    struct loop *loop;
    int other_fd; /* ready in the same iteration; deleted by the first callback */
    int calls, other_calls, readd_calls;
    int iteration, del_iteration, readd_iteration;
};

static void count_prepare(void *arg)
{
    ((struct selfdel *)arg)->iteration++;
}

static void readd_cb(void *arg, int fd, unsigned events)
{
    struct selfdel *s = arg;

    (void)events;
    s->readd_calls++;
    s->readd_iteration = s->iteration;
    loop_io_del(s->loop, fd);
}

static void selfdel_cb(void *arg, int fd, unsigned events)
{
    struct selfdel *s = arg;

    (void)events;
    s->calls++;
    s->del_iteration = s->iteration;
    loop_io_del(s->loop, fd);
    loop_io_del(s->loop, s->other_fd);
    /* Same fd number as a ready entry still ahead in this dispatch, but a new watch: it must
     * wait for a poll result of its own. */
    assert_int_equal(loop_io_add(s->loop, s->other_fd, LOOP_READ, readd_cb, s), VEND_OK);
}

static void other_cb(void *arg, int fd, unsigned events)
{
    struct selfdel *s = arg;

    (void)fd;
    (void)events;
    s->other_calls++;
}

static void test_fd_removed_inside_its_own_callback(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct selfdel s = {.loop = loop};
    int a[2], b[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(b, O_NONBLOCK | O_CLOEXEC), 0);
    /* Both read ends readable, and never drained: each stays ready every iteration. */
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "y", 1), 1);
    s.other_fd = b[0] > a[0] ? b[0] : a[0];
    int first = b[0] > a[0] ? a[0] : b[0]; /* the lower fd is dispatched first */
    assert_int_equal(loop_prepare_add(loop, count_prepare, &s), VEND_OK);
    assert_int_equal(loop_io_add(loop, first, LOOP_READ, selfdel_cb, &s), VEND_OK);
    assert_int_equal(loop_io_add(loop, s.other_fd, LOOP_READ, other_cb, &s), VEND_OK);
    assert_true(loop_timer_add(loop, 50, stop_cb, loop) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.other_calls, 0);
    assert_int_equal(s.readd_calls, 1);
    assert_true(s.readd_iteration > s.del_iteration);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    loop_free(loop);
}

struct hup {
    struct loop *loop;
    int calls, eof;
    unsigned events;
};

static void hup_cb(void *arg, int fd, unsigned events)
{
    struct hup *h = arg;
    char buf[8];

    h->calls++;
    h->events = events;
    if (events & LOOP_READ) {
        if (read(fd, buf, sizeof(buf)) == 0)
            h->eof++;
    } else if (write(fd, "x", 1) < 0 && errno == EPIPE) {
        h->eof++;
    }
    /* What a real callback does on EOF or EPIPE; otherwise the hang-up stays ready. */
    loop_io_del(h->loop, fd);
}

static void test_hangup_reaches_reader_and_writer(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct hup r = {.loop = loop};
    struct hup w = {.loop = loop};
    int a[2], b[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(b, O_NONBLOCK | O_CLOEXEC), 0);
    close(a[1]); /* reader sees POLLHUP */
    close(b[0]); /* writer sees POLLERR */
    assert_int_equal(loop_io_add(loop, a[0], LOOP_READ, hup_cb, &r), VEND_OK);
    assert_int_equal(loop_io_add(loop, b[1], LOOP_WRITE, hup_cb, &w), VEND_OK);
    assert_true(loop_timer_add(loop, 20, stop_cb, loop) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.events, LOOP_READ);
    assert_int_equal(r.eof, 1);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.events, LOOP_WRITE);
    assert_int_equal(w.eof, 1);
    close(a[0]);
    close(b[1]);
    loop_free(loop);
}

struct busy {
    struct loop *loop;
    int timer_runs, io_calls, y_calls;
    int y_fd;
};

static void rearm_cb(void *arg)
{
    struct busy *b = arg;

    b->timer_runs++;
    assert_true(loop_timer_add(b->loop, 0, rearm_cb, b) > 0);
}

static void busy_io_cb(void *arg, int fd, unsigned events)
{
    struct busy *b = arg;

    (void)fd;
    (void)events;
    b->io_calls++;
    loop_stop(b->loop);
}

static void test_zero_delay_rearm_does_not_starve_fds(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct busy b = {.loop = loop};
    int fds[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_io_add(loop, fds[1], LOOP_WRITE, busy_io_cb, &b), VEND_OK);
    assert_true(loop_timer_add(loop, 0, rearm_cb, &b) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(b.io_calls, 1);
    assert_int_equal(b.timer_runs, 1); /* once per iteration, and one iteration ran */
    close(fds[0]);
    close(fds[1]);
    loop_free(loop);
}

static void drop_y_cb(void *arg, int fd, unsigned events)
{
    struct busy *b = arg;

    (void)fd;
    (void)events;
    b->io_calls++;
    /* Y is writable in this same poll result; it must not hear about it any more. */
    assert_int_equal(loop_io_set(b->loop, b->y_fd, LOOP_READ), VEND_OK);
    if (b->io_calls == 3)
        loop_stop(b->loop);
}

static void y_cb(void *arg, int fd, unsigned events)
{
    struct busy *b = arg;

    (void)fd;
    (void)events;
    b->y_calls++;
}

static void test_interest_dropped_during_dispatch_is_honoured(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct busy b = {.loop = loop};
    int x[2], y[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(x, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(y, O_NONBLOCK | O_CLOEXEC), 0);
    int lo = x[1] < y[1] ? x[1] : y[1];
    b.y_fd = x[1] < y[1] ? y[1] : x[1];
    assert_int_equal(loop_io_add(loop, lo, LOOP_WRITE, drop_y_cb, &b), VEND_OK);
    assert_int_equal(loop_io_add(loop, b.y_fd, LOOP_WRITE, y_cb, &b), VEND_OK);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(b.io_calls, 3);
    assert_int_equal(b.y_calls, 0);
    close(x[0]);
    close(x[1]);
    close(y[0]);
    close(y[1]);
    loop_free(loop);
}

static void nop_io(void *arg, int fd, unsigned events)
{
    (void)arg;
    (void)fd;
    (void)events;
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    int fds[2];

    assert_non_null(loop);
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    assert_int_equal(loop_io_add(loop, -1, LOOP_READ, nop_io, NULL), VEND_EINVAL);
    assert_int_equal(loop_io_add(loop, fds[0], LOOP_READ, NULL, NULL), VEND_EINVAL);
    assert_int_equal(loop_io_add(loop, fds[0], 0x100, nop_io, NULL), VEND_EINVAL);
    assert_int_equal(loop_io_add(loop, 1 << 24, LOOP_READ, nop_io, NULL), VEND_EINVAL);
    assert_int_equal(loop_io_add(loop, fds[0], LOOP_READ, nop_io, NULL), VEND_OK);
    assert_int_equal(loop_io_add(loop, fds[0], LOOP_READ, nop_io, NULL), VEND_EINVAL);
    assert_int_equal(loop_io_set(loop, fds[1], LOOP_WRITE), VEND_ENOTFOUND);
    assert_int_equal(loop_io_set(loop, -5, LOOP_WRITE), VEND_ENOTFOUND);
    assert_int_equal(loop_io_set(loop, 100000, LOOP_WRITE), VEND_ENOTFOUND);
    loop_io_del(loop, fds[0]);
    loop_io_del(loop, fds[0]); /* unknown now: ignored */
    loop_io_del(loop, -1);
    assert_int_equal(loop_io_set(loop, fds[0], LOOP_READ), VEND_ENOTFOUND);
    assert_int_equal(loop_timer_add(loop, 1, NULL, NULL), 0);
    assert_int_equal(loop_prepare_add(loop, NULL, NULL), VEND_EINVAL);
    assert_int_equal(loop_signal_set(loop, SIGKILL, NULL, NULL), VEND_EINVAL);
    assert_int_equal(loop_signal_set(loop, SIGSEGV, NULL, NULL), VEND_EINVAL);
    assert_int_equal(loop_signal_set(loop, 0, NULL, NULL), VEND_EINVAL);
    assert_int_equal(loop_signal_set(loop, 100000, NULL, NULL), VEND_EINVAL);
    close(fds[0]);
    close(fds[1]);
    loop_free(loop);
    loop_free(NULL);
}

/* ---- prepare hooks ---- */

struct prep {
    struct loop *loop;
    int prepares, writes;
};

static void prep_cb(void *arg)
{
    ((struct prep *)arg)->prepares++;
}

static void prep_write_cb(void *arg, int fd, unsigned events)
{
    struct prep *p = arg;

    (void)fd;
    (void)events;
    /* A writable pipe is ready on every poll: exactly one dispatch per iteration. */
    if (++p->writes == 5)
        loop_stop(p->loop);
}

static void test_prepare_hook_runs_each_iteration(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct prep p = {.loop = loop};
    int fds[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_prepare_add(loop, prep_cb, &p), VEND_OK);
    assert_int_equal(loop_io_add(loop, fds[1], LOOP_WRITE, prep_write_cb, &p), VEND_OK);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(p.writes, 5);
    assert_int_equal(p.prepares, 5);
    close(fds[0]);
    close(fds[1]);
    loop_free(loop);
}

struct hooks {
    struct loop *loop;
    int h1, h2, h3;
};

static void hook2(void *arg)
{
    ((struct hooks *)arg)->h2++;
}

static void hook3(void *arg)
{
    ((struct hooks *)arg)->h3++;
}

static void hook1(void *arg)
{
    struct hooks *h = arg;

    if (++h->h1 == 2) {
        loop_prepare_del(h->loop, hook1, h); /* itself */
        loop_prepare_del(h->loop, hook2, h); /* a later hook of this same phase */
    }
}

static void hooks_write_cb(void *arg, int fd, unsigned events)
{
    struct hooks *h = arg;

    (void)fd;
    (void)events;
    if (h->h3 == 4)
        loop_stop(h->loop);
}

static void test_prepare_hook_deleted_inside_a_hook(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct hooks h = {.loop = loop};
    int fds[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_prepare_add(loop, hook1, &h), VEND_OK);
    assert_int_equal(loop_prepare_add(loop, hook2, &h), VEND_OK);
    assert_int_equal(loop_prepare_add(loop, hook3, &h), VEND_OK);
    loop_prepare_del(loop, hook3, NULL); /* wrong arg: ignored */
    assert_int_equal(loop_io_add(loop, fds[1], LOOP_WRITE, hooks_write_cb, &h), VEND_OK);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(h.h1, 2);
    assert_int_equal(h.h2, 1);
    assert_int_equal(h.h3, 4);
    close(fds[0]);
    close(fds[1]);
    loop_free(loop);
}

/* ---- turn-end hooks ---- */

struct turn {
    struct loop *loop;
    int rfd;
    char seen[8]; /* r: the fd's callback, t: a timer it armed at 0 ms, e: the turn end */
    size_t n;
};

static void turn_note(struct turn *t, char what)
{
    if (t->n < sizeof(t->seen) - 1)
        t->seen[t->n++] = what;
    if (t->n == 4)
        loop_stop(t->loop);
}

static void turn_timer_cb(void *arg)
{
    turn_note(arg, 't');
}

static void turn_read_cb(void *arg, int fd, unsigned events)
{
    struct turn *t = arg;
    char c;

    (void)events;
    assert_int_equal(read(fd, &c, 1), 1);
    loop_io_del(t->loop, fd);
    assert_true(loop_timer_add(t->loop, 0, turn_timer_cb, t) > 0);
    turn_note(t, 'r');
}

static void turn_end_cb(void *arg)
{
    struct turn *t = arg;

    /* Only the turns that follow the read are noted: the earlier ones have nothing to say. */
    if (t->n > 0)
        turn_note(t, 'e');
}

/* The hook runs at the end of the turn whose fds were dispatched: after the read, before the
 * timer the read armed at 0 ms (which fires at the next turn's start), then once per turn. */
static void test_turn_end_hook_runs_after_dispatch_before_timers(void **state)
{
    (void)state;
    struct loop *loop = loop_new();
    struct guard g;
    struct turn t = {.loop = loop};
    int fds[2];

    assert_non_null(loop);
    guard_arm(&g, loop);
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    t.rfd = fds[0];
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(loop_turn_end_add(loop, turn_end_cb, &t), VEND_OK);
    assert_int_equal(loop_turn_end_add(loop, NULL, NULL), VEND_EINVAL);
    assert_int_equal(loop_io_add(loop, fds[0], LOOP_READ, turn_read_cb, &t), VEND_OK);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_string_equal(t.seen, "rete");
    loop_turn_end_del(loop, turn_end_cb, &t);
    close(fds[0]);
    close(fds[1]);
    loop_free(loop);
}

/* ---- signals ---- */

static int signal_blocked(int signo)
{
    sigset_t cur;

    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
    return sigismember(&cur, signo);
}

static void raise_cb(void *arg)
{
    assert_int_equal(raise(*(int *)arg), 0);
}

static void test_sigterm_stops_loop(void **state)
{
    (void)state;
    int signo = SIGTERM;

    assert_false(signal_blocked(SIGTERM));
    struct loop *loop = loop_new();
    struct guard g;
    assert_non_null(loop);
    assert_true(signal_blocked(SIGTERM));
    guard_arm(&g, loop);
    assert_true(loop_timer_add(loop, 10, raise_cb, &signo) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);

    /* Also delivered to the process rather than the thread, and SIGINT likewise. */
    assert_int_equal(kill(getpid(), SIGINT), 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);

    /* A pending SIGTERM at loop_free is discarded, not delivered after the unblock. */
    assert_int_equal(raise(SIGTERM), 0);
    loop_free(loop);
    assert_false(signal_blocked(SIGTERM));
    assert_false(signal_blocked(SIGHUP));
}

struct sigrec {
    struct loop *loop;
    int signo[4];
    int n;
    void *arg_seen;
};

static void sig_cb(void *arg, int signo)
{
    struct sigrec *r = arg;

    r->arg_seen = arg;
    r->signo[r->n++] = signo;
    if (r->n == 2)
        loop_stop(r->loop);
}

static void test_sighup_handler_via_signal_set(void **state)
{
    (void)state;
    int hup = SIGHUP;
    int usr1 = SIGUSR1;
    struct loop *loop = loop_new();
    struct guard g;
    struct sigrec r = {.loop = loop};

    assert_non_null(loop);
    guard_arm(&g, loop);
    /* Default SIGHUP: ignored, the loop keeps running until the timer stops it. */
    assert_int_equal(raise(SIGHUP), 0);
    assert_true(loop_timer_add(loop, 20, stop_cb, loop) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);

    assert_false(signal_blocked(SIGUSR1));
    assert_int_equal(loop_signal_set(loop, SIGHUP, sig_cb, &r), VEND_OK);
    assert_int_equal(loop_signal_set(loop, SIGUSR1, sig_cb, &r), VEND_OK);
    assert_true(signal_blocked(SIGUSR1));
    assert_true(loop_timer_add(loop, 5, raise_cb, &hup) > 0);
    assert_true(loop_timer_add(loop, 10, raise_cb, &usr1) > 0);
    assert_int_equal(loop_run(loop), VEND_OK);
    assert_int_equal(g.fired, 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.signo[0], SIGHUP);
    assert_int_equal(r.signo[1], SIGUSR1);
    assert_ptr_equal(r.arg_seen, &r);
    loop_free(loop);
    assert_false(signal_blocked(SIGUSR1));
}

static void test_sigpipe_ignored_then_restored(void **state)
{
    (void)state;
    struct sigaction sa;
    int fds[2];

    /* The disposition we inherited (a shell may already ignore SIGPIPE). */
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    void (*before)(int) = sa.sa_handler;
    struct loop *loop = loop_new();
    assert_non_null(loop);
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    close(fds[0]);
    errno = 0;
    assert_int_equal(write(fds[1], "x", 1), -1); /* would kill the test if not ignored */
    assert_int_equal(errno, EPIPE);
    close(fds[1]);
    loop_free(loop);
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_then_insertion_order),
        cmocka_unit_test(test_deleted_timer_never_fires),
        cmocka_unit_test(test_timer_deletes_other_pending_timer),
        cmocka_unit_test(test_ten_thousand_random_timers_fire_in_order),
        cmocka_unit_test(test_stop_from_timer_and_run_again),
        cmocka_unit_test(test_pipe_read_write_and_toggled_write_interest),
        cmocka_unit_test(test_fd_removed_inside_its_own_callback),
        cmocka_unit_test(test_hangup_reaches_reader_and_writer),
        cmocka_unit_test(test_zero_delay_rearm_does_not_starve_fds),
        cmocka_unit_test(test_interest_dropped_during_dispatch_is_honoured),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_prepare_hook_runs_each_iteration),
        cmocka_unit_test(test_prepare_hook_deleted_inside_a_hook),
        cmocka_unit_test(test_turn_end_hook_runs_after_dispatch_before_timers),
        cmocka_unit_test(test_sigterm_stops_loop),
        cmocka_unit_test(test_sighup_handler_via_signal_set),
        cmocka_unit_test(test_sigpipe_ignored_then_restored),
    };

    /* Quiet: the loop logs stopping signals at info level. */
    log_init(LOG_FORMAT_TEXT, LOG_LEVEL_WARN, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
