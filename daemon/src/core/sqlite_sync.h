/*
 * sqlite_sync.h - the fsync of a SQLite write-ahead log, on a thread of its own.
 *
 * A telemetry batch is committed without waiting for the disk (synchronous=NORMAL for that
 * one batch, db_batch_begin_lazy()); the syncer then fdatasyncs the WAL file while the loop
 * goes on with the next batch. At a fleet's telemetry rate the fsync was a sixth of the
 * loop's time, every bit of it waiting. What depends on the batch (the event stream) waits
 * for the syncer's word instead (db_durable()).
 *
 * Why an fd of our own is enough: fdatasync() flushes the file's data, whoever wrote it, and
 * SQLite keeps the WAL file (one inode) while a connection is open; the syncer still checks
 * the inode before each sync and reopens the file when it changed.
 *
 * Test builds (VEND_CRASH_POINTS, crashpoint.h) read SQLITE_SYNC_DELAY_ENV: each sync then
 * waits that many milliseconds first, so a test can watch what waits for the disk.
 */
#ifndef VEND_SQLITE_SYNC_H
#define VEND_SQLITE_SYNC_H

#include <stddef.h>
#include <stdint.h>

struct sqlite_sync;

#define SQLITE_SYNC_DELAY_ENV    "VENDD_TEST_SYNC_DELAY_MS"
#define SQLITE_SYNC_DELAY_MAX_MS 60000

/* Opens wal_path (the database's "-wal" file, which must exist) and starts the thread. NULL,
 * with why in err, if either fails: the caller commits with a sync of its own. */
struct sqlite_sync *sqlite_sync_start(const char *wal_path, char *err, size_t errsize);

/* Asks that everything written to the WAL so far be made durable, as generation gen (they
 * grow); returns at once. Requests made while a sync runs are one more sync. */
void sqlite_sync_request(struct sqlite_sync *s, uint64_t gen);

/* Readable (an eventfd) when a sync finished: sqlite_sync_take() says which. */
int sqlite_sync_fd(const struct sqlite_sync *s);

/* Reads the fd; *gen is the newest generation made durable. VEND_EIO when a sync failed (err
 * says why): what it was to make durable may not be, and no later sync is tried. */
int sqlite_sync_take(struct sqlite_sync *s, uint64_t *gen, char *err, size_t errsize);

/* Waits for a running sync, stops the thread, closes the fds. NULL is fine. */
void sqlite_sync_stop(struct sqlite_sync *s);

#endif
