-- Schedule $1 fires at $2: the compare-and-swap on its last fire and the
-- insert of the fire's job, in one statement, so one fire makes one job
-- however many supervisors evaluate it; claimers are woken ($3). Returns
-- the new job's id, or no row when this fire was enqueued already.
WITH fired AS (
    UPDATE procvisor_schedules SET last_fire = $2
    WHERE name = $1 AND (last_fire IS NULL OR last_fire < $2)
    RETURNING queue, kind, args, priority, timeout_ms, max_attempts, backoff_ms, backoff_cap_ms,
              weight
), ins AS (
    INSERT INTO procvisor_jobs (queue, kind, args, priority, timeout_ms, max_attempts,
                                backoff_ms, backoff_cap_ms, weight)
    SELECT queue, kind, args, priority, timeout_ms, max_attempts, backoff_ms, backoff_cap_ms,
           weight
    FROM fired
    RETURNING id
), wake AS (
    SELECT pg_notify($3, '') FROM ins
)
SELECT id FROM ins, (SELECT count(*) FROM wake) AS w
