-- The event stream's outbox, as ../sqlite/0010_events.sql (which says what each kind's
-- columns mean): every watched change writes its event from a trigger, in the change's own
-- transaction. SQLite's triggers become PL/pgSQL functions; "IS NOT" is IS DISTINCT FROM.
--
-- Ids: never given twice (a sequence), and committed in increasing order, which the stream's
-- "id > the last one delivered" needs. SQLite has one writer at a time; here events_take_id
-- takes the same write lock as db_begin() (the advisory lock of db_pg.c, WRITE_LOCK_KEY)
-- before it draws the id, so a transaction that writes an event holds the lock until it
-- commits, and ids commit in order whichever connection writes them.
CREATE SEQUENCE events_id_seq;
CREATE TABLE events (
    id         BIGINT PRIMARY KEY,
    kind       TEXT NOT NULL
               CHECK (kind IN ('order', 'unit', 'machine', 'stock', 'alert', 'refund')),
    machine_id TEXT,
    order_id   TEXT,
    unit       BIGINT,
    slot       BIGINT,
    ref_id     BIGINT,
    status     TEXT,
    amount     BIGINT,
    stock      BIGINT,
    detail     TEXT,
    flag       BIGINT
);
ALTER SEQUENCE events_id_seq OWNED BY events.id;

CREATE FUNCTION events_take_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1986358884);
    NEW.id := nextval('events_id_seq');
    RETURN NEW;
END $$;
CREATE TRIGGER events_take_id BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_take_id();

-- The window a client can resume in: the newest 100000 events (EVENTS_WINDOW in events.h).
CREATE FUNCTION events_window() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events WHERE id <= NEW.id - 100000;
    RETURN NULL;
END $$;
CREATE TRIGGER events_window AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_window();

CREATE FUNCTION events_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, machine_id, order_id, status, detail)
    VALUES ('order', NEW.machine_id, NEW.id, NEW.status, NEW.failure_reason);
    RETURN NULL;
END $$;
CREATE TRIGGER events_order_new AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION events_order();
CREATE TRIGGER events_order_status AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION events_order();

CREATE FUNCTION events_unit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, machine_id, order_id, unit, slot, status, detail, flag)
    VALUES ('unit', NEW.machine_id, NEW.order_id, NEW.unit, NEW.slot_number, NEW.status,
            NEW.error_message, NEW.late_result);
    RETURN NULL;
END $$;
CREATE TRIGGER events_unit_new AFTER INSERT ON dispense_logs
    FOR EACH ROW EXECUTE FUNCTION events_unit();
CREATE TRIGGER events_unit_status AFTER UPDATE OF status, late_result ON dispense_logs
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
                       OR NEW.late_result IS DISTINCT FROM OLD.late_result)
    EXECUTE FUNCTION events_unit();

CREATE FUNCTION events_machine() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, machine_id, status, detail)
    VALUES ('machine', NEW.id, NEW.status, NEW.door);
    RETURN NULL;
END $$;
CREATE TRIGGER events_machine_new AFTER INSERT ON machines
    FOR EACH ROW EXECUTE FUNCTION events_machine();
CREATE TRIGGER events_machine_status AFTER UPDATE OF status ON machines
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION events_machine();

CREATE FUNCTION events_stock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, machine_id, slot, stock, flag)
    VALUES ('stock', NEW.machine_id, NEW.slot_number, NEW.current_stock, NEW.needs_inspection);
    RETURN NULL;
END $$;
CREATE TRIGGER events_stock_new AFTER INSERT ON slots
    FOR EACH ROW EXECUTE FUNCTION events_stock();
CREATE TRIGGER events_stock_count AFTER UPDATE OF current_stock, needs_inspection ON slots
    FOR EACH ROW WHEN (NEW.current_stock IS DISTINCT FROM OLD.current_stock
                       OR NEW.needs_inspection IS DISTINCT FROM OLD.needs_inspection)
    EXECUTE FUNCTION events_stock();

CREATE FUNCTION events_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, machine_id, order_id, slot, ref_id, status, detail)
    VALUES ('alert', NEW.machine_id, NEW.order_id,
            (SELECT slot_number FROM slots WHERE id = NEW.slot_id), NEW.id,
            CASE WHEN NEW.resolved_at IS NULL THEN 'OPEN' ELSE 'RESOLVED' END, NEW.kind);
    RETURN NULL;
END $$;
CREATE TRIGGER events_alert_new AFTER INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION events_alert();
CREATE TRIGGER events_alert_change AFTER UPDATE OF resolved_at, message ON alerts
    FOR EACH ROW WHEN (NEW.resolved_at IS DISTINCT FROM OLD.resolved_at
                       OR NEW.message IS DISTINCT FROM OLD.message)
    EXECUTE FUNCTION events_alert();

CREATE FUNCTION events_refund() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (kind, machine_id, order_id, ref_id, status, amount)
    VALUES ('refund', (SELECT machine_id FROM orders WHERE id = NEW.order_id), NEW.order_id,
            NEW.id, NEW.status, NEW.amount);
    RETURN NULL;
END $$;
CREATE TRIGGER events_refund_new AFTER INSERT ON refunds
    FOR EACH ROW EXECUTE FUNCTION events_refund();
CREATE TRIGGER events_refund_status AFTER UPDATE OF status, amount ON refunds
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
                       OR NEW.amount IS DISTINCT FROM OLD.amount)
    EXECUTE FUNCTION events_refund();
