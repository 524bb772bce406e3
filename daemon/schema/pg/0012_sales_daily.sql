-- As ../sqlite/0012_sales_daily.sql, which says what the rollup holds and why: units dropped
-- and their revenue per UTC day, machine and product as sold, kept by triggers on
-- dispense_logs in the transaction that changes a unit. The WHEN clauses are the same as
-- SQLite's, with UNIT_DROPPED_SQL (unit_status.h) word for word over OLD and NEW and "IS" as
-- IS NOT DISTINCT FROM; SQLite's trigger bodies become two PL/pgSQL functions.
--
-- One difference in form, none in result: a unit held by several items of one product name
-- (SQLite's upsert adds one row at a time) is summed per name first, because PostgreSQL refuses
-- an INSERT ... ON CONFLICT that would update one row twice.
CREATE TABLE sales_daily (
    day          TEXT NOT NULL,                 -- 'YYYY-MM-DD', UTC: substr(completed_at, 1, 10)
    machine_id   TEXT NOT NULL,
    product_name TEXT NOT NULL,                 -- order_items.product_name; '' when none
    units        BIGINT NOT NULL CHECK (units >= 0),
    revenue      BIGINT NOT NULL,
    PRIMARY KEY (day, machine_id, product_name)
);
CREATE INDEX sales_daily_machine ON sales_daily (machine_id, day, product_name);

DROP INDEX dispense_logs_dropped;
DROP INDEX dispense_logs_dropped_machine;

-- Every dropped unit so far.
INSERT INTO sales_daily (day, machine_id, product_name, units, revenue)
    SELECT substr(d.completed_at, 1, 10), d.machine_id, COALESCE(i.product_name, ''), count(*),
           sum(i.unit_price)
      FROM dispense_logs d JOIN order_items i
        ON i.order_id = d.order_id AND d.unit >= i.first_unit AND d.unit < i.first_unit + i.quantity
     WHERE (status = 'SUCCEEDED' OR (late_result = 1 AND success = 1 AND drop_detected = 1))
       AND d.completed_at IS NOT NULL
     GROUP BY 1, 2, 3;

-- NEW's unit counts on NEW's day, machine and products.
CREATE FUNCTION sales_unit_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sales_daily AS s (day, machine_id, product_name, units, revenue)
        SELECT substr(NEW.completed_at, 1, 10), NEW.machine_id, COALESCE(i.product_name, ''),
               count(*), sum(i.unit_price)
          FROM order_items i
         WHERE i.order_id = NEW.order_id AND NEW.unit >= i.first_unit
           AND NEW.unit < i.first_unit + i.quantity
         GROUP BY 3
    ON CONFLICT (day, machine_id, product_name)
    DO UPDATE SET units = s.units + excluded.units, revenue = s.revenue + excluded.revenue;
    RETURN NULL;
END $$;

-- OLD's unit no longer counts where it did; rows left at 0 units go.
CREATE FUNCTION sales_unit_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sales_daily s
       SET units = s.units - o.n, revenue = s.revenue - o.price
      FROM (SELECT COALESCE(i.product_name, '') AS name, count(*) AS n,
                   COALESCE(sum(i.unit_price), 0) AS price
              FROM order_items i
             WHERE i.order_id = OLD.order_id AND OLD.unit >= i.first_unit
               AND OLD.unit < i.first_unit + i.quantity
             GROUP BY 1) o
     WHERE s.day = substr(OLD.completed_at, 1, 10) AND s.machine_id = OLD.machine_id
       AND s.product_name = o.name;
    DELETE FROM sales_daily
     WHERE day = substr(OLD.completed_at, 1, 10) AND machine_id = OLD.machine_id AND units = 0;
    RETURN NULL;
END $$;

CREATE TRIGGER sales_unit_new AFTER INSERT ON dispense_logs
    FOR EACH ROW
    WHEN ((NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                        AND NEW.drop_detected = 1))
          AND NEW.completed_at IS NOT NULL)
    EXECUTE FUNCTION sales_unit_in();

-- The row counted before the change, and it no longer counts there: take it out.
CREATE TRIGGER sales_unit_out
    AFTER UPDATE OF status, late_result, success, drop_detected, completed_at, machine_id,
                    order_id, unit ON dispense_logs
    FOR EACH ROW
    WHEN ((OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                        AND OLD.drop_detected = 1))
          AND OLD.completed_at IS NOT NULL
          AND NOT COALESCE(((NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                                 AND NEW.drop_detected = 1))
                   AND NEW.completed_at IS NOT NULL
                   AND substr(NEW.completed_at, 1, 10) = substr(OLD.completed_at, 1, 10)
                   AND NEW.machine_id IS NOT DISTINCT FROM OLD.machine_id
                   AND NEW.order_id IS NOT DISTINCT FROM OLD.order_id
                   AND NEW.unit IS NOT DISTINCT FROM OLD.unit), false))
    EXECUTE FUNCTION sales_unit_out();

-- The row counts after the change, and did not count there before: put it in.
CREATE TRIGGER sales_unit_in
    AFTER UPDATE OF status, late_result, success, drop_detected, completed_at, machine_id,
                    order_id, unit ON dispense_logs
    FOR EACH ROW
    WHEN ((NEW.status = 'SUCCEEDED' OR (NEW.late_result = 1 AND NEW.success = 1
                                        AND NEW.drop_detected = 1))
          AND NEW.completed_at IS NOT NULL
          AND NOT COALESCE(((OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                                 AND OLD.drop_detected = 1))
                   AND OLD.completed_at IS NOT NULL
                   AND substr(NEW.completed_at, 1, 10) = substr(OLD.completed_at, 1, 10)
                   AND NEW.machine_id IS NOT DISTINCT FROM OLD.machine_id
                   AND NEW.order_id IS NOT DISTINCT FROM OLD.order_id
                   AND NEW.unit IS NOT DISTINCT FROM OLD.unit), false))
    EXECUTE FUNCTION sales_unit_in();

-- Units are not deleted today; one that is stops counting.
CREATE TRIGGER sales_unit_gone AFTER DELETE ON dispense_logs
    FOR EACH ROW
    WHEN ((OLD.status = 'SUCCEEDED' OR (OLD.late_result = 1 AND OLD.success = 1
                                        AND OLD.drop_detected = 1))
          AND OLD.completed_at IS NOT NULL)
    EXECUTE FUNCTION sales_unit_out();
