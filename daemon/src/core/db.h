/*
 * db.h - the database seam: one small interface, one backend per file
 * (db_sqlite.c, db_pg.c), selected by DATABASE_URL.
 *
 * SQL is written once for both backends:
 *  - placeholders are $1..$n (native in PostgreSQL; bound by name in SQLite);
 *  - timestamps are TEXT in ISO 8601 UTC with milliseconds ("2026-11-27T09:30:00.123Z"),
 *    produced by the daemon (db_iso_time(), vendd_now_iso()), never by SQL functions,
 *    so they sort and compare the same way everywhere and tests control the clock;
 *  - deadlines are such timestamps too (fixed width, so text order is time order);
 *  - money is INTEGER rupiah; booleans are INTEGER 0/1;
 *  - no backend-specific functions in queries; RETURNING and partial unique
 *    indexes are fine (SQLite >= 3.35 and PostgreSQL have both).
 *
 * Errors: functions return >= 0 on success or a negative VEND_E* value:
 * VEND_ECONFLICT for a unique-key violation, VEND_ECONSTRAINT for a CHECK or
 * foreign-key violation, VEND_EBUSY when locked, VEND_ECORRUPT for a damaged or
 * foreign file, VEND_ESCHEMA for a schema newer than this build, VEND_EDB for
 * anything else. db_errmsg() then tells the detail (for logs, never for clients).
 */
#ifndef VENDD_DB_H
#define VENDD_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_row;

enum db_type { DB_T_NULL, DB_T_INT, DB_T_REAL, DB_T_TEXT };

/* One bound parameter. Text is copied by the backend before db_exec returns. */
struct db_value {
    enum db_type type;
    int64_t i;
    double r;
    const char *s;
};

#define DB_NULL    ((struct db_value){.type = DB_T_NULL})
#define DB_INT(v)  ((struct db_value){.type = DB_T_INT, .i = (int64_t)(v)})
#define DB_REAL(v) ((struct db_value){.type = DB_T_REAL, .r = (double)(v)})
/* A NULL pointer binds SQL NULL. The cast keeps -Waddress quiet for char arrays. */
#define DB_TEXT(v)                                                                                 \
    ((struct db_value){.type = (const char *)(v) != NULL ? DB_T_TEXT : DB_T_NULL, .s = (v)})

/* Called once per result row. Return 0 to continue, non-zero to stop (db_exec then returns 0).
 * The row and its strings are valid only during the call. */
typedef int db_row_fn(void *arg, const struct db_row *row);

int db_row_count(const struct db_row *row);
bool db_row_is_null(const struct db_row *row, int col);
int64_t db_row_int(const struct db_row *row, int col);
double db_row_real(const struct db_row *row, int col);
/* NULL for SQL NULL. */
const char *db_row_text(const struct db_row *row, int col);
const char *db_row_name(const struct db_row *row, int col);
/* The value's SQL type in this row (SQLite types per value; PostgreSQL per column). */
enum db_type db_row_type(const struct db_row *row, int col);

/*
 * Open the database named by url ("sqlite:PATH", or "postgres://..." / "postgresql://...", a libpq
 * connection URI) and
 * bring its schema up to date (see db_migrate). A missing SQLite file is
 * created, and so is its directory if only that one level is missing (mode 0750);
 * a file that is not a database is never overwritten (VEND_ECORRUPT). VEND_ESCHEMA,
 * with nothing written, also for a schema_version with a gap or a migration this build
 * does not know, and for a non-empty database without schema_version (not ours).
 * On failure *out is NULL and errbuf (may be NULL) names the problem and the subject.
 */
int db_open(struct db **out, const char *url, char *errbuf, size_t errlen);
/*
 * Open the database named by url for reading only (an invariant checker on a production
 * database): SQLite with SQLITE_OPEN_READONLY, PostgreSQL with
 * default_transaction_read_only; nothing is created or migrated. VEND_ESCHEMA when its
 * schema_version is not the newest this build knows (the queries are written for that one).
 * db_begin() then opens a read-only snapshot (SQLite's deferred BEGIN, PostgreSQL's
 * REPEATABLE READ READ ONLY) instead of taking the write lock.
 */
int db_open_readonly(struct db **out, const char *url, char *errbuf, size_t errlen);
/* NULL is fine. */
void db_close(struct db *db);

/*
 * Run one statement with nparams parameters; fn (may be NULL) sees each row.
 * Returns the number of rows changed by INSERT/UPDATE/DELETE (0 for SELECT).
 * Statements are prepared once and cached by their text.
 * The placeholders in sql must be exactly $1..$nparams, each used at least once, and
 * sql a single statement, else VEND_EINVAL; over 100 parameters is VEND_ETOOBIG.
 * An error while stepping can come after fn has seen some rows.
 * fn may call db_exec on the same db, even with the same sql.
 */
int db_exec(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
            db_row_fn *fn, void *arg);

/* Transactions. db_begin takes the write lock at once (BEGIN IMMEDIATE in SQLite). */
int db_begin(struct db *db);
int db_commit(struct db *db);
/* Never fails in a way the caller can act on; logs instead. */
void db_rollback(struct db *db);

/*
 * Group commit: one transaction (one fsync) for many small writes, e.g. a burst of
 * telemetry. Inside a batch, db_begin()/db_commit()/db_rollback() open, release and roll
 * back a savepoint, so each message's code keeps its one transaction shape and one bad
 * message rolls back alone; only db_batch_commit() makes the batch durable. Nothing that
 * must follow durability (a dispense command) may run before it: code with such effects
 * runs outside a batch. One level only: db_begin() twice inside a batch is VEND_EINTERNAL.
 * A db_begin() that finds the batch's transaction ended by the database itself (see
 * db_batch_lost()) closes the batch and opens a transaction of its own.
 */
int db_batch_begin(struct db *db);
/* Copy the write-ahead log into the database file without waiting for readers (call it
 * from a timer, outside any transaction: it is the checkpoint commits no longer do). With
 * SQLite it asks a thread of its own to do it (sqlite_ckpt.h) and returns at once: an error
 * is the previous checkpoint's. */
int db_checkpoint(struct db *db);

/*
 * Claim this database for one vendd: the only one (in_group false), or instance client_id of
 * an MQTT shared group (in_group true), so that a second vendd that would share a broker
 * session with the first is refused wherever it runs. Held as long as the connection, and
 * taken again by every reconnect, which fails while another vendd holds it. SQLite needs no
 * claim here: the results file's lock beside the database file decides (dispense_result.c).
 * VEND_OK; VEND_ECONFLICT when another vendd holds it (db_errmsg() says which); another VEND_E*.
 */
int db_claim_instance(struct db *db, const char *client_id, bool in_group);

/* Two numbers that move at every change of the data, by this connection or a commit of any
 * other (for caches of what was read: http_cache.h); out[1] is UINT64_MAX when it could not
 * be read. */
void db_version(struct db *db, uint64_t out[2]);

/*
 * What a cached answer reads, for db_version_of(): tables by name (NULL-terminated lists),
 * those whose every change matters and those of which only a row coming or going does (an
 * answer that asks whether a row exists, not what it holds).
 */
#define DB_READS_MAX 8
struct db_reads {
    const char *changed[DB_READS_MAX + 1];
    const char *members[DB_READS_MAX + 1];
};

/*
 * As db_version(), but out[0] moves only with this connection's changes to what reads names
 * (and with any change it cannot tell the table of); out[1] as db_version()'s, so another
 * process's commit still moves it. Two versions compare only when taken with the same reads.
 * A backend that cannot tell tables apart gives db_version().
 */
void db_version_of(struct db *db, const struct db_reads *reads, uint64_t out[2]);
/*
 * Count a change to name as if a row of a table of that name had changed: for what the
 * versions cannot tell apart by table, such as one column of a row that other columns'
 * writers rewrite all the time. A reads that names it in changed moves with it. Called with
 * the statement that makes the change; a rollback after it only makes a cached answer be
 * built again. Nothing where versions do not tell tables apart.
 */
void db_touch(struct db *db, const char *name);

/*
 * Unguarded messages (a batch of what can be applied again, telemetry): inside the open batch,
 * db_begin() opens no savepoint, which spares each message a copy of every page it changes
 * (a tenth of a reading's instructions). A db_rollback() that follows changes to rows cannot
 * undo them alone: it spoils the batch (db_batch_spoiled()), which then runs and commits
 * nothing until db_batch_abort() rolls all of it back; the caller applies its other messages
 * again, guarded. A rollback that follows no change (the usual rejection: an unknown machine)
 * spoils nothing. Set between messages; a new batch starts guarded. A backend that cannot
 * count changed rows stays guarded (db_batch_guarded()).
 */
void db_batch_guard(struct db *db, bool guarded);
bool db_batch_guarded(const struct db *db);
bool db_batch_spoiled(const struct db *db);
/* Roll the open batch back, whole; nothing if none is open. */
void db_batch_abort(struct db *db);

/* True while a batch is open. */
bool db_batch_open(const struct db *db);
/*
 * True when a guarded message's db_begin() found that the database had ended the open batch's
 * transaction by itself (SQLite rolls all of it back on some I/O errors and on a full disk;
 * PostgreSQL's ends with a lost connection): everything the batch held is gone, uncommitted,
 * db_batch_open() is false, and that message and the ones after it run in transactions of
 * their own. The caller counts the batch's messages as lost. An unguarded batch is spoiled
 * instead (db_batch_spoiled()); a loss found only by db_batch_commit() is its error. False
 * again from the next db_batch_begin*().
 */
bool db_batch_lost(const struct db *db);
/*
 * True while a batch is open whose transaction the database has ended by itself (as for
 * db_batch_lost()), before a db_begin() finds it out and goes on without the batch. A caller
 * whose batch must be all or nothing (a group of dispense triggers and results: what it
 * publishes rests on every item's commit) asks after each item, stops, and aborts the batch.
 */
bool db_batch_gone(struct db *db);
/* Commit the batch (rolled back if the commit fails). VEND_OK also when none was open. */
int db_batch_commit(struct db *db);

/*
 * Lazy durability, for a batch that nothing outside the database acts on (telemetry): its
 * db_batch_commit() does not wait for the disk (SQLite: the WAL is fsynced by a thread of its
 * own, sqlite_sync.h), and the batch is durable once db_durable() reaches the db_commits()
 * read after it. A reader that hands on what it read (the event stream) waits for that; the
 * connection's later reads see the batch at once. Every other commit still waits for the disk
 * before it returns, which makes every earlier batch durable too. A backend without it opens
 * a batch as db_batch_begin().
 */
int db_batch_begin_lazy(struct db *db);
/* The commits made on db so far, and the newest of them known to be durable. */
uint64_t db_commits(const struct db *db);
uint64_t db_durable(const struct db *db);
/* Readable when db_durable() may have moved: call db_durable_take(). -1 when it never moves
 * later than the commit (no lazy commits on this backend). */
int db_durable_fd(struct db *db);
/* Reads what the fd signalled into db_durable(). VEND_EIO (db_errmsg() says why) when making
 * a batch durable failed: it may be lost on power failure; later batches wait for the disk. */
int db_durable_take(struct db *db);

/* Apply every migration newer than the stored version, each in its own transaction. */
int db_migrate(struct db *db);
/* The version recorded in schema_version (0 for an empty database). */
int db_schema_version(struct db *db, int *version);
/* The newest migration this build knows. */
int db_schema_latest(void);

/* Detail of the last error on db; never NULL. */
const char *db_errmsg(const struct db *db);

/* Format epoch milliseconds as ISO 8601 UTC with milliseconds into buf (>= 25 bytes). */
void db_iso_time(char *buf, size_t size, int64_t epoch_ms);

#endif
