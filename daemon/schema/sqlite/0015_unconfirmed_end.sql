-- An order that ended here (CANCELLED, EXPIRED) and whose end Midtrans has not confirmed keeps
-- next_check_at: until Midtrans confirms, the customer can still pay there, and a payment whose
-- notification is lost would never be refunded. checkout.c repeats the cancel or expire call at
-- that time until Midtrans answers for good. Every move out of PENDING clears next_check_at,
-- so outside PENDING it is set only on such an end, and the index holds only those. (Ends
-- before this version had no such schedule.)
UPDATE orders SET next_check_at = NULL WHERE status <> 'PENDING' AND next_check_at IS NOT NULL;
CREATE INDEX orders_unconfirmed ON orders (next_check_at)
    WHERE next_check_at IS NOT NULL AND status <> 'PENDING';
