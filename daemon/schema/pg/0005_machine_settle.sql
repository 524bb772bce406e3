-- As ../sqlite/0005_machine_settle.sql.
ALTER TABLE machines ADD COLUMN settle BIGINT NOT NULL DEFAULT 0 CHECK (settle IN (0, 1));
