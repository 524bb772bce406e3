/* api_alerts.c - GET /api/alerts: the operator's alerts, a page at a time (SPEC §8). */
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "api.h"
#include "page.h"
#include "vend/err.h"
#include "vend/topic.h"
#include "vendd.h"

/* Newest first; the id breaks ties of created_at. */
static const struct page_spec s_alerts_page = {
    "alerts", 2, {{"created_at", PAGE_KEY_TIME}, {"id", PAGE_KEY_ROWID}}};

void api_alerts_list(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *machine_id = http_query(req, "machine_id"), *open = http_query(req, "open");
    struct page pg;
    json_t *rows;

    if (open != NULL && strcmp(open, "true") != 0 && strcmp(open, "false") != 0) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'open' must be true (the open alerts) or false (the resolved ones)");
        return;
    }
    if (machine_id != NULL && !vend_machine_id_valid(machine_id)) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'machine_id' must match " VEND_MACHINE_ID_PATTERN);
        return;
    }
    if (!page_read(req, &s_alerts_page, &pg, res))
        return;
    if (alerts_page_json(v, open == NULL || strcmp(open, "true") == 0, machine_id,
                         pg.after ? pg.key[0] : NULL, pg.key_int[1], page_rows(&pg), &rows) < 0) {
        api_reply_err(res, VEND_EDB, "cannot list alerts");
        return;
    }
    page_reply(res, &s_alerts_page, &pg, json_object(), "items", rows);
}

/* POST /api/alerts/{id}/resolve: the operator has seen the alert and acted on it. */
void api_alerts_resolve(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id_arg = http_param(req, "id");
    char resolved_at[32] = "";
    int64_t id;
    int rc;

    if (!api_parse_decimal(id_arg, 1, INT64_MAX, &id)) {
        http_reply_error(res, 404, "NOT_FOUND", "no alert '%s'", id_arg != NULL ? id_arg : "");
        return;
    }
    rc = alerts_resolve(v, id, resolved_at);
    switch (rc) {
    case VEND_OK:
        http_reply_json(res, 200,
                        json_pack("{s:I, s:s}", "id", (json_int_t)id, "resolved_at", resolved_at));
        break;
    case VEND_ENOTFOUND:
        http_reply_error(res, 404, "NOT_FOUND", "no alert %lld", (long long)id);
        break;
    case VEND_ESTATE:
        http_reply_error(res, 409, "WRONG_STATE", "alert %lld was resolved at %s", (long long)id,
                         resolved_at);
        break;
    default:
        api_reply_err(res, rc, "cannot resolve alert %lld", (long long)id);
        break;
    }
}
