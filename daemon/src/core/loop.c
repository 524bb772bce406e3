/*
 * loop.c - poll() + a timer min-heap + a signalfd. See loop.h for the
 * contract and docs/internals/loop.md for how the pieces fit.
 *
 * File descriptors: `watches` is a side table indexed by fd (fds are small
 * dense integers) holding {events, fn, arg, gen}. The pollfd array is rebuilt
 * only when the set of fds changes; loop_io_set() patches the entry in place,
 * because mosquitto toggles write interest on nearly every iteration. Every
 * add gets a fresh generation number, copied next to the pollfd entry, so a
 * dispatch never calls a watch that was deleted (or deleted and re-added for
 * the same fd number) by an earlier callback of the same iteration.
 *
 * Timers: a slab of nodes plus a binary min-heap of slab indices keyed by
 * (deadline, id). An id is (sequence << TIMER_SLOT_BITS | slot): the sequence
 * grows by one per add, so ids are never reused, sort in insertion order
 * (equal deadlines fire first-in first-out) and find their node in O(1);
 * deletion removes the node from the heap in O(log n).
 *
 * Signals: the handled set is blocked in loop_new() and read from a signalfd,
 * so there is no async signal handler and no global flag.
 */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "vend/err.h"
#include "xmalloc.h"

/* The longest poll() sleep: bounds the damage of a library that forgets to ask for a wakeup. */
#define LOOP_POLL_MAX_MS 1000
/* fds at or above this are refused: the side table is indexed by fd. */
#define LOOP_FD_MAX (1 << 20)
/* Pending timers; far above thousands of open orders, low enough to bound memory (~40 MiB). */
#define TIMER_SLOT_BITS  20
#define LOOP_TIMERS_MAX  (1u << TIMER_SLOT_BITS)
#define TIMER_SLOT_MASK  ((uint64_t)LOOP_TIMERS_MAX - 1)
#define LOOP_PREPARE_MAX 32
#define SLOT_NONE        UINT32_MAX

struct watch {
    loop_io_fn *fn; /* NULL: not watched */
    void *arg;
    unsigned events;
    uint32_t pidx; /* index into pfds while !pfds_dirty */
    uint64_t gen;
};

struct timer {
    uint64_t id; /* 0: free slot */
    uint64_t deadline;
    loop_timer_fn *fn;
    void *arg;
    uint32_t hidx;      /* position in heap while pending */
    uint32_t next_free; /* free list link while free */
};

struct sig_handler {
    loop_signal_fn *fn; /* NULL: the default action */
    void *arg;
};

struct prepare {
    loop_prepare_fn *fn;
    void *arg;
};

/* Hooks of one phase: before poll (prepare) or after the dispatch (turn end). */
struct hooks {
    struct prepare *v; /* fn == NULL: deleted, compacted after the phase */
    size_t n;
    bool running;
};

struct loop {
    uint64_t now_ms;
    bool stop;

    struct watch *watches; /* indexed by fd */
    size_t nwatches_cap;
    size_t nwatched;
    uint64_t next_gen;
    struct pollfd *pfds;
    uint64_t *pgens; /* generation of the watch each pfds entry was built from */
    size_t npfds;
    size_t pfds_cap;
    bool pfds_dirty;

    struct timer *timers; /* slab */
    uint32_t ntimers_cap;
    uint32_t free_head;
    uint32_t *heap; /* slab indices */
    uint32_t nheap;
    uint64_t next_seq;

    struct hooks prepares, turn_ends;

    int sfd;
    sigset_t sigs;     /* the set read through sfd */
    sigset_t old_mask; /* restored by loop_free */
    struct sigaction old_sigpipe;
    struct sig_handler handlers[NSIG];
};

static uint64_t clock_ms(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- signals ---- */

static void signal_default(struct loop *loop, int signo)
{
    if (signo == SIGTERM || signo == SIGINT) {
        log_info("received signal %d (%s), stopping", signo, strsignal(signo));
        loop_stop(loop);
    }
}

static void signal_read(void *arg, int fd, unsigned events)
{
    struct loop *loop = arg;
    struct signalfd_siginfo si;

    (void)events;
    for (;;) {
        ssize_t n = read(fd, &si, sizeof(si));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN)
                log_warn("cannot read signalfd");
            return;
        }
        if ((size_t)n != sizeof(si)) {
            log_warnx("short read of %zd bytes from signalfd", n);
            return;
        }
        int signo = (int)si.ssi_signo;
        if (signo <= 0 || signo >= NSIG)
            continue;
        /* Copy: the handler may replace itself through loop_signal_set(). */
        struct sig_handler h = loop->handlers[signo];
        if (h.fn != NULL)
            h.fn(h.arg, signo);
        else
            signal_default(loop, signo);
    }
}

/* Synchronous and uncatchable signals cannot be handled through a signalfd. */
static bool signal_allowed(int signo)
{
    if (signo <= 0 || signo >= NSIG)
        return false;
    switch (signo) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGABRT:
        return false;
    default:
        return true;
    }
}

/* ---- timer heap ---- */

static bool timer_before(const struct loop *loop, uint32_t a, uint32_t b)
{
    const struct timer *ta = &loop->timers[a];
    const struct timer *tb = &loop->timers[b];

    if (ta->deadline != tb->deadline)
        return ta->deadline < tb->deadline;
    return ta->id < tb->id;
}

static void heap_place(struct loop *loop, uint32_t i, uint32_t slot)
{
    loop->heap[i] = slot;
    loop->timers[slot].hidx = i;
}

static void heap_up(struct loop *loop, uint32_t i)
{
    uint32_t slot = loop->heap[i];

    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!timer_before(loop, slot, loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, slot);
}

static void heap_down(struct loop *loop, uint32_t i)
{
    uint32_t slot = loop->heap[i];

    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && timer_before(loop, loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop, loop->heap[child], slot))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, slot);
}

/* Takes the timer in slot out of the heap and returns the slot to the free list. */
static void timer_release(struct loop *loop, uint32_t slot)
{
    struct timer *t = &loop->timers[slot];
    uint32_t i = t->hidx;

    loop->nheap--;
    if (i != loop->nheap) {
        /* Fill the hole with the last leaf, then restore order in whichever direction. */
        uint32_t moved = loop->heap[loop->nheap];
        heap_place(loop, i, moved);
        if (i > 0 && timer_before(loop, moved, loop->heap[(i - 1) / 2]))
            heap_up(loop, i);
        else
            heap_down(loop, i);
    }
    t->id = 0;
    t->fn = NULL;
    t->arg = NULL;
    t->next_free = loop->free_head;
    loop->free_head = slot;
}

static void timer_grow(struct loop *loop)
{
    uint32_t old = loop->ntimers_cap;
    uint32_t cap = old ? old * 2 : 64;

    if (cap > LOOP_TIMERS_MAX)
        cap = LOOP_TIMERS_MAX;
    loop->timers = xrealloc(loop->timers, (size_t)cap * sizeof(*loop->timers));
    loop->heap = xrealloc(loop->heap, (size_t)cap * sizeof(*loop->heap));
    /* Chain the new slots so the lowest index is handed out first. */
    for (uint32_t i = cap; i > old; i--) {
        struct timer *t = &loop->timers[i - 1];
        memset(t, 0, sizeof(*t));
        t->next_free = loop->free_head;
        loop->free_head = i - 1;
    }
    loop->ntimers_cap = cap;
}

/* Fires the timers due at loop->now_ms, oldest deadline first. */
static void timer_run(struct loop *loop)
{
    /* Timers added by these callbacks wait for the next iteration even with delay 0,
     * so a timer that re-arms itself cannot starve the fds. Every older due timer sorts
     * before any newer one, so stopping at the first new id misses nothing. */
    uint64_t first_new = loop->next_seq << TIMER_SLOT_BITS;

    while (loop->nheap > 0) {
        uint32_t slot = loop->heap[0];
        struct timer *t = &loop->timers[slot];
        if (t->deadline > loop->now_ms || t->id >= first_new)
            break;
        loop_timer_fn *fn = t->fn;
        void *arg = t->arg;
        timer_release(loop, slot);
        fn(arg);
    }
}

/* ---- fds ---- */

static short poll_events(unsigned events)
{
    short ev = 0;

    if (events & LOOP_READ)
        ev |= POLLIN;
    if (events & LOOP_WRITE)
        ev |= POLLOUT;
    return ev;
}

static void pfds_rebuild(struct loop *loop)
{
    if (loop->pfds_cap < loop->nwatched) {
        size_t cap = loop->nwatched * 2;
        loop->pfds = xrealloc(loop->pfds, cap * sizeof(*loop->pfds));
        loop->pgens = xrealloc(loop->pgens, cap * sizeof(*loop->pgens));
        loop->pfds_cap = cap;
    }
    loop->npfds = 0;
    for (size_t fd = 0; fd < loop->nwatches_cap; fd++) {
        struct watch *w = &loop->watches[fd];
        if (w->fn == NULL)
            continue;
        struct pollfd *p = &loop->pfds[loop->npfds];
        /* No events: leave it out of poll() so a hang-up cannot spin the loop. */
        p->fd = w->events ? (int)fd : -1;
        p->events = poll_events(w->events);
        p->revents = 0;
        loop->pgens[loop->npfds] = w->gen;
        w->pidx = (uint32_t)loop->npfds;
        loop->npfds++;
    }
    loop->pfds_dirty = false;
}

static void io_dispatch(struct loop *loop)
{
    for (size_t i = 0; i < loop->npfds; i++) {
        short rev = loop->pfds[i].revents;
        int fd = loop->pfds[i].fd;
        if (rev == 0 || fd < 0)
            continue;
        /* Re-read per entry: an earlier callback may have grown the table or changed fd. */
        struct watch *w = &loop->watches[fd];
        if (w->fn == NULL || w->gen != loop->pgens[i])
            continue;
        unsigned ev = 0;
        if (rev & (POLLIN | POLLPRI))
            ev |= LOOP_READ;
        if (rev & POLLOUT)
            ev |= LOOP_WRITE;
        /* An error or hang-up goes to every watched event, so that a write-only
         * watcher's write() sees EPIPE instead of the loop spinning on POLLERR. */
        if (rev & (POLLERR | POLLHUP | POLLNVAL))
            ev |= w->events;
        /* An earlier callback may have dropped interest since poll() returned. */
        ev &= w->events;
        if (ev == 0)
            continue;
        w->fn(w->arg, fd, ev);
    }
}

/* ---- public API ---- */

struct loop *loop_new(void)
{
    struct loop *loop = xcalloc(1, sizeof(*loop));
    struct sigaction ign;
    int err;

    loop->sfd = -1;
    loop->next_seq = 1;
    loop->free_head = SLOT_NONE;
    sigemptyset(&loop->sigs);
    sigaddset(&loop->sigs, SIGTERM);
    sigaddset(&loop->sigs, SIGINT);
    sigaddset(&loop->sigs, SIGHUP);
    err = pthread_sigmask(SIG_BLOCK, &loop->sigs, &loop->old_mask);
    if (err != 0) {
        free(loop);
        errno = err;
        return NULL;
    }
    /* A peer closing a socket must give EPIPE, not kill the daemon. libmosquitto's
     * mosquitto_new() does the same process-wide; we do not rely on it. */
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &loop->old_sigpipe);

    loop->sfd = signalfd(-1, &loop->sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (loop->sfd < 0)
        goto fail;
    if (loop_io_add(loop, loop->sfd, LOOP_READ, signal_read, loop) < 0) {
        errno = EINVAL;
        goto fail;
    }
    loop->now_ms = clock_ms();
    return loop;

fail:
    err = errno;
    loop_free(loop);
    errno = err;
    return NULL;
}

void loop_free(struct loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->sfd >= 0) {
        struct signalfd_siginfo si;
        /* Consume pending signals so unblocking them cannot run their default action. */
        while (read(loop->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            ;
        close(loop->sfd);
    }
    pthread_sigmask(SIG_SETMASK, &loop->old_mask, NULL);
    sigaction(SIGPIPE, &loop->old_sigpipe, NULL);
    free(loop->watches);
    free(loop->pfds);
    free(loop->pgens);
    free(loop->timers);
    free(loop->heap);
    free(loop->prepares.v);
    free(loop->turn_ends.v);
    free(loop);
}

int loop_io_add(struct loop *loop, int fd, unsigned events, loop_io_fn *fn, void *arg)
{
    if (fd < 0 || fd >= LOOP_FD_MAX || fn == NULL || (events & ~(LOOP_READ | LOOP_WRITE)))
        return VEND_EINVAL;
    if ((size_t)fd >= loop->nwatches_cap) {
        size_t cap = loop->nwatches_cap ? loop->nwatches_cap : 16;
        while (cap <= (size_t)fd)
            cap *= 2;
        loop->watches = xrealloc(loop->watches, cap * sizeof(*loop->watches));
        memset(&loop->watches[loop->nwatches_cap], 0,
               (cap - loop->nwatches_cap) * sizeof(*loop->watches));
        loop->nwatches_cap = cap;
    }
    struct watch *w = &loop->watches[fd];
    if (w->fn != NULL)
        return VEND_EINVAL;
    w->fn = fn;
    w->arg = arg;
    w->events = events;
    w->gen = ++loop->next_gen;
    loop->nwatched++;
    loop->pfds_dirty = true;
    return VEND_OK;
}

int loop_io_set(struct loop *loop, int fd, unsigned events)
{
    if (events & ~(LOOP_READ | LOOP_WRITE))
        return VEND_EINVAL;
    if (fd < 0 || (size_t)fd >= loop->nwatches_cap || loop->watches[fd].fn == NULL)
        return VEND_ENOTFOUND;
    struct watch *w = &loop->watches[fd];
    if (w->events == events)
        return VEND_OK;
    /* Switching to or from "no events" changes pfds[].fd: rebuild instead. */
    if (!loop->pfds_dirty && w->events != 0 && events != 0)
        loop->pfds[w->pidx].events = poll_events(events);
    else
        loop->pfds_dirty = true;
    w->events = events;
    return VEND_OK;
}

void loop_io_del(struct loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nwatches_cap || loop->watches[fd].fn == NULL)
        return;
    memset(&loop->watches[fd], 0, sizeof(loop->watches[fd]));
    loop->nwatched--;
    loop->pfds_dirty = true;
}

uint64_t loop_timer_add(struct loop *loop, uint64_t delay_ms, loop_timer_fn *fn, void *arg)
{
    if (fn == NULL)
        return 0;
    if (loop->free_head == SLOT_NONE) {
        if (loop->ntimers_cap >= LOOP_TIMERS_MAX) {
            log_warnx("too many timers (%u), refusing another", LOOP_TIMERS_MAX);
            return 0;
        }
        timer_grow(loop);
    }
    uint32_t slot = loop->free_head;
    struct timer *t = &loop->timers[slot];
    loop->free_head = t->next_free;

    t->id = (loop->next_seq++ << TIMER_SLOT_BITS) | slot;
    t->deadline = delay_ms > UINT64_MAX - loop->now_ms ? UINT64_MAX : loop->now_ms + delay_ms;
    t->fn = fn;
    t->arg = arg;
    t->next_free = SLOT_NONE;
    loop->heap[loop->nheap] = slot;
    t->hidx = loop->nheap;
    loop->nheap++;
    heap_up(loop, t->hidx);
    return t->id;
}

void loop_timer_del(struct loop *loop, uint64_t id)
{
    uint64_t slot = id & TIMER_SLOT_MASK;

    if (id == 0 || slot >= loop->ntimers_cap || loop->timers[slot].id != id)
        return;
    timer_release(loop, (uint32_t)slot);
}

/* Drops deleted hooks; never while the hooks run, so their indices stay put. */
static void hooks_compact(struct hooks *h)
{
    size_t n = 0;

    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].fn != NULL)
            h->v[n++] = h->v[i];
    }
    h->n = n;
}

static int hooks_add(struct hooks *h, loop_prepare_fn *fn, void *arg)
{
    if (fn == NULL)
        return VEND_EINVAL;
    if (!h->running)
        hooks_compact(h);
    if (h->n >= LOOP_PREPARE_MAX)
        return VEND_ENOSPACE;
    h->v = xrealloc(h->v, (h->n + 1) * sizeof(*h->v));
    h->v[h->n].fn = fn;
    h->v[h->n].arg = arg;
    h->n++;
    return VEND_OK;
}

static void hooks_del(struct hooks *h, loop_prepare_fn *fn, void *arg)
{
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].fn == fn && h->v[i].arg == arg && fn != NULL) {
            h->v[i].fn = NULL;
            h->v[i].arg = NULL;
            break;
        }
    }
    if (!h->running)
        hooks_compact(h);
}

/* By index with the count re-read: a hook may add or delete hooks. */
static void hooks_run(struct hooks *h)
{
    h->running = true;
    for (size_t i = 0; i < h->n; i++) {
        struct prepare p = h->v[i];
        if (p.fn != NULL)
            p.fn(p.arg);
    }
    h->running = false;
    hooks_compact(h);
}

int loop_prepare_add(struct loop *loop, loop_prepare_fn *fn, void *arg)
{
    return hooks_add(&loop->prepares, fn, arg);
}

void loop_prepare_del(struct loop *loop, loop_prepare_fn *fn, void *arg)
{
    hooks_del(&loop->prepares, fn, arg);
}

int loop_turn_end_add(struct loop *loop, loop_prepare_fn *fn, void *arg)
{
    return hooks_add(&loop->turn_ends, fn, arg);
}

void loop_turn_end_del(struct loop *loop, loop_prepare_fn *fn, void *arg)
{
    hooks_del(&loop->turn_ends, fn, arg);
}

int loop_signal_set(struct loop *loop, int signo, loop_signal_fn *fn, void *arg)
{
    if (!signal_allowed(signo))
        return VEND_EINVAL;
    if (!sigismember(&loop->sigs, signo)) {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signo);
        if (pthread_sigmask(SIG_BLOCK, &one, NULL) != 0)
            return VEND_EINVAL;
        sigaddset(&loop->sigs, signo);
        if (signalfd(loop->sfd, &loop->sigs, 0) < 0) {
            log_warn("cannot add signal %d to the signalfd", signo);
            return VEND_EIO;
        }
    }
    loop->handlers[signo].fn = fn;
    loop->handlers[signo].arg = arg;
    return VEND_OK;
}

uint64_t loop_now_ms(const struct loop *loop)
{
    return loop->now_ms;
}

int loop_run(struct loop *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        loop->now_ms = clock_ms();
        timer_run(loop);
        if (loop->stop)
            break;
        hooks_run(&loop->prepares);
        if (loop->stop)
            break;
        if (loop->pfds_dirty)
            pfds_rebuild(loop);

        int timeout = LOOP_POLL_MAX_MS;
        if (loop->nheap > 0) {
            uint64_t now = clock_ms();
            uint64_t deadline = loop->timers[loop->heap[0]].deadline;
            uint64_t wait = deadline > now ? deadline - now : 0;
            if (wait < (uint64_t)timeout)
                timeout = (int)wait;
        }
        int n = poll(loop->pfds, (nfds_t)loop->npfds, timeout);
        loop->now_ms = clock_ms();
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_warn("poll on %zu fds", loop->npfds);
            return VEND_EIO;
        }
        if (n > 0)
            io_dispatch(loop);
        hooks_run(&loop->turn_ends);
    }
    return VEND_OK;
}

void loop_stop(struct loop *loop)
{
    loop->stop = true;
}
