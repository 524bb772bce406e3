/*
 * test_db.c - the database layer (db.h, db_sqlite.c, db_pg.c, migrations), run once per
 * backend: `test_db` against real SQLite files in a fresh temporary directory, removed at the
 * end; `test_db pg` against the private PostgreSQL server of tests/support/pgcluster (its
 * state file in $VEND_PG_STATE), one fresh database per case. The cases are the same; those
 * about SQLite's files and pragmas run on SQLite only.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "db.h"
#include "db_backend.h"
#include "schema.h"
#include "unit_status.h"
#include "vend/err.h"

#define T0 "2026-11-27T09:30:00.000Z"

/* Runs sql with the given parameters and no row callback. */
#define EXEC(db, sql, ...)                                                                         \
    db_exec((db), (sql), (const struct db_value[]){__VA_ARGS__},                                   \
            sizeof((const struct db_value[]){__VA_ARGS__}) / sizeof(struct db_value), NULL, NULL)
#define EXEC0(db, sql) db_exec((db), (sql), NULL, 0, NULL, NULL)

static char s_dir[256];     /* the test run's temporary directory, set by group setup */
static bool s_pg;           /* running against PostgreSQL */
static char s_pg_url[1024]; /* the server's URL, database "vendd" (pgcluster's url= line) */

static void path_of(char *buf, size_t size, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", s_dir, name);
    assert_true(n > 0 && (size_t)n < size);
}

/* PostgreSQL: the URL of database "t<pid>_<name>" (name with '.' and '/' as '_'), created
 * empty on first use, as an SQLite file is. */
static void pg_url_of(char *buf, size_t size, const char *name)
{
    const char *at = strstr(s_pg_url, "@/");
    const char *query = at != NULL ? strchr(at, '?') : NULL;
    char db[64];
    char sql[128];
    PGconn *c;
    PGresult *r;
    int n;

    assert_non_null(query);
    n = snprintf(db, sizeof(db), "t%d_%s", (int)getpid(), name);
    assert_true(n > 0 && (size_t)n < sizeof(db));
    for (char *p = db; *p != '\0'; p++) {
        if (*p == '.' || *p == '/')
            *p = '_';
    }
    n = snprintf(buf, size, "%.*s%s%s", (int)(at + 2 - s_pg_url), s_pg_url, db, query);
    assert_true(n > 0 && (size_t)n < size);
    c = PQconnectdb(s_pg_url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", db);
    r = PQexec(c, sql);
    /* 42P04: it exists already (a case that opens the same name again). */
    if (PQresultStatus(r) != PGRES_COMMAND_OK &&
        strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42P04") != 0)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static void url_of(char *buf, size_t size, const char *name)
{
    int n;

    if (s_pg) {
        pg_url_of(buf, size, name);
        return;
    }
    n = snprintf(buf, size, "sqlite:%s/%s", s_dir, name);
    assert_true(n > 0 && (size_t)n < size);
}

/* PostgreSQL: one number from sql, on a connection of our own (not through db.h). */
static long long pg_count(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r;
    long long v;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

#define PG_TABLES "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"

/* The URL of the server from pgcluster's state file (a line "url=..."). */
static int read_pg_state(void)
{
    const char *path = getenv("VEND_PG_STATE");
    char line[1024];
    FILE *f;

    if (path == NULL || (f = fopen(path, "r")) == NULL) {
        fprintf(stderr,
                "test_db pg: no PostgreSQL server: VEND_PG_STATE (%s) unreadable; "
                "run it through ctest (fixture vend_pg)\n",
                path != NULL ? path : "unset");
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "url=", 4) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(s_pg_url, sizeof(s_pg_url), "%s", line + 4);
        }
    }
    fclose(f);
    if (s_pg_url[0] == '\0') {
        fprintf(stderr, "test_db pg: no url= line in %s\n", path);
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    chmod(path, 0700); /* a test may leave a read-only directory behind on failure */
    return remove(path);
}

static int group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    int n;

    (void)state;
    n = snprintf(s_dir, sizeof(s_dir), "%s/vendd-dbtest-XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof(s_dir) || mkdtemp(s_dir) == NULL)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(s_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reads a whole (small) file; the caller frees. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long size;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static struct db *open_ok(const char *name)
{
    char url[512];
    char err[256] = "";
    struct db *db = NULL;
    int rc;

    url_of(url, sizeof(url), name);
    rc = db_open(&db, url, err, sizeof(err));
    if (rc != VEND_OK)
        print_error("db_open %s: %s (%s)\n", url, vend_errname(rc), err);
    assert_int_equal(rc, VEND_OK);
    assert_non_null(db);
    return db;
}

/* Row callbacks. */
static int count_rows(void *arg, const struct db_row *row)
{
    (void)row;
    (*(int *)arg)++;
    return 0;
}

static int first_int(void *arg, const struct db_row *row)
{
    *(int64_t *)arg = db_row_int(row, 0);
    return 1;
}

struct text_out {
    char buf[256];
    bool null;
};

static int first_text(void *arg, const struct db_row *row)
{
    struct text_out *t = arg;
    const char *s = db_row_text(row, 0);

    t->null = s == NULL;
    snprintf(t->buf, sizeof(t->buf), "%s", s != NULL ? s : "");
    return 1;
}

static int64_t query_int(struct db *db, const char *sql)
{
    int64_t v = -12345;
    assert_true(db_exec(db, sql, NULL, 0, first_int, &v) >= 0);
    return v;
}

struct table_find {
    const char *name;
    bool found;
};

static int find_table(void *arg, const struct db_row *row)
{
    struct table_find *t = arg;
    const char *name = db_row_text(row, 0);

    if (name != NULL && strcmp(name, t->name) == 0)
        t->found = true;
    return 0;
}

/* Through the backend's own list of application tables (db_backend.h). */
static bool table_exists(struct db *db, const char *name)
{
    struct table_find t = {.name = name};

    assert_true(db_exec(db, db->ops->sql_tables, NULL, 0, find_table, &t) >= 0);
    return t.found;
}

/* Machines M1, M2; product 1; slot 1 in M1 (capacity 10, stock 5), slot 2 in M2;
 * orders O1, O2 on M1 and O3 on M2. */
static void seed(struct db *db)
{
    static const char *const sql[] = {
        "INSERT INTO machines (id, name, created_at, updated_at) VALUES ('M1', 'one', $1, $1)",
        "INSERT INTO machines (id, name, created_at, updated_at) VALUES ('M2', 'two', $1, $1)",
        "INSERT INTO products (id, name, price, created_at, updated_at) "
        "VALUES (1, 'Kopi', 8000, $1, $1)",
        "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, current_stock, "
        "created_at, updated_at) VALUES (1, 'M1', 1, 1, 10, 5, $1, $1)",
        "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, current_stock, "
        "created_at, updated_at) VALUES (2, 'M2', 1, 1, 10, 5, $1, $1)",
        "INSERT INTO orders (id, machine_id, slot_id, product_id, total_amount, origin, "
        "payment_method, created_at, updated_at) VALUES ('O1', 'M1', 1, 1, 8000, 'customer', "
        "'qris', $1, $1)",
        "INSERT INTO orders (id, machine_id, slot_id, product_id, total_amount, origin, "
        "payment_method, created_at, updated_at) VALUES ('O2', 'M1', 1, 1, 8000, 'customer', "
        "'qris', $1, $1)",
        "INSERT INTO orders (id, machine_id, slot_id, product_id, total_amount, origin, "
        "payment_method, created_at, updated_at) VALUES ('O3', 'M2', 2, 1, 8000, 'operator', "
        "'manual', $1, $1)",
    };
    for (size_t i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        int rc = EXEC(db, sql[i], DB_TEXT(T0));
        if (rc != 1)
            print_error("seed %zu: %s\n", i, db_errmsg(db));
        assert_int_equal(rc, 1);
    }
}

/* ---- opening and migrating ---- */

static void test_fresh_open_migrates(void **state)
{
    static const char *const tables[] = {
        "machines", "products",       "slots",          "orders",     "order_items",
        "payments", "payment_events", "dispense_logs",  "stock_logs", "telemetry",
        "refunds",  "alerts",         "schema_version",
    };
    struct db *db;
    struct text_out t;
    char path[512];
    int version = -1;
    int n = 0;
    struct stat sb;

    (void)state;
    db = open_ok("fresh.db");
    assert_int_equal(db_schema_version(db, &version), VEND_OK);
    assert_int_equal(version, db_schema_latest());
    assert_true(db_schema_latest() >= 1);
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        if (!table_exists(db, tables[i]))
            print_error("missing table %s\n", tables[i]);
        assert_true(table_exists(db, tables[i]));
    }
    /* The integration guide's checks, verbatim. */
    assert_int_equal(EXEC0(db, "SELECT * FROM dispense_logs ORDER BY command_sent_at DESC LIMIT 5"),
                     0);
    assert_int_equal(
        EXEC0(db, "SELECT id, status, dispensed_at FROM orders WHERE id = 'test-order-123'"), 0);
    assert_int_equal(EXEC0(db, "SELECT * FROM stock_logs ORDER BY created_at DESC LIMIT 5"), 0);

    if (!s_pg) {
        assert_true(db_exec(db, "PRAGMA journal_mode", NULL, 0, first_text, &t) >= 0);
        assert_string_equal(t.buf, "wal");
        assert_int_equal(query_int(db, "PRAGMA foreign_keys"), 1);
        assert_int_equal(query_int(db, "PRAGMA synchronous"), 2); /* FULL */
        assert_int_equal(query_int(db, "PRAGMA busy_timeout"), 5000);
    } else {
        assert_true(db_exec(db, "SHOW lock_timeout", NULL, 0, first_text, &t) >= 0);
        assert_string_equal(t.buf, "5s");
    }
    assert_true(
        db_exec(db, "SELECT name, applied_at FROM schema_version", NULL, 0, count_rows, &n) >= 0);
    assert_int_equal(n, db_schema_latest());
    assert_true(db_exec(db, "SELECT applied_at FROM schema_version WHERE version = 1", NULL, 0,
                        first_text, &t) >= 0);
    assert_int_equal(strlen(t.buf), 24);
    if (!s_pg) {
        path_of(path, sizeof(path), "fresh.db-wal");
        assert_int_equal(stat(path, &sb), 0);
    }
    db_close(db);
}

static void test_reopen_idempotent(void **state)
{
    struct db *db;
    int64_t rows;
    int version = -1;

    (void)state;
    db = open_ok("reopen.db");
    seed(db);
    db_close(db);
    for (int i = 0; i < 2; i++) {
        db = open_ok("reopen.db");
        assert_int_equal(db_schema_version(db, &version), VEND_OK);
        assert_int_equal(version, db_schema_latest());
        assert_int_equal(db_migrate(db), VEND_OK);
        rows = query_int(db, "SELECT count(*) FROM schema_version");
        assert_int_equal(rows, db_schema_latest());
        assert_int_equal(query_int(db, "SELECT count(*) FROM orders"), 3);
        db_close(db);
    }
}

/* db_open_readonly (vend-check): reads the data, writes nothing, in or out of its snapshot,
 * and neither creates nor migrates a database. */
static void test_readonly_open(void **state)
{
    char url[512], err[256] = "", path[512];
    struct db *db, *ro = NULL;

    (void)state;
    db = open_ok("ro.db");
    seed(db);
    db_close(db);
    url_of(url, sizeof(url), "ro.db");
    assert_int_equal(db_open_readonly(&ro, url, err, sizeof(err)), VEND_OK);
    assert_int_equal(query_int(ro, "SELECT count(*) FROM orders"), 3);
    assert_true(db_exec(ro, "DELETE FROM orders", NULL, 0, NULL, NULL) < 0);
    assert_int_equal(db_begin(ro), VEND_OK);
    assert_int_equal(query_int(ro, "SELECT count(*) FROM orders"), 3);
    assert_true(db_exec(ro, "UPDATE orders SET status = 'FAILED'", NULL, 0, NULL, NULL) < 0);
    db_rollback(ro);
    db_close(ro);
    db = open_ok("ro.db");
    assert_int_equal(query_int(db, "SELECT count(*) FROM orders WHERE status <> 'FAILED'"), 3);
    db_close(db);
    /* Nothing there (SQLite: no file; PostgreSQL: an empty database): refused, not made. */
    url_of(url, sizeof(url), "ro-none.db");
    ro = NULL;
    assert_true(db_open_readonly(&ro, url, err, sizeof(err)) < 0);
    assert_null(ro);
    if (!s_pg) {
        path_of(path, sizeof(path), "ro-none.db");
        assert_int_equal(access(path, F_OK), -1);
    }
}

static const struct schema_migration s_two_step[] = {
    {1, "0001_t", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);\n"},
    {2, "0002_w",
     "ALTER TABLE t ADD COLUMN w INTEGER NOT NULL DEFAULT 7;\n"
     "CREATE TABLE u (x INTEGER);\n"},
    {3, "0003_broken", "CREATE TABLE z (a INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"},
};

static void test_older_database_brought_forward(void **state)
{
    char url[512];
    char err[256] = "";
    struct db *db = NULL;
    int version = -1;

    (void)state;
    url_of(url, sizeof(url), "older.db");
    assert_int_equal(db_open_with(&db, url, s_two_step, 1, err, sizeof(err)), VEND_OK);
    assert_int_equal(db_schema_version(db, &version), VEND_OK);
    assert_int_equal(version, 1);
    assert_int_equal(EXEC(db, "INSERT INTO t (id, v) VALUES ($1, $2)", DB_INT(1), DB_TEXT("kept")),
                     1);
    assert_false(table_exists(db, "u"));
    db_close(db);

    assert_int_equal(db_open_with(&db, url, s_two_step, 2, err, sizeof(err)), VEND_OK);
    assert_int_equal(db_schema_version(db, &version), VEND_OK);
    assert_int_equal(version, 2);
    assert_int_equal(query_int(db, "SELECT w FROM t WHERE v = 'kept'"), 7);
    assert_true(table_exists(db, "u"));
    db_close(db);

    /* A failing migration leaves neither its tables nor its version row behind. */
    assert_int_equal(db_open_with(&db, url, s_two_step, 3, err, sizeof(err)), VEND_EDB);
    assert_null(db);
    assert_non_null(strstr(err, "0003_broken"));
    assert_non_null(strstr(err, "no_such_table"));
    assert_int_equal(db_open_with(&db, url, s_two_step, 2, err, sizeof(err)), VEND_OK);
    assert_false(table_exists(db, "z"));
    assert_int_equal(query_int(db, "SELECT max(version) FROM schema_version"), 2);
    db_close(db);

    /* The build that knows only version 1 refuses the version-2 database. */
    assert_int_equal(db_open_with(&db, url, s_two_step, 1, err, sizeof(err)), VEND_ESCHEMA);
    assert_null(db);
    assert_non_null(strstr(err, "newer"));
}

static void test_unknown_or_gapped_versions_refused(void **state)
{
    static const struct schema_migration other[] = {
        {1, "0001_other", "CREATE TABLE t (id INTEGER PRIMARY KEY);\n"},
        {2, "0002_w", "SELECT 1;\n"},
    };
    char url[512];
    char err[256] = "";
    struct db *db = NULL;

    (void)state;
    url_of(url, sizeof(url), "unknown.db");
    assert_int_equal(db_open_with(&db, url, s_two_step, 2, err, sizeof(err)), VEND_OK);
    db_close(db);
    assert_int_equal(db_open_with(&db, url, other, 2, err, sizeof(err)), VEND_ESCHEMA);
    assert_null(db);
    assert_non_null(strstr(err, "0001_other"));

    assert_int_equal(db_open_with(&db, url, s_two_step, 2, err, sizeof(err)), VEND_OK);
    assert_int_equal(EXEC0(db, "DELETE FROM schema_version WHERE version = 1"), 1);
    db_close(db);
    assert_int_equal(db_open_with(&db, url, s_two_step, 2, err, sizeof(err)), VEND_ESCHEMA);
    assert_null(db);
    assert_non_null(strstr(err, "version 1"));

    /* A list that is not 1..n is refused before anything is opened. */
    assert_int_equal(db_open_with(&db, url, &s_two_step[1], 1, err, sizeof(err)), VEND_EINVAL);
    assert_null(db);
}

static void test_newer_schema_refused_untouched(void **state)
{
    char url[512];
    char path[512];
    char err[256] = "";
    struct db *db;
    char *before;
    char *after;
    size_t blen;
    size_t alen;

    (void)state;
    db = open_ok("newer.db");
    assert_int_equal(EXEC(db,
                          "INSERT INTO schema_version (version, name, applied_at) "
                          "VALUES ($1, '9999_future', $2)",
                          DB_INT(db_schema_latest() + 1), DB_TEXT(T0)),
                     1);
    db_close(db);

    url_of(url, sizeof(url), "newer.db");
    if (s_pg) {
        /* No file to compare: the tables and the schema_version rows stay as they were. */
        long long tables = pg_count(url, PG_TABLES);
        long long rows = pg_count(url, "SELECT count(*) FROM schema_version");
        assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_ESCHEMA);
        assert_null(db);
        assert_non_null(strstr(err, "newer than this build"));
        assert_int_equal(pg_count(url, PG_TABLES), tables);
        assert_int_equal(pg_count(url, "SELECT count(*) FROM schema_version"), rows);
        return;
    }
    path_of(path, sizeof(path), "newer.db");
    before = slurp(path, &blen);
    /* db still holds the closed handle: a failed db_open must set it to NULL. */
    assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_ESCHEMA);
    assert_null(db);
    assert_non_null(strstr(err, "newer than this build"));
    after = slurp(path, &alen);
    assert_int_equal(alen, blen);
    assert_memory_equal(before, after, blen);
    free(before);
    free(after);
}

static void test_foreign_database_refused(void **state)
{
    char url[512];
    char path[512];
    char err[256] = "";
    struct db *db = NULL;
    char *before;
    char *after;
    size_t blen;
    size_t alen;

    (void)state;
    /* A valid SQLite database of some other program: no schema_version, other tables. */
    url_of(url, sizeof(url), "foreign.db");
    {
        static const struct schema_migration theirs[] = {
            {1, "0001_theirs", "CREATE TABLE accounts (id INTEGER PRIMARY KEY);\n"}};
        assert_int_equal(db_open_with(&db, url, theirs, 1, err, sizeof(err)), VEND_OK);
        assert_int_equal(EXEC0(db, "DROP TABLE schema_version"), 0);
        db_close(db);
    }
    if (s_pg) {
        assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_ESCHEMA);
        assert_null(db);
        assert_non_null(strstr(err, "not a vendd database"));
        assert_int_equal(pg_count(url, PG_TABLES), 1); /* theirs alone, nothing of ours */
        return;
    }
    path_of(path, sizeof(path), "foreign.db");
    before = slurp(path, &blen);
    assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_ESCHEMA);
    assert_null(db);
    assert_non_null(strstr(err, "not a vendd database"));
    after = slurp(path, &alen);
    assert_int_equal(alen, blen);
    assert_memory_equal(before, after, blen);
    free(before);
    free(after);
}

static void expect_corrupt_untouched(const char *name)
{
    char url[512];
    char path[512];
    char err[512] = "";
    struct db *db = NULL;
    char *before;
    char *after;
    size_t blen;
    size_t alen;

    path_of(path, sizeof(path), name);
    url_of(url, sizeof(url), name);
    before = slurp(path, &blen);
    assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_ECORRUPT);
    assert_null(db);
    assert_non_null(strstr(err, path));
    after = slurp(path, &alen);
    assert_int_equal(alen, blen);
    assert_memory_equal(before, after, blen);
    free(before);
    free(after);
}

static void test_corrupt_random_bytes_refused(void **state)
{
    unsigned char junk[8192];
    uint32_t x = 0x2545f491u;
    char path[512];

    (void)state;
    for (size_t i = 0; i < sizeof(junk); i++) { /* xorshift: the same bytes every run */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        junk[i] = (unsigned char)x;
    }
    path_of(path, sizeof(path), "random.db");
    write_file(path, junk, sizeof(junk));
    expect_corrupt_untouched("random.db");

    path_of(path, sizeof(path), "text.db");
    write_file(path, "DATABASE_URL=sqlite:var/vendd.db\n", 33);
    expect_corrupt_untouched("text.db");
}

static void test_corrupt_truncated_refused(void **state)
{
    struct db *db;
    char path[512];
    char *bytes;
    size_t len;

    (void)state;
    db = open_ok("truncated.db");
    seed(db);
    db_close(db); /* checkpoints the WAL into the file */
    path_of(path, sizeof(path), "truncated.db");
    bytes = slurp(path, &len);
    assert_true(len >= 4 * 4096);
    /* Half the pages, and the first page alone: both are cut-short databases. */
    write_file(path, bytes, len / 2);
    expect_corrupt_untouched("truncated.db");
    write_file(path, bytes, 4096);
    expect_corrupt_untouched("truncated.db");
    free(bytes);
}

static void test_unusable_directory(void **state)
{
    char url[512];
    char path[512];
    char err[512] = "";
    struct db *db = NULL;
    struct stat sb;

    (void)state;
    /* Parent is a regular file: fails even for root. */
    path_of(path, sizeof(path), "plainfile");
    write_file(path, "x", 1);
    url_of(url, sizeof(url), "plainfile/vendd.db");
    assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_EDB);
    assert_null(db);
    assert_non_null(strstr(err, "not a directory"));
    assert_non_null(strstr(err, "plainfile"));

    /* Two missing levels: only one is created, so this is an error naming the directory. */
    url_of(url, sizeof(url), "no/such/vendd.db");
    assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_EDB);
    assert_non_null(strstr(err, "cannot create directory"));
    assert_non_null(strstr(err, "no/such"));
    path_of(path, sizeof(path), "no");
    assert_int_equal(stat(path, &sb), -1);

    /* One missing level is created, mode 0750. */
    db = open_ok("var/vendd.db");
    db_close(db);
    path_of(path, sizeof(path), "var");
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0027, 0);

    /* A directory we may not write to (root may write anywhere, so only as non-root). */
    if (geteuid() != 0) {
        path_of(path, sizeof(path), "ro");
        assert_int_equal(mkdir(path, 0500), 0);
        url_of(url, sizeof(url), "ro/vendd.db");
        assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_EDB);
        assert_null(db);
        assert_non_null(strstr(err, "ro/vendd.db"));
        chmod(path, 0700);
    }
}

static void test_urls(void **state)
{
    char err[256] = "";
    struct db *db = NULL;

    (void)state;
    /* Port 1 of the loopback: refused at once. The error says what failed, never the
     * password. */
    assert_int_equal(db_open(&db, "postgres://vendd:secret@127.0.0.1:1/vendd", err, sizeof(err)),
                     VEND_EDB);
    assert_null(db);
    assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
    assert_null(strstr(err, "secret"));
    assert_int_equal(db_open(&db, "postgresql://vendd:secret@127.0.0.1:1/vendd", err, sizeof(err)),
                     VEND_EDB);
    assert_null(strstr(err, "secret"));
    assert_int_equal(db_open(&db, "mysql://u:secret@h/db", err, sizeof(err)), VEND_EINVAL);
    assert_null(strstr(err, "secret"));
    assert_non_null(strstr(err, "mysql"));
    assert_int_equal(db_open(&db, "sqlite:", err, sizeof(err)), VEND_EINVAL);
    assert_int_equal(db_open(&db, NULL, err, sizeof(err)), VEND_EINVAL);
    assert_int_equal(db_open(&db, "", NULL, 0), VEND_EINVAL);
    assert_null(db);
    db_close(NULL);
}

/* ---- keys and constraints ---- */

#define DISPENSE_SQL                                                                               \
    "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, slot_number, timeout_ms, "    \
    "status, created_at) VALUES ($1, $2, $3, $4, 1, 5000, $5, $6)"

static void test_unique_keys(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("unique.db");
    seed(db);

    /* At most one dispense per (order, unit). */
    assert_int_equal(EXEC(db, DISPENSE_SQL, DB_TEXT("O1"), DB_INT(1), DB_TEXT("M1"), DB_INT(1),
                          DB_TEXT("SUCCEEDED"), DB_TEXT(T0)),
                     1);
    assert_int_equal(EXEC(db, DISPENSE_SQL, DB_TEXT("O1"), DB_INT(1), DB_TEXT("M1"), DB_INT(1),
                          DB_TEXT("FAILED"), DB_TEXT(T0)),
                     VEND_ECONFLICT);
    assert_non_null(strcasestr(db_errmsg(db), "UNIQUE"));
    /* At most one SENT dispense per machine; other states do not count. */
    assert_int_equal(EXEC(db, DISPENSE_SQL, DB_TEXT("O1"), DB_INT(2), DB_TEXT("M1"), DB_INT(1),
                          DB_TEXT("SENT"), DB_TEXT(T0)),
                     1);
    assert_int_equal(EXEC(db, DISPENSE_SQL, DB_TEXT("O2"), DB_INT(1), DB_TEXT("M1"), DB_INT(1),
                          DB_TEXT("SENT"), DB_TEXT(T0)),
                     VEND_ECONFLICT);
    assert_int_equal(EXEC(db, DISPENSE_SQL, DB_TEXT("O2"), DB_INT(1), DB_TEXT("M1"), DB_INT(1),
                          DB_TEXT("QUEUED"), DB_TEXT(T0)),
                     1);
    assert_int_equal(EXEC(db, DISPENSE_SQL, DB_TEXT("O3"), DB_INT(1), DB_TEXT("M2"), DB_INT(2),
                          DB_TEXT("SENT"), DB_TEXT(T0)),
                     1);
    /* ... and once that one is done, the machine may have the next in flight. */
    assert_int_equal(EXEC(db,
                          "UPDATE dispense_logs SET status = $1 WHERE order_id = $2 AND unit = 2",
                          DB_TEXT("SUCCEEDED"), DB_TEXT("O1")),
                     1);
    assert_int_equal(EXEC(db, "UPDATE dispense_logs SET status = $1 WHERE order_id = $2",
                          DB_TEXT("SENT"), DB_TEXT("O2")),
                     1);

    /* A unit leaves the stock once; other change types may repeat. */
    {
        const char *sl = "INSERT INTO stock_logs (machine_id, slot_id, change_type, "
                         "quantity_before, quantity_after, quantity_change, order_id, unit, "
                         "created_at) VALUES ('M1', 1, $1, 5, 4, -1, $2, 1, $3)";
        assert_int_equal(EXEC(db, sl, DB_TEXT("DISPENSE"), DB_TEXT("O1"), DB_TEXT(T0)), 1);
        assert_int_equal(EXEC(db, sl, DB_TEXT("DISPENSE"), DB_TEXT("O1"), DB_TEXT(T0)),
                         VEND_ECONFLICT);
        assert_int_equal(EXEC(db, sl, DB_TEXT("MANUAL_ADJUST"), DB_TEXT("O1"), DB_TEXT(T0)), 1);
        assert_int_equal(EXEC(db, sl, DB_TEXT("MANUAL_ADJUST"), DB_TEXT("O1"), DB_TEXT(T0)), 1);
    }

    /* One payment per gateway transaction. */
    {
        const char *pay = "INSERT INTO payments (order_id, gateway_name, gateway_transaction_id, "
                          "amount, created_at, updated_at) VALUES ($1, 'midtrans', $2, 8000, $3, "
                          "$3)";
        assert_int_equal(EXEC(db, pay, DB_TEXT("O1"), DB_TEXT("tx-1"), DB_TEXT(T0)), 1);
        assert_int_equal(EXEC(db, pay, DB_TEXT("O2"), DB_TEXT("tx-1"), DB_TEXT(T0)),
                         VEND_ECONFLICT);
        assert_int_equal(EXEC(db, pay, DB_TEXT("O2"), DB_TEXT("tx-2"), DB_TEXT(T0)), 1);
    }

    /* A replayed notification is one row. */
    {
        const char *ev = "INSERT INTO payment_events (order_id, signature_ok, outcome, raw, "
                         "dedupe_key, received_at) VALUES ('O1', 1, 'paid', '{}', $1, $2)";
        assert_int_equal(EXEC(db, ev, DB_TEXT("sha256:abc"), DB_TEXT(T0)), 1);
        assert_int_equal(EXEC(db, ev, DB_TEXT("sha256:abc"), DB_TEXT(T0)), VEND_ECONFLICT);
    }

    /* Primary keys too. */
    assert_int_equal(EXEC(db,
                          "INSERT INTO machines (id, name, created_at, updated_at) "
                          "VALUES ('M1', 'again', $1, $1)",
                          DB_TEXT(T0)),
                     VEND_ECONFLICT);
    db_close(db);
}

static void test_checks_and_foreign_keys(void **state)
{
    struct db *db;
    const char *stock = "UPDATE slots SET current_stock = $1 WHERE id = 1";
    const char *sl =
        "INSERT INTO stock_logs (machine_id, slot_id, change_type, quantity_before, "
        "quantity_after, quantity_change, created_at) VALUES ('M1', 1, $1, $2, $3, $4, "
        "$5)";

    (void)state;
    db = open_ok("checks.db");
    seed(db);

    assert_int_equal(EXEC(db, stock, DB_INT(-1)), VEND_ECONSTRAINT);
    assert_non_null(strcasestr(db_errmsg(db), "CHECK"));
    assert_int_equal(EXEC(db, stock, DB_INT(11)), VEND_ECONSTRAINT); /* capacity is 10 */
    assert_int_equal(EXEC(db, stock, DB_INT(10)), 1);
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 10);

    assert_int_equal(EXEC(db, "UPDATE orders SET status = $1 WHERE id = 'O1'", DB_TEXT("SHIPPED")),
                     VEND_ECONSTRAINT);
    assert_int_equal(EXEC(db, "UPDATE orders SET status = $1 WHERE id = 'O1'", DB_TEXT("paid")),
                     VEND_ECONSTRAINT);
    assert_int_equal(EXEC(db, "UPDATE orders SET status = $1 WHERE id = 'O1'", DB_TEXT("PAID")), 1);

    assert_int_equal(EXEC(db, sl, DB_TEXT("THEFT"), DB_INT(5), DB_INT(4), DB_INT(-1), DB_TEXT(T0)),
                     VEND_ECONSTRAINT);
    assert_int_equal(
        EXEC(db, sl, DB_TEXT("RESTOCK"), DB_INT(4), DB_INT(10), DB_INT(5), DB_TEXT(T0)),
        VEND_ECONSTRAINT);
    assert_int_equal(
        EXEC(db, sl, DB_TEXT("RESTOCK"), DB_INT(4), DB_INT(10), DB_INT(6), DB_TEXT(T0)), 1);
    assert_int_equal(EXEC(db, sl, DB_TEXT("AUDIT"), DB_INT(0), DB_INT(-1), DB_INT(-1), DB_TEXT(T0)),
                     VEND_ECONSTRAINT);

    /* NOT NULL */
    assert_int_equal(EXEC(db,
                          "INSERT INTO machines (id, name, created_at, updated_at) "
                          "VALUES ('M9', $1, $2, $2)",
                          DB_NULL, DB_TEXT(T0)),
                     VEND_ECONSTRAINT);

    /* Foreign keys are enforced. */
    assert_int_equal(EXEC(db,
                          "INSERT INTO slots (machine_id, slot_number, capacity, created_at, "
                          "updated_at) VALUES ($1, 3, 10, $2, $2)",
                          DB_TEXT("NOPE"), DB_TEXT(T0)),
                     VEND_ECONSTRAINT);
    assert_non_null(strcasestr(db_errmsg(db), "FOREIGN KEY"));
    assert_int_equal(EXEC(db, DISPENSE_SQL, DB_TEXT("O-missing"), DB_INT(1), DB_TEXT("M1"),
                          DB_INT(1), DB_TEXT("QUEUED"), DB_TEXT(T0)),
                     VEND_ECONSTRAINT);
    assert_int_equal(EXEC0(db, "DELETE FROM machines WHERE id = 'M2'"), VEND_ECONSTRAINT);
    assert_int_equal(query_int(db, "SELECT count(*) FROM machines"), 2);
    db_close(db);
}

/* ---- statements, parameters, rows ---- */

struct typed_row {
    int64_t i;
    double r;
    char s[128];
    bool s_null;
    bool n_null;
    int cols;
    char name0[16];
    bool bad_col_null;
};

static int read_typed(void *arg, const struct db_row *row)
{
    struct typed_row *t = arg;
    const char *s = db_row_text(row, 2);

    t->cols = db_row_count(row);
    t->i = db_row_int(row, 0);
    t->r = db_row_real(row, 1);
    t->s_null = s == NULL;
    snprintf(t->s, sizeof(t->s), "%s", s != NULL ? s : "");
    t->n_null = db_row_is_null(row, 3);
    snprintf(t->name0, sizeof(t->name0), "%s", db_row_name(row, 0));
    t->bad_col_null = db_row_is_null(row, 99) && db_row_text(row, -1) == NULL &&
                      db_row_name(row, 4) == NULL && db_row_int(row, 7) == 0;
    return 0;
}

static void test_parameters_of_every_type(void **state)
{
    static const char *const texts[] = {
        "O'Brien said \"hi\"; DROP TABLE v; --",
        "Kopi susu \xe2\x98\x95 \xe2\x80\x93 caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87",
        "",
        "$1 ? :x @y",
    };
    struct db *db;
    struct typed_row t;

    (void)state;
    db = open_ok("params.db");
    assert_int_equal(
        EXEC0(db, "CREATE TABLE v (id BIGINT PRIMARY KEY, i BIGINT, r DOUBLE PRECISION, s TEXT, "
                  "n TEXT)"),
        0);
    for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
        assert_int_equal(EXEC(db, "INSERT INTO v (id, i, r, s, n) VALUES ($1, $2, $3, $4, $5)",
                              DB_INT(k), DB_INT(INT64_MIN + (int64_t)k), DB_REAL(0.25 + (double)k),
                              DB_TEXT(texts[k]), DB_NULL),
                         1);
        memset(&t, 0, sizeof(t));
        assert_int_equal(db_exec(db, "SELECT i AS first, r, s, n FROM v WHERE id = $1",
                                 (const struct db_value[]){DB_INT(k)}, 1, read_typed, &t),
                         0);
        assert_int_equal(t.cols, 4);
        assert_true(t.i == INT64_MIN + (int64_t)k);
        assert_true(t.r == 0.25 + (double)k);
        assert_false(t.s_null);
        assert_string_equal(t.s, texts[k]);
        assert_true(t.n_null);
        assert_string_equal(t.name0, "first");
        assert_true(t.bad_col_null);
    }
    /* INT64_MAX and a NULL pointer bound through DB_TEXT. */
    assert_int_equal(EXEC(db, "INSERT INTO v (id, i, s) VALUES (100, $1, $2)", DB_INT(INT64_MAX),
                          DB_TEXT((const char *)NULL)),
                     1);
    memset(&t, 0, sizeof(t));
    assert_int_equal(
        db_exec(db, "SELECT i, r, s, n FROM v WHERE id = 100", NULL, 0, read_typed, &t), 0);
    assert_true(t.i == INT64_MAX);
    assert_true(t.s_null);
    /* A parameter used twice is bound once; numbering need not follow order of use. */
    assert_int_equal(query_int(db, "SELECT count(*) FROM v"), 5);
    {
        int64_t v = 0;
        assert_int_equal(db_exec(db, "SELECT $2 * 10 + $1 + $2",
                                 (const struct db_value[]){DB_INT(1), DB_INT(3)}, 2, first_int, &v),
                         0);
        assert_int_equal(v, 34);
    }
    db_close(db);
}

static void test_bad_statements(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("badsql.db");
    /* Placeholders must be exactly $1..$n, each given one used. */
    assert_int_equal(EXEC(db, "SELECT $1, $3", DB_INT(1), DB_INT(2)), VEND_EINVAL);
    assert_non_null(strstr(db_errmsg(db), "$3"));
    assert_int_equal(EXEC(db, "SELECT $1", DB_INT(1), DB_INT(2)), VEND_EINVAL);
    assert_non_null(strstr(db_errmsg(db), "$2"));
    assert_int_equal(EXEC(db, "SELECT ?", DB_INT(1)), VEND_EINVAL);
    assert_int_equal(EXEC(db, "SELECT :x", DB_INT(1)), VEND_EINVAL);
    assert_int_equal(EXEC0(db, "SELECT $1"), VEND_EINVAL);
    assert_int_equal(EXEC(db, "SELECT $1", ((struct db_value){.type = (enum db_type)42})),
                     VEND_EINVAL);
    /* One statement per call. */
    assert_int_equal(EXEC0(db, "SELECT 1; SELECT 2"), VEND_EINVAL);
    assert_int_equal(EXEC0(db, "SELECT 1;  \n"), 0);
    assert_int_equal(EXEC0(db, ""), VEND_EINVAL);
    assert_int_equal(EXEC0(db, "SELECT * FROM no_such_table"), VEND_EDB);
    assert_non_null(strstr(db_errmsg(db), "no_such_table"));
    assert_int_equal(db_exec(db, NULL, NULL, 0, NULL, NULL), VEND_EINVAL);
    assert_int_equal(db_exec(db, "SELECT 1", NULL, 1, NULL, NULL), VEND_EINVAL);
    assert_int_equal(db_exec(NULL, "SELECT 1", NULL, 0, NULL, NULL), VEND_EINVAL);
    /* And the connection is still fine afterwards. */
    assert_int_equal(query_int(db, "SELECT 7"), 7);
    db_close(db);
}

static void test_changes_count(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("changes.db");
    assert_int_equal(EXEC0(db, "CREATE TABLE c (x INTEGER)"), 0);
    assert_int_equal(EXEC0(db, "INSERT INTO c VALUES (1), (2), (3)"), 3);
    assert_int_equal(EXEC(db, "UPDATE c SET x = x + $1", DB_INT(10)), 3);
    /* No match: 0, not the 3 of the last statement that changed something. */
    assert_int_equal(EXEC(db, "UPDATE c SET x = 0 WHERE x = $1", DB_INT(99)), 0);
    assert_int_equal(EXEC0(db, "SELECT * FROM c"), 0);
    assert_int_equal(EXEC0(db, "CREATE INDEX c_x ON c (x)"), 0);
    assert_int_equal(EXEC(db, "DELETE FROM c WHERE x > $1", DB_INT(11)), 2);
    db_close(db);
}

static void test_transactions(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("txn.db");
    seed(db);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(0)), 1);
    assert_int_equal(EXEC0(db, "DELETE FROM orders WHERE id = 'O2'"), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM orders"), 2);
    db_rollback(db);
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 5);
    assert_int_equal(query_int(db, "SELECT count(*) FROM orders"), 3);

    assert_int_equal(db_begin(db), VEND_OK);
    assert_true(db_begin(db) < 0); /* no nesting */
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(3)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    db_rollback(db); /* nothing open: a no-op */
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 3);
    assert_true(db_commit(db) < 0); /* nothing open */
    db_close(db);

    /* Committed means on disk: a new connection sees it. */
    db = open_ok("txn.db");
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 3);
    db_close(db);
}

struct stopper {
    int seen;
    int stop_after;
};

static int stop_early(void *arg, const struct db_row *row)
{
    struct stopper *s = arg;

    (void)row;
    s->seen++;
    return s->seen >= s->stop_after;
}

/* Group commit: a savepoint per message, one commit for all; another connection sees
 * nothing before it. */
static void test_batch(void **state)
{
    struct db *db;
    struct db *other;

    (void)state;
    db = open_ok("batch.db");
    seed(db);
    other = open_ok("batch.db");
    assert_int_equal(db_batch_begin(db), VEND_OK);
    assert_true(db_batch_open(db));
    assert_int_equal(db_batch_begin(db), VEND_EINTERNAL);
    /* Message 1 applies, message 2 fails half-way and rolls back alone, message 3 applies. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(4)), 1);
    assert_int_equal(db_begin(db), VEND_EINTERNAL); /* one level only */
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC0(db, "DELETE FROM orders WHERE id = 'O2'"), 1);
    db_rollback(db);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 2", DB_INT(1)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    /* Not durable yet: the other connection still reads the old row. */
    assert_int_equal(query_int(other, "SELECT current_stock FROM slots WHERE id = 1"), 5);
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_false(db_batch_open(db));
    assert_int_equal(db_batch_commit(db), VEND_OK); /* none open: nothing to do */
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 4);
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 2"), 1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM orders"), 3);
    /* Outside a batch, transactions are real again. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(query_int(other, "SELECT current_stock FROM slots WHERE id = 1"), 4);
    db_close(other);
    db_close(db);
}

/*
 * A batch whose transaction the database ended by itself (an I/O error, a full disk, a lost
 * connection; here a ROLLBACK behind db.c's back): the next message's db_begin() closes the
 * batch and runs the message in a transaction of its own; db_batch_lost() says what it held
 * is gone, until the next batch begins.
 */
static void test_batch_lost(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("lost.db");
    seed(db);
    assert_int_equal(db_batch_begin(db), VEND_OK);
    assert_false(db_batch_lost(db));
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(4)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(EXEC0(db, "ROLLBACK"), 0);
    assert_true(db_batch_open(db)); /* not known yet */
    assert_false(db_batch_lost(db));
    assert_int_equal(db_begin(db), VEND_OK);
    assert_false(db_batch_open(db));
    assert_true(db_batch_lost(db));
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 2", DB_INT(1)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(db_batch_commit(db), VEND_OK); /* none open */
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 5);
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 2"), 1);
    /* A new batch has lost nothing, and one committed neither. */
    assert_int_equal(db_batch_begin(db), VEND_OK);
    assert_false(db_batch_lost(db));
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_false(db_batch_lost(db));
    db_close(db);
}

/*
 * An unguarded batch (db_batch_guard(false)): no savepoint per message. A message rolled back
 * after changing nothing leaves the batch as it was; one rolled back after changing a row
 * spoils it: nothing more runs or commits in it until db_batch_abort() rolls all of it back.
 * PostgreSQL counts no changes: it stays guarded, and the message rolls back alone.
 */
static void test_unguarded_batch(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("unguarded.db");
    seed(db);
    assert_int_equal(db_batch_begin(db), VEND_OK);
    assert_true(db_batch_guarded(db)); /* a new batch is */
    db_batch_guard(db, false);
    assert_true(db_batch_guarded(db) == s_pg);
    /* Message 1 applies. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(4)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    /* Message 2 finds nothing to change and is rejected: nothing spoiled. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC0(db, "UPDATE machines SET name = 'x' WHERE id = 'M9'"), 0);
    db_rollback(db);
    assert_false(db_batch_spoiled(db));
    /* Message 3 changes a row, then fails. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 2", DB_INT(1)), 1);
    db_rollback(db);
    if (s_pg) {
        /* Its savepoint took it back alone; the batch goes on. */
        assert_false(db_batch_spoiled(db));
        assert_int_equal(db_batch_commit(db), VEND_OK);
        assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 4);
        assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 2"), 5);
        db_close(db);
        return;
    }
    assert_true(db_batch_spoiled(db));
    /* Nothing more runs in it, and it cannot be committed: part of message 3 is in it. */
    assert_int_equal(db_begin(db), VEND_EINTERNAL);
    assert_int_equal(EXEC0(db, "UPDATE slots SET current_stock = 3 WHERE id = 1"), VEND_EINTERNAL);
    assert_int_equal(db_batch_commit(db), VEND_EINTERNAL);
    assert_false(db_batch_open(db));
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 5);
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 2"), 5);
    /* Again, ended by db_batch_abort(): all of it rolled back, the connection usable. */
    assert_int_equal(db_batch_begin(db), VEND_OK);
    db_batch_guard(db, false);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(4)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 2", DB_INT(1)), 1);
    db_rollback(db);
    assert_true(db_batch_spoiled(db));
    db_batch_abort(db);
    assert_false(db_batch_open(db));
    assert_false(db_batch_spoiled(db));
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 5);
    /* A new batch starts guarded: a failed message rolls back alone again. */
    assert_int_equal(db_batch_begin(db), VEND_OK);
    assert_true(db_batch_guarded(db));
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 2", DB_INT(1)), 1);
    db_rollback(db);
    assert_false(db_batch_spoiled(db));
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 2"), 5);
    db_close(db);
}

/*
 * A lazy batch (db.h "Lazy durability"): committed at once, so another connection reads it;
 * durable only once the backend says so (SQLite: its syncer, through db_durable_fd()), or once
 * a commit that waits for the disk follows; and the connection's next commits wait for the
 * disk again (SQLite: synchronous back to FULL). PostgreSQL has no lazy batch: it waits.
 */
static void test_lazy_batch(void **state)
{
    struct db *db, *other;
    struct pollfd p = {.events = POLLIN};
    uint64_t c0;

    (void)state;
    db = open_ok("lazy.db");
    seed(db);
    other = open_ok("lazy.db");
    c0 = db_commits(db);
    assert_true(db_durable(db) == c0);
    assert_int_equal(db_batch_begin_lazy(db), VEND_OK);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(7)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_true(db_commits(db) == c0 + 1);
    assert_int_equal(query_int(other, "SELECT current_stock FROM slots WHERE id = 1"), 7);
    p.fd = db_durable_fd(db);
    if (p.fd < 0) {
        assert_true(db_durable(db) == c0 + 1);
        goto out;
    }
    /* Not durable before the syncer says so; the connection is back at FULL (2). */
    assert_true(db_durable(db) == c0);
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 2);
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_int_equal(db_durable_take(db), VEND_OK);
    assert_true(db_durable(db) == c0 + 1);
    /* Another lazy batch; a commit that waits for the disk makes it durable too. */
    assert_int_equal(db_batch_begin_lazy(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(6)), 1);
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_true(db_durable(db) == c0 + 1);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 2", DB_INT(3)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_true(db_commits(db) == c0 + 3 && db_durable(db) == c0 + 3);
    /* A rolled-back lazy batch leaves FULL too. */
    assert_int_equal(db_batch_begin_lazy(db), VEND_OK);
    db_rollback(db); /* no message open: nothing */
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 2);
    /* A lazy batch ended behind db.c's back (an error that rolls back, here a ROLLBACK): the
     * next statement outside a transaction already runs at FULL. */
    assert_int_equal(db_batch_begin_lazy(db), VEND_OK);
    assert_int_equal(EXEC0(db, "ROLLBACK"), 0);
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 2);
    assert_true(db_batch_commit(db) < 0); /* its transaction is gone */
    assert_int_equal(query_int(db, "PRAGMA synchronous"), 2);
out:
    db_close(other);
    db_close(db);
}

/*
 * A commit that changed no row writes nothing and syncs nothing (SQLite: no WAL frame, no
 * fsync), so it must not make an earlier lazy batch durable: a sweep that found nothing due,
 * a batch of rejected messages. Else the event stream sends ids the disk does not have.
 */
static void test_lazy_batch_empty_commit(void **state)
{
    struct db *db;
    struct pollfd p = {.events = POLLIN};
    uint64_t c0;

    (void)state;
    db = open_ok("lazy-empty.db");
    seed(db);
    c0 = db_commits(db);
    assert_int_equal(db_batch_begin_lazy(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(7)), 1);
    assert_int_equal(db_batch_commit(db), VEND_OK);
    p.fd = db_durable_fd(db);
    if (p.fd < 0)
        goto out; /* no lazy commit on this backend: nothing waits */
    assert_true(db_commits(db) == c0 + 1 && db_durable(db) == c0);
    /* Waits for the disk, but has nothing to write: the lazy batch is still not durable. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = -1", DB_INT(1)), 0);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_true(db_durable(db) == c0);
    assert_int_equal(db_batch_begin(db), VEND_OK);
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_true(db_durable(db) == c0);
    /* The syncer's word makes it durable, and nothing is left waiting for another. */
    assert_int_equal(poll(&p, 1, 5000), 1);
    assert_int_equal(db_durable_take(db), VEND_OK);
    assert_true(db_durable(db) == db_commits(db));
    /* A commit that wrote still makes everything before it durable. */
    assert_int_equal(db_batch_begin_lazy(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(6)), 1);
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_true(db_durable(db) < db_commits(db));
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 2", DB_INT(3)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_true(db_durable(db) == db_commits(db));
out:
    db_close(db);
}

/* The checkpoint runs from a timer, not inside commits; it waits while a transaction is open. */
static void test_checkpoint_off_the_commit_path(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("ckpt.db");
    assert_int_equal(query_int(db, "PRAGMA wal_autocheckpoint"), 20000);
    assert_int_equal(query_int(db, "PRAGMA cache_size"), -4096);
    seed(db);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(db_checkpoint(db), VEND_OK); /* inside a transaction: nothing done */
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(db_checkpoint(db), VEND_OK);
    db_close(db);
}

/* The checkpoint runs on the checkpointer's thread (sqlite_ckpt.h): asked, it copies the WAL
 * into the database file while the caller goes on; a request made while the WAL holds new
 * commits is served too. */
static void test_checkpoint_copies_the_wal(void **state)
{
    char path[512];
    struct stat sb;
    struct db *db;
    off_t before;

    (void)state;
    db = open_ok("ckpt2.db");
    path_of(path, sizeof(path), "ckpt2.db");
    assert_int_equal(stat(path, &sb), 0);
    before = sb.st_size; /* the migrations wait in the WAL: the file holds a page or none */
    assert_true(before <= 4096);
    seed(db);
    assert_int_equal(EXEC0(db, "CREATE TABLE grow (x TEXT)"), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(db_checkpoint(db), VEND_OK);
        for (int i = 0; i < 200; i++) {
            assert_int_equal(stat(path, &sb), 0);
            if (sb.st_size > before)
                break;
            usleep(10000);
        }
        assert_true(sb.st_size > before);
        before = sb.st_size;
        /* New pages reach the file at the next checkpoint only. */
        assert_int_equal(EXEC0(db, "INSERT INTO grow SELECT hex(zeroblob(2000)) FROM machines"), 2);
    }
    db_close(db);
}

/* Files this process has open whose path names a SQLite temporary file ("etilqs_"). */
static int open_sqlite_temp_files(void)
{
    char link[64], target[512];
    int n = 0;

    for (int fd = 0; fd < 1024; fd++) {
        ssize_t len;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        n += strstr(target, "etilqs_") != NULL;
    }
    return n;
}

/* A message's savepoint journals every page it changes; past 64 KiB SQLite moved that journal
 * to a temporary file, opened and written once per group on the loop. It stays in memory. */
static void test_savepoint_journal_in_memory(void **state)
{
    struct db *db;

    (void)state;
    db = open_ok("subjournal.db");
    /* A CHECK and a trigger, as the real tables have: the statement needs a journal. */
    assert_int_equal(EXEC0(db, "CREATE TABLE wide (x TEXT CHECK (length(x) > 0))"), 0);
    assert_int_equal(EXEC0(db, "CREATE TABLE wide_log (x TEXT)"), 0);
    assert_int_equal(EXEC0(db, "CREATE TRIGGER wide_logged AFTER UPDATE ON wide "
                               "BEGIN INSERT INTO wide_log VALUES (NEW.x); END"),
                     0);
    assert_int_equal(EXEC0(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                               "WHERE i < 200) INSERT INTO wide SELECT hex(zeroblob(1000)) FROM n"),
                     200);
    assert_int_equal(db_batch_begin(db), VEND_OK);
    for (int message = 0; message < 3; message++) {
        assert_int_equal(db_begin(db), VEND_OK);
        /* About 100 pages of 4 KiB changed: 400 KiB of journal. */
        assert_int_equal(EXEC0(db, "UPDATE wide SET x = lower(x) || 'a'"), 200);
        assert_int_equal(open_sqlite_temp_files(), 0);
        assert_int_equal(db_commit(db), VEND_OK);
    }
    assert_int_equal(db_batch_commit(db), VEND_OK);
    db_close(db);
}

/* ASan's shadow memory and its quarantine of freed blocks count in the RSS. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEASURABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEASURABLE 0
#endif
#endif
#ifndef RSS_MEASURABLE
#define RSS_MEASURABLE 1
#endif

/* The process's peak resident set in KiB (VmHWM), or -1. */
static long peak_rss_kib(void)
{
    char line[128];
    long kib = -1;
    FILE *fp = fopen("/proc/self/status", "r");

    if (fp == NULL)
        return -1;
    while (fgets(line, sizeof(line), fp) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(fp);
    return kib;
}

/* A DISTINCT, GROUP BY or sort without an index builds a temporary b-tree, which SQLite
 * moves to a file past the cache: memory bounded whatever the table's size. Kept in memory
 * (temp_store=MEMORY) it grew by the table, about 60 MB here. */
static void test_temp_btree_memory_bounded(void **state)
{
    struct db *db;
    long before, after;
    int fd, rows = 0;

    (void)state;
    if (!RSS_MEASURABLE)
        skip();
    db = open_ok("tempbtree.db");
    assert_int_equal(EXEC0(db, "CREATE TABLE big (k INTEGER, x TEXT)"), 0);
    assert_int_equal(EXEC0(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                               "WHERE i < 300000) INSERT INTO big SELECT i, hex(randomblob(100)) "
                               "FROM n"),
                     300000);
    /* Reset VmHWM to the current RSS (Linux 4.0): the peak of this query alone. */
    fd = open("/proc/self/clear_refs", O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "5", 1), 1);
    close(fd);
    before = peak_rss_kib();
    assert_true(db_exec(db, "SELECT count(*) FROM (SELECT DISTINCT x FROM big)", NULL, 0,
                        count_rows, &rows) >= 0);
    assert_int_equal(rows, 1);
    after = peak_rss_kib();
    assert_true(before > 0 && after > 0);
    if (after - before > 24 * 1024)
        print_error("a DISTINCT over 60 MB raised the peak RSS by %ld KiB\n", after - before);
    assert_true(after - before <= 24 * 1024);
    db_close(db);
}

static void test_row_callback_stop(void **state)
{
    struct db *db;
    struct stopper s = {0, 2};
    const char *sql = "SELECT x FROM r ORDER BY x";

    (void)state;
    db = open_ok("stop.db");
    assert_int_equal(EXEC0(db, "CREATE TABLE r (x INTEGER)"), 0);
    assert_int_equal(EXEC0(db, "INSERT INTO r VALUES (1), (2), (3), (4), (5)"), 5);
    assert_int_equal(db_exec(db, sql, NULL, 0, stop_early, &s), 0);
    assert_int_equal(s.seen, 2);
    /* The stopped statement was reset: it runs again from the start, and it does not hold a
     * read transaction that would keep a writer waiting. */
    s = (struct stopper){0, 100};
    assert_int_equal(db_exec(db, sql, NULL, 0, stop_early, &s), 0);
    assert_int_equal(s.seen, 5);
    s = (struct stopper){0, 1};
    assert_int_equal(db_exec(db, sql, NULL, 0, stop_early, &s), 0);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC0(db, "DELETE FROM r"), 5);
    assert_int_equal(db_commit(db), VEND_OK);
    db_close(db);
}

#define NESTED_SQL "SELECT x FROM k WHERE x >= $1 ORDER BY x"

struct nested {
    struct db *db;
    int64_t inner_sum;
    int rows;
};

static int nested_row(void *arg, const struct db_row *row)
{
    struct nested *n = arg;
    int64_t v = 0;
    struct db_value p = DB_INT(db_row_int(row, 0));

    /* The same SQL while its cached statement is still stepping (the caller's). */
    assert_int_equal(db_exec(n->db, NESTED_SQL, &p, 1, first_int, &v), 0);
    n->inner_sum += v;
    n->rows++;
    return 0;
}

static void test_statement_cache(void **state)
{
    struct db *db;
    struct nested n = {0};
    const char *sql = "SELECT x FROM k WHERE x = $1";
    char text[64];

    (void)state;
    db = open_ok("cache.db");
    assert_int_equal(EXEC0(db, "CREATE TABLE k (x INTEGER)"), 0);
    assert_int_equal(EXEC0(db, "INSERT INTO k VALUES (1), (2), (3)"), 3);
    /* Same SQL twice, different parameters: each run sees its own. */
    for (int64_t i = 1; i <= 3; i++) {
        int64_t v = 0;
        struct db_value p = DB_INT(i);
        assert_int_equal(db_exec(db, sql, &p, 1, first_int, &v), 0);
        assert_int_equal(v, i);
    }
    {
        int64_t v = -1;
        struct db_value p = DB_INT(9);
        assert_int_equal(db_exec(db, sql, &p, 1, first_int, &v), 0);
        assert_int_equal(v, -1); /* no row: no stale one from the last run */
    }
    n.db = db;
    {
        struct db_value p = DB_INT(2);
        assert_int_equal(db_exec(db, NESTED_SQL, &p, 1, nested_row, &n), 0);
    }
    assert_int_equal(n.rows, 2);
    assert_int_equal(n.inner_sum, 5);
    /* The cache finds a statement by its text's address first: one buffer holding other
     * SQL each time must still run what it holds now, and the numbers of the parameters are
     * those of the statement found ($2 before $1). */
    for (int i = 0; i < 6; i++) {
        int64_t v = 0;
        struct db_value p[2] = {DB_INT(i), DB_INT(100)};

        snprintf(text, sizeof(text), i % 2 == 0 ? "SELECT $2 * 10 + $1" : "SELECT $1 * 10 + $2");
        assert_int_equal(db_exec(db, text, p, 2, first_int, &v), 0);
        assert_int_equal(v, i % 2 == 0 ? 1000 + i : i * 10 + 100);
    }
    /* More distinct statements than the cache holds still run (the same buffer again). */
    for (int i = 0; i < 600; i++) {
        snprintf(text, sizeof(text), "SELECT %d + $1", i);
        {
            int64_t v = 0;
            struct db_value p = DB_INT(1);
            assert_int_equal(db_exec(db, text, &p, 1, first_int, &v), 0);
            assert_int_equal(v, i + 1);
        }
    }
    db_close(db);
}

/* ---- what PostgreSQL does differently and db_pg.c restores (run on both) ---- */

/* Both migration sets have the same versions under the same names. */
static void test_migration_sets_match(void **state)
{
    (void)state;
    assert_int_equal(schema_pg_count, schema_sqlite_count);
    for (int i = 0; i < schema_sqlite_count; i++) {
        assert_int_equal(schema_pg[i].version, schema_sqlite[i].version);
        assert_string_equal(schema_pg[i].name, schema_sqlite[i].name);
    }
}

/* A statement that fails inside a transaction fails alone, as in SQLite: the transaction goes
 * on and commits what else it did (payments.c goes on after a refund's VEND_ECONFLICT). */
static void test_failed_statement_keeps_transaction(void **state)
{
    const char *pay = "INSERT INTO payments (order_id, gateway_name, gateway_transaction_id, "
                      "amount, created_at, updated_at) VALUES ($1, 'midtrans', $2, 8000, $3, $3)";
    struct db *db;

    (void)state;
    db = open_ok("stmtfail.db");
    seed(db);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, pay, DB_TEXT("O1"), DB_TEXT("tx-1"), DB_TEXT(T0)), 1);
    assert_int_equal(EXEC(db, pay, DB_TEXT("O2"), DB_TEXT("tx-1"), DB_TEXT(T0)), VEND_ECONFLICT);
    assert_int_equal(EXEC(db, "UPDATE slots SET current_stock = $1 WHERE id = 1", DB_INT(-1)),
                     VEND_ECONSTRAINT);
    assert_int_equal(EXEC0(db, "SELECT * FROM no_such_table"), VEND_EDB);
    assert_int_equal(EXEC(db, pay, DB_TEXT("O2"), DB_TEXT("tx-2"), DB_TEXT(T0)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(query_int(db, "SELECT count(*) FROM payments"), 2);
    assert_int_equal(query_int(db, "SELECT current_stock FROM slots WHERE id = 1"), 5);

    /* Inside a batch too: the message's savepoint is not disturbed by a failed statement. */
    assert_int_equal(db_batch_begin(db), VEND_OK);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, pay, DB_TEXT("O3"), DB_TEXT("tx-1"), DB_TEXT(T0)), VEND_ECONFLICT);
    assert_int_equal(EXEC(db, pay, DB_TEXT("O3"), DB_TEXT("tx-3"), DB_TEXT(T0)), 1);
    assert_int_equal(db_commit(db), VEND_OK);
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, pay, DB_TEXT("O3"), DB_TEXT("tx-4"), DB_TEXT(T0)), 1);
    db_rollback(db);
    assert_int_equal(db_batch_commit(db), VEND_OK);
    assert_int_equal(query_int(db, "SELECT count(*) FROM payments"), 3);
    db_close(db);
}

/* A row inserted without an id after rows given ids by hand gets the next one (SQLite's
 * rowid; the fixtures of the daemon's tests insert products and slots with ids). */
static void test_ids_follow_given_ones(void **state)
{
    struct db *db;
    int64_t id = 0;

    (void)state;
    db = open_ok("ids.db");
    seed(db); /* products 1, slots 1 and 2 */
    assert_int_equal(
        db_exec(db,
                "INSERT INTO slots (machine_id, slot_number, capacity, created_at, updated_at) "
                "VALUES ('M1', 7, 10, $1, $1) RETURNING id",
                (const struct db_value[]){DB_TEXT(T0)}, 1, first_int, &id),
        0);
    assert_int_equal(id, 3);
    assert_int_equal(EXEC(db,
                          "INSERT INTO products (id, name, price, created_at, updated_at) "
                          "VALUES (40, 'Teh', 5000, $1, $1)",
                          DB_TEXT(T0)),
                     1);
    assert_int_equal(db_exec(db,
                             "INSERT INTO products (name, price, created_at, updated_at) "
                             "VALUES ('Air', 3000, $1, $1) RETURNING id",
                             (const struct db_value[]){DB_TEXT(T0)}, 1, first_int, &id),
                     0);
    assert_int_equal(id, 41);
    db_close(db);
}

/* The events outbox is written by triggers, only for real changes, in id order. */
static void test_events_from_triggers(void **state)
{
    const char *count = "SELECT count(*) FROM events WHERE kind = $1 AND status = $2";
    struct db *db;
    int64_t n = -1;
    int64_t last = -1;

    (void)state;
    db = open_ok("events.db");
    seed(db);
    assert_int_equal(db_exec(db, count,
                             (const struct db_value[]){DB_TEXT("order"), DB_TEXT("PENDING")}, 2,
                             first_int, &n),
                     0);
    assert_int_equal(n, 3);
    assert_int_equal(EXEC(db, "UPDATE orders SET status = $1 WHERE id = 'O1'", DB_TEXT("PAID")), 1);
    assert_int_equal(EXEC(db, "UPDATE orders SET status = $1 WHERE id = 'O1'", DB_TEXT("PAID")), 1);
    assert_int_equal(db_exec(db, count,
                             (const struct db_value[]){DB_TEXT("order"), DB_TEXT("PAID")}, 2,
                             first_int, &n),
                     0);
    assert_int_equal(n, 1); /* the second update changed nothing: no event */
    assert_int_equal(EXEC0(db, "UPDATE slots SET current_stock = 4 WHERE id = 1"), 1);
    assert_int_equal(
        query_int(db, "SELECT stock FROM events WHERE kind = 'stock' ORDER BY id DESC LIMIT 1"), 4);
    last = query_int(db, "SELECT max(id) FROM events");
    assert_int_equal(query_int(db, "SELECT count(*) FROM events"), last);
    /* A rolled-back change leaves no event. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC(db, "UPDATE orders SET status = $1 WHERE id = 'O2'", DB_TEXT("PAID")), 1);
    db_rollback(db);
    assert_int_equal(db_exec(db, count,
                             (const struct db_value[]){DB_TEXT("order"), DB_TEXT("PAID")}, 2,
                             first_int, &n),
                     0);
    assert_int_equal(n, 1);
    db_close(db);
}

/* db_version() moves at this connection's changes and at another connection's commit. */
static void test_version_moves(void **state)
{
    struct db *db;
    struct db *other;
    uint64_t a[2];
    uint64_t b[2];

    (void)state;
    db = open_ok("version.db");
    seed(db);
    other = open_ok("version.db");
    db_version(db, a);
    assert_true(a[1] != UINT64_MAX);
    db_version(db, b);
    assert_true(a[0] == b[0] && a[1] == b[1]); /* nothing happened */
    assert_int_equal(EXEC0(other, "UPDATE slots SET current_stock = 3 WHERE id = 1"), 1);
    db_version(db, b);
    assert_true(a[0] != b[0] || a[1] != b[1]);
    db_version(db, a);
    assert_int_equal(EXEC0(db, "UPDATE slots SET current_stock = 2 WHERE id = 1"), 1);
    db_version(db, b);
    assert_true(a[0] != b[0] || a[1] != b[1]);
    db_close(other);
    db_close(db);
}

/*
 * db_version_of() moves with a change to a table it names (a row in or out of one it names
 * as members only), with another connection's commit, and with a change the update hook was
 * not told of; a change elsewhere, or to a member table's rows, leaves it where it was. On
 * PostgreSQL it is db_version(): only the "moves" half holds.
 */
static void test_version_of_tables(void **state)
{
    static const struct db_reads stock = {.changed = {"slots", "products", NULL},
                                          .members = {"machines", NULL}};
    const char *now = "2026-01-01T00:00:00.000Z";
    struct db *db;
    struct db *other;
    uint64_t a[2];
    uint64_t b[2];

    (void)state;
    db = open_ok("version_of.db");
    seed(db);
    other = open_ok("version_of.db");
    db_version_of(db, &stock, a);
    assert_true(a[1] != UINT64_MAX);
    db_version_of(db, &stock, b);
    assert_true(a[0] == b[0] && a[1] == b[1]);
    /* Elsewhere: a reading, a machine's row updated, an order (its trigger writes events). */
    assert_int_equal(EXEC(db,
                          "INSERT INTO telemetry (machine_id, data, received_at) "
                          "VALUES ('M1', '{}', $1)",
                          DB_TEXT(now)),
                     1);
    assert_int_equal(EXEC(db, "UPDATE machines SET last_seen = $1 WHERE id = 'M1'", DB_TEXT(now)),
                     1);
    assert_int_equal(EXEC(db, "UPDATE orders SET status = $1 WHERE id = 'O1'", DB_TEXT("PAID")), 1);
    db_version_of(db, &stock, b);
    if (!s_pg)
        assert_true(a[0] == b[0] && a[1] == b[1]);
    /* A slot's stock (its trigger writes events too). */
    db_version_of(db, &stock, a);
    assert_int_equal(EXEC0(db, "UPDATE slots SET current_stock = 2 WHERE id = 1"), 1);
    db_version_of(db, &stock, b);
    assert_true(a[0] != b[0] || a[1] != b[1]);
    /* A machine coming. */
    db_version_of(db, &stock, a);
    assert_int_equal(EXEC(db,
                          "INSERT INTO machines (id, name, created_at, updated_at) "
                          "VALUES ('M3', 'three', $1, $1)",
                          DB_TEXT(now)),
                     1);
    db_version_of(db, &stock, b);
    assert_true(a[0] != b[0] || a[1] != b[1]);
    /* A DELETE without WHERE from a table without triggers or foreign keys: SQLite empties
     * it without telling the hook of each row (its count still moves). */
    db_version_of(db, &stock, a);
    assert_true(EXEC0(db, "DELETE FROM events") >= 1);
    db_version_of(db, &stock, b);
    assert_true(a[0] != b[0] || a[1] != b[1]);
    /* Another connection's commit, whatever it changed. */
    db_version_of(db, &stock, a);
    assert_int_equal(EXEC(other, "UPDATE orders SET status = $1 WHERE id = 'O2'", DB_TEXT("PAID")),
                     1);
    db_version_of(db, &stock, b);
    assert_true(a[0] != b[0] || a[1] != b[1]);
    db_close(other);
    db_close(db);
}

/* Booleans and sums read as SQLite gives them: 1/0, integers. */
static void test_value_shapes(void **state)
{
    struct db *db;
    struct text_out t;

    (void)state;
    db = open_ok("shapes.db");
    seed(db);
    assert_int_equal(query_int(db, "SELECT 2 > 1"), 1);
    assert_true(db_exec(db, "SELECT 1 > 2", NULL, 0, first_text, &t) >= 0);
    assert_string_equal(t.buf, "0");
    assert_int_equal(query_int(db, "SELECT sum(current_stock) FROM slots"), 10);
    assert_true(db_exec(db, "SELECT sum(current_stock) FROM slots", NULL, 0, first_text, &t) >= 0);
    assert_string_equal(t.buf, "10");
    /* 64-bit arithmetic on a parameter (epoch milliseconds). */
    {
        int64_t v = 0;
        assert_int_equal(db_exec(db, "SELECT $1 + 1000",
                                 (const struct db_value[]){DB_INT(INT64_C(1795771800123))}, 1,
                                 first_int, &v),
                         0);
        assert_true(v == INT64_C(1795771801123));
    }
    db_close(db);
}

/* ---- migration 0012's sales rollup against the GROUP BY it replaced (run on both) ---- */

/* The rollup's rows, and the oracle: every dropped unit (UNIT_DROPPED_SQL) with a day, grouped
 * by day, machine and product as sold, priced by the order item that holds it. */
#define ROLLUP_ROWS                                                                                \
    "SELECT day, machine_id, product_name, units, revenue FROM sales_daily "                       \
    "ORDER BY day, machine_id, product_name"
#define ORACLE_ROWS                                                                                \
    "SELECT substr(d.completed_at, 1, 10), d.machine_id, COALESCE(i.product_name, ''), "           \
    "count(*), sum(i.unit_price) FROM dispense_logs d JOIN order_items i "                         \
    "ON i.order_id = d.order_id AND d.unit >= i.first_unit "                                       \
    "AND d.unit < i.first_unit + i.quantity WHERE " UNIT_DROPPED_SQL                               \
    " AND d.completed_at IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"

struct rows_text {
    char buf[16384];
    size_t len;
    int rows;
};

/* "day|machine|product|units|revenue\n" per row; units and revenue read as integers, since
 * PostgreSQL's sum() is numeric. */
static int add_row_text(void *arg, const struct db_row *row)
{
    struct rows_text *t = arg;
    const char *c[3];
    int n;

    for (int i = 0; i < 3; i++)
        c[i] = db_row_text(row, i);
    n = snprintf(t->buf + t->len, sizeof(t->buf) - t->len, "%s|%s|%s|%lld|%lld\n",
                 c[0] != NULL ? c[0] : "NULL", c[1] != NULL ? c[1] : "NULL",
                 c[2] != NULL ? c[2] : "NULL", (long long)db_row_int(row, 3),
                 (long long)db_row_int(row, 4));
    assert_true(n > 0 && (size_t)n < sizeof(t->buf) - t->len);
    t->len += (size_t)n;
    t->rows++;
    return 0;
}

/* The rollup equals the oracle, row for row; returns its number of rows. */
static int expect_rollup(struct db *db, uint64_t seed, const char *after)
{
    static struct rows_text got, want; /* 16 KiB each: off the stack */

    got.len = want.len = 0;
    got.rows = want.rows = 0;
    got.buf[0] = want.buf[0] = '\0';
    assert_true(db_exec(db, ROLLUP_ROWS, NULL, 0, add_row_text, &got) >= 0);
    assert_true(db_exec(db, ORACLE_ROWS, NULL, 0, add_row_text, &want) >= 0);
    if (strcmp(got.buf, want.buf) != 0)
        fail_msg("seed %llu, after %s:\n rollup\n%s oracle\n%s", (unsigned long long)seed, after,
                 got.buf, want.buf);
    return got.rows;
}

/* xorshift64*: a failure prints the seed that reproduces it. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (*s * 2685821657736338717ull) >> 11;
}

static unsigned pick(uint64_t *s, unsigned n)
{
    return (unsigned)(rnd(s) % n);
}

/* A time in the four days from 2025-11-20, often a day's first or last millisecond; or NULL. */
static struct db_value some_time(uint64_t *s, char out[32])
{
    int64_t ms = INT64_C(1763596800000) + (int64_t)pick(s, 4) * 86400000;

    switch (pick(s, 6)) {
    case 0:
        return DB_NULL;
    case 1:
        break;
    case 2:
        ms += 86400000 - 1;
        break;
    default:
        ms += (int64_t)(rnd(s) % 86400000);
        break;
    }
    db_iso_time(out, 32, ms);
    return DB_TEXT(out);
}

static const char *const s_unit_status[] = {"QUEUED", "UNSETTLED", "SUCCEEDED", "FAILED",
                                            "NO_RESULT"};

/*
 * Orders S<first>.. on M1 (slot 1) or M2 (slot 2), of 1..3 items (1..3 units each, products
 * named Kopi, Teh, Cola or none), their units written in any final shape. success and
 * drop_detected are written as vendd writes them here; sales_change() also makes them NULL,
 * as a hand-written row may (the dropped predicate is then NULL, which must count as false).
 */
static void sales_orders(struct db *db, uint64_t *s, int first, int n)
{
    static const char *const names[4] = {"Kopi", "Teh", NULL, "Cola"};

    for (int o = first; o < first + n; o++) {
        int m = (int)pick(s, 2), unit = 1;
        char id[32];

        snprintf(id, sizeof(id), "S%d", o);
        assert_int_equal(EXEC(db,
                              "INSERT INTO orders (id, machine_id, quantity, total_amount, "
                              "status, origin, payment_method, created_at, updated_at) VALUES "
                              "($1, $2, 1, 0, 'PAID', 'customer', 'qris', $3, $3)",
                              DB_TEXT(id), DB_TEXT(m ? "M2" : "M1"), DB_TEXT(T0)),
                         1);
        for (int i = 1, items = 1 + (int)pick(s, 3); i <= items; i++) {
            int q = 1 + (int)pick(s, 3), price = 1000 * (1 + (int)pick(s, 9));
            const char *name = names[pick(s, 4)];

            assert_int_equal(EXEC(db,
                                  "INSERT INTO order_items (order_id, position, slot_id, "
                                  "product_name, quantity, unit_price, total, first_unit) "
                                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                  DB_TEXT(id), DB_INT(i), DB_INT(m + 1),
                                  name != NULL ? DB_TEXT(name) : DB_NULL, DB_INT(q), DB_INT(price),
                                  DB_INT(q * price), DB_INT(unit)),
                             1);
            for (int u = unit; u < unit + q; u++) {
                char at[32];

                assert_int_equal(
                    EXEC(db,
                         "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, "
                         "slot_number, timeout_ms, status, completed_at, success, "
                         "drop_detected, late_result, created_at) "
                         "VALUES ($1, $2, $3, $4, 1, 1500, $5, $6, $7, $8, $9, $10)",
                         DB_TEXT(id), DB_INT(u), DB_TEXT(m ? "M2" : "M1"), DB_INT(m + 1),
                         DB_TEXT(s_unit_status[pick(s, 5)]), some_time(s, at),
                         DB_INT(pick(s, 3) != 0), DB_INT(pick(s, 3) != 0), DB_INT(pick(s, 2)),
                         DB_TEXT(T0)),
                    1);
            }
            unit += q;
        }
    }
}

/*
 * One change to the units, as vendd makes them or by hand: each column the triggers watch,
 * one they do not, several rows in one statement, a delete, a unit moved out of its items or
 * to another order. Returns what it did, for the failure message.
 */
static const char *sales_change(struct db *db, uint64_t *s, int orders)
{
    static const char *const what[] = {
        "UPDATE dispense_logs SET status = $2 WHERE id = $1",
        "UPDATE dispense_logs SET late_result = 1 - late_result, success = $2, "
        "drop_detected = $3 WHERE id = $1",
        "UPDATE dispense_logs SET completed_at = $2 WHERE id = $1",
        "UPDATE dispense_logs SET machine_id = CASE machine_id WHEN 'M1' THEN 'M2' ELSE 'M1' "
        "END WHERE id = $1",
        "UPDATE dispense_logs SET unit = unit + $2 WHERE id = $1",
        "UPDATE dispense_logs SET order_id = $2 WHERE id = $1",
        "DELETE FROM dispense_logs WHERE id = $1",
        "UPDATE dispense_logs SET error_message = $2 WHERE id = $1",
        "UPDATE dispense_logs SET status = 'SUCCEEDED', completed_at = $2 WHERE id % 5 = $1",
        "UPDATE dispense_logs SET status = 'FAILED', late_result = 0 WHERE id % 7 = $1",
    };
    int64_t max_id = query_int(db, "SELECT COALESCE(max(id), 0) FROM dispense_logs");
    struct db_value id = DB_INT(1 + (int64_t)pick(s, (unsigned)max_id + 1));
    unsigned k = pick(s, sizeof(what) / sizeof(what[0]));
    char at[32], order[32];
    int rc = 0;

    switch (k) {
    case 0:
        rc = EXEC(db, what[k], id, DB_TEXT(s_unit_status[pick(s, 5)]));
        break;
    case 1:
        /* NULL too: a row written by hand, where the dropped predicate is NULL, not false. */
        rc = EXEC(db, what[k], id, pick(s, 4) == 3 ? DB_NULL : DB_INT(pick(s, 3) != 0),
                  pick(s, 4) == 3 ? DB_NULL : DB_INT(pick(s, 3) != 0));
        break;
    case 2:
    case 8:
        rc = EXEC(db, what[k], k == 8 ? DB_INT(pick(s, 5)) : id, some_time(s, at));
        break;
    case 3:
    case 6:
        rc = EXEC(db, what[k], id);
        break;
    case 4: /* past every item of the order, or back */
        rc = EXEC(db, what[k], id, DB_INT(pick(s, 2) ? 50 : -50));
        break;
    case 5:
        snprintf(order, sizeof(order), "S%u", 1 + pick(s, (unsigned)orders));
        rc = EXEC(db, what[k], id, DB_TEXT(order));
        break;
    case 7:
        rc = EXEC(db, what[k], id, DB_TEXT("MOTOR_JAM"));
        break;
    default:
        rc = EXEC(db, what[k], DB_INT(pick(s, 7)));
        break;
    }
    /* A unit number taken in that order, or below 1: refused, and nothing changed. */
    if (rc < 0 && rc != VEND_ECONFLICT && rc != VEND_ECONSTRAINT)
        fail_msg("%s: %s (%s)", what[k], vend_errname(rc), db_errmsg(db));
    return what[k];
}

/*
 * Migration 0012 on a database of version 11 with units in every shape fills the rollup as
 * the GROUP BY would; then every insert, update and delete keeps it so, committed or rolled
 * back, and no row of 0 units is left.
 */
static void test_sales_rollup_equals_group_by(void **state)
{
    const struct schema_migration *list = s_pg ? schema_pg : schema_sqlite;
    char url[512], err[256] = "";
    struct db *db = NULL;
    int orders = 0, most = 0;

    (void)state;
    url_of(url, sizeof(url), "sales.db");
    for (uint64_t run = 1; run <= 3; run++) {
        uint64_t s = run * 0x9e3779b97f4a7c15ull;

        if (run == 1) { /* the backfill: units written before the rollup existed */
            assert_int_equal(db_open_with(&db, url, list, 11, err, sizeof(err)), VEND_OK);
            seed(db);
            sales_orders(db, &s, 1, 30);
            orders = 30;
            assert_false(table_exists(db, "sales_daily"));
            db_close(db);
            db = NULL;
            assert_int_equal(db_open(&db, url, err, sizeof(err)), VEND_OK);
            most = expect_rollup(db, run, "the backfill");
            assert_true(most > 5);
        }
        for (int step = 0; step < 120; step++) {
            const char *did;
            int n;

            if (step % 20 == 0) {
                sales_orders(db, &s, orders + 1, 5);
                orders += 5;
                expect_rollup(db, run, "new units");
            }
            if (step % 10 == 9) { /* in a transaction, then rolled back: nothing moves */
                assert_int_equal(db_begin(db), VEND_OK);
                sales_change(db, &s, orders);
                sales_change(db, &s, orders);
                db_rollback(db);
                expect_rollup(db, run, "a rollback");
                continue;
            }
            assert_int_equal(db_begin(db), VEND_OK);
            did = sales_change(db, &s, orders);
            assert_int_equal(db_commit(db), VEND_OK);
            n = expect_rollup(db, run, did);
            most = n > most ? n : most;
        }
    }
    assert_int_equal(query_int(db, "SELECT count(*) FROM sales_daily WHERE units <= 0"), 0);
    assert_true(most > 5);
    db_close(db);
}

static void test_iso_time(void **state)
{
    char buf[32];

    (void)state;
    db_iso_time(buf, sizeof(buf), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    db_iso_time(buf, sizeof(buf), INT64_C(1795771800123));
    assert_string_equal(buf, "2026-11-27T09:30:00.123Z");
    db_iso_time(buf, sizeof(buf), INT64_C(951782400007)); /* leap day */
    assert_string_equal(buf, "2000-02-29T00:00:00.007Z");
    db_iso_time(buf, sizeof(buf), -5);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    db_iso_time(buf, sizeof(buf), INT64_MAX);
    assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
    db_iso_time(buf, 25, INT64_C(1795771800123));
    assert_int_equal(strlen(buf), 24);
    memset(buf, 'x', sizeof(buf));
    db_iso_time(buf, 24, 0); /* too small: empty, not truncated */
    assert_string_equal(buf, "");
}

/* db_iso_time() does its own calendar arithmetic: it must agree with gmtime_r() everywhere,
 * century and leap-year edges included, over the whole range it writes. */
static void test_iso_time_matches_gmtime(void **state)
{
    const int64_t max_s = INT64_C(253402300799);
    const int64_t edges[] = {0,          951782399,  951868800,  4107542399, 4107542400,
                             4102444800, 4133980799, 7258118400, 7258204800, max_s};
    char got[64], want[96];
    uint64_t x = 88172645463325252u; /* xorshift: a fixed, wide spread of instants */

    (void)state;
    for (size_t i = 0; i < 200000 + sizeof(edges) / sizeof(edges[0]); i++) {
        int64_t secs, ms;
        struct tm tm;
        time_t tt;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        secs = i < sizeof(edges) / sizeof(edges[0]) ? edges[i] : (int64_t)(x % (uint64_t)max_s);
        ms = (int64_t)(x % 1000);
        tt = (time_t)secs;
        assert_non_null(gmtime_r(&tt, &tm));
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
        db_iso_time(got, sizeof(got), secs * 1000 + ms);
        assert_string_equal(got, want);
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sessions of the server running sql (whole text), another connection's view. */
static long long pg_running(const char *sql)
{
    char q[256];

    snprintf(q, sizeof(q),
             "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '%s'", sql);
    return pg_count(s_pg_url, q);
}

/*
 * PostgreSQL: a statement the server does not answer within db_pg.c's client deadline (6 s:
 * the lock timeout and a second) is VEND_EBUSY then, not when the server answers; the
 * connection is given up, so the rest of its transaction fails at once; the server ends the
 * abandoned statement by itself (it finds its client gone); the next statement outside a
 * transaction connects again.
 */
static void test_pg_statement_deadline(void **state)
{
    static const char sleep_sql[] = "SELECT pg_sleep(30)";
    struct db *db;
    int64_t t0, took;

    (void)state;
    db = open_ok("deadline.db");
    t0 = mono_ms();
    assert_int_equal(EXEC0(db, sleep_sql), VEND_EBUSY);
    took = mono_ms() - t0;
    if (took < 5500 || took > 8000)
        fail_msg("the deadline came after %lld ms, wanted about 6000", (long long)took);
    assert_non_null(strstr(db_errmsg(db), "no answer from PostgreSQL"));
    /* Ended by the server within its client check (1 s). */
    for (t0 = mono_ms(); pg_running(sleep_sql) > 0;) {
        if (mono_ms() - t0 > 3000)
            fail_msg("the abandoned statement still runs 3 s after the deadline");
        usleep(50000);
    }
    /* A new session at once, and its statements are prepared again. */
    assert_int_equal(query_int(db, "SELECT 41 + 1"), 42);

    /* Inside a transaction: one deadline, then the rest fails without waiting. */
    assert_int_equal(db_begin(db), VEND_OK);
    assert_int_equal(EXEC0(db, sleep_sql), VEND_EBUSY);
    t0 = mono_ms();
    assert_int_equal(EXEC0(db, "SELECT 1"), VEND_EBUSY);
    assert_int_equal(db_commit(db), VEND_EBUSY);
    db_rollback(db);
    if (mono_ms() - t0 > 100)
        fail_msg("after the deadline the transaction took %lld ms to fail",
                 (long long)(mono_ms() - t0));
    assert_int_equal(query_int(db, "SELECT 41 + 1"), 42);
    db_close(db);
}

/*
 * A vendd that stops in the middle of a transaction (SIGSTOP, a frozen host, a network black
 * hole) holds the write lock every other instance needs; the server ends such a session after
 * IDLE_IN_TRANSACTION_MS, so the others write again, and the stopped one's commit fails.
 */
static void test_pg_idle_transaction_released(void **state)
{
    struct db *frozen, *other;
    int64_t t0;
    int rc;

    (void)state;
    frozen = open_ok("idle.db");
    other = open_ok("idle.db");
    assert_int_equal(EXEC0(frozen, "CREATE TABLE IF NOT EXISTS idle_t (x INTEGER)"), VEND_OK);
    assert_int_equal(db_begin(frozen), VEND_OK);
    assert_int_equal(EXEC0(frozen, "INSERT INTO idle_t (x) VALUES (1)"), 1);
    /* frozen says nothing more: other waits for the lock, at most its lock timeout a try. */
    t0 = mono_ms();
    while ((rc = db_begin(other)) == VEND_EBUSY && mono_ms() - t0 < 15000)
        ;
    if (rc != VEND_OK)
        fail_msg("the write lock of an idle transaction was still held after %lld ms: %s",
                 (long long)(mono_ms() - t0), vend_errname(rc));
    assert_int_equal(EXEC0(other, "INSERT INTO idle_t (x) VALUES (2)"), 1);
    assert_int_equal(db_commit(other), VEND_OK);
    /* The frozen one wakes up: its transaction is gone, not half applied. */
    assert_int_not_equal(db_commit(frozen), VEND_OK);
    db_rollback(frozen);
    assert_int_equal(query_int(other, "SELECT count(*) FROM idle_t WHERE x = 1"), 0);
    assert_int_equal(query_int(frozen, "SELECT count(*) FROM idle_t WHERE x = 2"), 1);
    db_close(frozen);
    db_close(other);
}

int main(int argc, char **argv)
{
    /* On both backends. */
    const struct CMUnitTest both[] = {
        cmocka_unit_test(test_fresh_open_migrates),
        cmocka_unit_test(test_lazy_batch),
        cmocka_unit_test(test_lazy_batch_empty_commit),
        cmocka_unit_test(test_reopen_idempotent),
        cmocka_unit_test(test_readonly_open),
        cmocka_unit_test(test_older_database_brought_forward),
        cmocka_unit_test(test_unknown_or_gapped_versions_refused),
        cmocka_unit_test(test_newer_schema_refused_untouched),
        cmocka_unit_test(test_foreign_database_refused),
        cmocka_unit_test(test_unique_keys),
        cmocka_unit_test(test_checks_and_foreign_keys),
        cmocka_unit_test(test_parameters_of_every_type),
        cmocka_unit_test(test_bad_statements),
        cmocka_unit_test(test_changes_count),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_lost),
        cmocka_unit_test(test_unguarded_batch),
        cmocka_unit_test(test_row_callback_stop),
        cmocka_unit_test(test_statement_cache),
        cmocka_unit_test(test_failed_statement_keeps_transaction),
        cmocka_unit_test(test_ids_follow_given_ones),
        cmocka_unit_test(test_events_from_triggers),
        cmocka_unit_test(test_version_moves),
        cmocka_unit_test(test_version_of_tables),
        cmocka_unit_test(test_value_shapes),
        cmocka_unit_test(test_sales_rollup_equals_group_by),
    };
    /* SQLite's files, pragmas and URLs; and what needs no database. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_open_migrates),
        cmocka_unit_test(test_reopen_idempotent),
        cmocka_unit_test(test_readonly_open),
        cmocka_unit_test(test_older_database_brought_forward),
        cmocka_unit_test(test_unknown_or_gapped_versions_refused),
        cmocka_unit_test(test_newer_schema_refused_untouched),
        cmocka_unit_test(test_foreign_database_refused),
        cmocka_unit_test(test_corrupt_random_bytes_refused),
        cmocka_unit_test(test_corrupt_truncated_refused),
        cmocka_unit_test(test_unusable_directory),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_unique_keys),
        cmocka_unit_test(test_checks_and_foreign_keys),
        cmocka_unit_test(test_parameters_of_every_type),
        cmocka_unit_test(test_bad_statements),
        cmocka_unit_test(test_changes_count),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_lost),
        cmocka_unit_test(test_unguarded_batch),
        cmocka_unit_test(test_lazy_batch),
        cmocka_unit_test(test_lazy_batch_empty_commit),
        cmocka_unit_test(test_checkpoint_off_the_commit_path),
        cmocka_unit_test(test_checkpoint_copies_the_wal),
        cmocka_unit_test(test_savepoint_journal_in_memory),
        cmocka_unit_test(test_temp_btree_memory_bounded),
        cmocka_unit_test(test_row_callback_stop),
        cmocka_unit_test(test_statement_cache),
        cmocka_unit_test(test_failed_statement_keeps_transaction),
        cmocka_unit_test(test_ids_follow_given_ones),
        cmocka_unit_test(test_events_from_triggers),
        cmocka_unit_test(test_version_moves),
        cmocka_unit_test(test_version_of_tables),
        cmocka_unit_test(test_value_shapes),
        cmocka_unit_test(test_sales_rollup_equals_group_by),
        cmocka_unit_test(test_migration_sets_match),
        cmocka_unit_test(test_iso_time),
        cmocka_unit_test(test_iso_time_matches_gmtime),
    };

    if (argc > 1 && strcmp(argv[1], "pg") == 0) {
        s_pg = true;
        if (read_pg_state() < 0)
            return 1;
        const struct CMUnitTest pg_only[] = {
            cmocka_unit_test(test_pg_statement_deadline),
            cmocka_unit_test(test_pg_idle_transaction_released),
        };
        int failed = cmocka_run_group_tests_name("postgresql", both, group_setup, group_teardown);

        return failed +
               cmocka_run_group_tests_name("postgresql only", pg_only, group_setup, group_teardown);
    }
    return cmocka_run_group_tests_name("sqlite", tests, group_setup, group_teardown);
}
