-- The tables the dispense path writes on every order rebuilt so that their CHECKs of a list
-- of names are comparisons: SQLite checks a constant IN list of more than two values with a
-- temporary b-tree built for each statement (a page allocated and cleared, a b-tree built and
-- probed), and a dispense order made about ten of them (six events, its unit row three
-- times, its stock_logs row): a fifth of its instructions (docs/BENCH.md, "Instructions per
-- dispense order"). Every rule is the same; rows, ids and the events' AUTOINCREMENT counter
-- are kept, so a client's Last-Event-ID stays meaningful. The orders table keeps its list:
-- five tables reference it, and a migration cannot turn foreign keys off to rebuild it.
--
-- legacy_alter_table: the renames must not rewrite nor re-check the triggers of other tables
-- that write into events (0010); they name "events" as before.
PRAGMA legacy_alter_table = ON;

-- ---- events (0010) ----
CREATE TABLE events_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL
               CHECK (kind = 'order' OR kind = 'unit' OR kind = 'machine' OR kind = 'stock'
                      OR kind = 'alert' OR kind = 'refund'),
    machine_id TEXT,
    order_id   TEXT,
    unit       INTEGER,
    slot       INTEGER,
    ref_id     INTEGER,
    status     TEXT,
    amount     INTEGER,
    stock      INTEGER,
    detail     TEXT,
    flag       INTEGER
);
INSERT INTO events_new (id, kind, machine_id, order_id, unit, slot, ref_id, status, amount, stock,
                        detail, flag)
    SELECT id, kind, machine_id, order_id, unit, slot, ref_id, status, amount, stock, detail, flag
      FROM events;
DELETE FROM sqlite_sequence WHERE name = 'events_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events_new', seq FROM sqlite_sequence
 WHERE name = 'events';
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE TRIGGER events_window AFTER INSERT ON events BEGIN
    DELETE FROM events WHERE id <= NEW.id - 100000;
END;

-- ---- dispense_logs (0006, 0007; its triggers from 0010 and 0012, word for word) ----
CREATE TABLE dispense_logs_new (
    id              INTEGER PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    unit            INTEGER NOT NULL DEFAULT 1 CHECK (unit >= 1),
    machine_id      TEXT NOT NULL REFERENCES machines (id),
    slot_id         INTEGER NOT NULL REFERENCES slots (id),
    slot_number     INTEGER NOT NULL,
    timeout_ms      INTEGER NOT NULL CHECK (timeout_ms > 0),
    status          TEXT NOT NULL
                    CHECK (status = 'QUEUED' OR status = 'SENT' OR status = 'UNSETTLED'
                           OR status = 'SUCCEEDED' OR status = 'FAILED' OR status = 'NO_RESULT'),
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
                               settle_asks, settled_by, created_at)
    SELECT id, order_id, unit, machine_id, slot_id, slot_number, timeout_ms, status, dispatch_by,
           command_sent_at, deadline_at, completed_at, duration_ms, success, drop_detected,
           error_message, late_result, settle_asks, settled_by, created_at
      FROM dispense_logs;
DROP TABLE dispense_logs;
ALTER TABLE dispense_logs_new RENAME TO dispense_logs;
CREATE INDEX dispense_logs_machine ON dispense_logs (machine_id, command_sent_at);
CREATE INDEX dispense_logs_queued ON dispense_logs (machine_id, id) WHERE status = 'QUEUED';
CREATE UNIQUE INDEX dispense_logs_one_in_flight ON dispense_logs (machine_id)
    WHERE status = 'SENT' OR (status = 'UNSETTLED' AND deadline_at IS NOT NULL);
CREATE INDEX dispense_logs_sent ON dispense_logs (deadline_at) WHERE status = 'SENT';
CREATE INDEX dispense_logs_unsettled ON dispense_logs (deadline_at) WHERE status = 'UNSETTLED';

CREATE TRIGGER events_unit_new AFTER INSERT ON dispense_logs BEGIN
    INSERT INTO events (kind, machine_id, order_id, unit, slot, status, detail, flag)
    VALUES ('unit', NEW.machine_id, NEW.order_id, NEW.unit, NEW.slot_number, NEW.status,
            NEW.error_message, NEW.late_result);
END;
-- late_result: a result for a unit that had already failed NO_RESULT (its stock is taken).
CREATE TRIGGER events_unit_status AFTER UPDATE OF status, late_result ON dispense_logs
WHEN NEW.status IS NOT OLD.status OR NEW.late_result IS NOT OLD.late_result BEGIN
    INSERT INTO events (kind, machine_id, order_id, unit, slot, status, detail, flag)
    VALUES ('unit', NEW.machine_id, NEW.order_id, NEW.unit, NEW.slot_number, NEW.status,
            NEW.error_message, NEW.late_result);
END;

CREATE TRIGGER sales_unit_new AFTER INSERT ON dispense_logs
WHEN (NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                   AND NEW.drop_detected = 1))
 AND NEW.completed_at IS NOT NULL BEGIN
    INSERT INTO sales_daily (day, machine_id, product_name, units, revenue)
        SELECT substr(NEW.completed_at, 1, 10), NEW.machine_id, COALESCE(i.product_name, ''), 1,
               i.unit_price
          FROM order_items i
         WHERE i.order_id = NEW.order_id AND NEW.unit >= i.first_unit
           AND NEW.unit < i.first_unit + i.quantity
    ON CONFLICT (day, machine_id, product_name)
    DO UPDATE SET units = units + excluded.units, revenue = revenue + excluded.revenue;
END;

-- The row counted before the change, and it no longer counts there: take it out.
CREATE TRIGGER sales_unit_out
AFTER UPDATE OF status, late_result, success, drop_detected, completed_at, machine_id, order_id,
                unit ON dispense_logs
WHEN (OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                   AND OLD.drop_detected = 1))
 AND OLD.completed_at IS NOT NULL
 AND NOT COALESCE(((NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                        AND NEW.drop_detected = 1))
          AND NEW.completed_at IS NOT NULL
          AND substr(NEW.completed_at, 1, 10) = substr(OLD.completed_at, 1, 10)
          AND NEW.machine_id IS OLD.machine_id AND NEW.order_id IS OLD.order_id
          AND NEW.unit IS OLD.unit), 0) BEGIN
    UPDATE sales_daily
       SET units = units - (SELECT count(*) FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity
                               AND COALESCE(i.product_name, '') = sales_daily.product_name),
           revenue = revenue - (SELECT COALESCE(sum(i.unit_price), 0) FROM order_items i
                                 WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                                   AND OLD.unit < i.first_unit + i.quantity
                                   AND COALESCE(i.product_name, '') = sales_daily.product_name)
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id
       AND product_name IN (SELECT COALESCE(i.product_name, '') FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity);
    DELETE FROM sales_daily
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id AND units = 0;
END;

-- The row counts after the change, and did not count there before: put it in.
CREATE TRIGGER sales_unit_in
AFTER UPDATE OF status, late_result, success, drop_detected, completed_at, machine_id, order_id,
                unit ON dispense_logs
WHEN (NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                   AND NEW.drop_detected = 1))
 AND NEW.completed_at IS NOT NULL
 AND NOT COALESCE(((OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                        AND OLD.drop_detected = 1))
          AND OLD.completed_at IS NOT NULL
          AND substr(NEW.completed_at, 1, 10) = substr(OLD.completed_at, 1, 10)
          AND NEW.machine_id IS OLD.machine_id AND NEW.order_id IS OLD.order_id
          AND NEW.unit IS OLD.unit), 0) BEGIN
    INSERT INTO sales_daily (day, machine_id, product_name, units, revenue)
        SELECT substr(NEW.completed_at, 1, 10), NEW.machine_id, COALESCE(i.product_name, ''), 1,
               i.unit_price
          FROM order_items i
         WHERE i.order_id = NEW.order_id AND NEW.unit >= i.first_unit
           AND NEW.unit < i.first_unit + i.quantity
    ON CONFLICT (day, machine_id, product_name)
    DO UPDATE SET units = units + excluded.units, revenue = revenue + excluded.revenue;
END;

-- Units are not deleted today; one that is stops counting.
CREATE TRIGGER sales_unit_gone AFTER DELETE ON dispense_logs
WHEN (OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                   AND OLD.drop_detected = 1))
 AND OLD.completed_at IS NOT NULL BEGIN
    UPDATE sales_daily
       SET units = units - (SELECT count(*) FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity
                               AND COALESCE(i.product_name, '') = sales_daily.product_name),
           revenue = revenue - (SELECT COALESCE(sum(i.unit_price), 0) FROM order_items i
                                 WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                                   AND OLD.unit < i.first_unit + i.quantity
                                   AND COALESCE(i.product_name, '') = sales_daily.product_name)
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id
       AND product_name IN (SELECT COALESCE(i.product_name, '') FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity);
    DELETE FROM sales_daily
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id AND units = 0;
END;

-- ---- stock_logs (0001) ----
CREATE TABLE stock_logs_new (
    id               INTEGER PRIMARY KEY,
    machine_id       TEXT NOT NULL REFERENCES machines (id),
    slot_id          INTEGER NOT NULL REFERENCES slots (id),
    change_type      TEXT NOT NULL
                     CHECK (change_type = 'RESTOCK' OR change_type = 'DISPENSE'
                            OR change_type = 'MANUAL_ADJUST' OR change_type = 'AUDIT'),
    quantity_before  INTEGER NOT NULL CHECK (quantity_before >= 0),
    quantity_after   INTEGER NOT NULL CHECK (quantity_after >= 0),
    quantity_change  INTEGER NOT NULL CHECK (quantity_change = quantity_after - quantity_before),
    reason           TEXT,
    performed_by     TEXT,
    order_id         TEXT REFERENCES orders (id),
    unit             INTEGER,
    created_at       TEXT NOT NULL
);
INSERT INTO stock_logs_new (id, machine_id, slot_id, change_type, quantity_before, quantity_after,
                            quantity_change, reason, performed_by, order_id, unit, created_at)
    SELECT id, machine_id, slot_id, change_type, quantity_before, quantity_after, quantity_change,
           reason, performed_by, order_id, unit, created_at
      FROM stock_logs;
DROP TABLE stock_logs;
ALTER TABLE stock_logs_new RENAME TO stock_logs;
CREATE INDEX stock_logs_created ON stock_logs (created_at);
CREATE UNIQUE INDEX stock_logs_dispense_once ON stock_logs (order_id, unit)
    WHERE change_type = 'DISPENSE';

PRAGMA legacy_alter_table = OFF;
