-- As ../sqlite/0002_alerts_by_order.sql.
CREATE INDEX alerts_open_order ON alerts (order_id, kind) WHERE resolved_at IS NULL;
