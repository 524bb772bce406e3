-- As ../sqlite/0008_telemetry_rollup.sql, which says what each column holds.
CREATE TABLE telemetry_hourly (
    machine_id     TEXT NOT NULL REFERENCES machines (id),
    hour           TEXT NOT NULL,
    samples        BIGINT NOT NULL CHECK (samples >= 1),
    temp_samples   BIGINT NOT NULL CHECK (temp_samples BETWEEN 0 AND samples),
    temp_min       DOUBLE PRECISION,
    temp_max       DOUBLE PRECISION,
    temp_sum_centi BIGINT NOT NULL,
    door_openings  BIGINT NOT NULL CHECK (door_openings >= 0),
    level_changes  BIGINT NOT NULL CHECK (level_changes >= 0),
    last_door      TEXT CHECK (last_door IN ('OPEN', 'CLOSED')),
    PRIMARY KEY (machine_id, hour)
);

CREATE INDEX telemetry_received ON telemetry (received_at);
