-- As ../sqlite/0014_offline_and_low_stock.sql: when a machine went OFFLINE while its
-- MACHINE_OFFLINE alert is not raised yet, the index the sweep reads, and one open
-- MACHINE_OFFLINE alert per machine.
ALTER TABLE machines ADD COLUMN offline_alert_since TEXT;
CREATE INDEX machines_offline_alert ON machines (offline_alert_since)
    WHERE offline_alert_since IS NOT NULL;
UPDATE machines SET offline_alert_since = updated_at
    WHERE status = 'OFFLINE' AND last_seen IS NOT NULL;
CREATE UNIQUE INDEX alerts_open_machine ON alerts (machine_id, kind)
    WHERE resolved_at IS NULL AND kind = 'MACHINE_OFFLINE';
