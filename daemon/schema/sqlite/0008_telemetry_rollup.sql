-- Telemetry history (docs/DESIGN.md "Telemetry"): the raw rows of `telemetry` are kept for
-- TELEMETRY_RETENTION_DAYS; each reading is also added, in the transaction that stores it, to
-- its machine's row of the hour it was received in, which is kept. So the history is exact
-- however far pruning lags, and pruning only deletes.
--
-- hour is the start of the hour of received_at (the daemon's wall clock, as every timestamp
-- here), in the same fixed-width form: '2026-11-27T09:00:00.000Z'.
-- Temperatures: temp_samples readings carried one; temp_min/temp_max in degrees C, and the
-- sum in hundredths of a degree (the codec keeps 0.01), an integer so the average is exact:
-- avg = temp_sum_centi / 100.0 / temp_samples.
-- door_openings: readings that say OPEN where the machine's previous telemetry reading that
-- named the door said CLOSED (transitions seen between samples; an opening shorter than the
-- telemetry interval is not seen, and status messages are not counted).
-- level_changes: reported slot levels that differ from the slot's previous sensor level
-- (a slot's first level, and slots vendd does not know, are not changes).
-- last_door: the door of the machine's newest telemetry that named one, carried from hour
-- to hour, so the next reading can tell an opening.
CREATE TABLE telemetry_hourly (
    machine_id     TEXT NOT NULL REFERENCES machines (id),
    hour           TEXT NOT NULL,
    samples        INTEGER NOT NULL CHECK (samples >= 1),
    temp_samples   INTEGER NOT NULL CHECK (temp_samples BETWEEN 0 AND samples),
    temp_min       REAL,
    temp_max       REAL,
    temp_sum_centi INTEGER NOT NULL,
    door_openings  INTEGER NOT NULL CHECK (door_openings >= 0),
    level_changes  INTEGER NOT NULL CHECK (level_changes >= 0),
    last_door      TEXT CHECK (last_door IN ('OPEN', 'CLOSED')),
    PRIMARY KEY (machine_id, hour)
);

-- The prune reads the oldest rows first: telemetry_machine (machine_id, received_at) cannot
-- serve a range over all machines.
CREATE INDEX telemetry_received ON telemetry (received_at);
