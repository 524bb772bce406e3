-- The list endpoints page by key (api/page.c: WHERE (key) < (cursor) ORDER BY key LIMIT n+1),
-- newest first. Each needs an index in its sort order, or SQLite sorts the whole table for
-- every page (orders: 49 ms for the first page of 50,000; with these, about 1 ms).
CREATE INDEX orders_created ON orders (created_at, id);
DROP INDEX orders_status;
CREATE INDEX orders_status ON orders (status, created_at, id);
DROP INDEX orders_machine;
CREATE INDEX orders_machine ON orders (machine_id, created_at, id);
CREATE INDEX alerts_created ON alerts (created_at, id);
CREATE INDEX alerts_machine ON alerts (machine_id, created_at, id);
