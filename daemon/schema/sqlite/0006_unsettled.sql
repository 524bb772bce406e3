-- A unit of a settling machine (machines.settle = 1) that reaches its deadline without a
-- result is not failed blind: it becomes UNSETTLED and vendd asks the machine what happened
-- ({"cmd":"settle"}, docs/PROTOCOL.md) until the machine answers from its journal or an
-- operator settles it by hand. SQLite cannot change a CHECK in place, so the table is rebuilt
-- (nothing references dispense_logs).
--
-- deadline_at now means: SENT, settle (or fail NO_RESULT) after this; UNSETTLED, ask again
-- after this. settle_asks counts the settle commands sent; settled_by says who closed an
-- UNSETTLED unit: the machine's answer, or an operator.
CREATE TABLE dispense_logs_new (
    id              INTEGER PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    unit            INTEGER NOT NULL DEFAULT 1 CHECK (unit >= 1),
    machine_id      TEXT NOT NULL REFERENCES machines (id),
    slot_id         INTEGER NOT NULL REFERENCES slots (id),
    slot_number     INTEGER NOT NULL,
    timeout_ms      INTEGER NOT NULL CHECK (timeout_ms > 0),
    status          TEXT NOT NULL
                    CHECK (status IN ('QUEUED', 'SENT', 'UNSETTLED', 'SUCCEEDED', 'FAILED',
                                      'NO_RESULT')),
    dispatch_by     TEXT,
    command_sent_at TEXT,
    deadline_at     TEXT,
    completed_at    TEXT,
    duration_ms     INTEGER,
    success         INTEGER CHECK (success IN (0, 1)),
    drop_detected   INTEGER CHECK (drop_detected IN (0, 1)),
    error_message   TEXT,
    late_result     INTEGER NOT NULL DEFAULT 0 CHECK (late_result IN (0, 1)),
    settle_asks     INTEGER NOT NULL DEFAULT 0 CHECK (settle_asks >= 0),
    settled_by      TEXT CHECK (settled_by IN ('MACHINE', 'OPERATOR')),
    created_at      TEXT NOT NULL,
    UNIQUE (order_id, unit)
);
INSERT INTO dispense_logs_new (id, order_id, unit, machine_id, slot_id, slot_number, timeout_ms,
                               status, dispatch_by, command_sent_at, deadline_at, completed_at,
                               duration_ms, success, drop_detected, error_message, late_result,
                               created_at)
    SELECT id, order_id, unit, machine_id, slot_id, slot_number, timeout_ms, status, dispatch_by,
           command_sent_at, deadline_at, completed_at, duration_ms, success, drop_detected,
           error_message, late_result, created_at
      FROM dispense_logs;
DROP TABLE dispense_logs;
ALTER TABLE dispense_logs_new RENAME TO dispense_logs;
CREATE INDEX dispense_logs_machine ON dispense_logs (machine_id, command_sent_at);
CREATE INDEX dispense_logs_queued ON dispense_logs (machine_id, id) WHERE status = 'QUEUED';
-- One dispense in flight per machine: SENT, or UNSETTLED (it may still be running).
CREATE UNIQUE INDEX dispense_logs_one_in_flight ON dispense_logs (machine_id)
    WHERE status IN ('SENT', 'UNSETTLED');
-- The deadline sweep's two lists: units waiting for a result, and units waiting for their
-- machine's word (when to ask again).
CREATE INDEX dispense_logs_sent ON dispense_logs (deadline_at) WHERE status = 'SENT';
CREATE INDEX dispense_logs_unsettled ON dispense_logs (deadline_at) WHERE status = 'UNSETTLED';
