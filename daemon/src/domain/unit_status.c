/*
 * unit_status.c - the unit state machine; see unit_status.h. One row per edge, each with
 * its compare-and-set statement and the parameters it binds.
 */
#include "unit_status.h"

#include <inttypes.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "stock.h"
#include "vend/err.h"
#include "vendd.h"

static const char *const names[UNIT_STATUS_COUNT] = {
    [UNIT_QUEUED] = "QUEUED",       [UNIT_SENT] = "SENT",     [UNIT_UNSETTLED] = "UNSETTLED",
    [UNIT_SUCCEEDED] = "SUCCEEDED", [UNIT_FAILED] = "FAILED", [UNIT_NO_RESULT] = "NO_RESULT",
};

/* What an edge binds after $1 = the row id. */
enum binds {
    BIND_SEND,    /* $2 command_sent_at, $3 deadline_at */
    BIND_NONE,    /* nothing */
    BIND_RESULT,  /* $2 completed_at, $3 duration, $4 success, $5 drop, $6 error */
    BIND_SETTLED, /* BIND_RESULT, and $7 settled_by */
    BIND_FAIL,    /* $2 completed_at, $3 error */
    BIND_AT,      /* $2 completed_at */
    BIND_ASK,     /* $2 deadline_at: when to ask the machine again */
};

static const struct edge {
    enum unit_status from, to;
    enum binds binds;
    const char *sql;
} edges[] = {
    {UNIT_QUEUED, UNIT_SENT, BIND_SEND,
     "UPDATE dispense_logs SET status = 'SENT', command_sent_at = $2, deadline_at = $3 "
     "WHERE id = $1 AND status = 'QUEUED'"},
    /* Only when nothing reached the broker: the command can still go out once. */
    {UNIT_SENT, UNIT_QUEUED, BIND_NONE,
     "UPDATE dispense_logs SET status = 'QUEUED', command_sent_at = NULL, deadline_at = NULL "
     "WHERE id = $1 AND status = 'SENT'"},
    {UNIT_SENT, UNIT_SUCCEEDED, BIND_RESULT,
     "UPDATE dispense_logs SET status = 'SUCCEEDED', completed_at = $2, duration_ms = $3, "
     "success = $4, drop_detected = $5, error_message = $6 WHERE id = $1 AND status = 'SENT'"},
    {UNIT_SENT, UNIT_FAILED, BIND_RESULT,
     "UPDATE dispense_logs SET status = 'FAILED', completed_at = $2, duration_ms = $3, "
     "success = $4, drop_detected = $5, error_message = $6 WHERE id = $1 AND status = 'SENT'"},
    {UNIT_SENT, UNIT_NO_RESULT, BIND_AT,
     "UPDATE dispense_logs SET status = 'NO_RESULT', completed_at = $2, "
     "error_message = 'NO_RESULT' WHERE id = $1 AND status = 'SENT'"},
    /* A settling machine keeps a journal: ask it rather than fail the unit blind. */
    {UNIT_SENT, UNIT_UNSETTLED, BIND_ASK,
     "UPDATE dispense_logs SET status = 'UNSETTLED', deadline_at = $2 "
     "WHERE id = $1 AND status = 'SENT'"},
    {UNIT_UNSETTLED, UNIT_SUCCEEDED, BIND_SETTLED,
     "UPDATE dispense_logs SET status = 'SUCCEEDED', completed_at = $2, duration_ms = $3, "
     "success = $4, drop_detected = $5, error_message = $6, settled_by = $7, deadline_at = NULL "
     "WHERE id = $1 AND status = 'UNSETTLED'"},
    {UNIT_UNSETTLED, UNIT_FAILED, BIND_SETTLED,
     "UPDATE dispense_logs SET status = 'FAILED', completed_at = $2, duration_ms = $3, "
     "success = $4, drop_detected = $5, error_message = $6, settled_by = $7, deadline_at = NULL "
     "WHERE id = $1 AND status = 'UNSETTLED'"},
    {UNIT_QUEUED, UNIT_FAILED, BIND_FAIL,
     "UPDATE dispense_logs SET status = 'FAILED', completed_at = $2, error_message = $3 "
     "WHERE id = $1 AND status = 'QUEUED'"},
};

const char *unit_status_name(enum unit_status s)
{
    return (unsigned)s < UNIT_STATUS_COUNT ? names[s] : "?";
}

int unit_status_parse(const char *name, enum unit_status *out)
{
    for (unsigned i = 0; name != NULL && i < UNIT_STATUS_COUNT; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum unit_status)i;
            return VEND_OK;
        }
    }
    return VEND_ECORRUPT;
}

static const struct edge *find_edge(enum unit_status from, enum unit_status to)
{
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        if (edges[i].from == from && edges[i].to == to)
            return &edges[i];
    }
    return NULL;
}

bool unit_transition_allowed(enum unit_status from, enum unit_status to)
{
    return find_edge(from, to) != NULL;
}

int unit_transition_locked(struct vendd *v, int64_t log_id, enum unit_status from,
                           enum unit_status to, const struct unit_change *c)
{
    const struct edge *e = find_edge(from, to);
    struct db_value p[7] = {DB_INT(log_id)};
    size_t n = 1;
    int rc;

    if (e == NULL || (e->binds != BIND_NONE && (c == NULL || c->at == NULL)) ||
        (e->binds == BIND_SEND && c->deadline == NULL) ||
        (e->binds == BIND_FAIL && c->error == NULL)) {
        log_warnx("dispense_logs row %" PRId64 ": %s -> %s is not a transition of the unit "
                  "state machine, or lacks its fields",
                  log_id, unit_status_name(from), unit_status_name(to));
        return VEND_EINVAL;
    }
    switch (e->binds) {
    case BIND_SEND:
        p[n++] = DB_TEXT(c->at);
        p[n++] = DB_TEXT(c->deadline);
        break;
    case BIND_NONE:
        break;
    case BIND_RESULT:
    case BIND_SETTLED:
        p[n++] = DB_TEXT(c->at);
        p[n++] = c->has_duration ? DB_INT(c->duration_ms) : DB_NULL;
        p[n++] = DB_INT(c->success);
        p[n++] = DB_INT(c->drop_detected);
        p[n++] = DB_TEXT(c->error);
        if (e->binds == BIND_SETTLED)
            p[n++] = DB_TEXT(c->by_operator ? "OPERATOR" : "MACHINE");
        break;
    case BIND_ASK:
        p[n++] = DB_TEXT(c->deadline);
        break;
    case BIND_FAIL:
        p[n++] = DB_TEXT(c->at);
        p[n++] = DB_TEXT(c->error);
        break;
    case BIND_AT:
        p[n++] = DB_TEXT(c->at);
        break;
    }
    rc = db_exec(v->db, e->sql, p, n, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_ESTATE;
    /* A unit that ends gives back the stock its order promised (stock.h). */
    if (to == UNIT_SUCCEEDED || to == UNIT_FAILED || to == UNIT_NO_RESULT)
        return stock_release_unit_locked(v, log_id);
    return VEND_OK;
}

int unit_fail_unsent_locked(struct vendd *v, const char *order_id, const char *now_iso)
{
    struct db_value p[2] = {DB_TEXT(order_id), DB_TEXT(now_iso)};
    int rc = stock_release_queued_locked(v, order_id);

    if (rc < 0)
        return rc;
    return db_exec(v->db,
                   "UPDATE dispense_logs SET status = 'FAILED', error_message = 'NOT_SENT', "
                   "completed_at = $2 WHERE order_id = $1 AND status = 'QUEUED'",
                   p, 2, NULL, NULL);
}

int unit_await_operator_locked(struct vendd *v, int64_t log_id, enum unit_status from,
                               const char *code, const char *now_iso)
{
    struct db_value p[2] = {DB_INT(log_id), DB_TEXT(code)};
    int rc;

    if (from == UNIT_SENT) {
        rc = unit_transition_locked(v, log_id, UNIT_SENT, UNIT_UNSETTLED,
                                    &(struct unit_change){.at = now_iso, .deadline = NULL});
        if (rc < 0)
            return rc;
    } else if (from != UNIT_UNSETTLED) {
        return VEND_ESTATE;
    }
    rc = db_exec(v->db,
                 "UPDATE dispense_logs SET deadline_at = NULL, error_message = $2 "
                 "WHERE id = $1 AND status = 'UNSETTLED'",
                 p, 2, NULL, NULL);
    return rc < 0 ? rc : rc == 1 ? VEND_OK : VEND_ESTATE;
}

int unit_record_operator_contradiction_locked(struct vendd *v, int64_t log_id, bool success,
                                              bool drop_detected)
{
    struct db_value p[3] = {DB_INT(log_id), DB_INT(success), DB_INT(drop_detected)};
    int rc = db_exec(v->db,
                     "UPDATE dispense_logs SET late_result = 1, success = $2, drop_detected = $3 "
                     "WHERE id = $1 AND settled_by = 'OPERATOR' AND late_result = 0",
                     p, 3, NULL, NULL);

    return rc < 0 ? rc : rc == 1 ? VEND_OK : VEND_ECONFLICT;
}

int unit_record_late_result_locked(struct vendd *v, int64_t log_id, const struct unit_change *c)
{
    struct db_value p[6] = {
        DB_INT(log_id),           DB_INT(c->success),
        DB_INT(c->drop_detected), c->has_duration ? DB_INT(c->duration_ms) : DB_NULL,
        DB_TEXT(c->error),        DB_TEXT(c->at),
    };
    int rc = db_exec(v->db,
                     "UPDATE dispense_logs SET late_result = 1, success = $2, drop_detected = $3, "
                     "duration_ms = $4, error_message = COALESCE($5, error_message), "
                     "completed_at = $6 WHERE id = $1 AND status = 'NO_RESULT' AND late_result = 0",
                     p, 6, NULL, NULL);

    return rc < 0 ? rc : rc == 1 ? VEND_OK : VEND_ECONFLICT;
}
