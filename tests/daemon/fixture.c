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

void dfx_open(struct dfx *f)
{
    char *no_env[] = {NULL};
    const char *tmp = getenv("TMPDIR");
    char err[256] = "";
    int rc;

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/vendd-test-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
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
    f->v.conf = &f->conf;
}

void dfx_close(struct dfx *f)
{
    char path[600];
    struct dirent *e;
    DIR *d;

    db_close(f->v.db);
    f->v.db = NULL;
    loop_free(f->v.loop);
    f->v.loop = NULL;
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

char *dfx_snapshot(struct db *db)
{
    static const char *const tables[] = {"machines",   "products",  "slots",
                                         "stock_logs", "telemetry", "alerts"};
    json_t *all = json_object();
    char sql[128], *out;

    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        json_t *rows;

        snprintf(sql, sizeof(sql), "SELECT * FROM %s ORDER BY rowid", tables[i]);
        rows = store_query_json(db, sql, NULL, 0);
        assert_non_null(rows);
        json_object_set_new(all, tables[i], rows);
    }
    out = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    assert_non_null(out);
    json_decref(all);
    return out;
}
