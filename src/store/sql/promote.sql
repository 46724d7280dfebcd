-- Delayed jobs and retries that came due become available (up to 10,000 at
-- a time); claimers are woken ($1) if any did. Returns how many.
WITH due AS (
    SELECT id FROM procvisor_jobs
    WHERE state IN ('scheduled', 'retryable') AND run_at <= now()
    ORDER BY run_at LIMIT 10000
    FOR UPDATE SKIP LOCKED
), up AS (
    UPDATE procvisor_jobs j SET state = 'available' FROM due WHERE j.id = due.id
    RETURNING 1
), wake AS (
    SELECT pg_notify($1, '') FROM (SELECT 1 FROM up LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM up) AS promoted, (SELECT count(*) FROM wake) AS woke
