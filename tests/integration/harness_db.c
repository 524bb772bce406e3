/*
 * harness_db.c - the harness's database side (harness.h "the database"): vendd's database for
 * one test, SQLite file or a fresh database on the PostgreSQL test server, and the checks
 * that read and write it, the same SQL on both.
 *
 * On SQLite the harness opens vendd's file for each call; on PostgreSQL it keeps one
 * connection of its own (h->pg), made again when the server went away (the restart test).
 * So that one text of SQL serves both, the SQLite connections get string_agg(x, sep)
 * (PostgreSQL's name; SQLite 3.40 has only group_concat), and a boolean column from
 * PostgreSQL reads 1/0 as in SQLite.
 */
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#define OID_BOOL       16
#define PG_CONNECT_S   "5"
#define DUMP_MAX       (16u << 20)
#define WRITE_LOCK_KEY "1986358884" /* db_pg.c's: the lock its db_begin() takes */

struct harness_pg {
    PGconn *conn;
};

static int __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;

    fputs("harness: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -1;
}

bool harness_db_pg(const struct harness *h)
{
    return h->pg_db[0] != '\0';
}

/* ---- the test's database ------------------------------------------------------------- */

/* The fixture server's URL from pgcluster's state file (its url= line) into h->pg_server. */
static int pg_server_url(struct harness *h)
{
    const char *path = getenv("VEND_PG_STATE");
    char line[1024];
    FILE *f = path != NULL ? fopen(path, "r") : NULL;

    h->pg_server[0] = '\0';
    if (f == NULL)
        return fail("VEND_TEST_DB=pg but VEND_PG_STATE ('%s') is unreadable: run through ctest "
                    "(fixture vend_pg)",
                    path != NULL ? path : "unset");
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "url=", 4) == 0 && strlen(line + 4) < sizeof(h->pg_server)) {
            line[strcspn(line, "\n")] = '\0';
            memcpy(h->pg_server, line + 4, strlen(line + 4) + 1);
        }
    }
    fclose(f);
    return h->pg_server[0] != '\0' ? 0 : fail("no url= line in '%s'", path);
}

/* One statement on the server's maintenance database (CREATE and DROP DATABASE run outside
 * a transaction). */
static int pg_admin(const struct harness *h, const char *sql)
{
    PGconn *c = PQconnectdb(h->pg_server);
    PGresult *r = NULL;
    int rc = -1;

    if (PQstatus(c) != CONNECTION_OK) {
        fail("cannot connect to the test PostgreSQL server: %s", PQerrorMessage(c));
        goto out;
    }
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fail("%s: %s", sql, PQerrorMessage(c));
        goto out;
    }
    rc = 0;
out:
    PQclear(r);
    PQfinish(c);
    return rc;
}

int harness_db_create(struct harness *h)
{
    static unsigned s_seq;
    const char *backend = getenv("VEND_TEST_DB");
    const char *at, *query;
    char sql[128];
    int n;

    h->pg_db[0] = '\0';
    if (backend == NULL || strcmp(backend, "pg") != 0) {
        n = snprintf(h->db_url, sizeof(h->db_url), "sqlite:%s", h->db_path);
        return n > 0 && (size_t)n < sizeof(h->db_url) ? 0 : fail("database path too long");
    }
    if (pg_server_url(h) < 0)
        return -1;
    /* The URL is pgcluster's "postgresql://vendd@/vendd?host=DIR&port=N": the same with the
     * test's database instead of "vendd". The pid keeps the names of parallel tests apart. */
    at = strstr(h->pg_server, "@/");
    query = at != NULL ? strchr(at, '?') : NULL;
    if (query == NULL)
        return fail("test server URL '%s' is not of the form user@/db?query", h->pg_server);
    snprintf(h->pg_db, sizeof(h->pg_db), "it_%d_%u", (int)getpid(), ++s_seq);
    n = snprintf(h->db_url, sizeof(h->db_url), "%.*s%s%s", (int)(at + 2 - h->pg_server),
                 h->pg_server, h->pg_db, query);
    if (n < 0 || (size_t)n >= sizeof(h->db_url)) {
        h->pg_db[0] = '\0';
        return fail("test server URL '%s' too long", h->pg_server);
    }
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", h->pg_db);
    if (pg_admin(h, sql) < 0) {
        h->pg_db[0] = '\0';
        return -1;
    }
    h->pg = calloc(1, sizeof(*h->pg));
    if (h->pg == NULL) {
        harness_db_drop(h);
        return fail("out of memory");
    }
    return 0;
}

int harness_db_share(struct harness *peer, const struct harness *first)
{
    memcpy(peer->db_path, first->db_path, sizeof(peer->db_path));
    memcpy(peer->db_url, first->db_url, sizeof(peer->db_url));
    memcpy(peer->pg_db, first->pg_db, sizeof(peer->pg_db));
    memcpy(peer->pg_server, first->pg_server, sizeof(peer->pg_server));
    if (!harness_db_pg(peer))
        return 0;
    peer->pg = calloc(1, sizeof(*peer->pg));
    return peer->pg != NULL ? 0 : fail("out of memory");
}

void harness_db_drop(struct harness *h)
{
    char sql[128];

    if (h->pg != NULL) {
        PQfinish(h->pg->conn);
        free(h->pg);
        h->pg = NULL;
    }
    if (!harness_db_pg(h))
        return;
    if (h->peer) {
        /* The database is another harness's to drop. */
        h->pg_db[0] = '\0';
        return;
    }
    if (getenv("HARNESS_KEEP") != NULL) {
        fprintf(stderr, "harness: kept database '%s' (%s)\n", h->pg_db, h->db_url);
    } else {
        /* FORCE: vendd killed half-way may still hold a session. */
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", h->pg_db);
        pg_admin(h, sql);
    }
    h->pg_db[0] = '\0';
}

/* ---- PostgreSQL ---------------------------------------------------------------------- */

/* The harness's connection, made (again) when there is none or the server dropped it. */
static PGconn *pg_conn(const struct harness *h)
{
    struct harness_pg *pg = h->pg;
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {h->db_url, PG_CONNECT_S, NULL};

    if (pg == NULL) {
        fail("no PostgreSQL database for this harness");
        return NULL;
    }
    if (pg->conn != NULL && PQstatus(pg->conn) == CONNECTION_OK)
        return pg->conn;
    PQfinish(pg->conn);
    /* expand_dbname: dbname is the whole URL. */
    pg->conn = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        fail("cannot connect to '%s': %s", h->db_url, PQerrorMessage(pg->conn));
        PQfinish(pg->conn);
        pg->conn = NULL;
        return NULL;
    }
    PQclear(PQexec(pg->conn, "SET TIME ZONE 'UTC'"));
    return pg->conn;
}

/* PQexec with one more try on a fresh connection when the old one was dropped. */
static PGresult *pg_exec(const struct harness *h, const char *sql)
{
    PGconn *c = pg_conn(h);
    PGresult *r;

    if (c == NULL)
        return NULL;
    r = PQexec(c, sql);
    if (PQstatus(c) != CONNECTION_OK) {
        PQclear(r);
        c = pg_conn(h);
        r = c != NULL ? PQexec(c, sql) : NULL;
    }
    return r;
}

/* A value as SQLite's text would be: booleans 1/0. */
static const char *pg_text(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return NULL;
    if (PQftype(r, col) == OID_BOOL)
        return PQgetvalue(r, row, col)[0] == 't' ? "1" : "0";
    return PQgetvalue(r, row, col);
}

static int pg_first(const struct harness *h, const char *sql, char *buf, size_t size)
{
    PGresult *r = pg_exec(h, sql);
    int rc = -1;

    if (r == NULL)
        return -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fail("SQL '%s': %s", sql, PQresultErrorMessage(r));
    } else if (PQntuples(r) == 0) {
        rc = 0;
    } else {
        const char *t = PQnfields(r) > 0 ? pg_text(r, 0, 0) : NULL;
        snprintf(buf, size, "%s", t != NULL ? t : "");
        rc = 1;
    }
    PQclear(r);
    return rc;
}

/* ---- SQLite -------------------------------------------------------------------------- */

/* string_agg(x, sep): group_concat under PostgreSQL's name. */
static void agg_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    sqlite3_str **acc = sqlite3_aggregate_context(ctx, sizeof(*acc));
    const unsigned char *x = sqlite3_value_text(argv[0]);
    const unsigned char *sep = sqlite3_value_text(argv[1]);

    (void)argc;
    if (acc == NULL) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    if (x == NULL)
        return;
    if (*acc == NULL)
        *acc = sqlite3_str_new(NULL);
    else if (sep != NULL)
        sqlite3_str_appendall(*acc, (const char *)sep);
    sqlite3_str_appendall(*acc, (const char *)x);
}

static void agg_final(sqlite3_context *ctx)
{
    sqlite3_str **acc = sqlite3_aggregate_context(ctx, 0);
    char *s;

    if (acc == NULL || *acc == NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    s = sqlite3_str_finish(*acc);
    if (s == NULL)
        sqlite3_result_error_nomem(ctx);
    else
        sqlite3_result_text(ctx, s, -1, sqlite3_free);
}

static int sqlite_open(const struct harness *h, bool write, sqlite3 **db)
{
    int flags = write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;

    if (sqlite3_open_v2(h->db_path, db, flags, NULL) != SQLITE_OK) {
        fail("cannot open '%s': %s", h->db_path, sqlite3_errmsg(*db));
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 2000);
    sqlite3_create_function(*db, "string_agg", 2, SQLITE_UTF8, NULL, NULL, agg_step, agg_final);
    return 0;
}

static int sqlite_first(const struct harness *h, const char *sql, char *buf, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    const unsigned char *t;
    int rc = -1, step;

    if (sqlite_open(h, false, &db) < 0)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail("SQL '%s': %s", sql, sqlite3_errmsg(db));
        goto out;
    }
    step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        t = sqlite3_column_text(st, 0);
        snprintf(buf, size, "%s", t != NULL ? (const char *)t : "");
        rc = 1;
    } else if (step == SQLITE_DONE) {
        rc = 0;
    } else {
        fail("SQL '%s': %s", sql, sqlite3_errmsg(db));
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* ---- the checks ---------------------------------------------------------------------- */

int harness_sql_text(const struct harness *h, const char *sql, char *buf, size_t size)
{
    buf[0] = '\0';
    return harness_db_pg(h) ? pg_first(h, sql, buf, size) : sqlite_first(h, sql, buf, size);
}

int harness_sql_int(const struct harness *h, const char *sql, long long *out)
{
    char buf[32], *end;
    int rc = harness_sql_text(h, sql, buf, sizeof(buf));

    *out = 0;
    if (rc != 1)
        return rc;
    errno = 0;
    *out = strtoll(buf, &end, 10);
    if (errno != 0 || end == buf || *end != '\0')
        return fail("SQL '%s': '%s' is not an integer", sql, buf);
    return 1;
}

int harness_sql_wait(const struct harness *h, const char *sql, const char *want, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    char buf[256];

    for (;;) {
        if (harness_sql_text(h, sql, buf, sizeof(buf)) >= 0 && strcmp(buf, want) == 0)
            return 0;
        if (harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(10);
    }
    return fail("SQL '%s' is '%s' after %d ms, wanted '%s'", sql, buf, timeout_ms, want);
}

int harness_sql_exec(const struct harness *h, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    PGresult *r;
    int rc = -1;

    if (harness_db_pg(h)) {
        r = pg_exec(h, sql);
        if (r == NULL)
            return -1;
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
            fail("SQL '%s': %s", sql, PQresultErrorMessage(r));
        else
            rc = (int)strtol(PQcmdTuples(r), NULL, 10); /* "" (no count) is 0 */
        PQclear(r);
        return rc;
    }
    if (sqlite_open(h, true, &db) < 0)
        return -1;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail("SQL '%s': %s", sql, err != NULL ? err : sqlite3_errmsg(db));
    else
        rc = sqlite3_changes(db);
    sqlite3_free(err);
    sqlite3_close(db);
    return rc;
}

void harness_iso_time(char *buf, size_t size, int64_t offset_ms)
{
    struct timespec ts;
    struct tm tm;
    int64_t ms;
    time_t secs;

    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + offset_ms;
    secs = (time_t)(ms / 1000);
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int harness_iso_add(const char *iso, int64_t offset_ms, char *out, size_t size)
{
    struct tm tm = {0};
    int ms = 0;
    int64_t t;
    time_t secs;

    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return fail("'%s' is not an ISO 8601 UTC time with milliseconds", iso);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    t = (int64_t)timegm(&tm) * 1000 + ms + offset_ms;
    secs = (time_t)(t / 1000);
    gmtime_r(&secs, &tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(t % 1000));
    return 0;
}

/* ---- the dump ------------------------------------------------------------------------ */

struct dump {
    char *p;
    size_t len, cap;
    bool full;
};

static void put(struct dump *d, const char *s)
{
    size_t n = strlen(s);
    char *p;

    if (d->full)
        return;
    if (d->len + n + 1 > DUMP_MAX) {
        d->full = true;
        return;
    }
    if (d->len + n + 1 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4096;
        while (cap < d->len + n + 1)
            cap *= 2;
        p = realloc(d->p, cap);
        if (p == NULL) {
            d->full = true;
            return;
        }
        d->p = p;
        d->cap = cap;
    }
    memcpy(d->p + d->len, s, n + 1);
    d->len += n;
}

/* One snapshot (a repeatable-read transaction); rows by their first column (the dump is
 * compared as sets of lines: the order only helps a reader). */
static int pg_dump(const struct harness *h, struct dump *d)
{
    PGresult *tables = NULL, *rows = NULL;
    PGconn *c;
    char sql[256];
    int rc = -1;

    if (pg_conn(h) == NULL)
        return -1;
    c = h->pg->conn;
    PQclear(PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    tables = PQexec(c, "SELECT tablename FROM pg_catalog.pg_tables "
                       "WHERE schemaname = current_schema() ORDER BY tablename");
    if (PQresultStatus(tables) != PGRES_TUPLES_OK)
        goto out;
    for (int t = 0; t < PQntuples(tables); t++) {
        const char *name = PQgetvalue(tables, t, 0);
        snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\" ORDER BY 1", name);
        put(d, "== ");
        put(d, name);
        put(d, "\n");
        rows = PQexec(c, sql);
        if (PQresultStatus(rows) != PGRES_TUPLES_OK)
            goto out;
        for (int r = 0; r < PQntuples(rows); r++) {
            for (int i = 0; i < PQnfields(rows); i++) {
                const char *v = pg_text(rows, r, i);
                put(d, v != NULL ? v : "NULL");
                put(d, "|");
            }
            put(d, "\n");
        }
        PQclear(rows);
        rows = NULL;
    }
    rc = 0;
out:
    if (rc < 0)
        fail("cannot dump '%s': %s", h->pg_db, PQerrorMessage(c));
    PQclear(rows);
    PQclear(tables);
    PQclear(PQexec(c, "COMMIT"));
    return rc;
}

static int sqlite_dump(const struct harness *h, struct dump *d)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *tables = NULL, *rows = NULL;
    char sql[256];
    int rc = -1;

    if (sqlite_open(h, false, &db) < 0)
        return -1;
    /* One read transaction, so the dump is one snapshot. */
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_master WHERE type = 'table' "
                           "AND name NOT LIKE 'sqlite_%' ORDER BY name",
                           -1, &tables, NULL) != SQLITE_OK)
        goto out;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);

        snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\" ORDER BY rowid", name);
        put(d, "== ");
        put(d, name);
        put(d, "\n");
        if (sqlite3_prepare_v2(db, sql, -1, &rows, NULL) != SQLITE_OK)
            goto out;
        while (sqlite3_step(rows) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(rows); i++) {
                const char *t = (const char *)sqlite3_column_text(rows, i);
                put(d, t != NULL ? t : "NULL");
                put(d, "|");
            }
            put(d, "\n");
        }
        sqlite3_finalize(rows);
        rows = NULL;
    }
    rc = 0;
out:
    if (rc < 0)
        fail("cannot dump '%s': %s", h->db_path, sqlite3_errmsg(db));
    sqlite3_finalize(rows);
    sqlite3_finalize(tables);
    sqlite3_close(db);
    return rc;
}

char *harness_db_dump(const struct harness *h)
{
    struct dump d = {0};
    int rc = harness_db_pg(h) ? pg_dump(h, &d) : sqlite_dump(h, &d);

    if (rc == 0 && d.full)
        rc = fail("database dump over %u bytes", DUMP_MAX);
    if (rc == 0 && d.p == NULL)
        put(&d, "");
    if (rc < 0 || d.full) {
        free(d.p);
        return NULL;
    }
    return d.p;
}

/* ---- the write lock ------------------------------------------------------------------ */

/* How long taking the lock waits for a write of vendd's to end (its transactions are short). */
#define LOCK_WAIT_MS 5000

struct harness_db_lock {
    sqlite3 *sqlite;
    PGconn *pg;
};

struct harness_db_lock *harness_db_lock(const struct harness *h)
{
    struct harness_db_lock *l = calloc(1, sizeof(*l));
    PGresult *r;

    if (l == NULL) {
        fail("out of memory");
        return NULL;
    }
    if (harness_db_pg(h)) {
        /* The advisory lock every write transaction of vendd takes first (db_pg.c). */
        l->pg = PQconnectdb(h->db_url);
        r = PQstatus(l->pg) == CONNECTION_OK
                ? PQexec(l->pg, "SELECT pg_advisory_lock(" WRITE_LOCK_KEY ")")
                : NULL;
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            PQclear(r);
            return l;
        }
        fail("cannot lock '%s': %s", h->pg_db, PQerrorMessage(l->pg));
        PQclear(r);
    } else if (sqlite3_open(h->db_path, &l->sqlite) == SQLITE_OK &&
               sqlite3_busy_timeout(l->sqlite, LOCK_WAIT_MS) == SQLITE_OK &&
               sqlite3_exec(l->sqlite, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK) {
        return l; /* waited for vendd's own write, as pg_advisory_lock() waits */
    } else {
        fail("cannot lock '%s': %s", h->db_path, sqlite3_errmsg(l->sqlite));
    }
    harness_db_unlock(l);
    return NULL;
}

int harness_db_unlock(struct harness_db_lock *l)
{
    int rc = 0;

    if (l == NULL)
        return 0;
    if (l->sqlite != NULL) {
        rc = sqlite3_exec(l->sqlite, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
        sqlite3_close(l->sqlite);
    }
    PQfinish(l->pg); /* the session's advisory lock goes with it */
    free(l);
    return rc;
}
