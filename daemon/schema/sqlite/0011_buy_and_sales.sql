-- The purchase page and the sales view (docs/HTTP-API.md, "Purchase page" and "Sales").

-- A customer order's status_key: 16 random bytes in hex, answered once to whoever created the
-- order (POST /api/orders), who reads the order back with it (GET /api/buy/orders/{id}?key=).
-- NULL for operator orders and for customer orders made before this version.
ALTER TABLE orders ADD COLUMN status_key TEXT
    CHECK (status_key IS NULL OR length(status_key) = 32);

-- Sales read the dropped units of a range of days (domain/sales.c), of every machine or of
-- one. Only dropped units are indexed, so failed ones cost nothing; the WHERE is
-- UNIT_DROPPED_SQL (unit_status.h) word for word: SQLite uses a partial index only for a
-- query that repeats it.
CREATE INDEX dispense_logs_dropped ON dispense_logs (completed_at)
    WHERE (status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND drop_detected = 1));
CREATE INDEX dispense_logs_dropped_machine ON dispense_logs (machine_id, completed_at)
    WHERE (status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND drop_detected = 1));
