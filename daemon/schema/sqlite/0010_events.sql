-- The event stream's outbox (GET /api/events, domain/events.c, docs/HTTP-API.md "Events").
--
-- Every change a client of the stream is told about is written here by a trigger on the row
-- that changed, so the event is part of the very transaction that makes the change: it exists
-- if and only if the change committed, whichever code path made it, and nothing is delivered
-- before the commit (vendd reads only committed rows, after any open group commit ends).
-- AUTOINCREMENT: an id is never given twice, not even after the newest rows were deleted, so a
-- client's Last-Event-ID stays meaningful across restarts. SQLite has one writer at a time,
-- so ids are committed in increasing order and "id > the last one delivered" never skips one.
--
-- Columns mean different fields per kind (events.c maps them to JSON names):
--   kind     machine_id order_id unit slot ref_id status       amount stock detail         flag
--   order    x          x        -    -    -      orders.status -      -     failure_reason -
--   unit     x          x        x    x    -      unit status   -      -     error_message  late_result
--   machine  x          -        -    -    -      presence      -      -     door           -
--   stock    x          -        -    x    -      -             -      x     -              needs_inspection
--   alert    x          x        -    x    alert  OPEN/RESOLVED -      -     alert kind     -
--   refund   x          x        -    -    refund refunds.status x     -     -              -
-- There is no time column: timestamps come from the daemon, never from SQL, and a client
-- reads the times from the REST API.
--
-- A migration that rebuilds one of the watched tables (orders, dispense_logs, machines,
-- slots, alerts, refunds) drops its triggers with it and must create them again.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL
               CHECK (kind IN ('order', 'unit', 'machine', 'stock', 'alert', 'refund')),
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

-- The window a client can resume in: the newest 100000 events (EVENTS_WINDOW in events.h
-- says the same). Each insert deletes the one that falls out, so the table never grows past
-- it and pruning costs one row per event, in the event's own transaction.
CREATE TRIGGER events_window AFTER INSERT ON events BEGIN
    DELETE FROM events WHERE id <= NEW.id - 100000;
END;

CREATE TRIGGER events_order_new AFTER INSERT ON orders BEGIN
    INSERT INTO events (kind, machine_id, order_id, status, detail)
    VALUES ('order', NEW.machine_id, NEW.id, NEW.status, NEW.failure_reason);
END;
CREATE TRIGGER events_order_status AFTER UPDATE OF status ON orders
WHEN NEW.status IS NOT OLD.status BEGIN
    INSERT INTO events (kind, machine_id, order_id, status, detail)
    VALUES ('order', NEW.machine_id, NEW.id, NEW.status, NEW.failure_reason);
END;

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

-- Presence only, with the door as last reported. Every status message rewrites the row, and
-- those that change nothing make no event. Not the door alone: telemetry readings rewrite it,
-- and a trigger that names a column a statement sets costs that statement even when its WHEN
-- is false (measured: about 1 us of a telemetry reading's few tens, at fleet rates).
CREATE TRIGGER events_machine_new AFTER INSERT ON machines BEGIN
    INSERT INTO events (kind, machine_id, status, detail)
    VALUES ('machine', NEW.id, NEW.status, NEW.door);
END;
CREATE TRIGGER events_machine_status AFTER UPDATE OF status ON machines
WHEN NEW.status IS NOT OLD.status BEGIN
    INSERT INTO events (kind, machine_id, status, detail)
    VALUES ('machine', NEW.id, NEW.status, NEW.door);
END;

-- The count (a dispense, a restock, an audit) and the inspection flag; not the promised
-- units (slots.reserved), which move with every order.
CREATE TRIGGER events_stock_new AFTER INSERT ON slots BEGIN
    INSERT INTO events (kind, machine_id, slot, stock, flag)
    VALUES ('stock', NEW.machine_id, NEW.slot_number, NEW.current_stock, NEW.needs_inspection);
END;
CREATE TRIGGER events_stock_count AFTER UPDATE OF current_stock, needs_inspection ON slots
WHEN NEW.current_stock IS NOT OLD.current_stock
  OR NEW.needs_inspection IS NOT OLD.needs_inspection BEGIN
    INSERT INTO events (kind, machine_id, slot, stock, flag)
    VALUES ('stock', NEW.machine_id, NEW.slot_number, NEW.current_stock, NEW.needs_inspection);
END;

-- Raised, restated (a refund-due alert follows its amount) and resolved.
CREATE TRIGGER events_alert_new AFTER INSERT ON alerts BEGIN
    INSERT INTO events (kind, machine_id, order_id, slot, ref_id, status, detail)
    VALUES ('alert', NEW.machine_id, NEW.order_id,
            (SELECT slot_number FROM slots WHERE id = NEW.slot_id), NEW.id,
            CASE WHEN NEW.resolved_at IS NULL THEN 'OPEN' ELSE 'RESOLVED' END, NEW.kind);
END;
CREATE TRIGGER events_alert_change AFTER UPDATE OF resolved_at, message ON alerts
WHEN NEW.resolved_at IS NOT OLD.resolved_at OR NEW.message IS NOT OLD.message BEGIN
    INSERT INTO events (kind, machine_id, order_id, slot, ref_id, status, detail)
    VALUES ('alert', NEW.machine_id, NEW.order_id,
            (SELECT slot_number FROM slots WHERE id = NEW.slot_id), NEW.id,
            CASE WHEN NEW.resolved_at IS NULL THEN 'OPEN' ELSE 'RESOLVED' END, NEW.kind);
END;

-- Queued, sent, done, for the operator, withdrawn; and an amount that shrinks (a late drop).
CREATE TRIGGER events_refund_new AFTER INSERT ON refunds BEGIN
    INSERT INTO events (kind, machine_id, order_id, ref_id, status, amount)
    VALUES ('refund', (SELECT machine_id FROM orders WHERE id = NEW.order_id), NEW.order_id,
            NEW.id, NEW.status, NEW.amount);
END;
CREATE TRIGGER events_refund_status AFTER UPDATE OF status, amount ON refunds
WHEN NEW.status IS NOT OLD.status OR NEW.amount IS NOT OLD.amount BEGIN
    INSERT INTO events (kind, machine_id, order_id, ref_id, status, amount)
    VALUES ('refund', (SELECT machine_id FROM orders WHERE id = NEW.order_id), NEW.order_id,
            NEW.id, NEW.status, NEW.amount);
END;
