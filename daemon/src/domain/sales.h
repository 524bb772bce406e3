/*
 * sales.h - what sold: the units that dropped and what they were charged, by day (UTC),
 * machine and product, read from the database's daily rollup (sales_daily, migration 0012),
 * which triggers on dispense_logs keep in the transaction of every unit's change: never from
 * counters in memory, so a restart loses nothing, and never a GROUP BY over the units on the
 * event loop, so a year of a fleet costs the rows answered.
 *
 * A unit counts on the day it dropped (its completed_at), at the unit price of its order item
 * (the price when it was ordered). "Dropped" is UNIT_DROPPED_SQL (unit_status.h), so a late
 * drop counts and a failed unit does not; refunds are not subtracted (GET /api/refunds).
 */
#ifndef VENDD_SALES_H
#define VENDD_SALES_H

#include <stdint.h>

#include <jansson.h>

struct vendd;

/* The longest range asked at once, in days, and the most rows answered. */
#define SALES_DAYS_MAX 366
#define SALES_ROWS_MAX 10000
/* "YYYY-MM-DD" + NUL */
#define SALES_DAY_SIZE 11

/* "YYYY-MM-DD" (a real date, years 1970..9999) to days since 1970-01-01. VEND_OK or
 * VEND_EINVAL. */
int sales_day_parse(const char *s, int64_t *day);
/* Days since 1970-01-01 to "YYYY-MM-DD". */
void sales_day_format(int64_t day, char out[SALES_DAY_SIZE]);

/*
 * The rows of days from_day..to_day (inclusive; the caller bounds the range) of machine_id
 * (NULL: every machine), as a JSON array in *out: [{"day","machine_id","product_name","units",
 * "revenue"}], ordered by day, machine and product. Returns VEND_OK, VEND_ELIMIT (more than
 * SALES_ROWS_MAX rows: ask a shorter range or one machine) or VEND_EDB; *out is NULL on error.
 */
int sales_json(struct vendd *v, int64_t from_day, int64_t to_day, const char *machine_id,
               json_t **out);

/* The statements sales_json() runs, [machine_id given], for tests to EXPLAIN: $1, $2 the
 * first and last day ("YYYY-MM-DD"), $3 the row limit, $4 the machine. */
extern const char *const sales_sql[2];

#endif
