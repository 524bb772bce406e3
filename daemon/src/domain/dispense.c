/*
 * dispense.c - the dispense path; see dispense.h for the model.
 *
 * Pattern of every operation: BEGIN IMMEDIATE, compare-and-set the row(s),
 * apply the effects, COMMIT, and only then talk to the broker. A command is
 * published after the commit that marked its unit SENT, so a crash in
 * between leaves a SENT unit that the deadline fails (and refunds): the
 * machine never got it. The reverse order could dispense an unrecorded unit.
 */
#include "dispense.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "conf.h"
#include "db.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "store.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"
#include "xmalloc.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Units failed per pass of the deadline sweep; the sweep loops until none is left. */
#define EXPIRE_BATCH 64
/* Items per order (SPEC: one or more items); each item is 1..100 units. */
#define ORDER_ITEMS_MAX 16

/* A command whose unit was marked SENT inside the current transaction. */
struct pending_cmd {
    bool ready;
    int64_t log_id;
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    struct vend_command cmd;
};

/* Copies an untrusted database string into a bounded buffer; VEND_ERANGE if it does not fit. */
static int copy_text(char *dst, size_t size, const char *src)
{
    size_t len;

    if (src == NULL)
        return VEND_EMISSING;
    len = strlen(src);
    if (len >= size)
        return VEND_ERANGE;
    memcpy(dst, src, len + 1);
    return VEND_OK;
}

static void rollback_on_error(struct vendd *v, int rc)
{
    if (rc < 0)
        db_rollback(v->db);
}

/* ---- the next unit to send ------------------------------------------------------------- */

struct next_unit {
    bool found;
    int err;
    int64_t log_id;
    char order_id[VEND_ORDER_ID_MAX + 1];
    int64_t unit;
    int64_t slot_number;
    int64_t timeout_ms;
    int64_t quantity;
};

static int take_next_unit(void *arg, const struct db_row *row)
{
    struct next_unit *nu = arg;

    nu->log_id = db_row_int(row, 0);
    nu->err = copy_text(nu->order_id, sizeof(nu->order_id), db_row_text(row, 1));
    nu->unit = db_row_int(row, 2);
    nu->slot_number = db_row_int(row, 3);
    nu->timeout_ms = db_row_int(row, 4);
    nu->quantity = db_row_int(row, 5);
    nu->found = true;
    return 1;
}

static int fail_order_locked(struct vendd *v, const char *order_id, const char *machine_id,
                             const char *reason, const char *now_iso);

/* A unit row vendd cannot send (damaged data): fail it and its order rather than block the
 * machine's queue behind it for good. */
static int fail_unusable_unit_locked(struct vendd *v, int64_t log_id, const char *order_id,
                                     const char *machine_id, const char *now_iso)
{
    struct db_value p[2] = {DB_INT(log_id), DB_TEXT(now_iso)};
    int rc;

    log_warnx("dispense_logs row %" PRId64 " for '%s' is out of range; its order fails", log_id,
              machine_id);
    rc = db_exec(v->db,
                 "UPDATE dispense_logs SET status = 'FAILED', error_message = 'INVALID_UNIT', "
                 "completed_at = $2 WHERE id = $1 AND status = 'QUEUED'",
                 p, 2, NULL, NULL);
    if (rc < 0 || order_id == NULL)
        return rc < 0 ? rc : VEND_OK;
    return fail_order_locked(v, order_id, machine_id, "INVALID_UNIT", now_iso);
}

/*
 * Inside an open transaction: if machine_id has nothing in flight, mark its oldest QUEUED
 * unit SENT and describe the command in *pc (published by the caller after COMMIT).
 */
static int pump_locked(struct vendd *v, const char *machine_id, int64_t now, struct pending_cmd *pc)
{
    struct db_value p[3] = {DB_TEXT(machine_id)};
    struct next_unit nu = {0};
    char sent_at[STORE_ISO_SIZE], deadline[STORE_ISO_SIZE], limit[STORE_ISO_SIZE];
    int64_t busy = 0;
    int rc;

    pc->ready = false;
    db_iso_time(sent_at, sizeof(sent_at), now);
    rc = store_query_int(v->db,
                         "SELECT count(*) FROM dispense_logs WHERE machine_id = $1 AND status = "
                         "'SENT'",
                         p, 1, &busy);
    if (rc < 0 || busy > 0)
        return rc < 0 ? rc : VEND_OK; /* busy: its result or deadline pumps again */
    p[1] = DB_TEXT(sent_at);

    rc = db_exec(v->db,
                 "SELECT l.id, l.order_id, l.unit, l.slot_number, l.timeout_ms, o.quantity "
                 "FROM dispense_logs l JOIN orders o ON o.id = l.order_id "
                 "WHERE l.machine_id = $1 AND l.status = 'QUEUED' AND o.status = 'DISPENSING' "
                 "AND l.dispatch_by >= $2 ORDER BY l.id LIMIT 1",
                 p, 2, take_next_unit, &nu);
    if (rc < 0 || !nu.found)
        return rc < 0 ? rc : VEND_OK; /* units past their dispatch limit are the sweep's */
    if (nu.err < 0 || nu.slot_number < 1 || nu.slot_number > 255 || nu.timeout_ms < 1 ||
        nu.timeout_ms > 600000 || nu.unit < 1 || nu.unit > 100)
        return fail_unusable_unit_locked(v, nu.log_id, nu.err < 0 ? NULL : nu.order_id, machine_id,
                                         sent_at);

    db_iso_time(deadline, sizeof(deadline),
                now + nu.timeout_ms + (int64_t)v->conf->dispense_result_grace_ms);
    p[0] = DB_INT(nu.log_id);
    p[1] = DB_TEXT(sent_at);
    p[2] = DB_TEXT(deadline);
    rc = db_exec(v->db,
                 "UPDATE dispense_logs SET status = 'SENT', command_sent_at = $2, deadline_at = $3 "
                 "WHERE id = $1 AND status = 'QUEUED'",
                 p, 3, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_EINTERNAL;
    /* The units behind it wait at most DISPENSE_DISPATCH_TTL_S past this one's deadline. */
    db_iso_time(limit, sizeof(limit),
                now + nu.timeout_ms + (int64_t)v->conf->dispense_result_grace_ms +
                    (int64_t)v->conf->dispense_dispatch_ttl_s * 1000);
    p[0] = DB_TEXT(machine_id);
    p[1] = DB_TEXT(limit);
    rc = db_exec(v->db,
                 "UPDATE dispense_logs SET dispatch_by = $2 "
                 "WHERE machine_id = $1 AND status = 'QUEUED' AND dispatch_by < $2",
                 p, 2, NULL, NULL);
    if (rc < 0)
        return rc;

    pc->ready = true;
    pc->log_id = nu.log_id;
    copy_text(pc->machine_id, sizeof(pc->machine_id), machine_id);
    memset(&pc->cmd, 0, sizeof(pc->cmd));
    pc->cmd.cmd = VEND_CMD_DISPENSE;
    pc->cmd.slot = (uint16_t)nu.slot_number;
    memcpy(pc->cmd.order_id, nu.order_id, sizeof(nu.order_id));
    pc->cmd.timeout_ms = (uint32_t)nu.timeout_ms;
    /* The guide's single-unit command has no "unit"; multi-unit orders number their units. */
    pc->cmd.unit = nu.quantity > 1 ? (uint16_t)nu.unit : 0;
    return VEND_OK;
}

/*
 * After COMMIT: hand the command to the broker. The expiry makes the broker drop a
 * command it could not deliver within the grace period, so a machine never runs one
 * after its order has been failed and refunded.
 */
static bool publish_pending(struct vendd *v, const struct pending_cmd *pc)
{
    char topic[80], payload[256], unit_note[16] = "";
    uint32_t expiry_s = v->conf->dispense_result_grace_ms / 1000;
    struct db_value p[1];
    int len, rc;

    if (!pc->ready)
        return false;
    rc = vend_topic_format(topic, sizeof(topic), pc->machine_id, VEND_TOPIC_COMMAND);
    len = vend_encode_command(payload, sizeof(payload), &pc->cmd);
    if (rc < 0 || len < 0) {
        /* The unit stays SENT and fails at its deadline: the money side stays right. */
        log_warnx("cannot encode the command for order '%s' unit %u: %s", pc->cmd.order_id,
                  (unsigned)pc->cmd.unit, vend_strerror(rc < 0 ? rc : len));
        return false;
    }
    rc = mqtt_client_publish(v->mqtt, topic, payload, (size_t)len, 1, false,
                             expiry_s > 0 ? expiry_s : 1);
    if (rc == VEND_EUNAVAILABLE) {
        /* Nothing reached libmosquitto, so the unit can safely wait for the broker. */
        p[0] = DB_INT(pc->log_id);
        rc = db_exec(v->db,
                     "UPDATE dispense_logs SET status = 'QUEUED', command_sent_at = NULL, "
                     "deadline_at = NULL WHERE id = $1 AND status = 'SENT'",
                     p, 1, NULL, NULL);
        log_warnx("broker unavailable: order '%s' unit %u queued for machine '%s'%s",
                  pc->cmd.order_id, (unsigned)(pc->cmd.unit ? pc->cmd.unit : 1), pc->machine_id,
                  rc < 0 ? " (requeue failed; the deadline will fail it)" : "");
        return false;
    }
    if (rc < 0) {
        log_warnx("cannot publish the command for order '%s' to '%s': %s", pc->cmd.order_id, topic,
                  vend_strerror(rc));
        return false;
    }
    v->metrics.commands_published++;
    if (pc->cmd.unit)
        snprintf(unit_note, sizeof(unit_note), " unit %u", (unsigned)pc->cmd.unit);
    log_info("dispense command sent to %s: order '%s' slot %u%s", topic, pc->cmd.order_id,
             (unsigned)pc->cmd.slot, unit_note);
    return true;
}

/* ---- the deadline timer ---------------------------------------------------------------- */

static void on_deadline(void *arg);

/*
 * (Re)arm the one deadline timer for the earliest limit: a SENT unit's result deadline or a
 * QUEUED unit's dispatch limit. Disarm when there is none.
 */
static void arm_deadline(struct vendd *v)
{
    char next[STORE_ISO_SIZE];
    int64_t at = 0, now = v->now_ms();
    int rc;

    rc = store_query_text(v->db,
                          "SELECT min(t) FROM (SELECT min(deadline_at) AS t FROM dispense_logs "
                          "WHERE status = 'SENT' UNION ALL SELECT min(dispatch_by) AS t "
                          "FROM dispense_logs WHERE status = 'QUEUED') AS limits",
                          NULL, 0, next, sizeof(next));
    if (rc == 1 && v->deadline_timer != 0 && strcmp(next, v->deadline_next) == 0)
        return; /* already armed for it */
    if (v->deadline_timer != 0)
        loop_timer_del(v->loop, v->deadline_timer);
    v->deadline_timer = 0;
    v->deadline_next[0] = '\0';
    if (rc < 0) {
        /* Retry shortly rather than let deadlines lapse unnoticed. */
        log_warnx("cannot read dispense deadlines: %s", db_errmsg(v->db));
        v->deadline_timer = loop_timer_add(v->loop, 1000, on_deadline, v);
        return;
    }
    if (rc == 0)
        return;
    if (store_iso_parse(next, &at) < 0) {
        log_warnx("dispense deadline '%s' is not a timestamp; checking again in 1 s", next);
        at = now + 1000;
    }
    if (at < v->sweep_not_before_ms)
        at = v->sweep_not_before_ms;
    /* +1 ms: the sweep compares deadline_at < now as text, so fire strictly after it. */
    v->deadline_timer =
        loop_timer_add(v->loop, at >= now ? (uint64_t)(at - now) + 1 : 0, on_deadline, v);
    memcpy(v->deadline_next, next, sizeof(next));
}

/* ---- failing an order ------------------------------------------------------------------ */

/* What has physically left the machine for order_id, in rupiah, from the unit rows. */
static int dispensed_value(struct vendd *v, const char *order_id, int64_t *value)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int rc;

    *value = 0;
    rc = store_query_int(
        v->db,
        "SELECT COALESCE(sum(i.unit_price), 0) FROM dispense_logs l JOIN order_items i "
        "ON i.order_id = l.order_id AND l.unit >= i.first_unit "
        "AND l.unit < i.first_unit + i.quantity "
        "WHERE l.order_id = $1 AND (l.status = 'SUCCEEDED' OR "
        "(l.late_result = 1 AND l.success = 1 AND l.drop_detected = 1))",
        p, 1, value);
    return rc < 0 ? rc : VEND_OK;
}

/*
 * Inside a transaction: DISPENSING -> FAILED with reason, cancel the units not yet sent,
 * and queue the refund of what was not dispensed (SPEC §4 rule 9: the operator or the
 * Midtrans refund call takes it from the refunds table).
 */
static int fail_order_locked(struct vendd *v, const char *order_id, const char *machine_id,
                             const char *reason, const char *now_iso)
{
    struct db_value p[5];
    char key[VEND_ORDER_ID_MAX + 16], msg[160];
    int64_t total = 0, dispensed = 0;
    int rc;

    p[0] = DB_TEXT(order_id);
    p[1] = DB_TEXT(reason);
    p[2] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "UPDATE orders SET status = 'FAILED', failure_reason = $2, updated_at = $3 "
                 "WHERE id = $1 AND status = 'DISPENSING'",
                 p, 3, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_OK; /* already final: nothing more to do */
    p[1] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "UPDATE dispense_logs SET status = 'FAILED', error_message = 'NOT_SENT', "
                 "completed_at = $2 WHERE order_id = $1 AND status = 'QUEUED'",
                 p, 2, NULL, NULL);
    if (rc < 0)
        return rc;
    rc = store_query_int(v->db, "SELECT total_amount FROM orders WHERE id = $1", p, 1, &total);
    if (rc < 0)
        return rc;
    rc = dispensed_value(v, order_id, &dispensed);
    if (rc < 0)
        return rc;
    snprintf(key, sizeof(key), "%s-refund", order_id);
    p[0] = DB_TEXT(order_id);
    p[1] = DB_TEXT(key);
    p[2] = DB_INT(total - dispensed > 0 ? total - dispensed : 0);
    p[3] = DB_TEXT(reason);
    p[4] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "INSERT INTO refunds (order_id, refund_key, amount, reason, status, created_at, "
                 "updated_at) VALUES ($1, $2, $3, $4, 'QUEUED', $5, $5)",
                 p, 5, NULL, NULL);
    if (rc < 0)
        return rc;
    snprintf(msg, sizeof(msg), "order '%s' failed (%s): refund of %" PRId64 " due", order_id,
             reason, total - dispensed);
    return alerts_raise_locked(v,
                               &(struct alert){.machine_id = machine_id,
                                               .kind = "DISPENSE_FAILED",
                                               .message = msg,
                                               .order_id = order_id},
                               now_iso);
}

/* ---- stock --------------------------------------------------------------------------- */

/* Inside a transaction: one unit of order_id left slot_id. SPEC §4 rule 5. */
static int take_stock_locked(struct vendd *v, int64_t slot_id, const char *machine_id,
                             const char *order_id, int64_t unit, const char *now_iso)
{
    struct db_value p[8];
    int64_t before = 0;
    char reason[VEND_ORDER_ID_MAX + 32];
    int rc;

    p[0] = DB_INT(slot_id);
    rc = store_query_int(v->db, "SELECT current_stock FROM slots WHERE id = $1", p, 1, &before);
    if (rc <= 0)
        return rc < 0 ? rc : VEND_ENOTFOUND;
    if (before <= 0) {
        /* Stock never goes below zero; the count was wrong, so say so (alert + log). */
        log_warnx("order '%s' unit %" PRId64 " dropped from slot id %" PRId64
                  " of '%s', which was counted empty",
                  order_id, unit, slot_id, machine_id);
        snprintf(reason, sizeof(reason), "order '%s' dispensed from a slot counted empty",
                 order_id);
        return alerts_raise_locked(v,
                                   &(struct alert){.machine_id = machine_id,
                                                   .kind = "STOCK_MISMATCH",
                                                   .message = reason,
                                                   .order_id = order_id,
                                                   .slot_id = slot_id},
                                   now_iso);
    }
    p[1] = DB_INT(before - 1);
    p[2] = DB_TEXT(now_iso);
    p[3] = DB_INT(before);
    rc = db_exec(v->db,
                 "UPDATE slots SET current_stock = $2, version = version + 1, updated_at = $3 "
                 "WHERE id = $1 AND current_stock = $4",
                 p, 4, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_ECONFLICT;
    snprintf(reason, sizeof(reason), "order %s unit %" PRId64, order_id, unit);
    p[0] = DB_TEXT(machine_id);
    p[1] = DB_INT(slot_id);
    p[2] = DB_INT(before);
    p[3] = DB_INT(before - 1);
    p[4] = DB_TEXT(reason);
    p[5] = DB_TEXT(order_id);
    p[6] = DB_INT(unit);
    p[7] = DB_TEXT(now_iso);
    return db_exec(v->db,
                   "INSERT INTO stock_logs (machine_id, slot_id, change_type, quantity_before, "
                   "quantity_after, quantity_change, reason, performed_by, order_id, unit, "
                   "created_at) VALUES ($1, $2, 'DISPENSE', $3, $4, -1, $5, 'machine', $6, $7, $8)",
                   p, 8, NULL, NULL);
}

/* ---- results --------------------------------------------------------------------------- */

struct unit_row {
    bool found;
    int err;
    int64_t log_id;
    char status[16];
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    int64_t slot_id;
    int64_t slot_number;
    int64_t success;
    int64_t drop_detected;
    int64_t late_result;
    char order_status[DISPENSE_STATUS_SIZE];
};

static int take_unit_row(void *arg, const struct db_row *row)
{
    struct unit_row *u = arg;
    int rc = 0;

    u->found = true;
    u->log_id = db_row_int(row, 0);
    rc |= copy_text(u->status, sizeof(u->status), db_row_text(row, 1));
    rc |= copy_text(u->machine_id, sizeof(u->machine_id), db_row_text(row, 2));
    u->slot_id = db_row_int(row, 3);
    u->slot_number = db_row_int(row, 4);
    u->success = db_row_is_null(row, 5) ? -1 : db_row_int(row, 5);
    u->drop_detected = db_row_is_null(row, 6) ? -1 : db_row_int(row, 6);
    u->late_result = db_row_int(row, 7);
    rc |= copy_text(u->order_status, sizeof(u->order_status), db_row_text(row, 8));
    u->err = rc ? VEND_ECORRUPT : VEND_OK;
    return 1;
}

/* The error code a failed unit is recorded with (SPEC §4 rule 4). */
static const char *failure_code(const struct vend_dispense_result *r)
{
    if (r->success && !r->drop_detected)
        return "NO_DROP"; /* the motor ran, nothing fell: whatever the machine said */
    if (r->has_error)
        return r->error;
    return "FAILED";
}

/* Inside a transaction: the slot needs inspection; a drop without success also alerts. */
static int flag_slot_locked(struct vendd *v, const struct unit_row *u,
                            const struct vend_dispense_result *r, int64_t unit, const char *now_iso)
{
    struct db_value p[2] = {DB_INT(u->slot_id), DB_TEXT(now_iso)};
    char msg[256];
    int rc;

    rc = db_exec(v->db,
                 "UPDATE slots SET needs_inspection = 1, version = version + 1, updated_at = $2 "
                 "WHERE id = $1",
                 p, 2, NULL, NULL);
    if (rc < 0 || !r->drop_detected)
        return rc < 0 ? rc : VEND_OK;
    snprintf(msg, sizeof(msg),
             "order '%s' unit %" PRId64 ": slot %" PRId64 " of '%s' dropped without success "
             "(%s); its count may be one too high",
             r->order_id, unit, u->slot_number, u->machine_id, failure_code(r));
    log_warnx("alert DROP_WITHOUT_SUCCESS: %s", msg);
    rc = alerts_raise_locked(v,
                             &(struct alert){.machine_id = u->machine_id,
                                             .kind = "DROP_WITHOUT_SUCCESS",
                                             .message = msg,
                                             .order_id = r->order_id,
                                             .slot_id = u->slot_id},
                             now_iso);
    return rc < 0 ? rc : VEND_OK;
}

/* Inside a transaction: a result for a SENT unit. */
static int apply_result_locked(struct vendd *v, const struct unit_row *u,
                               const struct vend_dispense_result *r, int64_t unit,
                               const char *now_iso, bool *order_done)
{
    bool ok = r->success && r->drop_detected;
    const char *err = ok ? (r->has_error ? r->error : NULL) : failure_code(r);
    struct db_value p[7];
    int64_t open_units = 0;
    int rc;

    p[0] = DB_INT(u->log_id);
    p[1] = DB_TEXT(ok ? "SUCCEEDED" : "FAILED");
    p[2] = DB_TEXT(now_iso);
    p[3] = r->has_duration ? DB_INT(r->duration_ms) : DB_NULL;
    p[4] = DB_INT(r->success);
    p[5] = DB_INT(r->drop_detected);
    p[6] = DB_TEXT(err);
    rc = db_exec(v->db,
                 "UPDATE dispense_logs SET status = $2, completed_at = $3, duration_ms = $4, "
                 "success = $5, drop_detected = $6, error_message = $7 "
                 "WHERE id = $1 AND status = 'SENT'",
                 p, 7, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_ESTATE;

    if (!ok) {
        v->metrics.dispense_failed++;
        /* A motor cycle without a drop (something is stuck), or a drop the machine did not
         * call a success (the count may now be one too high): have someone look. */
        if (r->success != r->drop_detected) {
            rc = flag_slot_locked(v, u, r, unit, now_iso);
            if (rc < 0)
                return rc;
        }
        *order_done = true;
        return fail_order_locked(v, r->order_id, u->machine_id, err, now_iso);
    }

    v->metrics.dispense_succeeded++;
    rc = take_stock_locked(v, u->slot_id, u->machine_id, r->order_id, unit, now_iso);
    if (rc < 0)
        return rc;
    p[0] = DB_TEXT(r->order_id);
    rc = store_query_int(v->db,
                         "SELECT count(*) FROM dispense_logs WHERE order_id = $1 AND status <> "
                         "'SUCCEEDED'",
                         p, 1, &open_units);
    if (rc < 0)
        return rc;
    if (open_units > 0)
        return VEND_OK; /* the next unit goes out when this transaction has committed */
    *order_done = true;
    p[1] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "UPDATE orders SET status = 'COMPLETED', dispensed_at = $2, updated_at = $2 "
                 "WHERE id = $1 AND status = 'DISPENSING'",
                 p, 2, NULL, NULL);
    return rc < 0 ? rc : VEND_OK;
}

/*
 * Inside a transaction: a result for a unit that already failed with NO_RESULT
 * (SPEC §4 rule 6). It is recorded and adjusts the stock; the order completes if its
 * refund has not gone out, otherwise an alert says a refunded order dispensed.
 */
static int apply_late_result_locked(struct vendd *v, const struct unit_row *u,
                                    const struct vend_dispense_result *r, int64_t unit,
                                    const char *now_iso)
{
    bool ok = r->success && r->drop_detected;
    struct db_value p[6];
    int64_t undispensed = 0, total = 0, dispensed = 0;
    char refund[16] = "", msg[160];
    int rc;

    p[0] = DB_INT(u->log_id);
    p[1] = DB_INT(r->success);
    p[2] = DB_INT(r->drop_detected);
    p[3] = r->has_duration ? DB_INT(r->duration_ms) : DB_NULL;
    p[4] = DB_TEXT(ok ? NULL : failure_code(r));
    p[5] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "UPDATE dispense_logs SET late_result = 1, success = $2, drop_detected = $3, "
                 "duration_ms = $4, error_message = COALESCE($5, error_message), "
                 "completed_at = $6 WHERE id = $1 AND status = 'NO_RESULT' AND late_result = 0",
                 p, 6, NULL, NULL);
    if (rc != 1)
        return rc < 0 ? rc : VEND_ECONFLICT;
    v->metrics.dispense_late_results++;
    log_warnx("late result for order '%s' unit %" PRId64 " from '%s': %s", r->order_id, unit,
              u->machine_id, ok ? "dropped" : "not dropped");
    if (!ok)
        return VEND_OK;

    rc = take_stock_locked(v, u->slot_id, u->machine_id, r->order_id, unit, now_iso);
    if (rc < 0)
        return rc;
    p[0] = DB_TEXT(r->order_id);
    rc = store_query_text(v->db, "SELECT status FROM refunds WHERE order_id = $1", p, 1, refund,
                          sizeof(refund));
    if (rc < 0)
        return rc;
    if (strcmp(u->order_status, "FAILED") != 0 || (rc == 1 && strcmp(refund, "QUEUED") != 0)) {
        snprintf(msg, sizeof(msg), "order '%s' (%s, refund %s) dispensed after all", r->order_id,
                 u->order_status, rc == 1 ? refund : "none");
        log_warnx("alert REFUNDED_ORDER_DISPENSED: %s", msg);
        return alerts_raise_locked(v,
                                   &(struct alert){.machine_id = u->machine_id,
                                                   .kind = "REFUNDED_ORDER_DISPENSED",
                                                   .message = msg,
                                                   .order_id = r->order_id},
                                   now_iso);
    }
    rc = store_query_int(v->db,
                         "SELECT count(*) FROM dispense_logs WHERE order_id = $1 AND NOT "
                         "(status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND "
                         "drop_detected = 1))",
                         p, 1, &undispensed);
    if (rc < 0)
        return rc;
    p[1] = DB_TEXT(now_iso);
    if (undispensed == 0) {
        /* Everything dropped and no money went back: the customer got what they paid for. */
        rc = db_exec(v->db,
                     "UPDATE orders SET status = 'COMPLETED', failure_reason = NULL, "
                     "dispensed_at = $2, updated_at = $2 WHERE id = $1 AND status = 'FAILED'",
                     p, 2, NULL, NULL);
        if (rc < 0)
            return rc;
        return db_exec(v->db,
                       "UPDATE refunds SET status = 'CANCELLED', updated_at = $2 "
                       "WHERE order_id = $1 AND status = 'QUEUED'",
                       p, 2, NULL, NULL);
    }
    /* Part of the order dropped late: refund only what did not. */
    rc = store_query_int(v->db, "SELECT total_amount FROM orders WHERE id = $1", p, 1, &total);
    if (rc < 0)
        return rc;
    rc = dispensed_value(v, r->order_id, &dispensed);
    if (rc < 0)
        return rc;
    p[2] = DB_INT(total - dispensed > 0 ? total - dispensed : 0);
    return db_exec(v->db,
                   "UPDATE refunds SET amount = $3, updated_at = $2 "
                   "WHERE order_id = $1 AND status = 'QUEUED'",
                   p, 3, NULL, NULL);
}

static void pump(struct vendd *v, const char *machine_id);

/* No such unit: say whether the order is unknown or just was never sent (e.g. still PAID). */
static int reject_unknown_unit(struct vendd *v, const char *machine_id, const char *order_id,
                               int64_t unit)
{
    struct db_value p[2] = {DB_TEXT(order_id), DB_TEXT(machine_id)};
    char status[DISPENSE_STATUS_SIZE];
    int rc = store_query_text(v->db, "SELECT status FROM orders WHERE id = $1 AND machine_id = $2",
                              p, 2, status, sizeof(status));

    if (rc == 1) {
        log_warnx("rejected dispense_result from '%s': order '%s' is %s, no command was sent "
                  "for unit %" PRId64,
                  machine_id, order_id, status, unit);
        return VEND_ESTATE;
    }
    log_warnx("rejected dispense_result from '%s': unknown order '%s' unit %" PRId64, machine_id,
              order_id, unit);
    return rc < 0 ? rc : VEND_ENOTFOUND;
}

int dispense_handle_result(struct vendd *v, const char *machine_id,
                           const struct vend_dispense_result *r)
{
    int64_t unit = r->unit ? r->unit : 1;
    struct db_value p[2] = {DB_TEXT(r->order_id), DB_INT(unit)};
    struct unit_row u = {0};
    char now_iso[STORE_ISO_SIZE];
    bool order_done = false, same, rejected = false;
    int rc;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc >= 0)
        rc = db_exec(v->db,
                     "SELECT l.id, l.status, l.machine_id, l.slot_id, l.slot_number, l.success, "
                     "l.drop_detected, l.late_result, o.status FROM dispense_logs l "
                     "JOIN orders o ON o.id = l.order_id WHERE l.order_id = $1 AND l.unit = $2",
                     p, 2, take_unit_row, &u);
    if (rc < 0) {
        goto out;
    }
    rejected = !u.found || strcmp(u.machine_id, machine_id) != 0 || u.slot_number != r->slot;
    if (!u.found) {
        rc = reject_unknown_unit(v, machine_id, r->order_id, unit);
        goto out;
    }
    if (strcmp(u.machine_id, machine_id) != 0) {
        log_warnx("rejected dispense_result from '%s': order '%s' was sent to '%s'", machine_id,
                  r->order_id, u.machine_id);
        rc = VEND_ENOTFOUND;
        goto out;
    }
    if (u.err < 0) {
        rc = u.err;
        goto out;
    }
    if (u.slot_number != r->slot) {
        log_warnx("rejected dispense_result for order '%s': slot %u, but the command was for "
                  "slot %" PRId64,
                  r->order_id, (unsigned)r->slot, u.slot_number);
        rc = VEND_ESTATE;
        goto out;
    }

    if (strcmp(u.status, "SENT") == 0) {
        rc = apply_result_locked(v, &u, r, unit, now_iso, &order_done);
    } else if (strcmp(u.status, "NO_RESULT") == 0 && !u.late_result) {
        rc = apply_late_result_locked(v, &u, r, unit, now_iso);
    } else if (strcmp(u.status, "QUEUED") == 0) {
        rejected = true;
        log_warnx("rejected dispense_result for order '%s' unit %" PRId64 ": never sent",
                  r->order_id, unit);
        rc = VEND_ESTATE;
    } else {
        rejected = true;
        same = u.success == r->success && u.drop_detected == r->drop_detected;
        log_warnx("rejected dispense_result for order '%s' unit %" PRId64 ": %s %s", r->order_id,
                  unit, same ? "duplicate of the recorded" : "contradicts the recorded",
                  u.late_result ? "late result" : u.status);
        if (same)
            v->metrics.dispense_duplicate_results++;
        rc = same ? VEND_ECONFLICT : VEND_ESTATE;
    }
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    if (order_done)
        log_info("order '%s' %s", r->order_id,
                 r->success && r->drop_detected ? "COMPLETED" : "FAILED");
    pump(v, machine_id);
    arm_deadline(v);
out:
    /* Rejections were logged where they were found; anything else is a failure to apply. */
    if (rc < 0 && !rejected)
        log_warnx("dispense_result for order '%s' not applied: %s (%s)", r->order_id,
                  vend_strerror(rc), db_errmsg(v->db));
    rollback_on_error(v, rc);
    return rc;
}

/* ---- sending --------------------------------------------------------------------------- */

/* Send machine_id's next queued unit if it is idle and the broker is there. */
static void pump(struct vendd *v, const char *machine_id)
{
    struct pending_cmd pc = {0};
    int rc;

    if (!mqtt_client_connected(v->mqtt))
        return;
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = pump_locked(v, machine_id, v->now_ms(), &pc);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    publish_pending(v, &pc);
    arm_deadline(v);
out:
    if (rc < 0)
        log_warnx("cannot send the next dispense to '%s': %s (%s)", machine_id, vend_strerror(rc),
                  db_errmsg(v->db));
    rollback_on_error(v, rc);
}

struct item_row {
    int64_t slot_id, slot_number, motor_ms, first_unit, quantity;
};

struct item_rows {
    size_t n;
    bool overflow;
    struct item_row rows[ORDER_ITEMS_MAX];
};

static int take_item_row(void *arg, const struct db_row *row)
{
    struct item_rows *items = arg;
    struct item_row *it;

    if (items->n == ORDER_ITEMS_MAX) {
        items->overflow = true;
        return 1;
    }
    it = &items->rows[items->n++];
    it->slot_id = db_row_int(row, 0);
    it->slot_number = db_row_int(row, 1);
    it->motor_ms = db_row_int(row, 2);
    it->first_unit = db_row_int(row, 3);
    it->quantity = db_row_int(row, 4);
    return 0;
}

/*
 * When a unit queued now must have been sent (SPEC §4 rule 3): DISPENSE_DISPATCH_TTL_S after
 * the machine's current dispense ends (its deadline), or after now if the machine is idle.
 */
static int dispatch_limit(struct vendd *v, const char *machine_id, int64_t now,
                          char limit[STORE_ISO_SIZE])
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    char busy_until[STORE_ISO_SIZE];
    int64_t base = now, until = 0;
    int rc;

    rc = store_query_text(v->db,
                          "SELECT max(deadline_at) FROM dispense_logs "
                          "WHERE machine_id = $1 AND status = 'SENT'",
                          p, 1, busy_until, sizeof(busy_until));
    if (rc < 0)
        return rc;
    if (rc == 1 && store_iso_parse(busy_until, &until) == VEND_OK && until > base)
        base = until;
    db_iso_time(limit, STORE_ISO_SIZE, base + (int64_t)v->conf->dispense_dispatch_ttl_s * 1000);
    return VEND_OK;
}

/* Inside a transaction: one QUEUED dispense_logs row per ordered unit. */
static int queue_units_locked(struct vendd *v, const char *order_id, const char *machine_id,
                              int64_t quantity, int64_t now, const char *now_iso)
{
    struct db_value p[8] = {DB_TEXT(order_id), DB_TEXT(machine_id)};
    struct item_rows items = {0};
    char limit[STORE_ISO_SIZE];
    int64_t units = 0;
    int rc;

    rc = dispatch_limit(v, machine_id, now, limit);
    if (rc < 0)
        return rc;
    /* An item whose slot is not on the order's machine yields no units: caught below. */
    rc = db_exec(v->db,
                 "SELECT s.id, s.slot_number, s.motor_duration_ms, i.first_unit, i.quantity "
                 "FROM order_items i JOIN slots s ON s.id = i.slot_id "
                 "WHERE i.order_id = $1 AND s.machine_id = $2 ORDER BY i.position",
                 p, 2, take_item_row, &items);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < items.n; i++) {
        for (int64_t u = 0; u < items.rows[i].quantity; u++) {
            p[1] = DB_INT(items.rows[i].first_unit + u);
            p[2] = DB_TEXT(machine_id);
            p[3] = DB_INT(items.rows[i].slot_id);
            p[4] = DB_INT(items.rows[i].slot_number);
            p[5] = DB_INT(items.rows[i].motor_ms);
            p[6] = DB_TEXT(now_iso);
            p[7] = DB_TEXT(limit);
            rc = db_exec(v->db,
                         "INSERT INTO dispense_logs (order_id, unit, machine_id, slot_id, "
                         "slot_number, timeout_ms, status, created_at, dispatch_by) "
                         "VALUES ($1, $2, $3, $4, $5, $6, 'QUEUED', $7, $8)",
                         p, 8, NULL, NULL);
            if (rc < 0)
                return rc;
            units++;
        }
    }
    if (items.overflow || units != quantity) {
        log_warnx("order '%s' has %" PRId64 " units in its items but quantity %" PRId64, order_id,
                  units, quantity);
        return VEND_ECORRUPT;
    }
    return VEND_OK;
}

struct order_head {
    bool found;
    int err;
    char status[DISPENSE_STATUS_SIZE];
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    int64_t quantity;
};

static int take_order_head(void *arg, const struct db_row *row)
{
    struct order_head *o = arg;

    o->found = true;
    o->err = copy_text(o->status, sizeof(o->status), db_row_text(row, 0)) |
             copy_text(o->machine_id, sizeof(o->machine_id), db_row_text(row, 1));
    o->quantity = db_row_int(row, 2);
    return 1;
}

int dispense_trigger(struct vendd *v, const char *order_id, char status[DISPENSE_STATUS_SIZE],
                     bool *sent)
{
    struct db_value p[2] = {DB_TEXT(order_id)};
    struct order_head o = {0};
    struct pending_cmd pc = {0};
    char now_iso[STORE_ISO_SIZE];
    int64_t now = v->now_ms();
    int rc;

    *sent = false;
    status[0] = '\0';
    db_iso_time(now_iso, sizeof(now_iso), now);
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = db_exec(v->db, "SELECT status, machine_id, quantity FROM orders WHERE id = $1", p, 1,
                 take_order_head, &o);
    if (rc < 0)
        goto out;
    if (!o.found) {
        rc = VEND_ENOTFOUND;
        goto out;
    }
    if (o.err != 0) {
        rc = VEND_ECORRUPT;
        goto out;
    }
    memcpy(status, o.status, DISPENSE_STATUS_SIZE);
    if (strcmp(o.status, "PAID") != 0) {
        rc = VEND_ESTATE;
        goto out;
    }
    if (!mqtt_client_connected(v->mqtt)) {
        rc = VEND_EUNAVAILABLE; /* the order stays PAID; the operator retries */
        goto out;
    }
    p[1] = DB_TEXT(now_iso);
    rc = db_exec(v->db,
                 "UPDATE orders SET status = 'DISPENSING', updated_at = $2 "
                 "WHERE id = $1 AND status = 'PAID'",
                 p, 2, NULL, NULL);
    if (rc != 1) {
        rc = rc < 0 ? rc : VEND_ESTATE;
        goto out;
    }
    rc = queue_units_locked(v, order_id, o.machine_id, o.quantity, now, now_iso);
    if (rc < 0)
        goto out;
    rc = pump_locked(v, o.machine_id, now, &pc);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    memcpy(status, "DISPENSING", sizeof("DISPENSING"));
    *sent = publish_pending(v, &pc);
    arm_deadline(v);
out:
    if (rc < 0 && rc != VEND_ENOTFOUND && rc != VEND_ESTATE && rc != VEND_EUNAVAILABLE)
        log_warnx("cannot trigger order '%s': %s (%s)", order_id, vend_strerror(rc),
                  db_errmsg(v->db));
    rollback_on_error(v, rc);
    return rc;
}

/* ---- deadlines and restart ------------------------------------------------------------- */

struct overdue {
    size_t n;
    struct {
        int64_t log_id;
        int64_t unit;
        int64_t timeout_ms;
        char order_id[VEND_ORDER_ID_MAX + 1];
        char machine_id[VEND_MACHINE_ID_MAX + 1];
    } rows[EXPIRE_BATCH];
};

static int take_overdue(void *arg, const struct db_row *row)
{
    struct overdue *od = arg;

    if (od->n == EXPIRE_BATCH)
        return 1;
    od->rows[od->n].log_id = db_row_int(row, 0);
    od->rows[od->n].unit = db_row_int(row, 3);
    od->rows[od->n].timeout_ms = db_row_int(row, 4);
    if (copy_text(od->rows[od->n].order_id, sizeof(od->rows[0].order_id), db_row_text(row, 1)) <
            0 ||
        copy_text(od->rows[od->n].machine_id, sizeof(od->rows[0].machine_id), db_row_text(row, 2)) <
            0)
        return 0; /* an unusable row: skip it rather than stop the sweep */
    od->n++;
    return 0;
}

/* The two limits a unit can miss; each fails the unit and its order. */
static const struct overdue_kind {
    const char *select; /* $1 = now */
    const char *update; /* $1 = unit id, $2 = now; compare-and-set on the status */
    const char *reason;
} overdue_kinds[] = {
    {"SELECT id, order_id, machine_id, unit, timeout_ms FROM dispense_logs "
     "WHERE status = 'SENT' AND deadline_at < $1 ORDER BY deadline_at LIMIT 64",
     "UPDATE dispense_logs SET status = 'NO_RESULT', completed_at = $2, "
     "error_message = 'NO_RESULT' WHERE id = $1 AND status = 'SENT'",
     "NO_RESULT"},
    {"SELECT id, order_id, machine_id, unit, timeout_ms FROM dispense_logs "
     "WHERE status = 'QUEUED' AND dispatch_by < $1 ORDER BY dispatch_by LIMIT 64",
     "UPDATE dispense_logs SET status = 'FAILED', completed_at = $2, "
     "error_message = 'MACHINE_UNREACHABLE' WHERE id = $1 AND status = 'QUEUED'",
     "MACHINE_UNREACHABLE"},
};

/* Fail one overdue unit and its order in one transaction. */
static int expire_unit(struct vendd *v, const struct overdue_kind *k, int64_t log_id,
                       const char *order_id, const char *machine_id, const char *now_iso)
{
    struct db_value p[2] = {DB_INT(log_id), DB_TEXT(now_iso)};
    int rc;

    rc = db_begin(v->db);
    if (rc < 0)
        return rc;
    rc = db_exec(v->db, k->update, p, 2, NULL, NULL);
    if (rc == 1)
        rc = fail_order_locked(v, order_id, machine_id, k->reason, now_iso);
    if (rc >= 0)
        rc = db_commit(v->db);
    rollback_on_error(v, rc);
    return rc;
}

static void log_expired(struct vendd *v, const struct overdue_kind *k, const struct overdue *od,
                        size_t i)
{
    if (strcmp(k->reason, "NO_RESULT") == 0) {
        v->metrics.dispense_no_result++;
        log_warnx("order '%s' unit %" PRId64 " FAILED: no result from '%s' within %" PRId64
                  " ms + %u ms grace",
                  od->rows[i].order_id, od->rows[i].unit, od->rows[i].machine_id,
                  od->rows[i].timeout_ms, v->conf->dispense_result_grace_ms);
    } else {
        v->metrics.dispense_unreachable++;
        log_warnx("order '%s' unit %" PRId64 " FAILED: could not be sent to '%s' within %u s",
                  od->rows[i].order_id, od->rows[i].unit, od->rows[i].machine_id,
                  v->conf->dispense_dispatch_ttl_s);
    }
}

/*
 * Fail every unit past its limit (SPEC §4 rule 3), then send what waits behind it. A
 * database error ends the sweep; the deadline timer retries it shortly.
 */
static void expire_overdue(struct vendd *v)
{
    char now_iso[STORE_ISO_SIZE];
    struct db_value p[1];
    struct overdue *od = xcalloc(1, sizeof(*od));
    int rc = 0;

    vendd_now_iso(v, now_iso, sizeof(now_iso));
    p[0] = DB_TEXT(now_iso);
    for (size_t k = 0; k < ARRAY_SIZE(overdue_kinds) && rc >= 0; k++) {
        do {
            od->n = 0;
            rc = db_exec(v->db, overdue_kinds[k].select, p, 1, take_overdue, od);
            for (size_t i = 0; rc >= 0 && i < od->n; i++) {
                rc = expire_unit(v, &overdue_kinds[k], od->rows[i].log_id, od->rows[i].order_id,
                                 od->rows[i].machine_id, now_iso);
                if (rc >= 0) {
                    log_expired(v, &overdue_kinds[k], od, i);
                    pump(v, od->rows[i].machine_id);
                }
            }
        } while (rc >= 0 && od->n == EXPIRE_BATCH);
    }
    if (rc < 0)
        log_warnx("dispense deadline sweep stopped: %s (%s); retrying", vend_strerror(rc),
                  db_errmsg(v->db));
    free(od);
}

static void on_deadline(void *arg)
{
    struct vendd *v = arg;

    v->deadline_timer = 0;
    v->deadline_next[0] = '\0';
    expire_overdue(v);
    arm_deadline(v);
}

struct machine_list {
    size_t n, cap;
    char (*ids)[VEND_MACHINE_ID_MAX + 1];
};

static int take_machine(void *arg, const struct db_row *row)
{
    struct machine_list *ml = arg;

    if (ml->n == ml->cap) {
        ml->cap = ml->cap ? ml->cap * 2 : 16;
        ml->ids = xrealloc(ml->ids, ml->cap * sizeof(ml->ids[0]));
    }
    if (copy_text(ml->ids[ml->n], sizeof(ml->ids[0]), db_row_text(row, 0)) == VEND_OK)
        ml->n++;
    return 0;
}

void dispense_pump_all(struct vendd *v)
{
    struct machine_list ml = {0};

    if (!mqtt_client_connected(v->mqtt))
        return;
    if (db_exec(v->db, "SELECT DISTINCT machine_id FROM dispense_logs WHERE status = 'QUEUED'",
                NULL, 0, take_machine, &ml) < 0)
        log_warnx("cannot list machines with queued dispenses: %s", db_errmsg(v->db));
    for (size_t i = 0; i < ml.n; i++)
        pump(v, ml.ids[i]);
    free(ml.ids);
}

int dispense_resume(struct vendd *v)
{
    int64_t sent = 0, queued = 0;

    if (store_query_int(v->db, "SELECT count(*) FROM dispense_logs WHERE status = 'SENT'", NULL, 0,
                        &sent) < 0 ||
        store_query_int(v->db, "SELECT count(*) FROM dispense_logs WHERE status = 'QUEUED'", NULL,
                        0, &queued) < 0)
        return VEND_EDB;
    if (sent > 0 || queued > 0)
        log_info("resuming %" PRId64 " dispense(s) in flight and %" PRId64 " queued", sent, queued);
    /* Results the machines published while we were down wait in our broker session; give
     * them one grace period to arrive before anything is failed for want of one. */
    v->sweep_not_before_ms = v->now_ms() + (int64_t)v->conf->dispense_result_grace_ms;
    arm_deadline(v);
    dispense_pump_all(v);
    return VEND_OK;
}
