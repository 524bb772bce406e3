-- vendd schema, version 1. Names follow the integration guide so its SQL checks run unchanged.
-- Conventions (daemon/src/db.h): times are TEXT, ISO 8601 UTC with milliseconds, fixed width,
-- written by the daemon, so text order is time order; money is INTEGER rupiah; booleans 0/1.
-- Every status column has a CHECK with its full set; every "at most once" rule is a unique key.

CREATE TABLE machines (
    id          TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 32),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    location    TEXT CHECK (length(location) <= 200),
    status      TEXT NOT NULL DEFAULT 'OFFLINE'
                CHECK (status IN ('ONLINE', 'OFFLINE', 'MAINTENANCE')),
    door        TEXT CHECK (door IN ('OPEN', 'CLOSED')),
    rssi        INTEGER,
    fw          TEXT,
    temperature REAL,
    last_seen   TEXT,
    config      TEXT,                          -- last config pushed, JSON
    mqtt_username TEXT UNIQUE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    price       INTEGER NOT NULL CHECK (price >= 0),
    is_active   INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE slots (
    id                INTEGER PRIMARY KEY,
    machine_id        TEXT NOT NULL REFERENCES machines (id),
    slot_number       INTEGER NOT NULL CHECK (slot_number BETWEEN 1 AND 255),
    product_id        INTEGER REFERENCES products (id),
    capacity          INTEGER NOT NULL CHECK (capacity BETWEEN 0 AND 1000),
    current_stock     INTEGER NOT NULL DEFAULT 0
                      CHECK (current_stock >= 0 AND current_stock <= capacity),
    price_override    INTEGER CHECK (price_override >= 0),
    motor_duration_ms INTEGER NOT NULL DEFAULT 1500
                      CHECK (motor_duration_ms BETWEEN 100 AND 60000),
    sensor_level      TEXT CHECK (sensor_level IN ('FULL', 'HIGH', 'MEDIUM', 'LOW', 'EMPTY')),
    sensor_at         TEXT,
    needs_inspection  INTEGER NOT NULL DEFAULT 0 CHECK (needs_inspection IN (0, 1)),
    version           INTEGER NOT NULL DEFAULT 1,   -- optimistic concurrency for restock/audit
    is_active         INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (machine_id, slot_number)
);

CREATE TABLE orders (
    id              TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    machine_id      TEXT NOT NULL REFERENCES machines (id),
    slot_id         INTEGER REFERENCES slots (id),        -- first item's slot, as in the guide
    product_id      INTEGER REFERENCES products (id),
    quantity        INTEGER NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 1 AND 100),
    total_amount    INTEGER NOT NULL CHECK (total_amount >= 0),
    status          TEXT NOT NULL DEFAULT 'PENDING'
                    CHECK (status IN ('PENDING', 'PAID', 'DISPENSING', 'COMPLETED', 'FAILED',
                                      'REFUNDED', 'EXPIRED', 'CANCELLED')),
    origin          TEXT NOT NULL CHECK (origin IN ('customer', 'operator')),
    payment_method  TEXT NOT NULL CHECK (payment_method IN ('qris', 'snap', 'manual')),
    failure_reason  TEXT,
    payment_url     TEXT,
    payment_token   TEXT,
    expires_at      TEXT,
    paid_at         TEXT,
    dispensed_at    TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX orders_status ON orders (status);
CREATE INDEX orders_machine ON orders (machine_id, created_at);

-- One row per ordered line; units are numbered 1..orders.quantity across the whole order.
CREATE TABLE order_items (
    id           INTEGER PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    position     INTEGER NOT NULL CHECK (position >= 1),
    slot_id      INTEGER NOT NULL REFERENCES slots (id),
    product_id   INTEGER REFERENCES products (id),
    product_name TEXT,
    quantity     INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price   INTEGER NOT NULL CHECK (unit_price >= 0),
    total        INTEGER NOT NULL CHECK (total = unit_price * quantity),
    first_unit   INTEGER NOT NULL CHECK (first_unit >= 1),
    UNIQUE (order_id, position)
);

CREATE TABLE payments (
    id                     INTEGER PRIMARY KEY,
    order_id               TEXT NOT NULL REFERENCES orders (id),
    gateway_name           TEXT NOT NULL CHECK (gateway_name IN ('midtrans', 'manual')),
    gateway_transaction_id TEXT,
    amount                 INTEGER NOT NULL CHECK (amount >= 0),
    status                 TEXT NOT NULL DEFAULT 'PENDING'
                           CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED', 'EXPIRED')),
    payment_type           TEXT,
    processed_at           TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    UNIQUE (gateway_name, gateway_transaction_id)
);
CREATE INDEX payments_order ON payments (order_id);

-- Every notification, raw, for audit; a replay of the same notification is one row.
CREATE TABLE payment_events (
    id                 INTEGER PRIMARY KEY,
    order_id           TEXT,
    transaction_id     TEXT,
    transaction_status TEXT,
    status_code        TEXT,
    signature_ok       INTEGER NOT NULL CHECK (signature_ok IN (0, 1)),
    outcome            TEXT NOT NULL,
    raw                TEXT NOT NULL,
    dedupe_key         TEXT NOT NULL UNIQUE,      -- sha256 of the raw body
    received_at        TEXT NOT NULL
);

CREATE TABLE dispense_logs (
    id              INTEGER PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    unit            INTEGER NOT NULL DEFAULT 1 CHECK (unit >= 1),
    machine_id      TEXT NOT NULL REFERENCES machines (id),
    slot_id         INTEGER NOT NULL REFERENCES slots (id),
    slot_number     INTEGER NOT NULL,
    timeout_ms      INTEGER NOT NULL CHECK (timeout_ms > 0),
    status          TEXT NOT NULL
                    CHECK (status IN ('QUEUED', 'SENT', 'SUCCEEDED', 'FAILED', 'NO_RESULT')),
    dispatch_by     TEXT,        -- QUEUED: fail MACHINE_UNREACHABLE if not sent by then
    command_sent_at TEXT,
    deadline_at     TEXT,        -- SENT: fail with NO_RESULT after this
    completed_at    TEXT,
    duration_ms     INTEGER,
    success         INTEGER CHECK (success IN (0, 1)),
    drop_detected   INTEGER CHECK (drop_detected IN (0, 1)),
    error_message   TEXT,
    late_result     INTEGER NOT NULL DEFAULT 0 CHECK (late_result IN (0, 1)),
    created_at      TEXT NOT NULL,
    UNIQUE (order_id, unit)      -- at most one dispense per ordered unit
);
CREATE INDEX dispense_logs_machine ON dispense_logs (machine_id, command_sent_at);
-- The open units, small however long the history: the next unit to send per machine, the
-- dispatch limits, and the machines with work waiting. (SQLite uses a partial index only for
-- a query that repeats its WHERE term, so it is status = 'QUEUED', not an IN list.)
CREATE INDEX dispense_logs_queued ON dispense_logs (machine_id, id) WHERE status = 'QUEUED';
-- One dispense in flight per machine.
CREATE UNIQUE INDEX dispense_logs_one_in_flight ON dispense_logs (machine_id) WHERE status = 'SENT';

CREATE TABLE stock_logs (
    id               INTEGER PRIMARY KEY,
    machine_id       TEXT NOT NULL REFERENCES machines (id),
    slot_id          INTEGER NOT NULL REFERENCES slots (id),
    change_type      TEXT NOT NULL CHECK (change_type IN ('RESTOCK', 'DISPENSE', 'MANUAL_ADJUST', 'AUDIT')),
    quantity_before  INTEGER NOT NULL CHECK (quantity_before >= 0),
    quantity_after   INTEGER NOT NULL CHECK (quantity_after >= 0),
    quantity_change  INTEGER NOT NULL CHECK (quantity_change = quantity_after - quantity_before),
    reason           TEXT,
    performed_by     TEXT,
    order_id         TEXT REFERENCES orders (id),
    unit             INTEGER,
    created_at       TEXT NOT NULL
);
CREATE INDEX stock_logs_created ON stock_logs (created_at);
-- A unit leaves the stock once.
CREATE UNIQUE INDEX stock_logs_dispense_once ON stock_logs (order_id, unit) WHERE change_type = 'DISPENSE';

CREATE TABLE telemetry (
    id          INTEGER PRIMARY KEY,
    machine_id  TEXT NOT NULL REFERENCES machines (id),
    device_time TEXT,            -- the machine's own timestamp, as it sent it (RFC 3339, UTC)
    temperature REAL,
    door        TEXT,
    data        TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX telemetry_machine ON telemetry (machine_id, received_at);

CREATE TABLE refunds (
    id          INTEGER PRIMARY KEY,
    order_id    TEXT NOT NULL REFERENCES orders (id),
    refund_key  TEXT NOT NULL UNIQUE,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('QUEUED', 'SENT', 'DONE', 'FAILED', 'CANCELLED')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    machine_id  TEXT,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    order_id    TEXT,
    slot_id     INTEGER REFERENCES slots (id),  -- alerts about one slot (STOCK_SENSOR_MISMATCH)
    created_at  TEXT NOT NULL,
    resolved_at TEXT
);
CREATE INDEX alerts_open ON alerts (created_at) WHERE resolved_at IS NULL;
-- At most one open alert of a kind per slot, so a repeated reading does not pile them up.
CREATE UNIQUE INDEX alerts_open_slot ON alerts (slot_id, kind)
    WHERE resolved_at IS NULL AND slot_id IS NOT NULL;
