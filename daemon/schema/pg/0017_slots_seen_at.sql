-- As ../sqlite/0017_slots_seen_at.sql: when a machine last sent a reading that named every
-- slot it has.
ALTER TABLE machines ADD COLUMN slots_seen_at TEXT;
