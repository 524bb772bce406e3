/*
 * db_sqlite.c - the SQLite backend of db.h (URL "sqlite:PATH").
 *
 * One connection, used from the event loop thread only (hence SQLITE_OPEN_NOMUTEX).
 * Statements are prepared once and kept in a cache keyed by their SQL text; db.h's
 * "$1..$n" placeholders are SQLite named parameters, bound by name.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "db_backend.h"
#include "log.h"
#include "sqlite_ckpt.h"
#include "sqlite_sync.h"
#include "vend/err.h"
#include "xmalloc.h"

/* The daemon has a few dozen distinct statements; the bound only stops a caller that
 * builds SQL text dynamically from growing the cache without end. */
#define CACHE_BUCKETS   256
#define CACHE_MAX       512
#define RECENT_SLOTS    256 /* in pairs */
#define PATH_MAX_LEN    4096
#define BUSY_TIMEOUT_MS 5000
/* A savepoint's journal kept in memory up to this many bytes: a message's take tens of KiB.
 * SQLite allocates it as one chunk of this size, which must stay below the mmap threshold
 * (xmalloc.h) to come from the heap: at 1 MiB every message mapped and unmapped it (8,005
 * mmap/munmap pairs for 8,000 telemetry messages, twice the CPU per message). */
#define STMT_JOURNAL_SPILL (512 * 1024)
_Static_assert(STMT_JOURNAL_SPILL <= XMALLOC_MMAP_THRESHOLD / 2,
               "a savepoint's journal chunk must come from the heap, not mmap");

struct cached_stmt {
    struct cached_stmt *next;
    char *sql;
    uint32_t hash;
    sqlite3_stmt *stmt;
    bool busy; /* stepping right now (a row callback may run the same SQL again) */
    /* pnum[i - 1]: N of the statement's i-th parameter "$N", 0 for a name that is not one
     * (read once at prepare: the names never change). */
    unsigned char *pnum;
};

/* Where a caller's SQL text was last found: callers pass string literals, so the pointer
 * finds the entry without hashing the text; the text is still compared, so a caller that
 * reuses a buffer for other SQL only misses. */
struct recent_stmt {
    const char *sql;
    struct cached_stmt *entry;
};

/* Changes this connection made to one table (sqlite3_update_hook), for db_version_of(). */
#define TABLES_MAX     64
#define TABLE_NAME_MAX 63
struct table_changes {
    const char *seen; /* the name pointer SQLite gave last: compared before the text */
    char name[TABLE_NAME_MAX + 1];
    uint64_t changed; /* rows inserted, updated or deleted */
    uint64_t members; /* rows inserted or deleted */
};

struct sqlite_state {
    sqlite3 *conn;
    char *path;
    struct recent_stmt recent[RECENT_SLOTS];
    struct cached_stmt *buckets[CACHE_BUCKETS];
    size_t ncached;
    bool warned_full;
    struct table_changes tables[TABLES_MAX];
    size_t ntables;
    uint64_t hooked;  /* rows the hook was told of */
    uint64_t unknown; /* changes no table could be told for: every version moves */
    /* total_changes and hooked when a version was last taken: the hook is not told of
     * every change (a DELETE without WHERE, ...), total_changes counts them. */
    int64_t seen_total;
    uint64_t seen_hooked;
    struct sqlite_ckpt *ckpt; /* NULL: sq_checkpoint() runs on this connection */
    /* NULL, or after it failed (sync_failed): every commit waits for the disk. */
    struct sqlite_sync *sync;
    bool sync_failed;
    bool sync_normal; /* synchronous is NORMAL: the next commit puts FULL back first */
    /* sqlite3_total_changes64() when the transaction began: a COMMIT of a transaction that
     * changed no row writes no WAL frame and syncs nothing, even at FULL. */
    int64_t begun_changes;
};

static struct sqlite_state *state(struct db *db)
{
    return db->be;
}

/* Maps an SQLite result code to the VEND_E* contract of db.h and records the detail. */
static int fail(struct db *db, int rc, const char *what)
{
    struct sqlite_state *st = state(db);
    const char *msg =
        st != NULL && st->conn != NULL ? sqlite3_errmsg(st->conn) : sqlite3_errstr(rc);

    db_set_error(db, "%s: %s", what, msg);
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_ROWID:
        return VEND_ECONFLICT;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return VEND_ECONSTRAINT; /* CHECK, FOREIGNKEY, NOTNULL and the rest */
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return VEND_EBUSY;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return VEND_ECORRUPT;
    case SQLITE_NOMEM:
        return VEND_ENOMEM;
    case SQLITE_TOOBIG:
        return VEND_ETOOBIG;
    default:
        return VEND_EDB;
    }
}

static uint32_t hash_sql(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static bool only_space(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != ';')
            return false;
    }
    return true;
}

static int prepare(struct db *db, const char *sql, unsigned int flags, sqlite3_stmt **out)
{
    struct sqlite_state *st = state(db);
    const char *tail = NULL;
    int rc;

    *out = NULL;
    rc = sqlite3_prepare_v3(st->conn, sql, -1, flags, out, &tail);
    if (rc != SQLITE_OK)
        return fail(db, rc, "prepare");
    if (*out == NULL || (tail != NULL && !only_space(tail))) {
        sqlite3_finalize(*out);
        *out = NULL;
        db_set_error(db, "db_exec takes exactly one statement: '%.80s'", sql);
        return VEND_EINVAL;
    }
    return VEND_OK;
}

/* "$N" with 1 <= N <= nparams, or 0. */
static size_t param_number(const char *name, size_t nparams)
{
    char *end = NULL;
    long v;

    if (name == NULL || name[0] != '$' || name[1] < '1' || name[1] > '9')
        return 0;
    errno = 0;
    v = strtol(name + 1, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || (unsigned long)v > nparams)
        return 0;
    return (size_t)v;
}

/* The N of each parameter "$N" of stmt (0: not such a name), or NULL when it has none. */
static unsigned char *param_numbers(sqlite3_stmt *stmt)
{
    int count = sqlite3_bind_parameter_count(stmt);
    unsigned char *out;

    if (count <= 0)
        return NULL;
    out = xcalloc((size_t)count, 1);
    for (int i = 1; i <= count; i++)
        out[i - 1] =
            (unsigned char)param_number(sqlite3_bind_parameter_name(stmt, i), DB_MAX_PARAMS);
    return out;
}

/*
 * Finds or prepares the statement for sql. *entry is the cache entry to release after use,
 * or NULL when *stmt is private and must be finalized (cache full, or the cached one busy).
 */
static int stmt_get(struct db *db, const char *sql, sqlite3_stmt **stmt, struct cached_stmt **entry)
{
    struct sqlite_state *st = state(db);
    /* A pair by the address's bits, all of them mixed: where a statement's text lies moves
     * with every build, and a pair shared by two hot statements made each pay the text's
     * hash (4k instructions a telemetry message in one build). */
    struct recent_stmt *r =
        &st->recent[(((uint64_t)(uintptr_t)sql * 0x9e3779b97f4a7c15u) >> 57) * 2 % RECENT_SLOTS];
    struct cached_stmt **slot = NULL;
    struct cached_stmt *e = NULL;
    uint32_t h = 0;
    int rc;

    *entry = NULL;
    if (r[0].sql == sql && strcmp(r[0].entry->sql, sql) == 0) {
        e = r[0].entry;
    } else if (r[1].sql == sql && strcmp(r[1].entry->sql, sql) == 0) {
        e = r[1].entry;
        r[1] = r[0]; /* the pair's most recent first */
        r[0].sql = sql;
        r[0].entry = e;
    }
    if (e == NULL) {
        h = hash_sql(sql);
        slot = &st->buckets[h % CACHE_BUCKETS];
        for (e = *slot; e != NULL; e = e->next) {
            if (e->hash == h && strcmp(e->sql, sql) == 0)
                break;
        }
        if (e != NULL) {
            r[1] = r[0];
            r[0].sql = sql;
            r[0].entry = e;
        }
    }
    if (e != NULL && !e->busy) {
        e->busy = true;
        *stmt = e->stmt;
        *entry = e;
        return VEND_OK;
    }
    if (e != NULL || st->ncached >= CACHE_MAX) {
        if (e == NULL && !st->warned_full) {
            log_warnx("statement cache of '%s' full at %d entries; preparing each time", st->path,
                      CACHE_MAX);
            st->warned_full = true;
        }
        return prepare(db, sql, 0, stmt);
    }
    rc = prepare(db, sql, SQLITE_PREPARE_PERSISTENT, stmt);
    if (rc < 0)
        return rc;
    e = xcalloc(1, sizeof(*e));
    e->sql = xstrdup(sql);
    e->hash = h;
    e->stmt = *stmt;
    e->pnum = param_numbers(*stmt);
    e->busy = true;
    e->next = *slot;
    *slot = e;
    st->ncached++;
    r[1] = r[0];
    r[0].sql = sql;
    r[0].entry = e;
    *entry = e;
    return VEND_OK;
}

static void stmt_put(sqlite3_stmt *stmt, struct cached_stmt *entry)
{
    if (entry == NULL) {
        sqlite3_finalize(stmt);
        return;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    entry->busy = false;
}

static int bind_one(struct db *db, sqlite3_stmt *stmt, int idx, const struct db_value *v)
{
    int rc;

    switch (v->type) {
    case DB_T_NULL:
        rc = sqlite3_bind_null(stmt, idx);
        break;
    case DB_T_INT:
        rc = sqlite3_bind_int64(stmt, idx, v->i);
        break;
    case DB_T_REAL:
        rc = sqlite3_bind_double(stmt, idx, v->r);
        break;
    case DB_T_TEXT:
        /* Static is safe: bindings are cleared before db_exec returns. */
        rc = v->s == NULL
                 ? sqlite3_bind_null(stmt, idx)
                 : sqlite3_bind_text64(stmt, idx, v->s, strlen(v->s), SQLITE_STATIC, SQLITE_UTF8);
        break;
    default:
        db_set_error(db, "parameter %s has unknown type %d", sqlite3_bind_parameter_name(stmt, idx),
                     (int)v->type);
        return VEND_EINVAL;
    }
    return rc == SQLITE_OK ? VEND_OK : fail(db, rc, "bind");
}

/* Every parameter in the SQL must be one of $1..$nparams, and every one given must be used:
 * a mismatch is a bug that would otherwise bind NULL silently. */
static int bind_all(struct db *db, sqlite3_stmt *stmt, const struct cached_stmt *entry,
                    const char *sql, const struct db_value *params, size_t nparams)
{
    bool used[DB_MAX_PARAMS] = {false};
    int count = sqlite3_bind_parameter_count(stmt);
    int rc;

    for (int i = 1; i <= count; i++) {
        const char *name = entry != NULL ? NULL : sqlite3_bind_parameter_name(stmt, i);
        size_t n = entry != NULL ? entry->pnum[i - 1] : param_number(name, nparams);
        if (n == 0 || n > nparams) {
            name = sqlite3_bind_parameter_name(stmt, i);
            db_set_error(db, "sql parameter '%s' is not one of $1..$%zu: '%.80s'",
                         name != NULL ? name : "?", nparams, sql);
            return VEND_EINVAL;
        }
        rc = bind_one(db, stmt, i, &params[n - 1]);
        if (rc < 0)
            return rc;
        used[n - 1] = true;
    }
    for (size_t i = 0; i < nparams; i++) {
        if (!used[i]) {
            db_set_error(db, "parameter $%zu is not used by '%.80s'", i + 1, sql);
            return VEND_EINVAL;
        }
    }
    return VEND_OK;
}

/* sq_exec() without ensure_full(). */
static int run_stmt(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
                    db_row_fn *fn, void *arg)
{
    struct sqlite_state *st = state(db);
    struct cached_stmt *entry = NULL;
    sqlite3_stmt *stmt = NULL;
    struct db_row row = {.ops = &db_backend_sqlite};
    sqlite3_int64 before;
    bool stopped = false;
    int rc;

    rc = stmt_get(db, sql, &stmt, &entry);
    if (rc < 0)
        return rc;
    rc = bind_all(db, stmt, entry, sql, params, nparams);
    if (rc < 0)
        goto out;
    before = sqlite3_total_changes64(st->conn);
    row.cur = stmt;
    for (;;) {
        int s = sqlite3_step(stmt);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            rc = fail(db, s, "step");
            goto out;
        }
        if (fn != NULL && fn(arg, &row) != 0) {
            stopped = true;
            break;
        }
    }
    /* sqlite3_changes() keeps the count of the last INSERT/UPDATE/DELETE, so report it only
     * if this statement changed something. */
    if (!stopped && sqlite3_total_changes64(st->conn) != before)
        rc = sqlite3_changes(st->conn);
    else
        rc = 0;
out:
    stmt_put(stmt, entry);
    return rc;
}

/* synchronous=FULL again after a lazy batch (SQLite takes it only outside a transaction). */
static int sync_full(struct db *db)
{
    struct sqlite_state *st = state(db);
    int rc;

    if (!st->sync_normal)
        return VEND_OK;
    rc = sqlite3_exec(st->conn, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(db, sqlite3_extended_errcode(st->conn), "synchronous=FULL after a lazy batch");
    st->sync_normal = false;
    return VEND_OK;
}

/* Outside a transaction every statement waits for the disk: a lazy batch's NORMAL that could
 * not be undone when it ended is undone before anything else runs, or nothing runs. */
static int ensure_full(struct db *db)
{
    struct sqlite_state *st = state(db);

    return st->sync_normal && sqlite3_get_autocommit(st->conn) ? sync_full(db) : VEND_OK;
}

static int sq_exec(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
                   db_row_fn *fn, void *arg)
{
    int rc = ensure_full(db);

    return rc < 0 ? rc : run_stmt(db, sql, params, nparams, fn, arg);
}

static int sq_script(struct db *db, const char *sql)
{
    struct sqlite_state *st = state(db);
    int rc;

    rc = ensure_full(db);
    if (rc < 0)
        return rc;
    /* sqlite3_errmsg() still holds the failing statement's message, which fail() reports. */
    rc = sqlite3_exec(st->conn, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? VEND_OK : fail(db, sqlite3_extended_errcode(st->conn), "script");
}

static int sq_begin(struct db *db)
{
    /* IMMEDIATE takes the write lock now, so a transaction never fails half-way with BUSY
     * when it first writes. */
    int rc = sq_exec(db, db->readonly ? "BEGIN" : "BEGIN IMMEDIATE", NULL, 0, NULL, NULL);

    state(db)->begun_changes = sqlite3_total_changes64(state(db)->conn);
    return rc < 0 ? rc : VEND_OK;
}

/* synchronous=NORMAL for this one transaction (SQLite takes it only between transactions):
 * its COMMIT writes the WAL frames without syncing them; the syncer syncs them. */
static int sq_begin_lazy(struct db *db)
{
    struct sqlite_state *st = state(db);
    int rc;

    if (st->sync == NULL || st->sync_failed)
        return sq_begin(db);
    rc = sq_exec(db, "PRAGMA synchronous=NORMAL", NULL, 0, NULL, NULL);
    if (rc < 0)
        return rc;
    st->sync_normal = true;
    rc = run_stmt(db, "BEGIN IMMEDIATE", NULL, 0, NULL, NULL); /* not undone: it is for this */
    if (rc < 0) {
        (void)sync_full(db); /* if it fails, ensure_full() retries before the next statement */
        return rc;
    }
    st->begun_changes = sqlite3_total_changes64(st->conn);
    return VEND_OK;
}

/* The open transaction changed no row (what a savepoint undid still counts: SQLite commits
 * those pages, synced). */
static bool unchanged(struct sqlite_state *st)
{
    return sqlite3_total_changes64(st->conn) == st->begun_changes;
}

static int sq_commit(struct db *db)
{
    bool empty = unchanged(state(db));
    int rc = sq_exec(db, "COMMIT", NULL, 0, NULL, NULL);

    if (rc < 0)
        return rc;
    return empty ? DB_COMMIT_EMPTY : VEND_OK;
}

static int sq_commit_lazy(struct db *db, uint64_t gen)
{
    struct sqlite_state *st = state(db);
    bool lazy = st->sync_normal, empty = unchanged(st);
    int rc = sq_exec(db, "COMMIT", NULL, 0, NULL, NULL);

    if (rc < 0)
        return rc;
    /* If it fails here, ensure_full() retries before the next statement. */
    (void)sync_full(db);
    if (empty)
        return DB_COMMIT_EMPTY;
    if (!lazy)
        return 1; /* begun without the syncer: this COMMIT waited for the disk */
    sqlite_sync_request(st->sync, gen);
    return VEND_OK;
}

static uint64_t sq_changes(struct db *db)
{
    return (uint64_t)sqlite3_total_changes64(state(db)->conn);
}

static int sq_rollback(struct db *db)
{
    int rc = VEND_OK;

    /* SQLite may have rolled back already (some errors do that); ROLLBACK would fail. */
    if (!sqlite3_get_autocommit(state(db)->conn))
        rc = sq_exec(db, "ROLLBACK", NULL, 0, NULL, NULL);
    (void)sync_full(db);
    return rc < 0 ? rc : VEND_OK;
}

static int sq_durable_fd(struct db *db)
{
    struct sqlite_state *st = state(db);

    return st->sync != NULL && !st->sync_failed ? sqlite_sync_fd(st->sync) : -1;
}

static int sq_durable_take(struct db *db, uint64_t *gen)
{
    struct sqlite_state *st = state(db);
    char err[160];

    *gen = 0;
    if (st->sync == NULL || st->sync_failed)
        return VEND_OK;
    if (sqlite_sync_take(st->sync, gen, err, sizeof(err)) < 0) {
        st->sync_failed = true;
        db_set_error(db, "database '%s': %s", st->path, err);
        return VEND_EIO;
    }
    return VEND_OK;
}

static int sq_checkpoint(struct db *db)
{
    struct sqlite_state *st = state(db);
    char err[160];
    int rc;

    if (st->ckpt == NULL) {
        rc = sqlite3_wal_checkpoint_v2(st->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return rc == SQLITE_OK || rc == SQLITE_BUSY ? VEND_OK : fail(db, rc, "checkpoint");
    }
    /* Asked of the checkpointer's thread; what it says is of the previous one. */
    rc = sqlite_ckpt_request(st->ckpt, err, sizeof(err));
    if (rc == SQLITE_OK || rc == SQLITE_BUSY)
        return VEND_OK;
    db_set_error(db, "checkpoint of '%s': %s", st->path, err[0] ? err : sqlite3_errstr(rc));
    return VEND_EDB;
}

static void sq_version(struct db *db, uint64_t out[2])
{
    struct cached_stmt *entry = NULL;
    sqlite3_stmt *stmt = NULL;

    out[0] = (uint64_t)sqlite3_total_changes64(state(db)->conn);
    /* Moves when another connection has committed. A statement, not the pager's counter
     * (SQLITE_FCNTL_DATA_VERSION): that one only learns of other commits at our next read. */
    out[1] = UINT64_MAX; /* unknown: a version no answer was kept at */
    if (stmt_get(db, "PRAGMA data_version", &stmt, &entry) < 0)
        return;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        out[1] = (uint64_t)sqlite3_column_int64(stmt, 0);
    stmt_put(stmt, entry);
}

/* sqlite3_update_hook: a row of table changed (this connection, not yet committed). */
/* The counters of name, added if new; NULL when they cannot be kept (then st->unknown moved:
 * every version moves). */
static struct table_changes *table_add(struct sqlite_state *st, const char *name)
{
    struct table_changes *t;

    for (size_t i = 0; i < st->ntables; i++) {
        if (strcmp(st->tables[i].name, name) == 0)
            return &st->tables[i];
    }
    if (st->ntables == TABLES_MAX || strlen(name) > TABLE_NAME_MAX) {
        st->unknown++; /* not told apart: moves every version */
        return NULL;
    }
    t = &st->tables[st->ntables++];
    memcpy(t->name, name, strlen(name) + 1);
    return t;
}

static void on_update(void *arg, int op, const char *dbname, const char *table, sqlite3_int64 rowid)
{
    struct sqlite_state *st = arg;
    struct table_changes *t = NULL;

    (void)dbname;
    (void)rowid;
    st->hooked++;
    /* By the name's address first: SQLite passes the same one for a table each time. */
    for (size_t i = 0; i < st->ntables && t == NULL; i++) {
        if (st->tables[i].seen == table)
            t = &st->tables[i];
    }
    if (t == NULL)
        t = table_add(st, table);
    if (t == NULL)
        return;
    t->seen = table;
    t->changed++;
    if (op != SQLITE_UPDATE)
        t->members++;
}

/* db_touch(): a change the hook cannot tell from the others of its table (a column's). */
static void sq_touch(struct db *db, const char *name)
{
    struct table_changes *t = table_add(state(db), name);

    if (t != NULL)
        t->changed++;
}

static const struct table_changes *table_of(const struct sqlite_state *st, const char *name)
{
    for (size_t i = 0; i < st->ntables; i++) {
        if (strcmp(st->tables[i].name, name) == 0)
            return &st->tables[i];
    }
    return NULL;
}

static void sq_version_of(struct db *db, const struct db_reads *reads, uint64_t out[2])
{
    struct sqlite_state *st = state(db);
    int64_t total = sqlite3_total_changes64(st->conn);
    const struct table_changes *t;
    uint64_t sum;

    sq_version(db, out);
    /* A change the hook was not told of could be to any table. */
    if ((uint64_t)(total - st->seen_total) != st->hooked - st->seen_hooked)
        st->unknown++;
    st->seen_total = total;
    st->seen_hooked = st->hooked;
    /* Counters only grow, so their sum moves whenever one of them does. */
    sum = st->unknown;
    for (size_t i = 0; i < DB_READS_MAX && reads->changed[i] != NULL; i++) {
        t = table_of(st, reads->changed[i]);
        sum += t != NULL ? t->changed : 0;
    }
    for (size_t i = 0; i < DB_READS_MAX && reads->members[i] != NULL; i++) {
        t = table_of(st, reads->members[i]);
        sum += t != NULL ? t->members : 0;
    }
    out[0] = sum;
}

static bool sq_in_transaction(struct db *db)
{
    return !sqlite3_get_autocommit(state(db)->conn);
}

/* Runs a one-row query (a PRAGMA) and copies its first column as text into out. */
static int query_text(struct db *db, const char *sql, char *out, size_t outlen)
{
    struct sqlite_state *st = state(db);
    sqlite3_stmt *stmt = NULL;
    const unsigned char *t;
    int rc;

    out[0] = '\0';
    rc = sqlite3_prepare_v2(st->conn, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(db, rc, sql);
        goto out;
    }
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = fail(db, rc, sql);
        goto out;
    }
    t = rc == SQLITE_ROW ? sqlite3_column_text(stmt, 0) : NULL;
    if (t != NULL)
        snprintf(out, outlen, "%s", (const char *)t);
    rc = VEND_OK;
out:
    sqlite3_finalize(stmt);
    return rc;
}

/* The default URL is sqlite:var/vendd.db, so a fresh checkout or install would fail on the
 * missing "var"; create the one directory that holds the file (0750: the database is not
 * for other users), never a deeper chain, which would hide a mistyped path. */
static int ensure_parent(struct db *db, const char *path)
{
    const char *slash = strrchr(path, '/');
    struct stat sb;
    char *dir;
    int rc = VEND_OK;

    if (slash == NULL || slash == path)
        return VEND_OK;
    dir = xstrndup(path, (size_t)(slash - path));
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) {
            db_set_error(db, "cannot create database '%s': '%s' is not a directory", path, dir);
            rc = VEND_EDB;
        }
        goto out;
    }
    if (errno != ENOENT || mkdir(dir, 0750) != 0) {
        db_set_error(db, "cannot create directory '%s' for database '%s': %s", dir, path,
                     strerror(errno));
        rc = VEND_EDB;
        goto out;
    }
    log_info("created directory '%s' for the database", dir);
out:
    free(dir);
    return rc;
}

static int sq_open(struct db *db, const char *path)
{
    struct sqlite_state *st;
    char text[16], why[200];
    int rc;

    if (path[0] == '\0' || strnlen(path, PATH_MAX_LEN + 1) > PATH_MAX_LEN) {
        db_set_error(db, "database URL 'sqlite:PATH' needs a path of 1..%d bytes", PATH_MAX_LEN);
        return VEND_EINVAL;
    }
    rc = db->readonly ? VEND_OK : ensure_parent(db, path);
    if (rc < 0)
        return rc;

    /* Process-wide and only possible before SQLite's first use (later calls fail harmlessly):
     * no memory statistics, whose mutex every SQLite allocation took. vendd reads none. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* Every message of a group runs in a savepoint (db_savepoint()), whose journal, the pages
     * the message changed (tens of KiB), went to a temporary file past 64 KiB: a file per group
     * and 28 MB/s written to it at 200 orders/s. In memory up to STMT_JOURNAL_SPILL, on disk
     * past it, so one big statement stays bounded. Not temp_store=MEMORY: that keeps every
     * sort, DISTINCT and GROUP BY b-tree in memory too, growing with the table. */
    sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, STMT_JOURNAL_SPILL);
    st = xcalloc(1, sizeof(*st));
    st->path = xstrdup(path);
    db->be = st;
    rc = sqlite3_open_v2(
        path, &st->conn,
        (db->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
            SQLITE_OPEN_NOMUTEX,
        NULL);
    if (rc != SQLITE_OK) {
        db_set_error(db, "cannot open database '%s': %s", path,
                     st->conn != NULL ? sqlite3_errmsg(st->conn) : sqlite3_errstr(rc));
        rc = VEND_EDB;
        goto out;
    }
    sqlite3_extended_result_codes(st->conn, 1);
    sqlite3_busy_timeout(st->conn, BUSY_TIMEOUT_MS);
    sqlite3_update_hook(st->conn, on_update, st);

    /* Read before anything can write: a foreign or damaged file must stay as it is. */
    rc = query_text(db, "SELECT count(*) FROM sqlite_master", text, sizeof(text));
    if (rc == VEND_ECORRUPT) {
        db_set_error(db, "'%s' is not a database or is damaged; left untouched", path);
        goto out;
    }
    if (rc < 0)
        goto out;
    if (db->readonly) {
        rc = VEND_OK; /* the owner's settings (WAL, synchronous) are not ours to set */
        goto out;
    }
    if (sqlite3_db_readonly(st->conn, "main") == 1) {
        /* SQLite falls back to read-only when it may not write; we would fail later. */
        db_set_error(db, "database '%s' is read-only (check the file and its directory)", path);
        rc = VEND_EDB;
        goto out;
    }

    rc = query_text(db, "PRAGMA journal_mode=WAL", text, sizeof(text));
    if (rc < 0)
        goto out;
    if (strcmp(text, "wal") != 0) {
        db_set_error(db, "database '%s': journal_mode=WAL not accepted (mode '%s')", path, text);
        rc = VEND_EDB;
        goto out;
    }
    /* FULL syncs the WAL at every commit. NORMAL, the usual WAL choice, can lose the last
     * commits on power loss, and those are paid orders and dispenses: money. */
    /* The checkpoint that copies the WAL into the database runs from the owner's timer
     * (db_checkpoint()), not inside whichever commit crosses 1000 pages: in the commit it was
     * a tenth of the ingest's CPU and a stall of up to 100 ms for the next dispense. 20000
     * pages (80 MB) is the safety net if the timer never comes. The page cache holds 4 MiB
     * (the default 2 MiB re-read pages every telemetry message; more would crowd the 32 MB budget).
     */
    rc = sqlite3_exec(st->conn,
                      "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                      "PRAGMA wal_autocheckpoint=20000; PRAGMA cache_size=-4096",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(db, rc, "pragma");
        goto out;
    }
    rc = query_text(db, "PRAGMA foreign_keys", text, sizeof(text));
    if (rc < 0)
        goto out;
    if (strcmp(text, "1") != 0) {
        db_set_error(db, "database '%s': foreign_keys=ON not accepted", path);
        rc = VEND_EDB;
        goto out;
    }
    /* Checkpoints off the loop (sqlite_ckpt.h); without the thread, on this connection. */
    st->ckpt = sqlite_ckpt_start(path, why, sizeof(why));
    if (st->ckpt == NULL)
        log_warnx("%s; checkpoints run on the event loop", why);
    /* The WAL's fsync for lazy commits off the loop (sqlite_sync.h). */
    st->sync = sqlite_sync_start(sqlite3_filename_wal(sqlite3_db_filename(st->conn, "main")), why,
                                 sizeof(why));
    if (st->sync == NULL)
        log_warnx("%s; every commit waits for the disk", why);
    rc = VEND_OK;
out:
    if (rc < 0) {
        char detail[DB_ERRMSG_MAX];
        /* The error names the backend's subject; keep it but make sure the path is there. */
        if (strstr(db->errmsg, path) == NULL) {
            memcpy(detail, db->errmsg, sizeof(detail));
            db_set_error(db, "database '%s': %s", path, detail);
        }
        db->ops->close(db);
    }
    return rc;
}

static void sq_close(struct db *db)
{
    struct sqlite_state *st = state(db);

    if (st == NULL)
        return;
    sqlite_sync_stop(st->sync);
    /* First, so that this connection is the last one and its close checkpoints the WAL. */
    sqlite_ckpt_stop(st->ckpt);
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct cached_stmt *e = st->buckets[i];
        while (e != NULL) {
            struct cached_stmt *next = e->next;
            sqlite3_finalize(e->stmt);
            free(e->pnum);
            free(e->sql);
            free(e);
            e = next;
        }
    }
    if (st->conn != NULL && sqlite3_close(st->conn) != SQLITE_OK)
        log_warnx("closing database '%s': %s", st->path, sqlite3_errmsg(st->conn));
    free(st->path);
    free(st);
    db->be = NULL;
}

static sqlite3_stmt *cur(const struct db_row *row)
{
    return row->cur;
}

static int sq_row_count(const struct db_row *row)
{
    return sqlite3_data_count(cur(row));
}

static bool sq_row_is_null(const struct db_row *row, int col)
{
    return sqlite3_column_type(cur(row), col) == SQLITE_NULL;
}

static int64_t sq_row_int(const struct db_row *row, int col)
{
    return sqlite3_column_int64(cur(row), col);
}

static double sq_row_real(const struct db_row *row, int col)
{
    return sqlite3_column_double(cur(row), col);
}

static const char *sq_row_text(const struct db_row *row, int col)
{
    return (const char *)sqlite3_column_text(cur(row), col);
}

static const char *sq_row_name(const struct db_row *row, int col)
{
    return sqlite3_column_name(cur(row), col);
}

static enum db_type sq_row_type(const struct db_row *row, int col)
{
    switch (sqlite3_column_type(cur(row), col)) {
    case SQLITE_INTEGER:
        return DB_T_INT;
    case SQLITE_FLOAT:
        return DB_T_REAL;
    case SQLITE_NULL:
        return DB_T_NULL;
    default:
        return DB_T_TEXT; /* TEXT, and BLOB (the schema stores none) read as text */
    }
}

const struct db_backend db_backend_sqlite = {
    .name = "sqlite",
    .migrations = schema_sqlite,
    .nmigrations = &schema_sqlite_count,
    .sql_tables = "SELECT name FROM sqlite_master WHERE type = 'table' "
                  "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .script = sq_script,
    .begin = sq_begin,
    .commit = sq_commit,
    .begin_lazy = sq_begin_lazy,
    .commit_lazy = sq_commit_lazy,
    .durable_fd = sq_durable_fd,
    .durable_take = sq_durable_take,
    .changes = sq_changes,
    .rollback = sq_rollback,
    .in_transaction = sq_in_transaction,
    .checkpoint = sq_checkpoint,
    .version = sq_version,
    .version_of = sq_version_of,
    .touch = sq_touch,
    .row_count = sq_row_count,
    .row_is_null = sq_row_is_null,
    .row_int = sq_row_int,
    .row_real = sq_row_real,
    .row_text = sq_row_text,
    .row_name = sq_row_name,
    .row_type = sq_row_type,
};
