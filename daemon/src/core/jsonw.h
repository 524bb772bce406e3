/*
 * jsonw.h - JSON text written straight into a buffer, for the hot reads.
 *
 * Building a jansson tree from the rows and then serialising it cost four fifths of a stock
 * or order read (callgrind: hashing keys, one allocation per value, snprintf per integer).
 * This writes the same bytes json_dumps(JSON_COMPACT) writes for the same tree, in one pass:
 * keys in the order given, strings escaped as jansson escapes them, a string that is not
 * UTF-8 written as null (jansson refuses it; store_query_json() shows null). Commas are the
 * writer's business. Out of memory is fatal, as with xmalloc.
 */
#ifndef VENDD_JSONW_H
#define VENDD_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db_row;

struct jsonw {
    char *buf;
    size_t len, cap;
    bool comma; /* a value was written at this level: the next one needs a comma */
};

#define JSONW_INIT                                                                                 \
    {                                                                                              \
        0                                                                                          \
    }

void jw_obj_begin(struct jsonw *w);
void jw_obj_end(struct jsonw *w);
void jw_arr_begin(struct jsonw *w);
void jw_arr_end(struct jsonw *w);
/* The key of the next value; key is written as a string. */
void jw_key(struct jsonw *w, const char *key);
/* NULL, or text that is not UTF-8, is written as null. */
void jw_str(struct jsonw *w, const char *s);
void jw_int(struct jsonw *w, int64_t v);
/* As jansson: "%.17g", ".0" added to look like a real; not finite is null. */
void jw_real(struct jsonw *w, double v);
void jw_bool(struct jsonw *w, bool v);
void jw_null(struct jsonw *w);

/* The row's columns as keys of the object being written (no braces), typed as
 * store_query_json() types them: the flag columns as booleans. */
void jw_row_fields(struct jsonw *w, const struct db_row *row);
/* The row as one object. */
void jw_row(struct jsonw *w, const struct db_row *row);

/* The text written (NUL-terminated, malloc'd, the caller frees); w is empty again. */
char *jw_take(struct jsonw *w);
void jw_free(struct jsonw *w);

/* True for the 0/1 columns shown as JSON booleans (the list store_query_json() uses). */
bool jw_is_flag_column(const char *name);

#endif
