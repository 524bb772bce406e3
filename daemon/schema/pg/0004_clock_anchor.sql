-- As ../sqlite/0004_clock_anchor.sql: one row, id 1, given by the daemon.
CREATE TABLE clock_anchor (
    id         BIGINT PRIMARY KEY CHECK (id = 1),
    boot_id    TEXT NOT NULL CHECK (length(boot_id) BETWEEN 1 AND 64),
    offset_ms  BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);
