-- SPEC §8: the alerts of an offline machine and of a slot running low (offline.c, stock.c).
--
-- When a machine's presence turned OFFLINE, while no MACHINE_OFFLINE alert has been raised for
-- it: set by the status (or will) that turned it OFFLINE, cleared when it turns ONLINE or when
-- the alert is raised, so an alert an operator resolved by hand is not raised again until the
-- machine has been back. A machine registered and never seen keeps NULL: nothing to miss.
ALTER TABLE machines ADD COLUMN offline_alert_since TEXT;
-- The sweep reads the machines due, oldest first, and only those, however large the fleet.
CREATE INDEX machines_offline_alert ON machines (offline_alert_since)
    WHERE offline_alert_since IS NOT NULL;
-- A machine seen once and OFFLINE at the upgrade is alerted like one that went just now.
UPDATE machines SET offline_alert_since = updated_at
    WHERE status = 'OFFLINE' AND last_seen IS NOT NULL;
-- At most one open MACHINE_OFFLINE alert per machine (alerts_open_slot does this for slots).
CREATE UNIQUE INDEX alerts_open_machine ON alerts (machine_id, kind)
    WHERE resolved_at IS NULL AND kind = 'MACHINE_OFFLINE';
