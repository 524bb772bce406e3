/* sqlite_sync.c - the WAL's fsync on its own thread; see sqlite_sync.h. */
#include "sqlite_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vend/err.h"
#include "xmalloc.h"

struct sqlite_sync {
    char *path;
    int wal;    /* the thread's once it runs */
    int donefd; /* eventfd: a sync finished */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    uint64_t wanted, done; /* generations asked for and made durable */
    bool stop, failed;
    char err[160];
    unsigned delay_ms; /* test builds: each sync waits this long first (sqlite_sync.h) */
};

/* Makes the WAL file's data durable; false with s->err (under mu when the caller reads it). */
static bool sync_once(struct sqlite_sync *s, char *err, size_t errsize)
{
    struct stat now, ours;

    if (stat(s->path, &now) < 0) {
        /* SQLite removes the WAL only after copying it into the database file, synced. */
        if (errno == ENOENT)
            return true;
        snprintf(err, errsize, "stat '%s': %s", s->path, strerror(errno));
        return false;
    }
    if (fstat(s->wal, &ours) < 0 || ours.st_ino != now.st_ino || ours.st_dev != now.st_dev) {
        int fd = open(s->path, O_RDONLY | O_CLOEXEC);

        if (fd < 0) {
            snprintf(err, errsize, "open '%s': %s", s->path, strerror(errno));
            return false;
        }
        close(s->wal);
        s->wal = fd;
    }
    if (s->delay_ms > 0) {
        struct timespec ts = {.tv_sec = s->delay_ms / 1000,
                              .tv_nsec = (long)(s->delay_ms % 1000) * 1000000};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    if (fdatasync(s->wal) < 0) {
        snprintf(err, errsize, "fdatasync '%s': %s", s->path, strerror(errno));
        return false;
    }
    return true;
}

static void *run(void *arg)
{
    struct sqlite_sync *s = arg;
    uint64_t one = 1;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        char err[sizeof(s->err)] = "";
        uint64_t gen;
        bool ok;

        while (s->wanted == s->done && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->wanted == s->done)
            break; /* stopped, nothing owed */
        gen = s->wanted;
        pthread_mutex_unlock(&s->mu);
        ok = sync_once(s, err, sizeof(err));
        pthread_mutex_lock(&s->mu);
        if (ok) {
            s->done = gen;
        } else {
            s->failed = true;
            memcpy(s->err, err, sizeof(err));
        }
        /* A full counter (2^64 - 2 wakeups unread) cannot happen; the loop reads it. */
        if (write(s->donefd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            abort();
        if (!ok)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

struct sqlite_sync *sqlite_sync_start(const char *wal_path, char *err, size_t errsize)
{
    struct sqlite_sync *s = xcalloc(1, sizeof(*s));
    sigset_t all, old;
    int rc;

    s->path = xstrdup(wal_path);
    s->donefd = -1;
#ifdef VEND_CRASH_POINTS
    {
        const char *delay = getenv(SQLITE_SYNC_DELAY_ENV);

        if (delay != NULL) {
            unsigned long ms = strtoul(delay, NULL, 10);
            s->delay_ms = ms <= SQLITE_SYNC_DELAY_MAX_MS ? (unsigned)ms : 0;
        }
    }
#endif
    s->wal = open(wal_path, O_RDONLY | O_CLOEXEC);
    if (s->wal < 0) {
        snprintf(err, errsize, "open '%s': %s", wal_path, strerror(errno));
        goto fail;
    }
    s->donefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->donefd < 0) {
        snprintf(err, errsize, "eventfd for the syncer of '%s': %s", wal_path, strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    /* Every signal blocked in the thread: the loop takes them through its signalfd. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&s->thread, NULL, run, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errsize, "sync thread for '%s': error %d", wal_path, rc);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        goto fail;
    }
    return s;
fail:
    if (s->wal >= 0)
        close(s->wal);
    if (s->donefd >= 0)
        close(s->donefd);
    free(s->path);
    free(s);
    return NULL;
}

void sqlite_sync_request(struct sqlite_sync *s, uint64_t gen)
{
    pthread_mutex_lock(&s->mu);
    if (gen > s->wanted) {
        s->wanted = gen;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

int sqlite_sync_fd(const struct sqlite_sync *s)
{
    return s->donefd;
}

int sqlite_sync_take(struct sqlite_sync *s, uint64_t *gen, char *err, size_t errsize)
{
    uint64_t n;
    int rc = VEND_OK;

    while (read(s->donefd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&s->mu);
    *gen = s->done;
    if (s->failed) {
        snprintf(err, errsize, "%s", s->err);
        rc = VEND_EIO;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sqlite_sync_stop(struct sqlite_sync *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    close(s->wal);
    close(s->donefd);
    free(s->path);
    free(s);
}
