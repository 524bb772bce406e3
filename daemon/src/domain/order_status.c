/*
 * order_status.c - the order state machine; see order_status.h. One row per edge of the
 * diagram, each with its own compare-and-set statement, so the statement text names the
 * edge in the statement cache and in a database trace.
 */
#include "order_status.h"

#include <string.h>

#include "db.h"
#include "log.h"
#include "stock.h"
#include "vend/err.h"
#include "vendd.h"

static const char *const names[ORDER_STATUS_COUNT] = {
    [ORDER_PENDING] = "PENDING",       [ORDER_PAID] = "PAID",
    [ORDER_DISPENSING] = "DISPENSING", [ORDER_COMPLETED] = "COMPLETED",
    [ORDER_FAILED] = "FAILED",         [ORDER_REFUNDED] = "REFUNDED",
    [ORDER_EXPIRED] = "EXPIRED",       [ORDER_CANCELLED] = "CANCELLED",
};

/* $1 = order id, $2 = now; $3 = reason where the edge records one. A move out of PENDING
 * clears next_check_at: only checkout.c sets it again, for an end Midtrans has still to
 * confirm (schema 0015). */
static const struct edge {
    enum order_status from, to;
    int nparams;
    const char *sql;
} edges[] = {
    {ORDER_PENDING, ORDER_PAID, 2,
     "UPDATE orders SET status = 'PAID', paid_at = $2, next_check_at = NULL, updated_at = $2 "
     "WHERE id = $1 AND status = 'PENDING'"},
    {ORDER_PENDING, ORDER_EXPIRED, 2,
     "UPDATE orders SET status = 'EXPIRED', next_check_at = NULL, updated_at = $2 "
     "WHERE id = $1 AND status = 'PENDING'"},
    {ORDER_PENDING, ORDER_CANCELLED, 2,
     "UPDATE orders SET status = 'CANCELLED', next_check_at = NULL, updated_at = $2 "
     "WHERE id = $1 AND status = 'PENDING'"},
    {ORDER_PAID, ORDER_DISPENSING, 2,
     "UPDATE orders SET status = 'DISPENSING', updated_at = $2 WHERE id = $1 AND status = 'PAID'"},
    {ORDER_DISPENSING, ORDER_COMPLETED, 2,
     "UPDATE orders SET status = 'COMPLETED', dispensed_at = $2, updated_at = $2 "
     "WHERE id = $1 AND status = 'DISPENSING'"},
    {ORDER_DISPENSING, ORDER_FAILED, 3,
     "UPDATE orders SET status = 'FAILED', failure_reason = $3, updated_at = $2 "
     "WHERE id = $1 AND status = 'DISPENSING'"},
    {ORDER_FAILED, ORDER_REFUNDED, 2,
     "UPDATE orders SET status = 'REFUNDED', updated_at = $2 WHERE id = $1 AND status = 'FAILED'"},
    /* A late drop before the refund went out: the customer got what they paid for. */
    {ORDER_FAILED, ORDER_COMPLETED, 2,
     "UPDATE orders SET status = 'COMPLETED', failure_reason = NULL, dispensed_at = $2, "
     "updated_at = $2 WHERE id = $1 AND status = 'FAILED'"},
};

const char *order_status_name(enum order_status s)
{
    return (unsigned)s < ORDER_STATUS_COUNT ? names[s] : "?";
}

int order_status_parse(const char *name, enum order_status *out)
{
    for (unsigned i = 0; name != NULL && i < ORDER_STATUS_COUNT; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum order_status)i;
            return VEND_OK;
        }
    }
    return VEND_ECORRUPT;
}

static const struct edge *find_edge(enum order_status from, enum order_status to)
{
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        if (edges[i].from == from && edges[i].to == to)
            return &edges[i];
    }
    return NULL;
}

bool order_transition_allowed(enum order_status from, enum order_status to)
{
    return find_edge(from, to) != NULL;
}

int order_transition_locked(struct vendd *v, const char *order_id, enum order_status from,
                            enum order_status to, const char *reason, const char *now_iso)
{
    const struct edge *e = find_edge(from, to);
    struct db_value p[3] = {DB_TEXT(order_id), DB_TEXT(now_iso), DB_TEXT(reason)};
    int rc;

    if (e == NULL || (e->nparams == 3 && reason == NULL)) {
        log_warnx("order '%s': %s -> %s is not a transition of the order state machine", order_id,
                  order_status_name(from), order_status_name(to));
        return VEND_EINVAL;
    }
    rc = db_exec(v->db, e->sql, p, (size_t)e->nparams, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_ESTATE;
    /* An order that ends unpaid gives back the stock it was promised (stock.h). */
    if (from == ORDER_PENDING && (to == ORDER_EXPIRED || to == ORDER_CANCELLED))
        return stock_release_order_locked(v, order_id);
    return VEND_OK;
}
