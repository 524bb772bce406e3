/*
 * db_backend.h - the seam under db.h: one struct of function pointers per backend
 * (db_sqlite.c, db_pg.c). Internal to db*.c and the database tests; the rest
 * of the daemon uses db.h only.
 *
 * db.c owns struct db, picks the backend from the URL, and implements everything that
 * is the same for all backends (migrations, schema version, argument checks) on top of
 * the ops below. A backend keeps its connection state in db->be and reports errors by
 * returning a negative VEND_E* value after calling db_set_error().
 */
#ifndef VENDD_DB_BACKEND_H
#define VENDD_DB_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "db.h"
#include "schema.h"

/* Longest detail message kept for db_errmsg(); longer ones are truncated. */
#define DB_ERRMSG_MAX 512
/* Most parameters one statement may take (db_exec returns VEND_ETOOBIG above). */
#define DB_MAX_PARAMS 100

/* commit()'s and commit_lazy()'s answer for a transaction that changed no row. */
#define DB_COMMIT_EMPTY 2

struct db_backend {
    const char *name;
    /* Migrations compiled in for this backend, versions 1..*nmigrations in order. */
    const struct schema_migration *migrations;
    const int *nmigrations;
    /* A query with one result column: the name of every table that belongs to the
     * application (not the backend's own catalog tables). */
    const char *sql_tables;

    /* Connect to target (the URL without its scheme); sets db->be on success. On failure
     * db->be is left NULL and the detail is in db->errmsg. */
    int (*open)(struct db *db, const char *target);
    /* Frees db->be and everything it holds. */
    void (*close)(struct db *db);
    /* As db_exec(); arguments are already checked by db.c. */
    int (*exec)(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
                db_row_fn *fn, void *arg);
    /* Runs text that may hold several statements and no parameters (migrations). */
    int (*script)(struct db *db, const char *sql);
    int (*begin)(struct db *db);
    /* DB_COMMIT_EMPTY when the transaction changed no row: such a commit may write and sync
     * nothing (SQLite), so it makes no earlier lazy commit durable and is not counted. */
    int (*commit)(struct db *db);
    /* Optional, both or neither: begin a transaction whose commit_lazy() does not wait for the
     * disk; that commit is generation gen, and durable_take() says when it is durable.
     * commit_lazy() returns 1 when it did wait after all (the backend could not defer it),
     * DB_COMMIT_EMPTY as commit(). */
    int (*begin_lazy)(struct db *db);
    int (*commit_lazy)(struct db *db, uint64_t gen);
    /* Optional, with commit_lazy: an fd readable when a lazy commit may have become durable,
     * or -1 while none can. */
    int (*durable_fd)(struct db *db);
    /* Optional, with commit_lazy: *gen, the newest lazy generation made durable (0: none).
     * VEND_EIO when making one durable failed; later lazy commits wait for the disk. */
    int (*durable_take)(struct db *db, uint64_t *gen);
    /* Optional: the rows this connection has inserted, updated or deleted since it opened,
     * triggers included; without it, db_batch_guard() keeps every savepoint. */
    uint64_t (*changes)(struct db *db);
    /* Does nothing when no transaction is open. */
    int (*rollback)(struct db *db);
    /* A transaction is open (some errors end one by themselves: a batch must notice). */
    bool (*in_transaction)(struct db *db);
    /* Move what the write-ahead log holds into the database file, as far as it can without
     * waiting for readers; VEND_OK also when there is nothing to do or no such log. */
    int (*checkpoint)(struct db *db);
    /* Optional (NULL: the backend's file lock already decides, db_claim_instance()): take
     * the claim now and again on every new session; VEND_ECONFLICT when another holds it. */
    int (*claim)(struct db *db, const char *client_id, bool in_group);
    /* What moves at every change of the data: this connection's changes and the commits of
     * any other connection (for caches of what was read). */
    void (*version)(struct db *db, uint64_t out[2]);
    /* Optional: the same, out[0] moving only with changes to the tables reads names
     * (db_version_of()). */
    void (*version_of)(struct db *db, const struct db_reads *reads, uint64_t out[2]);
    /* Optional, with version_of: count a change to name (db_touch()). */
    void (*touch)(struct db *db, const char *name);

    /* Row accessors; col is already checked against row_count. */
    int (*row_count)(const struct db_row *row);
    bool (*row_is_null)(const struct db_row *row, int col);
    int64_t (*row_int)(const struct db_row *row, int col);
    double (*row_real)(const struct db_row *row, int col);
    const char *(*row_text)(const struct db_row *row, int col);
    const char *(*row_name)(const struct db_row *row, int col);
    enum db_type (*row_type)(const struct db_row *row, int col);
};

struct db {
    const struct db_backend *ops;
    void *be; /* backend state, owned by ops */
    char errmsg[DB_ERRMSG_MAX];
    bool batch;     /* db_batch_begin() opened a transaction that db_batch_commit() ends */
    bool nested;    /* inside the batch, db_begin() opened the savepoint */
    bool lazy;      /* the batch is db_batch_begin_lazy()'s, with the backend's begin_lazy */
    bool unguarded; /* db_batch_guard(false): messages open no savepoint */
    bool spoiled;   /* an unguarded message failed after it changed rows: the batch holds part
                       of it, and only db_batch_abort() may end the batch */
    uint64_t message_mark; /* ops->changes() when the unguarded message began */
    bool lost; /* the database ended the last batch's transaction by itself (db_batch_lost()) */
    /* Commit generations: every commit db.c makes counts one; durable is the newest known to
     * be on disk (a commit that waited for the disk makes every earlier one durable too). */
    uint64_t commits, durable;
    /* db_open_readonly(): the backend opens for reading only, db_begin() takes no write lock
     * and opens a read-only snapshot, nothing is migrated. */
    bool readonly;
};

/* What a backend hands to a row callback: its ops and its cursor (a statement). */
struct db_row {
    const struct db_backend *ops;
    void *cur;
};

extern const struct db_backend db_backend_sqlite;
extern const struct db_backend db_backend_pg;

/* Records the detail of the last error on db (truncated to DB_ERRMSG_MAX). */
void db_set_error(struct db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * db_open() with an explicit migration list instead of the backend's compiled-in one,
 * so tests can build a database "at an older migration" and bring it forward.
 * list must hold versions 1..n in order.
 */
int db_open_with(struct db **out, const char *url, const struct schema_migration *list, int n,
                 char *errbuf, size_t errlen);

/*
 * Brings db to version n of list: refuses (VEND_ESCHEMA, nothing written) a database
 * whose schema_version is newer than n, has a gap, names a migration that list does not
 * have under that version, or a non-empty database without schema_version; then applies
 * each missing migration and its schema_version row in one transaction.
 */
int db_migrate_list(struct db *db, const struct schema_migration *list, int n);

#endif
