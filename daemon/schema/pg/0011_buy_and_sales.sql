-- As ../sqlite/0011_buy_and_sales.sql.
ALTER TABLE orders ADD COLUMN status_key TEXT
    CHECK (status_key IS NULL OR length(status_key) = 32);

CREATE INDEX dispense_logs_dropped ON dispense_logs (completed_at)
    WHERE (status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND drop_detected = 1));
CREATE INDEX dispense_logs_dropped_machine ON dispense_logs (machine_id, completed_at)
    WHERE (status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND drop_detected = 1));
