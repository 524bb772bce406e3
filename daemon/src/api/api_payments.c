/*
 * api_payments.c - POST /api/payments/webhook (Midtrans's notifications, SPEC §4 rule 7),
 * and the operator's refund queue: GET /api/refunds, POST /api/refunds/{id}/done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "orders.h"
#include "page.h"
#include "payments.h"
#include "refunds.h"
#include "vend/err.h"
#include "vendd.h"

#define NOTE_MAX 200

/* Newest first; the array keeps its name from before lists had pages. */
static const struct page_spec s_refunds_page = {"refunds", 1, {{"id", PAGE_KEY_ROWID}}};

void api_payments_webhook(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    struct webhook_answer ans;

    payments_notification(v, req->body, req->body_len, req->loopback, &ans);
    if (ans.status == 200) {
        http_reply_json(res, 200, json_pack("{s:s, s:s}", "status", "OK", "result", ans.message));
        return;
    }
    http_reply_error(res, ans.status, ans.code, "%s", ans.message);
}

void api_refunds_list(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    struct page pg;
    json_t *rows = NULL;
    int rc;

    if (!page_read(req, &s_refunds_page, &pg, res))
        return;
    rc = refunds_page_json(v, http_query(req, "status"), pg.key_int[0], page_rows(&pg), &rows);
    if (rc == VEND_EINVAL) {
        http_reply_error(res, 422, "INVALID_FIELD",
                         "'status' must be QUEUED, SENT, DONE, OPERATOR, CANCELLED or all");
        return;
    }
    if (rc < 0) {
        api_reply_err(res, rc, "cannot list refunds");
        return;
    }
    page_reply(res, &s_refunds_page, &pg, json_object(), "refunds", rows);
}

void api_refunds_done(void *ctx, const struct http_request *req, struct http_response *res)
{
    struct vendd *v = ctx;
    const char *id_arg = http_param(req, "id");
    static const char *const fields[] = {"note", NULL};
    char note[NOTE_MAX + 1] = "", status[16];
    int64_t id;
    int rc;

    if (!api_parse_decimal(id_arg, 1, INT64_MAX, &id)) {
        http_reply_error(res, 404, "NOT_FOUND", "no refund '%s'", id_arg != NULL ? id_arg : "");
        return;
    }
    if (!api_fields_allowed(req->json, fields, res) ||
        !api_field_string(req->json, "note", true, NOTE_MAX, note, sizeof(note), res))
        return;
    rc = refunds_mark_done(v, id, note, status);
    switch (rc) {
    case VEND_OK:
        http_reply_json(res, 200, json_pack("{s:I, s:s}", "id", (json_int_t)id, "status", status));
        break;
    case VEND_ENOTFOUND:
        http_reply_error(res, 404, "NOT_FOUND", "no refund %lld", (long long)id);
        break;
    case VEND_ESTATE:
        http_reply_json(res, 409,
                        json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "WRONG_STATE", "message",
                                  strcmp(status, "SENT") == 0
                                      ? "the refund is with Midtrans now: wait for its answer"
                                      : "the refund is not waiting for a person",
                                  "status", status));
        break;
    default:
        api_reply_err(res, rc, "cannot mark refund %lld done", (long long)id);
        break;
    }
}
