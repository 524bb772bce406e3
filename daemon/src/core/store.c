/* store.c - one-value queries, JSON rows and ISO 8601 time arithmetic on top of db.h. */
#include "store.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "vend/err.h"

struct one_value {
    int found;
    int64_t i;
    char *buf;
    size_t size;
    int err;
};

static int take_int(void *arg, const struct db_row *row)
{
    struct one_value *ov = arg;

    if (!db_row_is_null(row, 0)) {
        ov->i = db_row_int(row, 0);
        ov->found = 1;
    }
    return 1; /* the first row is all we want */
}

static int take_text(void *arg, const struct db_row *row)
{
    struct one_value *ov = arg;
    const char *s = db_row_text(row, 0);
    size_t len;

    if (s == NULL)
        return 1;
    len = strlen(s);
    if (len >= ov->size) {
        ov->err = VEND_ERANGE;
        return 1;
    }
    memcpy(ov->buf, s, len + 1);
    ov->found = 1;
    return 1;
}

int store_query_int(struct db *db, const char *sql, const struct db_value *params, size_t n,
                    int64_t *out)
{
    struct one_value ov = {0};
    int rc = db_exec(db, sql, params, n, take_int, &ov);

    if (rc < 0)
        return rc;
    if (ov.found)
        *out = ov.i;
    return ov.found;
}

int store_query_text(struct db *db, const char *sql, const struct db_value *params, size_t n,
                     char *buf, size_t size)
{
    struct one_value ov = {.buf = buf, .size = size};
    int rc = db_exec(db, sql, params, n, take_text, &ov);

    if (rc < 0)
        return rc;
    if (ov.err < 0)
        return ov.err;
    return ov.found;
}

/* 0/1 columns that mean yes/no; shown as JSON booleans. */
static bool is_flag_column(const char *name)
{
    static const char *const flags[] = {"success", "drop_detected", "late_result", "is_active",
                                        "needs_inspection"};

    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (strcmp(name, flags[i]) == 0)
            return true;
    }
    return false;
}

static int take_json_row(void *arg, const struct db_row *row)
{
    json_t *obj = json_object();

    for (int c = 0; c < db_row_count(row); c++) {
        const char *key = db_row_name(row, c);
        json_t *val = NULL;

        switch (db_row_type(row, c)) {
        case DB_T_NULL:
            val = json_null();
            break;
        case DB_T_INT:
            val = is_flag_column(key) ? json_boolean(db_row_int(row, c) != 0)
                                      : json_integer(db_row_int(row, c));
            break;
        case DB_T_REAL:
            val = json_real(db_row_real(row, c));
            break;
        case DB_T_TEXT:
            val = json_string(db_row_text(row, c));
            break;
        }
        /* Text that is not UTF-8 (a damaged row) gives NULL: show null rather than fail. */
        json_object_set_new(obj, key, val != NULL ? val : json_null());
    }
    json_array_append_new(arg, obj);
    return 0;
}

json_t *store_query_json(struct db *db, const char *sql, const struct db_value *params, size_t n)
{
    json_t *rows = json_array();

    if (db_exec(db, sql, params, n, take_json_row, rows) < 0) {
        json_decref(rows);
        return NULL;
    }
    return rows;
}

/* Reads exactly n decimal digits. */
static int digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return VEND_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return VEND_OK;
}

int store_iso_parse(const char *iso, int64_t *epoch_ms)
{
    /* "YYYY-MM-DDTHH:MM:SS.mmmZ": fixed offsets, as written by db_iso_time. */
    static const struct {
        int at, len, min, max;
    } fields[] = {
        {0, 4, 1970, 9999}, {5, 2, 1, 12},  {8, 2, 1, 31},   {11, 2, 0, 23},
        {14, 2, 0, 59},     {17, 2, 0, 60}, {20, 3, 0, 999},
    };
    int v[7];
    struct tm tm = {0};
    time_t t;

    if (iso == NULL || strlen(iso) != STORE_ISO_SIZE - 1 || iso[4] != '-' || iso[7] != '-' ||
        iso[10] != 'T' || iso[13] != ':' || iso[16] != ':' || iso[19] != '.' || iso[23] != 'Z')
        return VEND_EINVAL;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (digits(iso + fields[i].at, fields[i].len, &v[i]) < 0 || v[i] < fields[i].min ||
            v[i] > fields[i].max)
            return VEND_EINVAL;
    }
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    t = timegm(&tm);
    if (t == (time_t)-1)
        return VEND_EINVAL;
    *epoch_ms = (int64_t)t * 1000 + v[6];
    return VEND_OK;
}

int store_copy_text(char *dst, size_t size, const char *src)
{
    size_t len;

    if (src == NULL)
        return VEND_EMISSING;
    len = strlen(src);
    if (len >= size)
        return VEND_ERANGE;
    memcpy(dst, src, len + 1);
    return VEND_OK;
}
