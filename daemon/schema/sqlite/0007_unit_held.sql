-- A unit held for an operator (UNSETTLED with deadline_at NULL: the machine answered
-- POWER_LOSS, its journal can say no more) is not in flight: the machine is idle and the next
-- unit may go out. A unit UNSETTLED and still asked about (deadline_at set) may still be
-- running, and stays in flight. The predicate is repeated word for word in dispense.c.
DROP INDEX dispense_logs_one_in_flight;
CREATE UNIQUE INDEX dispense_logs_one_in_flight ON dispense_logs (machine_id)
    WHERE status = 'SENT' OR (status = 'UNSETTLED' AND deadline_at IS NOT NULL);
