-- New jobs from parallel arrays ($1 queues, $2 kinds, $3 JSON args, $4
-- priorities, $5 timeouts in ms, $6 most attempts, $7 and $8 backoff and its
-- cap in ms, $9 delays in ms or $10 due times, $11 weights). A job due in
-- the future is `scheduled`, else `available`; claimers are woken ($12)
-- when one is available at once. Returns the new ids in order.
WITH rows AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bigint[],
                         $6::integer[], $7::bigint[], $8::bigint[], $9::bigint[], $10::timestamptz[],
                         $11::float8[])
        AS r(queue, kind, args, priority, timeout_ms, max_attempts, backoff_ms, backoff_cap_ms,
             delay_ms, at, weight)
), due AS (
    SELECT *, COALESCE(at, now() + COALESCE(delay_ms, 0) * interval '1 millisecond') AS run_at
    FROM rows
), ins AS (
    INSERT INTO procvisor_jobs (queue, kind, args, priority, timeout_ms, max_attempts,
                                backoff_ms, backoff_cap_ms, run_at, weight, state)
    SELECT queue, kind, args::jsonb, priority, timeout_ms, max_attempts, backoff_ms,
           backoff_cap_ms, run_at, weight,
           CASE WHEN run_at > now() THEN 'scheduled' ELSE 'available' END
    FROM due
    RETURNING id, state
), wake AS (
    SELECT pg_notify($12, '') FROM (SELECT 1 FROM ins WHERE state = 'available' LIMIT 1) AS hit
)
SELECT id FROM ins, (SELECT count(*) FROM wake) AS w ORDER BY id
