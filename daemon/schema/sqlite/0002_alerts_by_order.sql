-- The open alerts about one order: a refund-due alert follows its refund row (refunds.c),
-- restated when the amount changes and resolved when the refund is withdrawn.
CREATE INDEX alerts_open_order ON alerts (order_id, kind) WHERE resolved_at IS NULL;
