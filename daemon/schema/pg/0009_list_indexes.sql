-- As ../sqlite/0009_list_indexes.sql: each list endpoint's sort order has its index.
CREATE INDEX orders_created ON orders (created_at, id);
DROP INDEX orders_status;
CREATE INDEX orders_status ON orders (status, created_at, id);
DROP INDEX orders_machine;
CREATE INDEX orders_machine ON orders (machine_id, created_at, id);
CREATE INDEX alerts_created ON alerts (created_at, id);
CREATE INDEX alerts_machine ON alerts (machine_id, created_at, id);
