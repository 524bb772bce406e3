/*
 * droplog.h - vmsim's record of physical drops (--drop-log FILE), for vend-check(1): one line
 * per simulated machine that starts and one per product that leaves a slot, with the order
 * and unit the machine was running as its journal holds them. The format is vend-check's
 * (tools/vend-check/drops.h):
 *
 *   start TIME MACHINE
 *   drop TIME MACHINE ORDER UNIT SLOT
 *
 * Each line is one write(2) to a file opened O_APPEND, so several vmsim processes (and a vmsim
 * restarted after a kill) can share one file, and a line is in the file once the drop is done.
 */
#ifndef VMSIM_DROPLOG_H
#define VMSIM_DROPLOG_H

#include <stdint.h>

#include "vend/fw/machine.h"

struct droplog {
    int fd; /* -1: no drop log */
};

/* What a machine's drop callback (sim_drop_fn) needs: the log and the machine's core. */
struct droplog_machine {
    struct droplog *log;
    const struct vend_fw_machine *m;
};

/* Open (creating, appending to) path. Returns 0, or -1 with a line on stderr. */
int droplog_open(struct droplog *d, const char *path);
void droplog_close(struct droplog *d);

/* The machine id came up. */
void droplog_start(struct droplog *d, const char *machine_id);

/* sim_drop_fn over a struct droplog_machine: a product left slot. */
void droplog_drop(void *arg, uint16_t slot);

#endif
