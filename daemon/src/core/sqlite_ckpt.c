/* sqlite_ckpt.c - the WAL checkpoint on its own connection and thread; see sqlite_ckpt.h. */
#include "sqlite_ckpt.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "xmalloc.h"

struct sqlite_ckpt {
    sqlite3 *conn; /* used by the thread only, once it runs */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    bool wanted, stop;
    int last_rc;
    char last_err[160];
};

static void *run(void *arg)
{
    struct sqlite_ckpt *c = arg;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        int rc;

        while (!c->wanted && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        c->wanted = false;
        pthread_mutex_unlock(&c->mu);
        rc = sqlite3_wal_checkpoint_v2(c->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&c->mu);
        c->last_rc = rc;
        snprintf(c->last_err, sizeof(c->last_err), "%s",
                 rc == SQLITE_OK ? "" : sqlite3_errmsg(c->conn));
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct sqlite_ckpt *sqlite_ckpt_start(const char *path, char *err, size_t errsize)
{
    struct sqlite_ckpt *c = xcalloc(1, sizeof(*c));
    sigset_t all, old;
    int rc;

    /* The file exists (the owner's connection made it, WAL). synchronous=FULL: the
     * checkpoint fsyncs the WAL before it copies and the file after, as the owner's would. */
    rc = sqlite3_open_v2(path, &c->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->conn, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errsize, "checkpoint connection to '%s': %s", path,
                 c->conn != NULL ? sqlite3_errmsg(c->conn) : sqlite3_errstr(rc));
        goto fail;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    /* Every signal blocked in the thread: the loop takes them through its signalfd, and one
     * delivered here (the database may be opened before the loop blocks them) would take
     * its default action, a SIGTERM the end of vendd without its orderly stop. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&c->thread, NULL, run, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errsize, "checkpoint thread for '%s': error %d", path, rc);
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        goto fail;
    }
    return c;
fail:
    sqlite3_close(c->conn);
    free(c);
    return NULL;
}

int sqlite_ckpt_request(struct sqlite_ckpt *c, char *err, size_t errsize)
{
    int rc;

    pthread_mutex_lock(&c->mu);
    rc = c->last_rc;
    snprintf(err, errsize, "%s", c->last_err);
    c->last_rc = SQLITE_OK;
    c->last_err[0] = '\0';
    c->wanted = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void sqlite_ckpt_stop(struct sqlite_ckpt *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    sqlite3_close(c->conn);
    free(c);
}
