/*
 * sales.c - units dropped and their revenue per day, machine and product; see sales.h.
 */
#include "sales.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "store.h"
#include "vend/err.h"
#include "vendd.h"

/* Days from 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's algorithms). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

int sales_day_parse(const char *s, int64_t *day)
{
    unsigned v[3] = {0, 0, 0};
    static const unsigned width[3] = {4, 2, 2};
    int64_t y;
    unsigned m, d;
    const char *p = s;

    for (int f = 0; f < 3; f++) {
        for (unsigned i = 0; i < width[f]; i++, p++) {
            if (*p < '0' || *p > '9')
                return VEND_EINVAL;
            v[f] = v[f] * 10 + (unsigned)(*p - '0');
        }
        if (f < 2 && *p++ != '-')
            return VEND_EINVAL;
    }
    if (*p != '\0' || v[0] < 1970 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31)
        return VEND_EINVAL;
    /* A date that does not exist (02-30) comes back as another one. */
    *day = days_from_civil(v[0], v[1], v[2]);
    civil_from_days(*day, &y, &m, &d);
    return y == (int64_t)v[0] && m == v[1] && d == v[2] ? VEND_OK : VEND_EINVAL;
}

void sales_day_format(int64_t day, char out[SALES_DAY_SIZE])
{
    int64_t y;
    unsigned m, d;
    char buf[48];

    civil_from_days(day, &y, &m, &d);
    /* Days of years 0..9999 fit; the wider buffer only quiets the compiler's worst case. */
    snprintf(buf, sizeof(buf), "%04" PRId64 "-%02u-%02u", y, m, d);
    snprintf(out, SALES_DAY_SIZE, "%.10s", buf);
}

/*
 * Migration 0012's rollup holds a row per day, machine and product sold, kept by triggers in
 * the transaction of each unit's change, so a range reads at most the rows it answers: by the
 * primary key (day, machine_id, product_name), or for one machine by sales_daily_machine, both
 * in the answer's order (no sort), and the LIMIT stops the read.
 */
#define SALES_SELECT                                                                               \
    "SELECT day, machine_id, product_name, units, revenue FROM sales_daily "                       \
    "WHERE day >= $1 AND day <= $2"
#define SALES_ORDER " ORDER BY day, machine_id, product_name LIMIT $3"

const char *const sales_sql[2] = {
    SALES_SELECT SALES_ORDER,
    SALES_SELECT " AND machine_id = $4" SALES_ORDER,
};

int sales_json(struct vendd *v, int64_t from_day, int64_t to_day, const char *machine_id,
               json_t **out)
{
    char from[SALES_DAY_SIZE], to[SALES_DAY_SIZE];
    struct db_value p[4];

    sales_day_format(from_day, from);
    sales_day_format(to_day, to);
    p[0] = DB_TEXT(from);
    p[1] = DB_TEXT(to);
    p[2] = DB_INT(SALES_ROWS_MAX + 1);
    p[3] = DB_TEXT(machine_id);
    *out = store_query_json(v->db, sales_sql[machine_id != NULL], p, machine_id != NULL ? 4 : 3);
    if (*out == NULL) {
        log_warnx("cannot read the sales of %s to %s: %s", from, to, db_errmsg(v->db));
        return VEND_EDB;
    }
    if (json_array_size(*out) > SALES_ROWS_MAX) {
        json_decref(*out);
        *out = NULL;
        return VEND_ELIMIT;
    }
    return VEND_OK;
}
