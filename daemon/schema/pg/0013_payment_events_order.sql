-- As ../sqlite/0013_payment_events_order.sql: an order's payment notifications through an
-- index, not a scan of every notification.
CREATE INDEX payment_events_order ON payment_events (order_id, id);
