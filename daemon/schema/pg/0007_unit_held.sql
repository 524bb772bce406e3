-- As ../sqlite/0007_unit_held.sql (the predicate is repeated word for word in dispense.c).
DROP INDEX dispense_logs_one_in_flight;
CREATE UNIQUE INDEX dispense_logs_one_in_flight ON dispense_logs (machine_id)
    WHERE status = 'SENT' OR (status = 'UNSETTLED' AND deadline_at IS NOT NULL);
