/*
 * api_sales.c - GET /api/sales?from=YYYY-MM-DD&to=YYYY-MM-DD[&machine_id=M]: the units that
 * dropped and their revenue per day (UTC), machine and product (sales.h).
 */
#include <inttypes.h>

#include "api.h"
#include "sales.h"
#include "vend/err.h"
#include "vend/topic.h"
#include "vendd.h"

#define DAY_MS       86400000
#define DEFAULT_DAYS 7

/* The date in query parameter name, if given; false (answered 422) if it is not one. */
static bool read_day(const struct http_request *req, const char *name, bool *given, int64_t *day,
                     struct http_response *res)
{
    const char *s = http_query(req, name);

    *given = s != NULL;
    if (s != NULL && sales_day_parse(s, day) < 0) {
        http_reply_error(res, 422, "INVALID_FIELD", "'%s' must be a date YYYY-MM-DD (UTC)", name);
        return false;
    }
    return true;
}

void api_sales(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *machine_id = http_query(req, "machine_id");
    char from_s[SALES_DAY_SIZE], to_s[SALES_DAY_SIZE];
    int64_t from = 0, to = 0;
    bool has_from, has_to;
    json_t *rows = NULL;
    int rc;

    if (machine_id != NULL && !vend_machine_id_valid(machine_id)) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'machine_id' must match " VEND_MACHINE_ID_PATTERN);
        return;
    }
    if (!read_day(req, "from", &has_from, &from, res) || !read_day(req, "to", &has_to, &to, res))
        return;
    /* Default: the last seven days, today (UTC) included. */
    if (!has_to)
        to = v->now_ms() / DAY_MS;
    if (!has_from)
        from = to - (DEFAULT_DAYS - 1);
    if (from > to || to - from + 1 > SALES_DAYS_MAX) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'from' must be on or before 'to', at most %d days before it",
                         SALES_DAYS_MAX - 1);
        return;
    }
    rc = sales_json(v, from, to, machine_id, &rows);
    if (rc == VEND_ELIMIT) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "more than %d rows: ask a shorter range ('from', 'to') or one "
                         "'machine_id'",
                         SALES_ROWS_MAX);
        return;
    }
    if (rc < 0) {
        api_reply_err(res, rc, "cannot read the sales");
        return;
    }
    sales_day_format(from, from_s);
    sales_day_format(to, to_s);
    http_reply_json(res, 200,
                    json_pack("{s:s, s:s, s:o}", "from", from_s, "to", to_s, "rows", rows));
}
