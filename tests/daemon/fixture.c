/* fixture.c - see fixture.h. */
#include "fixture.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "loop.h"
#include "store.h"
#include "vend/err.h"

/* The clock must be a plain function pointer (vendd.h), so the test time lives here. */
static int64_t s_now_ms = 1764235800000; /* 2025-11-27T09:30:00.000Z */

void dfx_clock_set(int64_t epoch_ms)
{
    s_now_ms = epoch_ms;
}

int64_t dfx_clock_ms(void)
{
    return s_now_ms;
}

bool dfx_pg(void)
{
    const char *b = getenv("VEND_TEST_DB");

    return b != NULL && strcmp(b, "pg") == 0;
}

/* The server's URL (database "vendd") from pgcluster's state file: its url= line. */
static void pg_server_url(char *buf, size_t size)
{
    const char *path = getenv("VEND_PG_STATE");
    char line[1024];
    FILE *f;

    buf[0] = '\0';
    f = path != NULL ? fopen(path, "r") : NULL;
    if (f == NULL) {
        fail_msg("VEND_TEST_DB=pg but VEND_PG_STATE (%s) is unreadable: run through ctest "
                 "(fixture vend_pg)",
                 path != NULL ? path : "unset");
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "url=", 4) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, size, "%s", line + 4);
        }
    }
    fclose(f);
    if (buf[0] == '\0')
        fail_msg("no url= line in %s", path);
}

/* The server's URL with database name instead of "vendd". */
static void pg_url_of(char *buf, size_t size, const char *server, const char *name)
{
    const char *at = strstr(server, "@/");
    const char *query = at != NULL ? strchr(at, '?') : NULL;
    int n;

    if (query == NULL)
        fail_msg("pgcluster URL '%s' is not of the form user@/db?query", server);
    n = snprintf(buf, size, "%.*s%s%s", (int)(at + 2 - server), server, name, query);
    assert_true(n > 0 && (size_t)n < size);
}

/* One statement on the server's maintenance database, outside any transaction (CREATE and
 * DROP DATABASE refuse one). */
static void pg_admin(const char *server, const char *sql)
{
    PGconn *c = PQconnectdb(server);
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect to the test server: %s", PQerrorMessage(c));
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The template every test's database copies: made and migrated once per process (the
 * migrations cost far more than a copy). Its name holds the pid, as tests of one ctest run
 * share the server. */
static int s_pg_template_pid;

static void pg_template(const char *server, char *name, size_t size)
{
    char url[1024], sql[128], err[256] = "";
    struct db *db = NULL;

    snprintf(name, size, "tpl_%d", (int)getpid());
    if (s_pg_template_pid == (int)getpid())
        return;
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", name);
    pg_admin(server, sql);
    pg_url_of(url, sizeof(url), server, name);
    if (db_open(&db, url, err, sizeof(err)) != 0)
        fail_msg("db_open '%s': %s", url, err);
    db_close(db);
    s_pg_template_pid = (int)getpid();
}

/* A fresh migrated database for this test; f->url names it. */
static void pg_fresh(struct dfx *f)
{
    static unsigned s_seq;
    char server[1024], tpl[32], sql[192];

    pg_server_url(server, sizeof(server));
    pg_template(server, tpl, sizeof(tpl));
    snprintf(f->pgname, sizeof(f->pgname), "t%d_%u", (int)getpid(), ++s_seq);
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\" TEMPLATE \"%s\"", f->pgname, tpl);
    pg_admin(server, sql);
    pg_url_of(f->url, sizeof(f->url), server, f->pgname);
}

void dfx_empty_url(struct dfx *f, const char *name, char *buf, size_t size)
{
    char server[1024], db[96], sql[160];
    int n;

    if (!dfx_pg()) {
        n = snprintf(buf, size, "sqlite:%s/%s", f->dir, name);
        assert_true(n > 0 && (size_t)n < size);
        return;
    }
    assert_true(f->pgname[0] != '\0');
    pg_server_url(server, sizeof(server));
    snprintf(db, sizeof(db), "%s_x%d", f->pgname, ++f->pgextra);
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", db);
    pg_admin(server, sql);
    pg_url_of(buf, size, server, db);
}

void dfx_open(struct dfx *f)
{
    char *no_env[] = {NULL};
    const char *tmp = getenv("TMPDIR");
    char err[256] = "";
    int rc;

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/vendd-test-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    if (dfx_pg())
        pg_fresh(f);
    else
        snprintf(f->url, sizeof(f->url), "sqlite:%s/vendd.db", f->dir);
    rc = db_open(&f->v.db, f->url, err, sizeof(err));
    if (rc != 0)
        fail_msg("db_open '%s': %s", f->url, err);
    f->v.loop = loop_new();
    assert_non_null(f->v.loop);
    f->v.now_ms = dfx_clock_ms;
    /* The monotonic clock follows the pinned one; a test stepping the wall clock sets its own. */
    f->v.mono_ms = dfx_clock_ms;
    assert_int_equal(conf_load(&f->conf, no_env, NULL, NULL), VEND_OK);
    /* What the daemon keeps beside its database (result_spool.h) goes beside this one. */
    snprintf(f->conf.sqlite_path, sizeof(f->conf.sqlite_path), "%s",
             dfx_pg() ? "" : f->url + strlen("sqlite:"));
    f->v.conf = &f->conf;
}

void dfx_close(struct dfx *f)
{
    char path[600];
    struct dirent *e;
    DIR *d;

    db_close(f->v.db);
    f->v.db = NULL;
    ingest_free(&f->v);
    loop_free(f->v.loop);
    f->v.loop = NULL;
    if (f->pgname[0] != '\0') {
        char server[1024], sql[128];

        /* FORCE: a test that failed half-way may have left a connection open. */
        pg_server_url(server, sizeof(server));
        snprintf(sql, sizeof(sql), "DROP DATABASE \"%s\" WITH (FORCE)", f->pgname);
        pg_admin(server, sql);
        for (int i = 1; i <= f->pgextra; i++) {
            snprintf(sql, sizeof(sql), "DROP DATABASE \"%s_x%d\" WITH (FORCE)", f->pgname, i);
            pg_admin(server, sql);
        }
        f->pgname[0] = '\0';
    }
    if (f->dir[0] == '\0')
        return;
    d = opendir(f->dir);
    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    assert_int_equal(rmdir(f->dir), 0);
    f->dir[0] = '\0';
}

int dfx_sql(struct db *db, const char *sql)
{
    int rc = db_exec(db, sql, NULL, 0, NULL, NULL);

    if (rc < 0)
        fail_msg("'%s': %s", sql, db_errmsg(db));
    return rc;
}

int64_t dfx_int(struct db *db, const char *sql)
{
    int64_t v = 0;
    int rc = store_query_int(db, sql, NULL, 0, &v);

    if (rc != 1)
        fail_msg("'%s': rc %d (%s)", sql, rc, db_errmsg(db));
    return v;
}

struct text_arg {
    char *buf;
    size_t size;
    int rows;
};

static int take_text(void *arg, const struct db_row *row)
{
    struct text_arg *t = arg;
    const char *s = db_row_text(row, 0);

    snprintf(t->buf, t->size, "%s", s != NULL ? s : "(null)");
    t->rows++;
    return 1;
}

void dfx_text(struct db *db, const char *sql, char *buf, size_t size)
{
    struct text_arg t = {buf, size, 0};
    int rc = db_exec(db, sql, NULL, 0, take_text, &t);

    if (rc < 0 || t.rows != 1)
        fail_msg("'%s': rc %d rows %d (%s)", sql, rc, t.rows, db_errmsg(db));
}

void dfx_busy_ms(struct db *db, int ms)
{
    char sql[64];

    snprintf(sql, sizeof(sql), dfx_pg() ? "SET lock_timeout = %d" : "PRAGMA busy_timeout = %d", ms);
    dfx_sql(db, sql);
}

void dfx_unchecked(struct db *db, bool on)
{
    if (dfx_pg()) {
        dfx_sql(db, on ? "SET session_replication_role = replica"
                       : "SET session_replication_role = origin");
        return;
    }
    dfx_sql(db, on ? "PRAGMA foreign_keys = OFF" : "PRAGMA foreign_keys = ON");
    dfx_sql(db,
            on ? "PRAGMA ignore_check_constraints = ON" : "PRAGMA ignore_check_constraints = OFF");
}

struct join_arg {
    const char *sep;
    char *buf;
    size_t size, len;
};

static int take_join(void *arg, const struct db_row *row)
{
    struct join_arg *j = arg;
    const char *s = db_row_text(row, 0);
    int n;

    if (db_row_is_null(row, 0) || s == NULL)
        return 0;
    n = snprintf(j->buf + j->len, j->size - j->len, "%s%s", j->len > 0 ? j->sep : "", s);
    if (n < 0 || (size_t)n >= j->size - j->len)
        fail_msg("joined rows longer than %zu bytes", j->size);
    j->len += (size_t)n;
    return 0;
}

void dfx_join(struct db *db, const char *sql, const char *sep, char *buf, size_t size)
{
    struct join_arg j = {sep, buf, size, 0};
    int rc;

    assert_true(size > 0);
    buf[0] = '\0';
    rc = db_exec(db, sql, NULL, 0, take_join, &j);
    if (rc < 0)
        fail_msg("'%s': rc %d (%s)", sql, rc, db_errmsg(db));
}

static int take_row(void *arg, const struct db_row *row)
{
    struct text_arg *t = arg;
    size_t len = 0;

    t->buf[0] = '\0';
    for (int i = 0; i < db_row_count(row); i++) {
        const char *sep = i > 0 ? " " : "";
        int n;

        switch (db_row_type(row, i)) {
        case DB_T_NULL:
            n = snprintf(t->buf + len, t->size - len, "%s-", sep);
            break;
        case DB_T_REAL:
            n = snprintf(t->buf + len, t->size - len, "%s%.2f", sep, db_row_real(row, i));
            break;
        default:
            n = snprintf(t->buf + len, t->size - len, "%s%s", sep, db_row_text(row, i));
            break;
        }
        if (n < 0 || (size_t)n >= t->size - len)
            fail_msg("row longer than %zu bytes", t->size);
        len += (size_t)n;
    }
    t->rows++;
    return 1;
}

void dfx_row(struct db *db, const char *sql, char *buf, size_t size)
{
    struct text_arg t = {buf, size, 0};
    int rc = db_exec(db, sql, NULL, 0, take_row, &t);

    if (rc < 0 || t.rows != 1)
        fail_msg("'%s': rc %d rows %d (%s)", sql, rc, t.rows, db_errmsg(db));
}

char *dfx_snapshot(struct db *db)
{
    static const char *const tables[] = {"machines",   "products",  "slots",
                                         "stock_logs", "telemetry", "alerts"};
    json_t *all = json_object();
    char sql[128], *out;

    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        json_t *rows;

        snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY id", tables[i]);
        rows = store_query_json(db, sql, NULL, 0);
        assert_non_null(rows);
        json_object_set_new(all, tables[i], rows);
    }
    out = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    assert_non_null(out);
    json_decref(all);
    return out;
}
