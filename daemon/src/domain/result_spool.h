/*
 * result_spool.h - machines' results waiting for the database, kept in a local file.
 *
 * libmosquitto sends the PUBACK before vendd sees a result, so a result the database cannot
 * take yet (the queue of dispense_result.h) exists only in vendd's memory: a stop (SIGTERM,
 * a crash) while it waits would lose it, and a machine without a journal would have its unit
 * fail NO_RESULT and refunded though the product dropped. So the queue is written to a file
 * each time it changes, atomically (a temporary file, fsync, rename, fsync of the directory),
 * the file is removed once the queue is empty, and it is read back at the next start.
 *
 * The file: one result a line, the machine's id, a space, and the result as a machine sends
 * it (vend_encode_dispense_result()), at most RESULT_SPOOL_MAX lines. It is input like any
 * other: a line that does not decode is logged and skipped.
 */
#ifndef VENDD_RESULT_SPOOL_H
#define VENDD_RESULT_SPOOL_H

#include <stddef.h>

#include "vend/msg.h"

/* Appended to the SQLite database's path: "var/vendd.db" -> "var/vendd.db-results". With
 * PostgreSQL, the file in vendd's working directory, "vendd-results-" and 16 hex digits of a
 * hash of DATABASE_URL. */
#define RESULT_SPOOL_SUFFIX  "-results"
#define RESULT_SPOOL_PG_FILE "vendd-results"
#define RESULT_SPOOL_MAX     1024

struct result_spool_entry {
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    struct vend_dispense_result r;
};

/*
 * Replace the file at path with the n entries, in order (entry(arg, i) gives the i-th), or
 * remove it when n is 0. Returns VEND_OK, VEND_EINVAL (n > RESULT_SPOOL_MAX, an entry that
 * does not encode) or VEND_EIO (logged with the path); on an error the file is as it was.
 */
typedef const struct result_spool_entry *result_spool_entry_fn(void *arg, size_t i);
int result_spool_save(const char *path, size_t n, result_spool_entry_fn *entry, void *arg);

/*
 * Call fn(arg, entry) for each result of the file at path, in order. Returns the number of
 * results read (0 when there is no file), or VEND_EIO (logged) when it cannot be read.
 */
typedef void result_spool_load_fn(void *arg, const struct result_spool_entry *e);
int result_spool_load(const char *path, result_spool_load_fn *fn, void *arg);

#endif
