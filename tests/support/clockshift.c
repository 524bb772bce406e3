/*
 * clockshift.c - an LD_PRELOAD shim that steps a real process's wall clock, for the tests of
 * wall-clock steps (tests/integration/it_clock_step.c).
 *
 * CLOCKSHIFT_FILE names a small file holding a signed offset in milliseconds ("3600000",
 * "-3600000"; missing, empty or unreadable: 0). clock_gettime(CLOCK_REALTIME and its
 * _COARSE variant), gettimeofday() and time() return the real time plus that offset; the
 * monotonic clocks are left alone, as a real step leaves them. The test steps the clock by
 * rewriting the file (write a new file, rename it over the old one): the offset is read
 * again when 20 ms of monotonic time have passed since the last read, so a step takes effect
 * at once for all practical purposes while a busy process does not read a file per call.
 *
 * Under ASan (whose runtime is in the executable and intercepts clock_gettime first, then
 * calls the next one, this one) the process needs ASAN_OPTIONS=verify_asan_link_order=0.
 *
 * Globals: the cached offset and the time it was read, shared by every thread of the process
 * the shim is loaded into (an interposed libc function has no context to carry them).
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REREAD_NS    20000000LL /* the file is read at most every 20 ms */
#define MAX_SHIFT_MS (10LL * 365 * 86400 * 1000)

typedef int clock_gettime_fn(clockid_t, struct timespec *);

static _Atomic int64_t s_offset_ms;
static _Atomic int64_t s_read_at_ns = -1; /* monotonic ns of the last read; -1: never */

static clock_gettime_fn *real_clock_gettime(void)
{
    static clock_gettime_fn *_Atomic real;
    clock_gettime_fn *fn = atomic_load(&real);

    if (fn == NULL) {
        fn = (clock_gettime_fn *)dlsym(RTLD_NEXT, "clock_gettime");
        atomic_store(&real, fn);
    }
    return fn;
}

/* The offset in the file, or 0 when there is none or it is not a plain number in range. */
static int64_t read_offset(const char *path)
{
    char buf[32], *end;
    long long v;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\0' && *end != '\n') || v > MAX_SHIFT_MS ||
        v < -MAX_SHIFT_MS)
        return 0;
    return v;
}

static int64_t offset_ms(void)
{
    const char *path = getenv("CLOCKSHIFT_FILE");
    clock_gettime_fn *real = real_clock_gettime();
    struct timespec ts;
    int64_t now, last;
    int saved = errno;

    if (path == NULL || *path == '\0' || real == NULL)
        return 0;
    if (real(CLOCK_MONOTONIC, &ts) != 0)
        return atomic_load(&s_offset_ms);
    now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    last = atomic_load(&s_read_at_ns);
    if (last < 0 || now - last >= REREAD_NS) {
        atomic_store(&s_offset_ms, read_offset(path));
        atomic_store(&s_read_at_ns, now);
    }
    errno = saved;
    return atomic_load(&s_offset_ms);
}

/* ts += ms, normalised. */
static void shift(struct timespec *ts, int64_t ms)
{
    int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000LL;

    ts->tv_sec += (time_t)(ms / 1000);
    if (ns < 0) {
        ns += 1000000000LL;
        ts->tv_sec -= 1;
    } else if (ns >= 1000000000LL) {
        ns -= 1000000000LL;
        ts->tv_sec += 1;
    }
    ts->tv_nsec = (long)ns;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    clock_gettime_fn *real = real_clock_gettime();
    int rc;

    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    rc = real(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts, offset_ms());
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec ts;

    (void)tz; /* tv is declared nonnull */
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = (suseconds_t)(ts.tv_nsec / 1000);
    return 0;
}

time_t time(time_t *out)
{
    struct timespec ts;
    time_t t = (time_t)-1;

    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        t = ts.tv_sec;
    if (out != NULL)
        *out = t;
    return t;
}
