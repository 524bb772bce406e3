/*
 * settle.c - asking a settling machine what became of a unit whose result did not come,
 * and an operator's word on it; see settle.h for the rule and docs/PROTOCOL.md for the wire.
 */
#include "settle.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "alerts.h"
#include "db.h"
#include "dispense_result.h"
#include "events.h"
#include "log.h"
#include "refunds.h"
#include "stock.h"
#include "store.h"
#include "unit_status.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/topic.h"
#include "vendd.h"

int settle_unit_command(struct settle_unit *u, int64_t slot_number, int64_t unit, int64_t quantity)
{
    u->sendable = false;
    if (!vend_order_id_valid(u->order_id) || slot_number < VEND_SLOT_MIN ||
        slot_number > VEND_SLOT_MAX || unit < VEND_UNIT_MIN || unit > VEND_UNIT_MAX ||
        quantity < 1 || quantity > VEND_UNIT_MAX)
        return VEND_EINVAL;
    memset(&u->cmd, 0, sizeof(u->cmd));
    u->cmd.cmd = VEND_CMD_SETTLE;
    u->cmd.slot = (uint16_t)slot_number;
    memcpy(u->cmd.order_id, u->order_id, sizeof(u->cmd.order_id));
    /* The machine's journal knows the unit by the dispense command's "unit", which a
     * one-unit order leaves out (dispense.c). */
    u->cmd.unit = quantity > 1 ? (uint16_t)unit : 0;
    u->sendable = true;
    return VEND_OK;
}

/* The gap before the next ask, after `asks` of them: doubling, capped. */
static int64_t ask_gap_ms(int64_t asks)
{
    int64_t gap = SETTLE_ASK_FIRST_MS;

    for (int64_t i = 0; i < asks && gap < SETTLE_ASK_MAX_MS; i++)
        gap *= 2;
    return gap < SETTLE_ASK_MAX_MS ? gap : SETTLE_ASK_MAX_MS;
}

/* After a commit: hand the settle command to the broker. It has no message expiry: a
 * settle is harmless whenever it arrives, and the machine must get it. */
static bool publish_settle(struct vendd *v, const struct settle_unit *u)
{
    char topic[VEND_TOPIC_MAX + 1], payload[256];
    int len, rc;

    if (!u->sendable) {
        log_warnx("order '%s' is UNSETTLED on '%s' but its row cannot make a settle command "
                  "(damaged data); it needs a person",
                  u->order_id, u->machine_id);
        return false;
    }
    if (!broker_up(&v->broker))
        return false; /* asked again when the machine says ONLINE, or at the next ask */
    rc = vend_topic_format(topic, sizeof(topic), u->machine_id, VEND_TOPIC_COMMAND);
    len = vend_encode_command(payload, sizeof(payload), &u->cmd);
    if (rc < 0 || len < 0) {
        log_warnx("cannot encode the settle command for order '%s' to '%s': %s", u->order_id,
                  u->machine_id, vend_strerror(rc < 0 ? rc : len));
        return false;
    }
    rc = broker_publish(&v->broker, topic, payload, (size_t)len, 1, false, 0);
    if (rc < 0) {
        log_warnx("cannot publish the settle command for order '%s' to '%s': %s", u->order_id,
                  topic, vend_strerror(rc));
        return false;
    }
    v->metrics.settle_asks++;
    log_info("settle sent to %s: order '%s' slot %u unit %u", topic, u->order_id,
             (unsigned)u->cmd.slot, (unsigned)(u->cmd.unit ? u->cmd.unit : 1));
    return true;
}

/* Inside a transaction: count one more ask of UNSETTLED unit u and schedule the next. */
static int count_ask_locked(struct vendd *v, const struct settle_unit *u, int64_t now)
{
    char next[STORE_ISO_SIZE];
    struct db_value p[3] = {DB_INT(u->log_id), DB_TEXT(next), DB_INT(u->asks)};

    db_iso_time(next, sizeof(next), now + ask_gap_ms(u->asks));
    /* The count read with the row is the compare: of several instances (MQTT_SHARED_GROUP)
     * that read the same overdue unit, one asks, the others find it counted (0 rows). */
    return db_exec(v->db,
                   "UPDATE dispense_logs SET settle_asks = settle_asks + 1, deadline_at = $2 "
                   "WHERE id = $1 AND status = 'UNSETTLED' AND deadline_at IS NOT NULL "
                   "AND settle_asks = $3",
                   p, 3, NULL, NULL);
}

int settle_overdue_unit(struct vendd *v, struct settle_unit *u, int64_t now)
{
    char now_iso[STORE_ISO_SIZE], next[STORE_ISO_SIZE], msg[400];
    struct unit_change c = {.at = now_iso, .deadline = next};
    unsigned unit = u->cmd.unit ? u->cmd.unit : 1;
    int rc;

    db_iso_time(now_iso, sizeof(now_iso), now);
    db_iso_time(next, sizeof(next), now + ask_gap_ms(0));
    rc = db_begin(v->db);
    if (rc < 0)
        return rc;
    rc = unit_transition_locked(v, u->log_id, UNIT_SENT, UNIT_UNSETTLED, &c);
    if (rc == VEND_ESTATE) {
        rc = 0; /* a result moved it first */
        goto out;
    }
    if (rc < 0)
        goto out;
    u->asks = 0;
    rc = count_ask_locked(v, u, now);
    if (rc < 0)
        goto out;
    snprintf(msg, sizeof(msg),
             "order '%s' unit %u: no result from '%s' by its deadline; the product may have "
             "dropped, so the machine is asked (settle) and nothing is refunded until it answers "
             "or an operator settles the unit",
             u->order_id, unit, u->machine_id);
    rc = alerts_raise_locked(v,
                             &(struct alert){.machine_id = u->machine_id,
                                             .kind = SETTLE_ALERT,
                                             .message = msg,
                                             .order_id = u->order_id,
                                             .slot_id = u->slot_id},
                             now_iso);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db) < 0 ? VEND_EDB : 1;
    events_emit(v);
out:
    if (rc <= 0) {
        db_rollback(v->db);
        return rc;
    }
    crashpoint(&v->crash, CRASH_UNIT_UNSETTLED);
    v->metrics.dispense_unsettled++;
    log_warnx("order '%s' unit %u UNSETTLED: no result from '%s' by its deadline; asking the "
              "machine",
              u->order_id, unit, u->machine_id);
    publish_settle(v, u);
    return 1;
}

int settle_ask_again(struct vendd *v, struct settle_unit *u, int64_t now)
{
    int rc = db_begin(v->db);

    if (rc < 0)
        return rc;
    rc = count_ask_locked(v, u, now);
    if (rc == 0)
        goto out; /* settled meanwhile */
    if (rc > 0)
        rc = db_commit(v->db) < 0 ? VEND_EDB : 1;
out:
    if (rc <= 0) {
        db_rollback(v->db);
        return rc;
    }
    publish_settle(v, u);
    return 1;
}

/* The UNSETTLED units of one machine (at most one, by the in-flight index; a few for
 * safety). */
struct unsettled {
    size_t n;
    struct settle_unit u[4];
};

static int take_unsettled(void *arg, const struct db_row *row)
{
    struct unsettled *us = arg;
    struct settle_unit *u = &us->u[us->n];

    if (us->n == sizeof(us->u) / sizeof(us->u[0]))
        return 1;
    memset(u, 0, sizeof(*u));
    u->log_id = db_row_int(row, 0);
    if (store_copy_text(u->order_id, sizeof(u->order_id), db_row_text(row, 1)) < 0 ||
        store_copy_text(u->machine_id, sizeof(u->machine_id), db_row_text(row, 2)) < 0 ||
        settle_unit_command(u, db_row_int(row, 3), db_row_int(row, 4), db_row_int(row, 5)) < 0) {
        log_warnx("dispense_logs row %" PRId64 " is UNSETTLED but out of range; it needs a "
                  "person to settle it by hand",
                  u->log_id);
        return 0;
    }
    us->n++;
    return 0;
}

void settle_machine_online(struct vendd *v, const char *machine_id)
{
    struct db_value p[1] = {DB_TEXT(machine_id)};
    struct unsettled us = {0};

    if (!broker_up(&v->broker))
        return;
    if (db_exec(v->db,
                "SELECT l.id, l.order_id, l.machine_id, l.slot_number, l.unit, o.quantity "
                "FROM dispense_logs l JOIN orders o ON o.id = l.order_id "
                "WHERE l.machine_id = $1 AND l.status = 'UNSETTLED' "
                "AND l.deadline_at IS NOT NULL ORDER BY l.id",
                p, 1, take_unsettled, &us) < 0) {
        log_warnx("cannot read the unsettled units of '%s': %s; they are asked about later",
                  machine_id, db_errmsg(v->db));
        return;
    }
    for (size_t i = 0; i < us.n; i++)
        publish_settle(v, &us.u[i]);
}

/* Inside a transaction: the slot needs someone to look at it. */
static int flag_slot_locked(struct vendd *v, int64_t slot_id, const char *now_iso)
{
    struct db_value p[2] = {DB_INT(slot_id), DB_TEXT(now_iso)};
    int rc = db_exec(v->db,
                     "UPDATE slots SET needs_inspection = 1, version = version + 1, "
                     "updated_at = $2 WHERE id = $1",
                     p, 2, NULL, NULL);

    return rc < 0 ? rc : VEND_OK;
}

/* Inside a transaction: raise alert kind about u, or restate the open one. */
static int alert_locked(struct vendd *v, const struct settle_row *u, const char *kind,
                        const char *msg, const char *now_iso)
{
    int rc = alerts_raise_locked(v,
                                 &(struct alert){.machine_id = u->machine_id,
                                                 .kind = kind,
                                                 .message = msg,
                                                 .order_id = u->order_id,
                                                 .slot_id = u->slot_id},
                                 now_iso);

    if (rc == 0)
        rc = alerts_restate_order_locked(v, u->order_id, kind, msg);
    return rc < 0 ? rc : VEND_OK;
}

int settle_hold_for_operator_locked(struct vendd *v, const struct settle_row *u,
                                    const char *now_iso)
{
    char msg[400];
    int rc;

    rc = unit_await_operator_locked(v, u->log_id, u->status, SETTLE_POWER_LOSS, now_iso);
    if (rc < 0)
        return rc;
    /* The rest of its order is not sent: it ends, with its refund, when the operator has
     * settled this unit (the machine itself serves other orders meanwhile). */
    rc = unit_fail_unsent_locked(v, u->order_id, now_iso);
    if (rc < 0)
        return rc;
    rc = flag_slot_locked(v, u->slot_id, now_iso);
    if (rc < 0)
        return rc;
    snprintf(msg, sizeof(msg),
             "order '%s' unit %" PRId64 ": '%s' lost power during the dispense and cannot say "
             "whether the product fell; count the slot, then settle the unit by hand "
             "(POST /api/dispense/settle)",
             u->order_id, u->unit, u->machine_id);
    log_warnx("alert %s: %s", SETTLE_ALERT, msg);
    return alert_locked(v, u, SETTLE_ALERT, msg, now_iso);
}

int settle_machine_contradicts_operator_locked(struct vendd *v, const struct settle_row *u,
                                               bool dropped, const char *code, const char *now_iso)
{
    char msg[400];
    int rc;

    rc = unit_record_operator_contradiction_locked(v, u->log_id, dropped, dropped);
    if (rc < 0)
        return rc;
    if (dropped) {
        log_warnx("order '%s' unit %" PRId64 ": '%s' says it dropped after an operator said "
                  "it did not; the drop is counted",
                  u->order_id, u->unit, u->machine_id);
        rc = stock_take_unit_locked(v, u->slot_id, u->machine_id, u->order_id, u->unit, now_iso);
        if (rc < 0)
            return rc;
        return refunds_on_late_drop_locked(v, u->order_id, u->machine_id, u->order_status, now_iso);
    }
    rc = flag_slot_locked(v, u->slot_id, now_iso);
    if (rc < 0)
        return rc;
    snprintf(msg, sizeof(msg),
             "order '%s' unit %" PRId64 ": an operator settled it as dropped, but '%s' says "
             "it did not drop (%s); count the slot: the customer may be owed the unit",
             u->order_id, u->unit, u->machine_id, code != NULL ? code : "FAILED");
    log_warnx("alert %s: %s", SETTLE_CONTRADICTED, msg);
    return alert_locked(v, u, SETTLE_CONTRADICTED, msg, now_iso);
}

int settle_by_operator(struct vendd *v, const char *order_id, int64_t unit, bool dropped)
{
    struct vend_dispense_result r = {.success = dropped, .drop_detected = dropped};
    int rc;

    if (!vend_order_id_valid(order_id) || unit < VEND_UNIT_MIN || unit > VEND_UNIT_MAX)
        return VEND_EINVAL;
    memcpy(r.order_id, order_id, strlen(order_id) + 1);
    r.unit = (uint16_t)unit;
    if (!dropped) {
        r.has_error = true;
        snprintf(r.error, sizeof(r.error), "%s", SETTLE_NOT_DROPPED);
    }
    rc = dispense_result_apply_operator(v, &r);
    if (rc == VEND_OK)
        v->metrics.dispense_settled_by_operator++;
    return rc;
}
