/*
 * sqlite_ckpt.h - the WAL checkpoint of a SQLite database, on a thread of its own.
 *
 * A checkpoint copies the pages the WAL holds into the database file and fsyncs both: at a
 * fleet's dispense rate that is hundreds of pages once a second, milliseconds during which
 * the single event loop, had it run the checkpoint, answered nothing. The checkpointer runs
 * it on its own connection and thread instead; SQLite lets one connection checkpoint while
 * another commits (the writer appends to the WAL meanwhile), so the loop only asks.
 */
#ifndef VEND_SQLITE_CKPT_H
#define VEND_SQLITE_CKPT_H

#include <stddef.h>

struct sqlite_ckpt;

/* Opens a second connection to the database at path (WAL, synchronous=FULL) and starts
 * its thread. NULL, with why in err, if either fails: the caller checkpoints itself. */
struct sqlite_ckpt *sqlite_ckpt_start(const char *path, char *err, size_t errsize);

/* Asks for a PASSIVE checkpoint (one that never waits for readers or the writer) and
 * returns at once: the SQLite result code of the previous one (SQLITE_OK, or SQLITE_BUSY
 * when another checkpoint held the lock), which err describes. Requests made while one
 * runs are one request. */
int sqlite_ckpt_request(struct sqlite_ckpt *c, char *err, size_t errsize);

/* Waits for a running checkpoint, stops the thread, closes its connection. NULL is fine. */
void sqlite_ckpt_stop(struct sqlite_ckpt *c);

#endif
