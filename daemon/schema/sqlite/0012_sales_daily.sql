-- The sales rollup (docs/HTTP-API.md "Sales", domain/sales.c): units dropped and their revenue
-- per UTC day, machine and product as sold. GET /api/sales reads these rows, at most one per
-- (day, machine, product), instead of grouping every dropped unit of the range on the event
-- loop (a year of a 100-machine fleet: about a million units, seconds of work per request).
--
-- The rollup is kept by triggers on dispense_logs, so it changes in the very transaction that
-- changes a unit, whichever code path does it (a result, a late result, a machine's or an
-- operator's settle, a contradiction, a manual order, a row written by hand): a unit counts
-- exactly while it satisfies UNIT_DROPPED_SQL (unit_status.h), repeated word for word below,
-- on the day of its completed_at, once per order item whose units hold it, at that item's
-- unit_price. A unit that stops counting, or whose day changes, is taken out of its old row
-- (rows that reach 0 units are deleted). A dropped unit without completed_at has no day and is
-- not counted, as the range query it replaces did not count it.
--
-- A migration that rebuilds dispense_logs drops these triggers with it and must create them
-- again. An order's items are written before its units and never changed.
CREATE TABLE sales_daily (
    day          TEXT NOT NULL,                 -- 'YYYY-MM-DD', UTC: substr(completed_at, 1, 10)
    machine_id   TEXT NOT NULL,
    product_name TEXT NOT NULL,                 -- order_items.product_name; '' when none
    units        INTEGER NOT NULL CHECK (units >= 0),
    revenue      INTEGER NOT NULL,
    PRIMARY KEY (day, machine_id, product_name)
);
-- One machine's range, in the answer's order.
CREATE INDEX sales_daily_machine ON sales_daily (machine_id, day, product_name);

-- Migration 0011's partial indexes of dropped units served only the GROUP BY replaced here.
DROP INDEX dispense_logs_dropped;
DROP INDEX dispense_logs_dropped_machine;

-- Every dropped unit so far ("WHERE true" lets SQLite parse the upsert after a SELECT).
INSERT INTO sales_daily (day, machine_id, product_name, units, revenue)
    SELECT substr(d.completed_at, 1, 10), d.machine_id, COALESCE(i.product_name, ''), count(*),
           sum(i.unit_price)
      FROM dispense_logs d JOIN order_items i
        ON i.order_id = d.order_id AND d.unit >= i.first_unit AND d.unit < i.first_unit + i.quantity
     WHERE (status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND drop_detected = 1))
       AND d.completed_at IS NOT NULL
     GROUP BY 1, 2, 3;

CREATE TRIGGER sales_unit_new AFTER INSERT ON dispense_logs
WHEN (NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                   AND NEW.drop_detected = 1))
 AND NEW.completed_at IS NOT NULL BEGIN
    INSERT INTO sales_daily (day, machine_id, product_name, units, revenue)
        SELECT substr(NEW.completed_at, 1, 10), NEW.machine_id, COALESCE(i.product_name, ''), 1,
               i.unit_price
          FROM order_items i
         WHERE i.order_id = NEW.order_id AND NEW.unit >= i.first_unit
           AND NEW.unit < i.first_unit + i.quantity
    ON CONFLICT (day, machine_id, product_name)
    DO UPDATE SET units = units + excluded.units, revenue = revenue + excluded.revenue;
END;

-- The row counted before the change, and it no longer counts there: take it out.
CREATE TRIGGER sales_unit_out
AFTER UPDATE OF status, late_result, success, drop_detected, completed_at, machine_id, order_id,
                unit ON dispense_logs
WHEN (OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                   AND OLD.drop_detected = 1))
 AND OLD.completed_at IS NOT NULL
 AND NOT COALESCE(((NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                        AND NEW.drop_detected = 1))
          AND NEW.completed_at IS NOT NULL
          AND substr(NEW.completed_at, 1, 10) = substr(OLD.completed_at, 1, 10)
          AND NEW.machine_id IS OLD.machine_id AND NEW.order_id IS OLD.order_id
          AND NEW.unit IS OLD.unit), 0) BEGIN
    UPDATE sales_daily
       SET units = units - (SELECT count(*) FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity
                               AND COALESCE(i.product_name, '') = sales_daily.product_name),
           revenue = revenue - (SELECT COALESCE(sum(i.unit_price), 0) FROM order_items i
                                 WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                                   AND OLD.unit < i.first_unit + i.quantity
                                   AND COALESCE(i.product_name, '') = sales_daily.product_name)
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id
       AND product_name IN (SELECT COALESCE(i.product_name, '') FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity);
    DELETE FROM sales_daily
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id AND units = 0;
END;

-- The row counts after the change, and did not count there before: put it in.
CREATE TRIGGER sales_unit_in
AFTER UPDATE OF status, late_result, success, drop_detected, completed_at, machine_id, order_id,
                unit ON dispense_logs
WHEN (NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                   AND NEW.drop_detected = 1))
 AND NEW.completed_at IS NOT NULL
 AND NOT COALESCE(((OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                        AND OLD.drop_detected = 1))
          AND OLD.completed_at IS NOT NULL
          AND substr(NEW.completed_at, 1, 10) = substr(OLD.completed_at, 1, 10)
          AND NEW.machine_id IS OLD.machine_id AND NEW.order_id IS OLD.order_id
          AND NEW.unit IS OLD.unit), 0) BEGIN
    INSERT INTO sales_daily (day, machine_id, product_name, units, revenue)
        SELECT substr(NEW.completed_at, 1, 10), NEW.machine_id, COALESCE(i.product_name, ''), 1,
               i.unit_price
          FROM order_items i
         WHERE i.order_id = NEW.order_id AND NEW.unit >= i.first_unit
           AND NEW.unit < i.first_unit + i.quantity
    ON CONFLICT (day, machine_id, product_name)
    DO UPDATE SET units = units + excluded.units, revenue = revenue + excluded.revenue;
END;

-- Units are not deleted today; one that is stops counting.
CREATE TRIGGER sales_unit_gone AFTER DELETE ON dispense_logs
WHEN (OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                   AND OLD.drop_detected = 1))
 AND OLD.completed_at IS NOT NULL BEGIN
    UPDATE sales_daily
       SET units = units - (SELECT count(*) FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity
                               AND COALESCE(i.product_name, '') = sales_daily.product_name),
           revenue = revenue - (SELECT COALESCE(sum(i.unit_price), 0) FROM order_items i
                                 WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                                   AND OLD.unit < i.first_unit + i.quantity
                                   AND COALESCE(i.product_name, '') = sales_daily.product_name)
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id
       AND product_name IN (SELECT COALESCE(i.product_name, '') FROM order_items i
                             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
                               AND OLD.unit < i.first_unit + i.quantity);
    DELETE FROM sales_daily
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id AND units = 0;
END;
