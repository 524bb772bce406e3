-- The deadline clock's offset from the monotonic clock, with the boot it belongs to: a vendd
-- restarted on the same boot goes on with the same clock, so a wall-clock step between the two
-- processes neither postpones nor hastens the limits stored by the first (deadline.c).
CREATE TABLE clock_anchor (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    boot_id    TEXT NOT NULL CHECK (length(boot_id) BETWEEN 1 AND 64),
    offset_ms  INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
