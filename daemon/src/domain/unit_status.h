/*
 * unit_status.h - the state machine of one ordered unit (one dispense_logs row), as code.
 * Every change of dispense_logs.status goes through unit_transition_locked() (or, for all
 * of an order's unsent units at once, unit_fail_unsent_locked()): a compare-and-set from
 * the status the caller read, inside the caller's transaction.
 *
 *   QUEUED ──command published──> SENT ──result: success && dropDetected──> SUCCEEDED
 *     │  ^                          ├──result: anything else──────────────> FAILED
 *     │  └──broker gone before the publish (nothing left vendd)
 *     │                             ├──deadline passed, guide machine─────> NO_RESULT
 *     │                             └──deadline passed, settling machine──> UNSETTLED
 *     ├──dispatch limit passed (broker away)──> FAILED  MACHINE_UNREACHABLE
 *     ├──row unusable (out of range)──────────> FAILED  INVALID_UNIT
 *     └──its order failed first───────────────> FAILED  NOT_SENT
 *
 *   UNSETTLED ──the machine's answer (a result, CANCELLED)──> SUCCEEDED | FAILED
 *             └──an operator's word, after looking──────────> SUCCEEDED | FAILED
 *
 * NO_RESULT is final for the unit; a result that arrives later is recorded on the row
 * (late_result, unit_record_late_result_locked) without moving it, SPEC §4 rule 6.
 * UNSETTLED is not final: the product may have dropped, so its stock stays promised, its
 * order stays DISPENSING and nothing is refunded until the machine (settle.h) or a person
 * says what happened.
 */
#ifndef VENDD_UNIT_STATUS_H
#define VENDD_UNIT_STATUS_H

#include <stdbool.h>
#include <stdint.h>

struct vendd;

/* The schema's CHECK set on dispense_logs.status. */
enum unit_status {
    UNIT_QUEUED,
    UNIT_SENT,
    UNIT_UNSETTLED,
    UNIT_SUCCEEDED,
    UNIT_FAILED,
    UNIT_NO_RESULT,
};
#define UNIT_STATUS_COUNT 6

/* What a transition writes besides the status; which fields count depends on the edge. */
struct unit_change {
    const char *at;       /* QUEUED->SENT: command_sent_at; else completed_at */
    const char *deadline; /* QUEUED->SENT: deadline_at; SENT->UNSETTLED: when to ask again */
    const char *error;    /* error_message: the failure code, or a success's stray code */
    /* SENT|UNSETTLED->SUCCEEDED|FAILED: what the machine (or the operator) said */
    bool success, drop_detected, has_duration;
    int64_t duration_ms;
    bool by_operator; /* UNSETTLED->SUCCEEDED|FAILED: settled_by OPERATOR, not MACHINE */
};

/*
 * SQL, over dispense_logs: the unit's product dropped. SUCCEEDED, or a late result that says it
 * dropped (on a NO_RESULT unit, or on a FAILED one an operator settled): the units whose stock
 * was taken. Migration 0012's sales triggers repeat it word for word (over OLD and NEW): a
 * change here is a migration that creates them again.
 */
#define UNIT_DROPPED_SQL                                                                           \
    "(status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND drop_detected = 1))"

const char *unit_status_name(enum unit_status s);
/* VEND_ECORRUPT for a name the schema does not allow. */
int unit_status_parse(const char *name, enum unit_status *out);
bool unit_transition_allowed(enum unit_status from, enum unit_status to);

/*
 * Inside a transaction: move unit row log_id from `from` to `to` if it is still `from`.
 * Returns VEND_OK when it moved, VEND_ESTATE when the row was not `from`, VEND_EINVAL for
 * an edge not in the diagram or a missing field (a bug, logged), or another VEND_E*.
 */
int unit_transition_locked(struct vendd *v, int64_t log_id, enum unit_status from,
                           enum unit_status to, const struct unit_change *c);

/* Inside a transaction: every QUEUED unit of order_id -> FAILED NOT_SENT (its order failed).
 * Returns the number of units moved, or a negative VEND_E*. */
int unit_fail_unsent_locked(struct vendd *v, const char *order_id, const char *now_iso);

/*
 * Inside a transaction: the result that came for a NO_RESULT unit after its deadline. It is
 * recorded once (late_result 0 -> 1); the unit stays NO_RESULT. Returns VEND_OK, or
 * VEND_ECONFLICT when a late result is already recorded (or the unit is not NO_RESULT).
 */
int unit_record_late_result_locked(struct vendd *v, int64_t log_id, const struct unit_change *c);

/*
 * Inside a transaction: a SENT or UNSETTLED unit whose outcome only a person can tell (the
 * machine lost power mid-run, code POWER_LOSS) waits UNSETTLED for the operator: it is no
 * longer asked about (deadline_at NULL) and carries code. Returns VEND_OK, VEND_ESTATE when
 * the unit is neither, or another VEND_E*.
 */
int unit_await_operator_locked(struct vendd *v, int64_t log_id, enum unit_status from,
                               const char *code, const char *now_iso);

/*
 * Inside a transaction: the machine's answer for a unit an operator settled, which says the
 * opposite, is recorded once on the row (late_result 0 -> 1, its success and drop). The
 * status stays the operator's. Returns VEND_OK, or VEND_ECONFLICT when one is recorded.
 */
int unit_record_operator_contradiction_locked(struct vendd *v, int64_t log_id, bool success,
                                              bool drop_detected);

#endif
