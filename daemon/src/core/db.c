/*
 * db.c - the backend-independent half of db.h: URL dispatch, argument checks, row
 * accessors and the migration runner. Everything backend-specific is behind
 * struct db_backend (db_backend.h).
 */
#include "db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db_backend.h"
#include "log.h"
#include "vend/err.h"
#include "xmalloc.h"

/* Bounds on what callers hand us; our own SQL is far below both. */
#define URL_MAX 4096
#define SQL_MAX (64 * 1024)

/* URL schemes, longest prefix first. The whole URL goes to libpq for PostgreSQL, so both
 * spellings keep their "//". vendd itself still refuses PostgreSQL at start (app.c) until the
 * whole suite passes on it. */
static const struct {
    const char *prefix;
    const struct db_backend *ops;
} s_schemes[] = {
    {"sqlite:", &db_backend_sqlite},
    {"postgresql://", &db_backend_pg},
    {"postgres://", &db_backend_pg},
};

static const char *const s_create_version_table =
    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "applied_at TEXT NOT NULL)";

void db_set_error(struct db *db, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
    va_end(ap);
}

static void set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* The migration list is ours (compiled in, or a test's): a bad one is a programming error,
 * but tests pass lists in, so report it rather than abort. */
static int check_list(struct db *db, const struct schema_migration *list, int n)
{
    if (n < 0 || (n > 0 && list == NULL)) {
        db_set_error(db, "migration list: bad count %d", n);
        return VEND_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        if (list[i].version != i + 1 || list[i].name == NULL || list[i].sql == NULL) {
            db_set_error(db, "migration list: entry %d has version %d, expected %d", i,
                         list[i].version, i + 1);
            return VEND_EINVAL;
        }
    }
    return VEND_OK;
}

/* A read-only database is used as it is: at the schema this build knows, or not at all. */
static int check_version(struct db *db, int n)
{
    int version = 0;
    int rc = db_schema_version(db, &version);

    if (rc < 0)
        return rc;
    if (version != n) {
        db_set_error(db, "database schema version %d, this build reads version %d only", version,
                     n);
        return VEND_ESCHEMA;
    }
    return VEND_OK;
}

static int open_common(struct db **out, const char *url, const struct schema_migration *list, int n,
                       bool builtin, bool readonly, char *errbuf, size_t errlen)
{
    const struct db_backend *ops = NULL;
    struct db *db = NULL;
    const char *target = NULL;
    size_t i;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || url == NULL) {
        set_errbuf(errbuf, errlen, "db_open: no %s given", out == NULL ? "output" : "url");
        return VEND_EINVAL;
    }
    if (strnlen(url, URL_MAX + 1) > URL_MAX) {
        set_errbuf(errbuf, errlen, "database URL longer than %d bytes", URL_MAX);
        return VEND_ETOOBIG;
    }
    for (i = 0; i < sizeof(s_schemes) / sizeof(s_schemes[0]); i++) {
        size_t plen = strlen(s_schemes[i].prefix);
        if (strncmp(url, s_schemes[i].prefix, plen) == 0) {
            target = url + plen;
            break;
        }
    }
    if (target == NULL) {
        /* Only the scheme is echoed: the rest of a URL may hold a password. */
        set_errbuf(errbuf, errlen,
                   "unsupported database URL scheme '%.*s' (want sqlite:PATH or postgresql://)",
                   (int)strcspn(url, ":/"), url);
        return VEND_EINVAL;
    }
    ops = s_schemes[i].ops;
    if (builtin) {
        list = ops->migrations;
        n = *ops->nmigrations;
    }

    db = xcalloc(1, sizeof(*db));
    db->ops = ops;
    db->readonly = readonly;
    rc = check_list(db, list, n);
    if (rc < 0)
        goto out;
    rc = ops->open(db, target);
    if (rc < 0)
        goto out;
    rc = readonly ? check_version(db, n) : db_migrate_list(db, list, n);
    if (rc < 0)
        goto out;
    *out = db;
    db = NULL;
out:
    if (rc < 0 && db != NULL)
        set_errbuf(errbuf, errlen, "%s", db->errmsg);
    db_close(db);
    return rc < 0 ? rc : VEND_OK;
}

int db_open(struct db **out, const char *url, char *errbuf, size_t errlen)
{
    return open_common(out, url, NULL, 0, true, false, errbuf, errlen);
}

int db_open_readonly(struct db **out, const char *url, char *errbuf, size_t errlen)
{
    return open_common(out, url, NULL, 0, true, true, errbuf, errlen);
}

int db_open_with(struct db **out, const char *url, const struct schema_migration *list, int n,
                 char *errbuf, size_t errlen)
{
    return open_common(out, url, list, n, false, false, errbuf, errlen);
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
    if (db->be != NULL)
        db->ops->close(db);
    free(db);
}

int db_exec(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
            db_row_fn *fn, void *arg)
{
    if (db == NULL)
        return VEND_EINVAL;
    if (sql == NULL || (nparams > 0 && params == NULL)) {
        db_set_error(db, "db_exec: no %s given", sql == NULL ? "sql" : "params");
        return VEND_EINVAL;
    }
    if (nparams > DB_MAX_PARAMS) {
        db_set_error(db, "db_exec: %zu parameters, at most %d", nparams, DB_MAX_PARAMS);
        return VEND_ETOOBIG;
    }
    if (strnlen(sql, SQL_MAX + 1) > SQL_MAX) {
        db_set_error(db, "db_exec: sql longer than %d bytes", SQL_MAX);
        return VEND_ETOOBIG;
    }
    if (db->spoiled) {
        db_set_error(db, "the batch holds part of a failed message: abort it first");
        return VEND_EINTERNAL;
    }
    return db->ops->exec(db, sql, params, nparams, fn, arg);
}

/* The savepoint of one message inside a batch; SAVEPOINT is standard SQL (SQLite and
 * PostgreSQL alike). */
#define BATCH_SAVEPOINT "batch_msg"

int db_begin(struct db *db)
{
    int rc;

    if (db == NULL)
        return VEND_EINVAL;
    if (!db->batch)
        return db->ops->begin(db);
    if (db->nested) {
        db_set_error(db, "a transaction is already open inside the batch");
        return VEND_EINTERNAL;
    }
    if (db->spoiled) {
        db_set_error(db, "the batch holds part of a failed message: abort it first");
        return VEND_EINTERNAL;
    }
    if (db->unguarded) {
        /* No savepoint: db_rollback() tells from the count of changed rows whether this
         * message left anything behind. A transaction the database ended by itself (an
         * I/O error) took the batch's earlier messages with it: the caller applies them
         * again, as after any spoiled message. */
        if (!db->ops->in_transaction(db)) {
            db->spoiled = true;
            db_set_error(db, "the batch's transaction was rolled back by the database");
            return VEND_EDB;
        }
        db->message_mark = db->ops->changes(db);
        db->nested = true;
        return VEND_OK;
    }
    if (!db->ops->in_transaction(db)) {
        /* An error (I/O, disk full) ended the batch's transaction behind our back: what it
         * held is gone, and a savepoint now would be a transaction of its own anyway. */
        log_warnx("database batch transaction was rolled back by the database: %s", db->errmsg);
        db->batch = false;
        db->lost = true;
        return db->ops->begin(db);
    }
    rc = db_exec(db, "SAVEPOINT " BATCH_SAVEPOINT, NULL, 0, NULL, NULL);
    if (rc < 0)
        return rc;
    db->nested = true;
    return VEND_OK;
}

int db_commit(struct db *db)
{
    int rc;

    if (db == NULL)
        return VEND_EINVAL;
    if (!db->batch) {
        rc = db->ops->commit(db);
        if (rc < 0)
            return rc;
        /* Only a commit that wrote waited for the disk, for every earlier one too. */
        if (rc != DB_COMMIT_EMPTY)
            db->durable = ++db->commits;
        return VEND_OK;
    }
    if (!db->nested) {
        db_set_error(db, "no transaction is open inside the batch");
        return VEND_EINTERNAL;
    }
    if (db->unguarded) {
        db->nested = false;
        return VEND_OK;
    }
    rc = db_exec(db, "RELEASE SAVEPOINT " BATCH_SAVEPOINT, NULL, 0, NULL, NULL);
    db->nested = rc < 0; /* a failed release is left for db_rollback() */
    return rc < 0 ? rc : VEND_OK;
}

void db_rollback(struct db *db)
{
    if (db == NULL)
        return;
    if (db->batch) {
        if (!db->nested)
            return; /* nothing of this message's is open */
        db->nested = false;
        if (db->unguarded) {
            /* Nothing to undo if the message changed no row (an unknown machine's reading
             * fails at its first UPDATE); otherwise only the whole batch can go. */
            if (db->ops->changes(db) != db->message_mark || !db->ops->in_transaction(db))
                db->spoiled = true;
            return;
        }
        /* The database ended the batch's transaction itself: nothing left to undo here, and
         * its error, not a missing savepoint's, is what the caller reports. */
        if (!db->ops->in_transaction(db))
            return;
        if (db_exec(db, "ROLLBACK TO SAVEPOINT " BATCH_SAVEPOINT, NULL, 0, NULL, NULL) < 0 ||
            db_exec(db, "RELEASE SAVEPOINT " BATCH_SAVEPOINT, NULL, 0, NULL, NULL) < 0)
            log_warnx("database rollback to savepoint failed: %s", db->errmsg);
        return;
    }
    if (db->ops->rollback(db) < 0)
        log_warnx("database rollback failed: %s", db->errmsg);
}

static int batch_begin(struct db *db, bool lazy)
{
    int rc;

    if (db == NULL)
        return VEND_EINVAL;
    if (db->batch) {
        db_set_error(db, "a batch is already open");
        return VEND_EINTERNAL;
    }
    db->lost = false;
    lazy = lazy && db->ops->begin_lazy != NULL;
    rc = lazy ? db->ops->begin_lazy(db) : db->ops->begin(db);
    if (rc < 0)
        return rc;
    db->batch = true;
    db->nested = false;
    db->lazy = lazy;
    db->unguarded = false;
    db->spoiled = false;
    return VEND_OK;
}

void db_batch_guard(struct db *db, bool guarded)
{
    if (db == NULL || !db->batch || db->nested)
        return;
    db->unguarded = !guarded && db->ops->changes != NULL;
}

bool db_batch_guarded(const struct db *db)
{
    return db == NULL || !db->unguarded;
}

bool db_batch_spoiled(const struct db *db)
{
    return db != NULL && db->spoiled;
}

void db_batch_abort(struct db *db)
{
    if (db == NULL || !db->batch)
        return;
    db->batch = db->nested = db->unguarded = db->spoiled = false;
    if (db->ops->rollback(db) < 0)
        log_warnx("database rollback of an aborted batch failed: %s", db->errmsg);
}

int db_batch_begin(struct db *db)
{
    return batch_begin(db, false);
}

int db_batch_begin_lazy(struct db *db)
{
    return batch_begin(db, true);
}

int db_checkpoint(struct db *db)
{
    if (db == NULL || db->batch || db->ops->in_transaction(db))
        return VEND_OK; /* a transaction is open: the next tick */
    return db->ops->checkpoint(db);
}

int db_claim_instance(struct db *db, const char *client_id, bool in_group)
{
    if (db == NULL || client_id == NULL)
        return VEND_EINVAL;
    return db->ops->claim != NULL ? db->ops->claim(db, client_id, in_group) : VEND_OK;
}

void db_version(struct db *db, uint64_t out[2])
{
    out[0] = out[1] = 0;
    if (db != NULL)
        db->ops->version(db, out);
}

void db_version_of(struct db *db, const struct db_reads *reads, uint64_t out[2])
{
    out[0] = out[1] = 0;
    if (db == NULL)
        return;
    if (reads != NULL && db->ops->version_of != NULL)
        db->ops->version_of(db, reads, out);
    else
        db->ops->version(db, out);
}

void db_touch(struct db *db, const char *name)
{
    if (db != NULL && name != NULL && db->ops->touch != NULL)
        db->ops->touch(db, name);
}

bool db_batch_open(const struct db *db)
{
    return db != NULL && db->batch;
}

bool db_batch_lost(const struct db *db)
{
    return db != NULL && db->lost;
}

bool db_batch_gone(struct db *db)
{
    return db != NULL && db->batch && !db->ops->in_transaction(db);
}

int db_batch_commit(struct db *db)
{
    bool lazy;
    int rc;

    if (db == NULL || !db->batch)
        return VEND_OK;
    if (db->nested)
        db_rollback(db); /* a message left open is a bug; it must not ride along */
    if (db->spoiled) {
        /* Part of a failed message must never be committed: fail closed. */
        db_batch_abort(db);
        db_set_error(db, "the batch held part of a failed message: rolled back");
        return VEND_EINTERNAL;
    }
    db->batch = db->unguarded = false;
    lazy = db->lazy;
    rc = lazy ? db->ops->commit_lazy(db, db->commits + 1) : db->ops->commit(db);
    if (rc < 0) {
        if (db->ops->rollback(db) < 0)
            log_warnx("database rollback of a failed batch failed: %s", db->errmsg);
        return rc;
    }
    if (rc == DB_COMMIT_EMPTY)
        return VEND_OK; /* wrote nothing: made nothing durable, nothing to wait for */
    db->commits++;
    if (!lazy || rc > 0)
        db->durable = db->commits;
    return VEND_OK;
}

uint64_t db_commits(const struct db *db)
{
    return db != NULL ? db->commits : 0;
}

uint64_t db_durable(const struct db *db)
{
    return db != NULL ? db->durable : 0;
}

int db_durable_fd(struct db *db)
{
    return db != NULL && db->ops->durable_fd != NULL ? db->ops->durable_fd(db) : -1;
}

int db_durable_take(struct db *db)
{
    uint64_t gen = 0;
    int rc;

    if (db == NULL || db->ops->durable_take == NULL)
        return VEND_OK;
    rc = db->ops->durable_take(db, &gen);
    if (gen > db->durable && gen <= db->commits)
        db->durable = gen;
    return rc;
}

const char *db_errmsg(const struct db *db)
{
    if (db == NULL)
        return "no database";
    return db->errmsg;
}

/* Row accessors: col comes from our code, but a wrong one reads as NULL, not as memory. */
static bool col_ok(const struct db_row *row, int col)
{
    return row != NULL && col >= 0 && col < row->ops->row_count(row);
}

int db_row_count(const struct db_row *row)
{
    return row == NULL ? 0 : row->ops->row_count(row);
}

bool db_row_is_null(const struct db_row *row, int col)
{
    return !col_ok(row, col) || row->ops->row_is_null(row, col);
}

int64_t db_row_int(const struct db_row *row, int col)
{
    return col_ok(row, col) ? row->ops->row_int(row, col) : 0;
}

double db_row_real(const struct db_row *row, int col)
{
    return col_ok(row, col) ? row->ops->row_real(row, col) : 0.0;
}

const char *db_row_text(const struct db_row *row, int col)
{
    return col_ok(row, col) ? row->ops->row_text(row, col) : NULL;
}

const char *db_row_name(const struct db_row *row, int col)
{
    return col_ok(row, col) ? row->ops->row_name(row, col) : NULL;
}

enum db_type db_row_type(const struct db_row *row, int col)
{
    return col_ok(row, col) ? row->ops->row_type(row, col) : DB_T_NULL;
}

/* Writes n decimal digits of v into p (v < 10^n). */
static void put_digits(char *p, unsigned v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/*
 * Every stored timestamp goes through here, several per telemetry message: arithmetic
 * (days to civil date, H. Hinnant's algorithm for the proleptic Gregorian calendar) instead
 * of gmtime_r() and snprintf(), which were 4 % of the ingest's instructions.
 */
void db_iso_time(char *buf, size_t size, int64_t epoch_ms)
{
    /* 9999-12-31T23:59:59.999Z: the widest time that keeps the text 24 characters. */
    const int64_t max_ms = INT64_C(253402300799999);
    int64_t days, z, era, doe, yoe, doy, mp, y, secs;
    unsigned ms, sod, m, d;

    if (buf == NULL || size == 0)
        return;
    if (size < 25) {
        buf[0] = '\0';
        return;
    }
    if (epoch_ms < 0)
        epoch_ms = 0;
    if (epoch_ms > max_ms)
        epoch_ms = max_ms;
    secs = epoch_ms / 1000;
    ms = (unsigned)(epoch_ms % 1000);
    days = secs / 86400;
    sod = (unsigned)(secs % 86400);
    z = days + 719468; /* days since 0000-03-01 */
    era = z / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    y = yoe + era * 400 + (m <= 2);
    put_digits(buf, (unsigned)y, 4);
    buf[4] = '-';
    put_digits(buf + 5, m, 2);
    buf[7] = '-';
    put_digits(buf + 8, d, 2);
    buf[10] = 'T';
    put_digits(buf + 11, sod / 3600, 2);
    buf[13] = ':';
    put_digits(buf + 14, sod / 60 % 60, 2);
    buf[16] = ':';
    put_digits(buf + 17, sod % 60, 2);
    buf[19] = '.';
    put_digits(buf + 20, ms, 3);
    buf[23] = 'Z';
    buf[24] = '\0';
}

static int64_t now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What the database says about its schema, read inside the migration transaction. */
struct schema_state {
    const struct schema_migration *list;
    int n;
    int ntables; /* application tables, schema_version included */
    bool has_version_table;
    int version; /* highest contiguous version seen so far */
    int bad;     /* 0, or the version at which the rows stop making sense */
    bool gap;    /* bad is missing (else: bad is stored under another name) */
};

static int tables_row(void *arg, const struct db_row *row)
{
    struct schema_state *s = arg;
    const char *name = db_row_text(row, 0);

    s->ntables++;
    if (name != NULL && strcmp(name, "schema_version") == 0)
        s->has_version_table = true;
    return 0;
}

static int versions_row(void *arg, const struct db_row *row)
{
    struct schema_state *s = arg;
    int64_t v = db_row_int(row, 0);
    const char *name = db_row_text(row, 1);

    if (v != s->version + 1) {
        s->bad = s->version + 1;
        s->gap = true;
        return 1;
    }
    s->version = (int)v;
    if (v <= s->n && (name == NULL || strcmp(name, s->list[v - 1].name) != 0)) {
        s->bad = (int)v;
        s->gap = false;
        return 1;
    }
    return 0;
}

static int read_schema_state(struct db *db, struct schema_state *s)
{
    int rc;

    rc = db_exec(db, db->ops->sql_tables, NULL, 0, tables_row, s);
    if (rc < 0)
        return rc;
    if (!s->has_version_table) {
        if (s->ntables > 0) {
            db_set_error(db, "database has %d tables but no schema_version: not a vendd database",
                         s->ntables);
            return VEND_ESCHEMA;
        }
        return VEND_OK;
    }
    rc = db_exec(db, "SELECT version, name FROM schema_version ORDER BY version", NULL, 0,
                 versions_row, s);
    if (rc < 0)
        return rc;
    if (s->bad != 0 && s->gap) {
        db_set_error(db, "schema_version has no row for version %d", s->bad);
        return VEND_ESCHEMA;
    }
    if (s->bad != 0) {
        db_set_error(db, "schema_version %d is not migration '%s' of this build", s->bad,
                     s->list[s->bad - 1].name);
        return VEND_ESCHEMA;
    }
    if (s->version > s->n) {
        db_set_error(db, "database schema version %d is newer than this build (latest %d)",
                     s->version, s->n);
        return VEND_ESCHEMA;
    }
    return VEND_OK;
}

/* One migration and its schema_version row, in the caller's transaction. */
static int apply(struct db *db, const struct schema_migration *m, bool create_table)
{
    char at[32];
    struct db_value p[3];
    int rc;

    if (create_table) {
        rc = db_exec(db, s_create_version_table, NULL, 0, NULL, NULL);
        if (rc < 0)
            return rc;
    }
    rc = db->ops->script(db, m->sql);
    if (rc < 0) {
        /* Keep the backend's detail and say which migration it was. */
        char detail[DB_ERRMSG_MAX];
        memcpy(detail, db->errmsg, sizeof(detail));
        db_set_error(db, "migration %s: %s", m->name, detail);
        return rc;
    }
    db_iso_time(at, sizeof(at), now_ms());
    p[0] = DB_INT(m->version);
    p[1] = DB_TEXT(m->name);
    p[2] = DB_TEXT(at);
    rc = db_exec(db, "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                 p, 3, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

int db_migrate_list(struct db *db, const struct schema_migration *list, int n)
{
    int rc;

    if (db == NULL)
        return VEND_EINVAL;
    rc = check_list(db, list, n);
    if (rc < 0)
        return rc;
    /* The state is read again under the write lock before each step, so two processes
     * starting at once cannot both apply the same migration. */
    for (;;) {
        struct schema_state s = {.list = list, .n = n};

        rc = db_begin(db);
        if (rc < 0)
            return rc;
        rc = read_schema_state(db, &s);
        if (rc < 0 || s.version >= n) {
            db_rollback(db); /* nothing was written */
            return rc < 0 ? rc : VEND_OK;
        }
        rc = apply(db, &list[s.version], !s.has_version_table);
        if (rc < 0) {
            db_rollback(db);
            return rc;
        }
        rc = db_commit(db);
        if (rc < 0) {
            db_rollback(db);
            return rc;
        }
        log_info("database migrated to version %d (%s)", list[s.version].version,
                 list[s.version].name);
    }
}

int db_migrate(struct db *db)
{
    if (db == NULL)
        return VEND_EINVAL;
    return db_migrate_list(db, db->ops->migrations, *db->ops->nmigrations);
}

static int max_version_row(void *arg, const struct db_row *row)
{
    *(int *)arg = (int)db_row_int(row, 0);
    return 0;
}

int db_schema_version(struct db *db, int *version)
{
    struct schema_state s = {0};
    int v = 0;
    int rc;

    if (db == NULL || version == NULL)
        return VEND_EINVAL;
    *version = 0;
    rc = db_exec(db, db->ops->sql_tables, NULL, 0, tables_row, &s);
    if (rc < 0)
        return rc;
    if (!s.has_version_table)
        return VEND_OK;
    rc = db_exec(db, "SELECT coalesce(max(version), 0) FROM schema_version", NULL, 0,
                 max_version_row, &v);
    if (rc < 0)
        return rc;
    *version = v;
    return VEND_OK;
}

int db_schema_latest(void)
{
    return schema_sqlite_count > 0 ? schema_sqlite[schema_sqlite_count - 1].version : 0;
}
