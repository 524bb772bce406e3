-- As ../sqlite/0015_unconfirmed_end.sql: the ends Midtrans has not confirmed, called again
-- until it does.
UPDATE orders SET next_check_at = NULL WHERE status <> 'PENDING' AND next_check_at IS NOT NULL;
CREATE INDEX orders_unconfirmed ON orders (next_check_at)
    WHERE next_check_at IS NOT NULL AND status <> 'PENDING';
