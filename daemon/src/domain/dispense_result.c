/*
 * dispense_result.c - a machine's answer applied to its unit: SPEC §4 rule 4 (COMPLETED
 * means the product dropped), rule 5 through stock.h, rule 6 (late results are not lost)
 * with refunds.h. See dispense_result.h.
 */
#include "dispense_result.h"
#include "dispense_group.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "alerts.h"
#include "conf.h"
#include "db.h"
#include "deadline.h"
#include "dispense.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "refunds.h"
#include "result_spool.h"
#include "settle.h"
#include "stock.h"
#include "store.h"
#include "unit_status.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "vendd.h"
#include "xmalloc.h"

struct unit_row {
    bool found;
    int err;
    int64_t log_id;
    enum unit_status status;
    char machine_id[VEND_MACHINE_ID_MAX + 1];
    int64_t slot_id;
    int64_t slot_number;
    int64_t success;
    int64_t drop_detected;
    int64_t late_result;
    bool by_operator; /* settled_by OPERATOR */
    enum order_status order_status;
};

static int take_unit_row(void *arg, const struct db_row *row)
{
    struct unit_row *u = arg;

    u->found = true;
    u->log_id = db_row_int(row, 0);
    u->err = unit_status_parse(db_row_text(row, 1), &u->status);
    if (u->err == VEND_OK)
        u->err = store_copy_text(u->machine_id, sizeof(u->machine_id), db_row_text(row, 2));
    u->slot_id = db_row_int(row, 3);
    u->slot_number = db_row_int(row, 4);
    u->success = db_row_is_null(row, 5) ? -1 : db_row_int(row, 5);
    u->drop_detected = db_row_is_null(row, 6) ? -1 : db_row_int(row, 6);
    u->late_result = db_row_int(row, 7);
    if (u->err == VEND_OK)
        u->err = order_status_parse(db_row_text(row, 8), &u->order_status);
    u->by_operator = db_row_text(row, 9) != NULL && strcmp(db_row_text(row, 9), "OPERATOR") == 0;
    if (u->err != VEND_OK)
        u->err = VEND_ECORRUPT;
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

/* What the machine said, as the unit row records it. */
static struct unit_change result_change(const struct vend_dispense_result *r, const char *now_iso)
{
    bool ok = r->success && r->drop_detected;

    return (struct unit_change){
        .at = now_iso,
        .error = ok ? (r->has_error ? r->error : NULL) : failure_code(r),
        .success = r->success,
        .drop_detected = r->drop_detected,
        .has_duration = r->has_duration,
        .duration_ms = r->duration_ms,
    };
}

/* Failures that say the slot itself is wrong (empty, stuck, broken), not that the run was
 * refused: the slot is flagged for a person, so no customer pays for it again unseen. */
static const char *const s_slot_faults[] = {"NO_DROP", "JAMMED", "MOTOR_FAULT", "TIMEOUT"};

static bool slot_needs_a_look(const struct vend_dispense_result *r)
{
    if (r->success != r->drop_detected)
        return true; /* a motor cycle without a drop, or a drop the machine did not call one */
    for (size_t i = 0; r->has_error && i < sizeof(s_slot_faults) / sizeof(s_slot_faults[0]); i++) {
        if (strcmp(r->error, s_slot_faults[i]) == 0)
            return true;
    }
    return false;
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

/*
 * Inside a transaction: the last unit of a DISPENSING order dropped. It completes, unless a
 * unit of it failed while this one was UNSETTLED (dispense_fail_order_locked() then left the
 * order open until now): then it fails, and its refund counts this drop.
 */
static int end_order_locked(struct vendd *v, const char *order_id, const char *machine_id,
                            const char *now_iso, bool *order_done)
{
    struct db_value p[1] = {DB_TEXT(order_id)};
    char reason[64] = "";
    int64_t open_units = 0;
    int rc;

    rc = store_query_int(v->db,
                         "SELECT count(*) FROM dispense_logs WHERE order_id = $1 AND status IN "
                         "('QUEUED', 'SENT', 'UNSETTLED')",
                         p, 1, &open_units);
    if (rc < 0)
        return rc;
    if (open_units > 0)
        return VEND_OK; /* the next unit goes out when this transaction has committed */
    rc = store_query_text(v->db,
                          "SELECT COALESCE(error_message, status) FROM dispense_logs WHERE "
                          "order_id = $1 AND status IN ('FAILED', 'NO_RESULT') ORDER BY unit "
                          "LIMIT 1",
                          p, 1, reason, sizeof(reason));
    if (rc < 0)
        return rc;
    *order_done = true;
    if (rc == 1)
        return dispense_fail_order_locked(v, order_id, machine_id, reason, now_iso);
    rc = order_transition_locked(v, order_id, ORDER_DISPENSING, ORDER_COMPLETED, NULL, now_iso);
    return rc == VEND_ESTATE ? VEND_OK : rc;
}

/* Inside a transaction: a result for a SENT or UNSETTLED unit (the machine's answer to a
 * settle, or an operator's word on it). */
static int apply_result_locked(struct vendd *v, const struct unit_row *u,
                               const struct vend_dispense_result *r, int64_t unit,
                               const char *now_iso, bool by_operator, bool *order_done,
                               enum result_count *count)
{
    bool ok = r->success && r->drop_detected;
    struct unit_change c = result_change(r, now_iso);
    int rc;

    c.by_operator = by_operator;
    rc = unit_transition_locked(v, u->log_id, u->status, ok ? UNIT_SUCCEEDED : UNIT_FAILED, &c);
    if (rc < 0)
        return rc;
    if (u->status == UNIT_UNSETTLED) {
        rc = alerts_resolve_order_locked(v, r->order_id, SETTLE_ALERT, now_iso);
        if (rc < 0)
            return rc;
    }
    if (!ok) {
        *count = RESULT_FAILED;
        /* A motor cycle without a drop (empty, stuck), or a drop the machine did not call a
         * success (the count may now be one too high): have someone look. */
        if (slot_needs_a_look(r)) {
            rc = flag_slot_locked(v, u, r, unit, now_iso);
            if (rc < 0)
                return rc;
        }
        *order_done = true;
        return dispense_fail_order_locked(v, r->order_id, u->machine_id, c.error, now_iso);
    }

    *count = RESULT_SUCCEEDED;
    rc = stock_take_unit_locked(v, u->slot_id, u->machine_id, r->order_id, unit, now_iso);
    if (rc < 0)
        return rc;
    return end_order_locked(v, r->order_id, u->machine_id, now_iso, order_done);
}

/*
 * Inside a transaction: a result for a unit that already failed with NO_RESULT
 * (SPEC §4 rule 6). It is recorded and takes the stock; the refunds module decides
 * what happens to the money.
 */
static int apply_late_result_locked(struct vendd *v, const struct unit_row *u,
                                    const struct vend_dispense_result *r, int64_t unit,
                                    const char *now_iso, enum result_count *count)
{
    bool ok = r->success && r->drop_detected;
    struct unit_change c = result_change(r, now_iso);
    int rc;

    if (ok)
        c.error = NULL; /* keep NO_RESULT on the row: it says why the order failed */
    rc = unit_record_late_result_locked(v, u->log_id, &c);
    if (rc < 0)
        return rc;
    *count = RESULT_LATE;
    log_warnx("late result for order '%s' unit %" PRId64 " from '%s': %s", r->order_id, unit,
              u->machine_id, ok ? "dropped" : "not dropped");
    if (!ok)
        return slot_needs_a_look(r) ? flag_slot_locked(v, u, r, unit, now_iso) : VEND_OK;
    rc = stock_take_unit_locked(v, u->slot_id, u->machine_id, r->order_id, unit, now_iso);
    if (rc < 0)
        return rc;
    return refunds_on_late_drop_locked(v, r->order_id, u->machine_id, u->order_status, now_iso);
}

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

/* A result for a unit that has its answer already: a duplicate, or one that contradicts it. */
static int reject_settled_unit(struct vendd *v, const struct unit_row *u,
                               const struct vend_dispense_result *r, int64_t unit)
{
    bool same = u->success == r->success && u->drop_detected == r->drop_detected;

    log_warnx("rejected dispense_result for order '%s' unit %" PRId64 ": %s %s", r->order_id, unit,
              same ? "duplicate of the recorded" : "contradicts the recorded",
              u->late_result ? "late result" : unit_status_name(u->status));
    if (same)
        v->metrics.dispense_duplicate_results++;
    return same ? VEND_ECONFLICT : VEND_ESTATE;
}

static bool is_power_loss(const struct vend_dispense_result *r)
{
    return r->has_error && strcmp(r->error, SETTLE_POWER_LOSS) == 0;
}

/* The machine's answer says the opposite of what an operator settled unit u as. POWER_LOSS
 * says nothing of the drop (the machine re-publishes it until acknowledged); a drop without
 * success is still a drop. */
static bool contradicts_operator(const struct unit_row *u, const struct vend_dispense_result *r)
{
    if (is_power_loss(r))
        return false;
    if (u->status == UNIT_SUCCEEDED)
        return !r->drop_detected;
    return r->success && r->drop_detected;
}

/* The fields of a struct settle_row, from a unit row. */
#define SETTLE_ROW(u, r, unit)                                                                     \
    .log_id = (u).log_id, .slot_id = (u).slot_id, .unit = (unit), .order_id = (r)->order_id,       \
    .machine_id = (u).machine_id, .status = (u).status, .order_status = (u).order_status

/*
 * The result in a transaction of its own (a savepoint inside a group commit), up to and with
 * its commit; what follows the commit is result_effects()'. machine_id NULL: an operator's
 * word (dispense_result_apply_operator()). *machine is the unit's machine once applied.
 */
static int apply_locked(struct vendd *v, const char *machine_id,
                        const struct vend_dispense_result *r, struct result_done *done)
{
    bool by_operator = machine_id == NULL;
    int64_t unit = r->unit ? r->unit : 1;
    struct db_value p[2] = {DB_TEXT(r->order_id), DB_INT(unit)};
    struct unit_row u = {0};
    char now_iso[STORE_ISO_SIZE];
    bool order_done = false, rejected = true;
    enum result_count count = RESULT_COUNT_NONE;
    int rc;

    memset(done, 0, sizeof(*done));
    vendd_now_iso(v, now_iso, sizeof(now_iso));
    rc = db_begin(v->db);
    if (rc < 0) {
        rejected = false;
        goto out;
    }
    rc = db_exec(v->db,
                 "SELECT l.id, l.status, l.machine_id, l.slot_id, l.slot_number, l.success, "
                 "l.drop_detected, l.late_result, o.status, l.settled_by FROM dispense_logs l "
                 "JOIN orders o ON o.id = l.order_id WHERE l.order_id = $1 AND l.unit = $2",
                 p, 2, take_unit_row, &u);
    if (rc < 0) {
        rejected = false;
        goto out;
    }
    if (!u.found) {
        rc = reject_unknown_unit(v, machine_id, r->order_id, unit);
        goto out;
    }
    if (by_operator && u.status != UNIT_UNSETTLED) {
        log_warnx("refused to settle order '%s' unit %" PRId64 " by hand: it is %s, not "
                  "UNSETTLED",
                  r->order_id, unit, unit_status_name(u.status));
        rc = VEND_ESTATE;
        goto out;
    }
    if (by_operator)
        machine_id = u.machine_id;
    if (u.err == VEND_OK && strcmp(u.machine_id, machine_id) != 0) {
        log_warnx("rejected dispense_result from '%s': order '%s' was sent to '%s'", machine_id,
                  r->order_id, u.machine_id);
        rc = VEND_ENOTFOUND;
        goto out;
    }
    if (u.err < 0) {
        log_warnx("rejected dispense_result for order '%s' unit %" PRId64 ": its row is damaged",
                  r->order_id, unit);
        rc = u.err;
        goto out;
    }
    if (!by_operator && u.slot_number != r->slot) {
        log_warnx("rejected dispense_result for order '%s': slot %u, but the command was for "
                  "slot %" PRId64,
                  r->order_id, (unsigned)r->slot, u.slot_number);
        rc = VEND_ESTATE;
        goto out;
    }

    rejected = false;
    if (!by_operator && is_power_loss(r) && (u.status == UNIT_SENT || u.status == UNIT_UNSETTLED)) {
        rc = settle_hold_for_operator_locked(v, &(struct settle_row){SETTLE_ROW(u, r, unit)},
                                             now_iso);
    } else if (u.status == UNIT_SENT || u.status == UNIT_UNSETTLED) {
        rc = apply_result_locked(v, &u, r, unit, now_iso, by_operator, &order_done, &count);
    } else if (!by_operator && u.by_operator && !u.late_result && contradicts_operator(&u, r)) {
        rc = settle_machine_contradicts_operator_locked(
            v, &(struct settle_row){SETTLE_ROW(u, r, unit)}, r->success && r->drop_detected,
            r->has_error ? r->error : NULL, now_iso);
    } else if (u.status == UNIT_NO_RESULT && !u.late_result) {
        rc = apply_late_result_locked(v, &u, r, unit, now_iso, &count);
    } else if (u.status == UNIT_QUEUED) {
        rejected = true;
        log_warnx("rejected dispense_result for order '%s' unit %" PRId64 ": never sent",
                  r->order_id, unit);
        rc = VEND_ESTATE;
    } else {
        rejected = true;
        rc = reject_settled_unit(v, &u, r, unit);
    }
    if (rc < 0)
        goto out;
    rc = db_commit(v->db);
    if (rc < 0)
        goto out;
    done->applied = true;
    done->was_unsettled = u.status == UNIT_UNSETTLED;
    done->order_done = order_done;
    done->by_operator = by_operator;
    done->count = count;
    memcpy(done->machine_id, u.machine_id, sizeof(done->machine_id));
out:
    if (rc < 0 && by_operator && rejected)
        log_warnx("order '%s' unit %" PRId64 " not settled by hand: %s", r->order_id, unit,
                  vend_strerror(rc));
    if (rc < 0) {
        /* Rejections were logged where they were found; anything else failed to apply. */
        if (!rejected)
            log_warnx("dispense_result for order '%s' not applied: %s (%s)", r->order_id,
                      vend_strerror(rc), db_errmsg(v->db));
        db_rollback(v->db);
    }
    return rc;
}

/* What an applied result tells once it is durable. */
static void result_log(struct vendd *v, const struct vend_dispense_result *r,
                       const struct result_done *done)
{
    int64_t unit = r->unit ? r->unit : 1;

    switch (done->count) {
    case RESULT_SUCCEEDED:
        v->metrics.dispense_succeeded++;
        break;
    case RESULT_FAILED:
        v->metrics.dispense_failed++;
        break;
    case RESULT_LATE:
        v->metrics.dispense_late_results++;
        break;
    case RESULT_COUNT_NONE:
        break;
    }

    if (done->was_unsettled)
        log_info("order '%s' unit %" PRId64 " settled by %s: %s", r->order_id, unit,
                 done->by_operator ? "an operator" : "the machine",
                 r->success && r->drop_detected ? "dropped" : "not dropped");
    if (done->order_done)
        log_info("order '%s' %s", r->order_id,
                 r->success && r->drop_detected ? "COMPLETED" : "FAILED");
}

static int apply(struct vendd *v, const char *machine_id, const struct vend_dispense_result *r)
{
    struct result_done done;
    int rc = apply_locked(v, machine_id, r, &done);

    if (rc < 0 || !done.applied)
        return rc;
    crashpoint(&v->crash, CRASH_RESULT_COMMITTED);
    events_emit(v);
    result_log(v, r, &done);
    dispense_pump(v, done.machine_id);
    deadline_arm(v);
    refunds_schedule(v);
    return rc;
}

int dispense_result_apply_locked(struct vendd *v, const char *machine_id,
                                 const struct vend_dispense_result *r, struct result_done *done)
{
    return apply_locked(v, machine_id, r, done);
}

void dispense_result_log(struct vendd *v, const struct vend_dispense_result *r,
                         const struct result_done *done)
{
    result_log(v, r, done);
}

int dispense_result_apply(struct vendd *v, const char *machine_id,
                          const struct vend_dispense_result *r)
{
    return apply(v, machine_id, r);
}

int dispense_result_apply_operator(struct vendd *v, const struct vend_dispense_result *r)
{
    return apply(v, NULL, r);
}

/* ---- results that could not be committed yet ----------------------------------------------- */

#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS   5000

/* A ring in arrival order, kept in a file too (result_spool.h). */
struct result_backlog {
    size_t head, n;
    int lock_fd; /* the spool's ".lock", flock()ed while vendd runs; -1: none */
    uint64_t timer;
    int64_t retry_ms;
    struct result_spool_entry q[DISPENSE_RESULTS_WAITING_MAX];
};

static bool worth_retrying(int rc)
{
    return rc == VEND_EBUSY || rc == VEND_EDB || rc == VEND_EIO;
}

static void on_retry(void *arg);

static void arm_retry(struct vendd *v)
{
    struct result_backlog *b = v->result_backlog;

    if (b->timer != 0)
        return;
    b->retry_ms = b->retry_ms == 0                 ? RETRY_FIRST_MS
                  : b->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS
                                                   : b->retry_ms * 2;
    b->timer = loop_timer_add(v->loop, (uint64_t)b->retry_ms, on_retry, v);
    if (b->timer == 0)
        log_warnx("cannot arm the timer of the %zu result(s) waiting for the database", b->n);
}

static const struct result_spool_entry *entry_at(void *arg, size_t i)
{
    const struct result_backlog *b = arg;

    return &b->q[(b->head + i) % DISPENSE_RESULTS_WAITING_MAX];
}

/* The file the queue is kept in: beside the SQLite database, or in the working directory
 * with PostgreSQL (the unit's StateDirectory, deploy/systemd/vendd.service), named after the
 * database's URL so that a vendd started there on another database never applies it; with
 * MQTT_SHARED_GROUP after the URL and MQTT_CLIENT_ID, one file per instance: the results are
 * those its own broker session took, and two instances with one id would take that session
 * from each other anyway. (The directory is vendd's own, mode 0700: the name tells no one
 * the URL who could not read it.) */
static bool spool_path(const struct vendd *v, char *buf, size_t size)
{
    const char *db = v->conf->sqlite_path;
    uint64_t h = 14695981039346656037ull; /* FNV-1a */

    if (v->conf->db_kind != CONF_DB_SQLITE) {
        for (const char *p = v->conf->database_url; *p != '\0'; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        /* A '\n' is in neither value: "url\nid" names one pair only. */
        for (const char *p = "\n"; v->conf->mqtt_shared_group[0] != '\0' && *p != '\0'; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        for (const char *p = v->conf->mqtt_client_id;
             v->conf->mqtt_shared_group[0] != '\0' && *p != '\0'; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
        return (size_t)snprintf(buf, size, "%s-%016llx", RESULT_SPOOL_PG_FILE,
                                (unsigned long long)h) < size;
    }
    return db[0] != '\0' && (size_t)snprintf(buf, size, "%s%s", db, RESULT_SPOOL_SUFFIX) < size;
}

/* The queue as it is now into its file (removed once the queue is empty). */
static void spool_write(struct vendd *v)
{
    char path[CONF_PATH_MAX + sizeof(RESULT_SPOOL_SUFFIX)];

    if (spool_path(v, path, sizeof(path)))
        result_spool_save(path, v->result_backlog->n, entry_at, v->result_backlog);
}

/* Into the ring, in memory only; false when it is full (the result dropped, loudly). */
static bool push(struct vendd *v, const char *machine_id, const struct vend_dispense_result *r)
{
    struct result_backlog *b = v->result_backlog;
    struct result_spool_entry *w;

    if (b->n == DISPENSE_RESULTS_WAITING_MAX) {
        v->metrics.dispense_results_dropped++;
        log_warnx("dropped dispense_result for order '%s' from '%s': %d results already wait for "
                  "the database",
                  r->order_id, machine_id, DISPENSE_RESULTS_WAITING_MAX);
        return false;
    }
    w = &b->q[(b->head + b->n) % DISPENSE_RESULTS_WAITING_MAX];
    snprintf(w->machine_id, sizeof(w->machine_id), "%s", machine_id);
    w->r = *r;
    b->n++;
    return true;
}

static void enqueue(struct vendd *v, const char *machine_id, const struct vend_dispense_result *r)
{
    if (!push(v, machine_id, r))
        return;
    v->metrics.dispense_results_retried++;
    /* Durable before the loop goes on: the broker has its PUBACK already. */
    spool_write(v);
    arm_retry(v);
}

static void on_retry(void *arg)
{
    struct vendd *v = arg;
    struct result_backlog *b = v->result_backlog;
    size_t before = b->n;
    int rc;

    b->timer = 0;
    while (b->n > 0) {
        struct result_spool_entry *w = &b->q[b->head];

        rc = dispense_result_apply(v, w->machine_id, &w->r);
        if (worth_retrying(rc)) {
            if (b->n != before)
                spool_write(v);
            arm_retry(v); /* still not: later, in the same order */
            return;
        }
        log_info("dispense_result for order '%s' from '%s' applied after waiting: %s",
                 w->r.order_id, w->machine_id, rc == VEND_OK ? "ok" : vend_strerror(rc));
        b->head = (b->head + 1) % DISPENSE_RESULTS_WAITING_MAX;
        b->n--;
    }
    b->retry_ms = 0;
    if (before > 0)
        spool_write(v);
}

static struct result_backlog *backlog(struct vendd *v)
{
    if (v->result_backlog == NULL) {
        v->result_backlog = xcalloc(1, sizeof(*v->result_backlog));
        v->result_backlog->lock_fd = -1;
    }
    return v->result_backlog;
}

int dispense_result_submit(struct vendd *v, const char *machine_id,
                           const struct vend_dispense_result *r)
{
    /* Behind those already waiting, so results are applied in the order they came. */
    if (backlog(v)->n > 0) {
        enqueue(v, machine_id, r);
        return VEND_OK;
    }
    /* With the other results and triggers of this loop turn, in one commit. */
    dispense_group_result(v, machine_id, r);
    return VEND_OK;
}

bool dispense_result_worth_retrying(int rc)
{
    return worth_retrying(rc);
}

void dispense_result_keep(struct vendd *v, const char *machine_id,
                          const struct vend_dispense_result *r, int rc)
{
    backlog(v);
    log_warnx("dispense_result for order '%s' from '%s' kept to be applied again: %s", r->order_id,
              machine_id, vend_strerror(rc));
    enqueue(v, machine_id, r);
}

size_t dispense_results_waiting(const struct vendd *v)
{
    return (v->result_backlog != NULL ? v->result_backlog->n : 0) + dispense_group_results(v);
}

static void resume_one(void *arg, const struct result_spool_entry *e)
{
    push(arg, e->machine_id, &e->r);
}

int dispense_results_lock(struct vendd *v)
{
    char path[CONF_PATH_MAX + sizeof(RESULT_SPOOL_SUFFIX)];
    char lock[sizeof(path) + sizeof(".lock")];
    int fd;

    if (!spool_path(v, path, sizeof(path)))
        return VEND_OK;
    /* One vendd per file (per database, or per instance of a shared group): a second one
     * would replace the first one's queue with its own, and delete it when its own is empty. Held
     * until exit; the kernel drops it at a crash. */
    snprintf(lock, sizeof(lock), "%s.lock", path);
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (fd >= 0 && errno == EWOULDBLOCK && v->conf->mqtt_shared_group[0] != '\0')
            log_warnx("another vendd runs on this database with MQTT_CLIENT_ID '%s': '%s' is "
                      "locked",
                      v->conf->mqtt_client_id, lock);
        else if (fd >= 0 && errno == EWOULDBLOCK)
            log_warnx("another vendd runs on this database: '%s' is locked", lock);
        else
            log_warn("cannot lock '%s'", lock);
        if (fd >= 0)
            close(fd);
        return VEND_EBUSY;
    }
    backlog(v)->lock_fd = fd;
    return VEND_OK;
}

int dispense_results_resume(struct vendd *v)
{
    char path[CONF_PATH_MAX + sizeof(RESULT_SPOOL_SUFFIX)];
    int n;

    if (!spool_path(v, path, sizeof(path)))
        return VEND_OK;
    backlog(v);
    n = result_spool_load(path, resume_one, v);
    if (n <= 0)
        return n;
    log_info("applying %d dispense_result(s) kept in '%s' at the last stop", n, path);
    on_retry(v); /* what the database still cannot take waits on, in the file */
    return VEND_OK;
}

void dispense_results_free(struct vendd *v)
{
    char path[CONF_PATH_MAX + sizeof(RESULT_SPOOL_SUFFIX)];

    /* Its results are applied (or join the queue below) first. */
    dispense_group_free(v);
    if (v->result_backlog == NULL)
        return;
    if (v->result_backlog->timer != 0)
        loop_timer_del(v->loop, v->result_backlog->timer);
    if (v->result_backlog->n > 0 && spool_path(v, path, sizeof(path)))
        log_warnx("%zu dispense_result(s) not applied at shutdown: kept in '%s' for the next "
                  "start",
                  v->result_backlog->n, path);
    else if (v->result_backlog->n > 0)
        log_warnx("%zu dispense_result(s) not applied at shutdown: their units are settled "
                  "at their deadlines",
                  v->result_backlog->n);
    if (v->result_backlog->lock_fd >= 0)
        close(v->result_backlog->lock_fd);
    free(v->result_backlog);
    v->result_backlog = NULL;
}
