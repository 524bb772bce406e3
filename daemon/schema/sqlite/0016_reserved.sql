-- Placeholder for migration 0016, which another branch takes: delete this file when that
-- branch is merged (the versions must have no gap). It changes nothing.
SELECT 1;
