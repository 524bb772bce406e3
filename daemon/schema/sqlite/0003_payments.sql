-- Customer orders paid through Midtrans: the QR to show, the reconciliation schedule, stock
-- promised to open orders kept as a count per slot, and refunds that go out by themselves.

-- What the customer pays with (QRIS charge) and when vendd next asks Midtrans about it.
ALTER TABLE orders ADD COLUMN payment_qr TEXT;
ALTER TABLE orders ADD COLUMN next_check_at TEXT;
-- The open orders, small however long the history: expiry and reconciliation walk these.
CREATE INDEX orders_pending ON orders (next_check_at) WHERE status = 'PENDING';
CREATE INDEX orders_pending_machine ON orders (machine_id) WHERE status = 'PENDING';

-- Units promised to open orders and not yet dropped or failed: the stock check reads one row
-- instead of summing every open order of the slot (stock.c keeps it; the invariant is
-- reserved = the units of PENDING and PAID orders + the QUEUED and SENT units).
ALTER TABLE slots ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0);
UPDATE slots SET reserved =
    (SELECT COALESCE(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id
      WHERE i.slot_id = slots.id AND o.status IN ('PENDING', 'PAID'))
  + (SELECT count(*) FROM dispense_logs l
      WHERE l.slot_id = slots.id AND l.status IN ('QUEUED', 'SENT'));

-- Refunds: QUEUED waits to be sent (or retried), SENT is in Midtrans's hands, DONE is
-- refunded, OPERATOR waits for a person (refused by Midtrans, or no gateway to send it to),
-- CANCELLED was withdrawn before it went out. attempts counts the calls made with refund_key;
-- a refund with attempts > 0 may have gone out and is never withdrawn silently.
CREATE TABLE refunds_new (
    id              INTEGER PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    refund_key      TEXT NOT NULL UNIQUE,
    amount          INTEGER NOT NULL CHECK (amount >= 0),
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('QUEUED', 'SENT', 'DONE', 'OPERATOR', 'CANCELLED')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT,
    last_error      TEXT,
    note            TEXT,
    done_at         TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
INSERT INTO refunds_new (id, order_id, refund_key, amount, reason, status, created_at, updated_at)
    SELECT id, order_id, refund_key, amount, reason,
           CASE status WHEN 'FAILED' THEN 'OPERATOR' ELSE status END, created_at, updated_at
      FROM refunds;
DROP TABLE refunds;
ALTER TABLE refunds_new RENAME TO refunds;
CREATE INDEX refunds_order ON refunds (order_id);
CREATE INDEX refunds_queued ON refunds (next_attempt_at) WHERE status = 'QUEUED';
