/* alerts.c - operator alerts as rows, and their list; see alerts.h. */
#include "alerts.h"

#include "db.h"
#include "events.h"
#include "store.h"
#include "log.h"
#include "store.h"
#include "vend/err.h"
#include "vendd.h"

int alerts_raise_locked(struct vendd *v, const struct alert *a, const char *now_iso)
{
    struct db_value p[6] = {
        DB_TEXT(a->machine_id),
        DB_TEXT(a->kind),
        DB_TEXT(a->message),
        DB_TEXT(a->order_id),
        a->slot_id > 0 ? DB_INT(a->slot_id) : DB_NULL,
        DB_TEXT(now_iso),
    };
    int rc = db_exec(v->db,
                     "INSERT INTO alerts (machine_id, kind, message, order_id, slot_id, "
                     "created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                     p, 6, NULL, NULL);

    return rc < 0 ? rc : rc > 0;
}

int alerts_restate_order_locked(struct vendd *v, const char *order_id, const char *kind,
                                const char *message)
{
    struct db_value p[3] = {DB_TEXT(order_id), DB_TEXT(kind), DB_TEXT(message)};

    return db_exec(v->db,
                   "UPDATE alerts SET message = $3 WHERE order_id = $1 AND kind = $2 "
                   "AND resolved_at IS NULL",
                   p, 3, NULL, NULL);
}

int alerts_resolve_order_locked(struct vendd *v, const char *order_id, const char *kind,
                                const char *now_iso)
{
    struct db_value p[3] = {DB_TEXT(order_id), DB_TEXT(kind), DB_TEXT(now_iso)};

    return db_exec(v->db,
                   "UPDATE alerts SET resolved_at = $3 WHERE order_id = $1 AND kind = $2 "
                   "AND resolved_at IS NULL",
                   p, 3, NULL, NULL);
}

/* ---- the list, a page at a time (docs/HTTP-API.md "Lists") ------------------------------ */

/* An alert names its slot by number, as the operator knows it, not by slots.id. */
#define ALERT_LIST                                                                                 \
    "SELECT a.id, a.machine_id, a.kind, a.message, a.order_id, s.slot_number, a.created_at, "      \
    "a.resolved_at FROM alerts a LEFT JOIN slots s ON s.id = a.slot_id WHERE "
/* The open ones spelled as alerts_open's WHERE, so SQLite may read that partial index. */
#define ALERT_OPEN        "a.resolved_at IS NULL"
#define ALERT_RESOLVED    "a.resolved_at IS NOT NULL"
#define ALERT_MACHINE     " AND a.machine_id = $2"
#define ALERT_AFTER(a, b) " AND (a.created_at, a.id) < ($" #a ", $" #b ")"
#define ALERT_ORDER       " ORDER BY a.created_at DESC, a.id DESC LIMIT $1"

/*
 * One statement per combination of filters, [open][machine][after], each its own prepared
 * statement, so each can use the index that serves it (as orders.c's lists).
 */
static const char *const s_alert_pages[2][2][2] = {
    {{ALERT_LIST ALERT_RESOLVED ALERT_ORDER,
      ALERT_LIST ALERT_RESOLVED ALERT_AFTER(2, 3) ALERT_ORDER},
     {ALERT_LIST ALERT_RESOLVED ALERT_MACHINE ALERT_ORDER,
      ALERT_LIST ALERT_RESOLVED ALERT_MACHINE ALERT_AFTER(3, 4) ALERT_ORDER}},
    {{ALERT_LIST ALERT_OPEN ALERT_ORDER, ALERT_LIST ALERT_OPEN ALERT_AFTER(2, 3) ALERT_ORDER},
     {ALERT_LIST ALERT_OPEN ALERT_MACHINE ALERT_ORDER,
      ALERT_LIST ALERT_OPEN ALERT_MACHINE ALERT_AFTER(3, 4) ALERT_ORDER}},
};

int alerts_page_json(struct vendd *v, bool open, const char *machine_id, const char *after_time,
                     int64_t after_id, int64_t n, json_t **out)
{
    struct db_value p[4];
    size_t np = 0;

    p[np++] = DB_INT(n);
    if (machine_id != NULL)
        p[np++] = DB_TEXT(machine_id);
    if (after_time != NULL) {
        p[np++] = DB_TEXT(after_time);
        p[np++] = DB_INT(after_id);
    }
    *out =
        store_query_json(v->db, s_alert_pages[open][machine_id != NULL][after_time != NULL], p, np);
    if (*out == NULL) {
        log_warnx("cannot list alerts: %s", db_errmsg(v->db));
        return VEND_EDB;
    }
    return VEND_OK;
}

int alerts_resolve(struct vendd *v, int64_t id, char resolved_at[32])
{
    struct db_value p[2] = {DB_INT(id)};
    int rc;

    vendd_now_iso(v, resolved_at, 32);
    p[1] = DB_TEXT(resolved_at);
    rc = db_begin(v->db);
    if (rc < 0)
        return rc;
    rc = db_exec(v->db, "UPDATE alerts SET resolved_at = $2 WHERE id = $1 AND resolved_at IS NULL",
                 p, 2, NULL, NULL);
    if (rc == 0) {
        /* Not open: resolved already (say when), or no such alert. */
        rc = store_query_text(v->db, "SELECT resolved_at FROM alerts WHERE id = $1", p, 1,
                              resolved_at, 32);
        rc = rc < 0 ? rc : rc == 1 ? VEND_ESTATE : VEND_ENOTFOUND;
        goto out;
    }
    if (rc > 0)
        rc = db_commit(v->db);
out:
    if (rc < 0) {
        db_rollback(v->db);
        return rc;
    }
    events_emit(v);
    return VEND_OK;
}
