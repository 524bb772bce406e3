/*
 * droplog.c - vmsim's drop log; see droplog.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "droplog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_SIZE 256 /* "drop" + time + id (32) + order (64) + unit + slot: about 150 */

int droplog_open(struct droplog *d, const char *path)
{
    d->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (d->fd < 0) {
        fprintf(stderr, "vmsim: cannot open the drop log '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

void droplog_close(struct droplog *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

/* The wall clock as vendd writes times: "2026-11-29T12:00:00.000Z". */
static void now_iso(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

/* One line, one write: O_APPEND keeps lines of several writers whole. */
static void put(struct droplog *d, const char *line, int len)
{
    if (len <= 0 || len >= LINE_SIZE) {
        fprintf(stderr, "vmsim: drop log line too long, not written\n");
        return;
    }
    if (write(d->fd, line, (size_t)len) != (ssize_t)len)
        fprintf(stderr, "vmsim: cannot write the drop log: %s\n", strerror(errno));
}

void droplog_start(struct droplog *d, const char *machine_id)
{
    char line[LINE_SIZE], at[96];

    if (d->fd < 0)
        return;
    now_iso(at, sizeof(at));
    put(d, line, snprintf(line, sizeof(line), "start %s %s\n", at, machine_id));
}

void droplog_drop(void *arg, uint16_t slot)
{
    struct droplog_machine *dm = arg;
    const struct vend_fw_machine *m = dm->m;
    const char *order = "?"; /* a drop outside any run: vend-check reports it */
    unsigned unit = 0;
    char line[LINE_SIZE], at[96];

    if (dm->log->fd < 0)
        return;
    if (m->phase != VEND_FW_IDLE && m->run >= 0 && m->run < VEND_FW_JOURNAL_CAP) {
        order = m->journal.e[m->run].rec.order_id;
        unit = m->journal.e[m->run].rec.unit;
    }
    now_iso(at, sizeof(at));
    put(dm->log, line,
        snprintf(line, sizeof(line), "drop %s %s %s %u %u\n", at, m->machine_id, order, unit,
                 (unsigned)slot));
}
