-- As ../sqlite/0016_check_lists.sql, which rebuilds events, dispense_logs and stock_logs so
-- that SQLite checks their lists of names without a temporary b-tree per statement.
-- PostgreSQL checks an IN list as it is: nothing changes, the versions stay in step.
SELECT 1;
