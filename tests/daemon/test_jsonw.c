/*
 * test_jsonw.c - jsonw.c writes, for a row, exactly the bytes that store_query_json() and
 * json_dumps(JSON_COMPACT) wrote for it: every SQL type, the flag columns, jansson's string
 * escapes and its real format, text that is not UTF-8 (null), random bytes and random reals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "db.h"
#include "jsonw.h"
#include "store.h"

static char s_dir[] = "/tmp/test_jsonw-XXXXXX";
static char s_path[sizeof(s_dir) + 16];

static int write_row(void *arg, const struct db_row *row)
{
    jw_row(arg, row);
    return 0;
}

/* The row of sql as jsonw writes it and as jansson wrote it: equal. */
static void same_as_jansson(struct db *db, const char *sql, const struct db_value *p, size_t n)
{
    struct jsonw w = JSONW_INIT;
    json_t *rows = store_query_json(db, sql, p, n);
    char *want, *got;

    assert_non_null(rows);
    assert_int_equal(json_array_size(rows), 1);
    want = json_dumps(json_array_get(rows, 0), JSON_COMPACT);
    assert_true(db_exec(db, sql, p, n, write_row, &w) >= 0);
    got = jw_take(&w);
    if (strcmp(got, want) != 0)
        fail_msg("jsonw wrote %s, jansson %s", got, want);
    free(got);
    free(want);
    json_decref(rows);
}

static struct db *open_db(void)
{
    struct db *db = NULL;
    char url[sizeof(s_path) + 8], err[256];

    snprintf(url, sizeof(url), "sqlite:%s", s_path);
    if (db_open(&db, url, err, sizeof(err)) < 0)
        fail_msg("db_open: %s", err);
    return db;
}

static void every_type_and_flag(void **state)
{
    struct db *db = open_db();

    (void)state;
    same_as_jansson(
        db,
        "SELECT 'plain' AS a, 'q\"b\\s/' AS b, char(1, 8, 9, 10, 12, 13, 31, 127) AS c, "
        "'é€😀' AS d, CAST(x'ff41' AS TEXT) AS e, CAST(x'eda080' AS TEXT) AS f, "
        "CAST(x'c0af' AS TEXT) AS g, CAST(x'f4908080' AS TEXT) AS h, CAST(x'e080af' AS TEXT) AS i, "
        "CAST(x'f08f8080' AS TEXT) AS j, CAST(x'c3' AS TEXT) AS k, NULL AS n, '' AS empty, "
        "0 AS success, 2 AS drop_detected, 1 AS late_result, 0 AS is_active, "
        "1 AS needs_inspection, 1 AS signature_ok, 9223372036854775807 AS big, "
        "(-9223372036854775807 - 1) AS small, 0 AS zero, -5 AS neg, 1.5 AS r1, 1e20 AS r2, "
        "1e-5 AS r3, 100.0 AS r4, 0.1 AS r6, 123456789012345678.0 AS r7, -2.5e-300 AS r8, "
        "1e300 AS r9",
        NULL, 0);
    db_close(db);
}

/* Random bytes as text (any but NUL, edges of UTF-8 favoured) and random reals. */
static void random_values(void **state)
{
    static const unsigned char edge[] = {0x01, 0x1f, 0x20, '"',  '\\', 0x7f, 0x80, 0xbf,
                                         0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0,
                                         0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90, 'a'};
    struct db *db = open_db();
    char s[24];

    (void)state;
    srand(20261129);
    for (int i = 0; i < 5000; i++) {
        size_t n = (size_t)(rand() % 12);
        struct db_value p[2];

        for (size_t k = 0; k < n; k++)
            s[k] = (char)(rand() % 2 ? edge[rand() % (int)sizeof(edge)] : 1 + rand() % 255);
        s[n] = '\0';
        p[0] = DB_TEXT(s);
        p[1] = DB_REAL((double)rand() / (double)(rand() + 1) *
                       ((i % 3 == 0)   ? 1e-7
                        : (i % 3 == 1) ? 1e18
                                       : 1.0) *
                       (i % 2 ? -1 : 1));
        same_as_jansson(db, "SELECT $1 AS s, $2 AS r", p, 2);
    }
    db_close(db);
}

static void nesting_and_commas(void **state)
{
    struct jsonw w = JSONW_INIT;
    char *got;

    (void)state;
    jw_obj_begin(&w);
    jw_key(&w, "a");
    jw_arr_begin(&w);
    jw_int(&w, 1);
    jw_obj_begin(&w);
    jw_key(&w, "b");
    jw_null(&w);
    jw_key(&w, "c");
    jw_bool(&w, true);
    jw_obj_end(&w);
    jw_str(&w, NULL);
    jw_arr_end(&w);
    jw_key(&w, "d");
    jw_arr_begin(&w);
    jw_arr_end(&w);
    jw_key(&w, "e\n");
    jw_obj_begin(&w);
    jw_obj_end(&w);
    jw_obj_end(&w);
    got = jw_take(&w);
    assert_string_equal(got, "{\"a\":[1,{\"b\":null,\"c\":true},null],\"d\":[],\"e\\n\":{}}");
    free(got);
    got = jw_take(&w); /* empty again */
    assert_string_equal(got, "");
    free(got);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(s_dir) == NULL)
        return -1;
    snprintf(s_path, sizeof(s_path), "%s/t.db", s_dir);
    return 0;
}

static int teardown(void **state)
{
    char p[sizeof(s_path) + 8];

    (void)state;
    for (const char *sfx = ""; sfx != NULL; sfx = *sfx == '\0' ? "-wal" : NULL) {
        snprintf(p, sizeof(p), "%s%s", s_path, sfx);
        unlink(p);
    }
    snprintf(p, sizeof(p), "%s-shm", s_path);
    unlink(p);
    rmdir(s_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_type_and_flag),
        cmocka_unit_test(random_values),
        cmocka_unit_test(nesting_and_commas),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
