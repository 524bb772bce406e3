/* alerts.c - operator alerts as rows; see alerts.h. */
#include "alerts.h"

#include "db.h"
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
