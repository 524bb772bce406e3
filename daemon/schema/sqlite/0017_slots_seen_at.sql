-- When a machine last sent a reading that named every slot it has (telemetry.c): such a
-- reading moves this one column instead of each slot's sensor_at, which was a write per
-- slot per reading, a tenth of a telemetry message's CPU. A slot's time as the API shows it
-- is the later of its own sensor_at (a level that changed, or a reading of some slots only)
-- and this, for a slot that existed then (TELEMETRY_SENSOR_AT_SQL, telemetry.h).
ALTER TABLE machines ADD COLUMN slots_seen_at TEXT;
