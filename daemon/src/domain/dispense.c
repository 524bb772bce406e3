/*
 * dispense.c - the dispense path: trigger, the per-machine send queue, and results; see
 * dispense.h for the rules.
 *
 * Pattern of every operation: BEGIN IMMEDIATE, compare-and-set the row(s), apply the
 * effects, COMMIT, and only then talk to the broker. The reverse order could dispense a
 * unit that no row records.
 */
#include "dispense.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "broker_seam.h"
#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "events.h"
#include "log.h"
#include "refunds.h"
#include "stock.h"
#include "store.h"
#include "unit_status.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vend/topic.h"
#include "vendd.h"
#include "xmalloc.h"

/* Items per order (SPEC: one or more items). */
#define ORDER_ITEMS_MAX 16

/* ---- failing an order ------------------------------------------------------------------ */

int dispense_fail_order_locked(struct vendd *v, const char *order_id, const char *machine_id,
                               const char *reason, const char *now_iso)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    int64_t unsettled = 0;
    int rc;

    rc = store_query_int(v->db,
                         "SELECT count(*) FROM dispense_logs WHERE order_id = $1 AND "
                         "status = 'UNSETTLED'",
                         p, 1, &unsettled);
    if (rc < 0)
        return rc;
    if (unsettled > 0) {
        /* A unit of it may have dropped (settle.h): what is owed is known only when it is
         * settled, so the order ends then (dispense_result.c). Its unsent units never go. */
        rc = unit_fail_unsent_locked(v, order_id, now_iso);
        return rc < 0 ? rc : VEND_OK;
    }
    rc = order_transition_locked(v, order_id, ORDER_DISPENSING, ORDER_FAILED, reason, now_iso);
    if (rc == VEND_ESTATE)
        return VEND_OK; /* already final: nothing more to do */
    if (rc < 0)
        return rc;
    rc = unit_fail_unsent_locked(v, order_id, now_iso);
    if (rc < 0)
        return rc;
    return refunds_queue_locked(v, order_id, machine_id, reason, now_iso);
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
    bool settle; /* the machine checks "expiresAt" (docs/PROTOCOL.md) */
};

static int take_next_unit(void *arg, const struct db_row *row)
{
    struct next_unit *nu = arg;

    nu->log_id = db_row_int(row, 0);
    nu->err = store_copy_text(nu->order_id, sizeof(nu->order_id), db_row_text(row, 1));
    nu->unit = db_row_int(row, 2);
    nu->slot_number = db_row_int(row, 3);
    nu->timeout_ms = db_row_int(row, 4);
    nu->quantity = db_row_int(row, 5);
    nu->settle = db_row_int(row, 6) == 1;
    nu->found = true;
    return 1;
}

/* The row can become a command the codec (and so the machine) accepts. */
static bool unit_sendable(const struct next_unit *nu)
{
    return nu->err == VEND_OK && nu->slot_number >= VEND_SLOT_MIN &&
           nu->slot_number <= VEND_SLOT_MAX && nu->timeout_ms >= VEND_TIMEOUT_MS_MIN &&
           nu->timeout_ms <= VEND_TIMEOUT_MS_MAX && nu->unit >= VEND_UNIT_MIN &&
           nu->unit <= VEND_UNIT_MAX && nu->quantity >= 1 && nu->quantity <= VEND_UNIT_MAX;
}

/* A unit row vendd cannot send (damaged data): fail it and its order rather than block the
 * machine's queue behind it for good. */
static int fail_unusable_unit_locked(struct vendd *v, const struct next_unit *nu,
                                     const char *machine_id, const char *now_iso)
{
    struct unit_change c = {.at = now_iso, .error = "INVALID_UNIT"};
    int rc;

    log_warnx("dispense_logs row %" PRId64 " for '%s' is out of range (slot %" PRId64
              ", timeout %" PRId64 " ms, unit %" PRId64 "); its order fails",
              nu->log_id, machine_id, nu->slot_number, nu->timeout_ms, nu->unit);
    rc = unit_transition_locked(v, nu->log_id, UNIT_QUEUED, UNIT_FAILED, &c);
    if (rc < 0 || nu->err < 0)
        return rc < 0 ? rc : VEND_OK;
    return dispense_fail_order_locked(v, nu->order_id, machine_id, "INVALID_UNIT", now_iso);
}

/*
 * Inside an open transaction: if machine_id has nothing in flight, mark its oldest QUEUED
 * unit SENT and describe the command in *pc (published by the caller after COMMIT).
 * now is on the deadline clock.
 */
static int pump_locked(struct vendd *v, const char *machine_id, int64_t now,
                       struct dispense_send *pc)
{
    struct db_value p[3] = {DB_TEXT(machine_id)};
    struct next_unit nu = {0};
    char sent_at[STORE_ISO_SIZE], deadline[STORE_ISO_SIZE], limit[STORE_ISO_SIZE];
    struct unit_change c = {.at = sent_at, .deadline = deadline};
    int64_t busy = 0, until, expires;
    int rc;

    pc->ready = false;
    db_iso_time(sent_at, sizeof(sent_at), now);
    /* An UNSETTLED unit still asked about may still be running, and a new dispense would
     * acknowledge the machine's stored results (settle.h): it counts as in flight. One held
     * for an operator (deadline_at NULL: the machine has answered) does not. The predicate
     * is the in-flight index's (schema 0007). */
    rc = store_query_int(v->db,
                         "SELECT count(*) FROM dispense_logs WHERE machine_id = $1 AND "
                         "(status = 'SENT' OR (status = 'UNSETTLED' AND deadline_at IS NOT NULL))",
                         p, 1, &busy);
    if (rc < 0 || busy > 0)
        return rc < 0 ? rc : VEND_OK; /* busy: its result or deadline pumps again */
    p[1] = DB_TEXT(sent_at);
    rc = db_exec(v->db,
                 "SELECT l.id, l.order_id, l.unit, l.slot_number, l.timeout_ms, o.quantity, "
                 "m.settle FROM dispense_logs l JOIN orders o ON o.id = l.order_id "
                 "JOIN machines m ON m.id = l.machine_id "
                 "WHERE l.machine_id = $1 AND l.status = 'QUEUED' AND o.status = 'DISPENSING' "
                 "AND l.dispatch_by >= $2 ORDER BY l.id LIMIT 1",
                 p, 2, take_next_unit, &nu);
    if (rc < 0 || !nu.found)
        return rc < 0 ? rc : VEND_OK; /* units past their dispatch limit are the sweep's */
    if (!unit_sendable(&nu))
        return fail_unusable_unit_locked(v, &nu, machine_id, sent_at);

    until = deadline_of_unit(v, now, nu.timeout_ms);
    db_iso_time(deadline, sizeof(deadline), until);
    rc = unit_transition_locked(v, nu.log_id, UNIT_QUEUED, UNIT_SENT, &c);
    if (rc < 0)
        return rc == VEND_ESTATE ? VEND_EINTERNAL : rc; /* we hold the write lock */
    /* The units behind it wait at most DISPENSE_DISPATCH_TTL_S past this one's deadline. */
    db_iso_time(limit, sizeof(limit), until + (int64_t)v->conf->dispense_dispatch_ttl_s * 1000);
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
    store_copy_text(pc->machine_id, sizeof(pc->machine_id), machine_id);
    memset(&pc->cmd, 0, sizeof(pc->cmd));
    pc->cmd.cmd = VEND_CMD_DISPENSE;
    pc->cmd.slot = (uint16_t)nu.slot_number;
    memcpy(pc->cmd.order_id, nu.order_id, sizeof(nu.order_id));
    pc->cmd.timeout_ms = (uint32_t)nu.timeout_ms;
    /* The guide's single-unit command has no "unit"; multi-unit orders number their units. */
    pc->cmd.unit = nu.quantity > 1 ? (uint16_t)nu.unit : 0;
    /* The broker's message expiry only starts when it has read the command: a machine that
     * can check the time itself refuses it after this (SPEC §3). The machine reads it on its
     * SNTP clock, so it is a wall-clock time: the server's best idea of the true time now,
     * not the deadline clock, which keeps an error NTP has corrected since the boot. */
    expires = v->now_ms() + (int64_t)v->conf->dispense_result_grace_ms;
    if (nu.settle && expires >= VEND_EXPIRES_AT_MIN && expires <= VEND_EXPIRES_AT_MAX)
        pc->cmd.expires_at_ms = (uint64_t)expires;
    return VEND_OK;
}

/* The broker was gone before the publish: nothing left vendd, so the unit can wait for it. */
static void requeue(struct vendd *v, const struct dispense_send *pc)
{
    int rc = db_begin(v->db);

    if (rc >= 0)
        rc = unit_transition_locked(v, pc->log_id, UNIT_SENT, UNIT_QUEUED, NULL);
    if (rc >= 0)
        rc = db_commit(v->db);
    if (rc < 0)
        db_rollback(v->db);
    events_emit(v);
    log_warnx("broker unavailable: order '%s' unit %u queued for machine '%s'%s", pc->cmd.order_id,
              (unsigned)(pc->cmd.unit ? pc->cmd.unit : 1), pc->machine_id,
              rc < 0 ? " (requeue failed; the deadline will fail it)" : "");
}

/*
 * After COMMIT: hand the command to the broker. The expiry makes the broker drop a command
 * it could not deliver within the grace period, so a machine never runs one after its
 * order has been failed and refunded.
 */
static bool publish_pending(struct vendd *v, const struct dispense_send *pc)
{
    char topic[VEND_TOPIC_MAX + 1], payload[256], unit_note[16] = "";
    uint32_t expiry_s = v->conf->dispense_result_grace_ms / 1000;
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
    rc = broker_publish(&v->broker, topic, payload, (size_t)len, 1, false,
                        expiry_s > 0 ? expiry_s : 1);
    if (rc == VEND_EUNAVAILABLE) {
        requeue(v, pc);
        return false;
    }
    if (rc < 0) {
        /* It may have reached the broker: the deadline settles it, never a second send. */
        log_warnx("cannot publish the command for order '%s' to '%s': %s", pc->cmd.order_id, topic,
                  vend_strerror(rc));
        return false;
    }
    crashpoint(&v->crash, CRASH_COMMAND_PUBLISHED);
    v->metrics.commands_published++;
    if (pc->cmd.unit)
        snprintf(unit_note, sizeof(unit_note), " unit %u", (unsigned)pc->cmd.unit);
    log_info("dispense command sent to %s: order '%s' slot %u%s", topic, pc->cmd.order_id,
             (unsigned)pc->cmd.slot, unit_note);
    return true;
}

void dispense_pump(struct vendd *v, const char *machine_id)
{
    struct dispense_send pc = {0};
    int rc;

    if (!broker_up(&v->broker))
        return;
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = pump_locked(v, machine_id, deadline_now_ms(v), &pc);
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    publish_pending(v, &pc);
    deadline_arm(v);
    refunds_schedule(v); /* an unusable unit failed its order */
out:
    if (rc < 0) {
        log_warnx("cannot send the next dispense to '%s': %s (%s)", machine_id, vend_strerror(rc),
                  db_errmsg(v->db));
        db_rollback(v->db);
    }
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
    if (store_copy_text(ml->ids[ml->n], sizeof(ml->ids[0]), db_row_text(row, 0)) == VEND_OK)
        ml->n++;
    return 0;
}

void dispense_pump_all(struct vendd *v)
{
    struct machine_list ml = {0};

    if (!broker_up(&v->broker))
        return;
    if (db_exec(v->db, "SELECT DISTINCT machine_id FROM dispense_logs WHERE status = 'QUEUED'",
                NULL, 0, take_machine, &ml) < 0)
        log_warnx("cannot list machines with queued dispenses: %s", db_errmsg(v->db));
    for (size_t i = 0; i < ml.n; i++)
        dispense_pump(v, ml.ids[i]);
    free(ml.ids);
}

/* ---- trigger --------------------------------------------------------------------------- */

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

/* Inside a transaction: one QUEUED dispense_logs row per ordered unit. */
static int queue_units_locked(struct vendd *v, const char *order_id, const char *machine_id,
                              int64_t quantity, int64_t now, const char *now_iso)
{
    struct db_value p[8] = {DB_TEXT(order_id), DB_TEXT(machine_id)};
    struct item_rows items = {0};
    char limit[STORE_ISO_SIZE];
    int64_t units = 0;
    int rc;

    rc = deadline_dispatch_limit(v, machine_id, now, limit);
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
    enum order_status status;
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    int64_t quantity;
};

static int take_order_head(void *arg, const struct db_row *row)
{
    struct order_head *o = arg;

    o->found = true;
    o->err = order_status_parse(db_row_text(row, 0), &o->status);
    if (o->err == VEND_OK)
        o->err = store_copy_text(o->machine_id, sizeof(o->machine_id), db_row_text(row, 1));
    o->quantity = db_row_int(row, 2);
    return 1;
}

int dispense_start_locked(struct vendd *v, const char *order_id, const char *machine_id,
                          int64_t quantity, struct dispense_send *send)
{
    char now_iso[STORE_ISO_SIZE];
    int64_t now = deadline_now_ms(v);
    int rc;

    memset(send, 0, sizeof(*send));
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = order_transition_locked(v, order_id, ORDER_PAID, ORDER_DISPENSING, NULL, now_iso);
    if (rc < 0)
        return rc;
    rc = queue_units_locked(v, order_id, machine_id, quantity, now, now_iso);
    if (rc < 0)
        return rc;
    /* With the broker away the units wait, at most DISPENSE_DISPATCH_TTL_S (deadline.h). */
    if (!broker_up(&v->broker))
        return VEND_OK;
    return pump_locked(v, machine_id, now, send);
}

bool dispense_send_after_commit(struct vendd *v, const struct dispense_send *send)
{
    bool sent = publish_pending(v, send);

    deadline_arm(v);
    refunds_schedule(v); /* an unusable unit may have failed its order */
    return sent;
}

int dispense_trigger_locked(struct vendd *v, const char *order_id,
                            char status[DISPENSE_STATUS_SIZE], struct dispense_send *send)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    struct order_head o = {0};
    int rc;

    memset(send, 0, sizeof(*send));
    status[0] = '\0';
    rc = db_exec(v->db, "SELECT status, machine_id, quantity FROM orders WHERE id = $1", p, 1,
                 take_order_head, &o);
    if (rc < 0)
        return rc;
    if (!o.found)
        return VEND_ENOTFOUND;
    if (o.err != 0)
        return VEND_ECORRUPT;
    snprintf(status, DISPENSE_STATUS_SIZE, "%s", order_status_name(o.status));
    if (o.status != ORDER_PAID)
        return VEND_ESTATE;
    if (!broker_up(&v->broker))
        return VEND_EUNAVAILABLE; /* the order stays PAID; the operator retries */
    rc = dispense_start_locked(v, order_id, o.machine_id, o.quantity, send);
    if (rc < 0)
        return rc;
    snprintf(status, DISPENSE_STATUS_SIZE, "%s", order_status_name(ORDER_DISPENSING));
    return VEND_OK;
}

int dispense_trigger(struct vendd *v, const char *order_id, char status[DISPENSE_STATUS_SIZE],
                     bool *sent)
{
    struct dispense_send send = {0};
    char seen[DISPENSE_STATUS_SIZE];
    int rc;

    *sent = false;
    status[0] = '\0';
    rc = db_begin(v->db);
    if (rc < 0)
        goto out;
    rc = dispense_trigger_locked(v, order_id, seen, &send);
    /* The status read (for a 409), but DISPENSING only once committed. */
    if (rc < 0) {
        snprintf(status, DISPENSE_STATUS_SIZE, "%s", seen);
        goto out;
    }
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    events_emit(v);
    crashpoint(&v->crash, CRASH_TRIGGER_COMMITTED);
    snprintf(status, DISPENSE_STATUS_SIZE, "%s", seen);
    *sent = dispense_send_after_commit(v, &send);
out:
    if (rc < 0) {
        if (rc != VEND_ENOTFOUND && rc != VEND_ESTATE && rc != VEND_EUNAVAILABLE)
            log_warnx("cannot trigger order '%s': %s (%s)", order_id, vend_strerror(rc),
                      db_errmsg(v->db));
        db_rollback(v->db);
    }
    return rc;
}

int dispense_pump_locked(struct vendd *v, const char *machine_id, struct dispense_send *send)
{
    memset(send, 0, sizeof(*send));
    if (!broker_up(&v->broker))
        return VEND_OK;
    return pump_locked(v, machine_id, deadline_now_ms(v), send);
}

bool dispense_publish(struct vendd *v, const struct dispense_send *send)
{
    return publish_pending(v, send);
}
