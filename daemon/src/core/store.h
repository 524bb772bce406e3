/*
 * store.h - small helpers the domain modules (orders, dispense, machines)
 * share on top of db.h: one-value queries and time arithmetic on the
 * ISO 8601 timestamps the schema stores.
 */
#ifndef VENDD_STORE_H
#define VENDD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "db.h"

/* ISO 8601 UTC with milliseconds: "2026-11-27T09:30:00.123Z" + NUL. */
#define STORE_ISO_SIZE 25

/*
 * Run a query whose first column of the first row is wanted.
 * Returns 1 and sets *out when a non-NULL value was found, 0 when there was no row or the
 * value was NULL, or a negative VEND_E* from db_exec.
 */
int store_query_int(struct db *db, const char *sql, const struct db_value *params, size_t n,
                    int64_t *out);
/* Same for text: copies at most size-1 bytes; a longer value is VEND_ERANGE (never truncated). */
int store_query_text(struct db *db, const char *sql, const struct db_value *params, size_t n,
                     char *buf, size_t size);

/*
 * Run a query and return its rows as a JSON array of objects keyed by column name, with
 * each value in its SQL type (NULL, integer, real, text). Columns named like a flag
 * (success, drop_detected, late_result, is_active, needs_inspection) become booleans.
 * Returns NULL on a database error (logged by the caller via db_errmsg).
 */
json_t *store_query_json(struct db *db, const char *sql, const struct db_value *params, size_t n);

/* Copy an untrusted database string into a bounded buffer: VEND_EMISSING for NULL,
 * VEND_ERANGE if it does not fit (never truncated). */
int store_copy_text(char *dst, size_t size, const char *src);

/* Parse the exact format db_iso_time writes. Returns VEND_OK or VEND_EINVAL (untrusted rows). */
int store_iso_parse(const char *iso, int64_t *epoch_ms);

#endif
