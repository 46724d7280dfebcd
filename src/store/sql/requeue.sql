-- The attempts that ended without ending their job (a retry, an eviction,
-- a release): each row still under the lease named ($1 ids, $2 leases) goes
-- back to waiting under a new lease, with a non-terminal event.
-- A cancel outlives the attempt: a row whose cancel was asked ends
-- `cancelled` here instead, in the same statement, so it never waits again.
-- Claimers are woken when a row is available at once, waiters when one
-- ended.
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[], $7::integer[], $8::integer[], $9::integer[])
        WITH ORDINALITY
        AS d(id, lease, event, state, error, delay_ms, uncount, evicted, pid, ord)
), held AS (
    -- Locked first, so that a cancel that commits meanwhile is seen.
    SELECT j.id, j.cancel_requested AS cancel
    FROM procvisor_jobs j JOIN d ON j.id = d.id AND j.lease = d.lease
    FOR UPDATE OF j
), up AS (
    UPDATE procvisor_jobs j
    SET state = d.state,
        run_at = CASE WHEN d.delay_ms IS NULL THEN j.run_at
                      ELSE now() + d.delay_ms * interval '1 millisecond' END,
        lease = j.lease + 1, supervisor = NULL, claimed_at = NULL, deadline_at = NULL,
        attempt = j.attempt - d.uncount, evictions = j.evictions + d.evicted
    FROM d JOIN held h ON h.id = d.id
    WHERE j.id = d.id AND NOT h.cancel
    RETURNING j.*
), gone AS (
    DELETE FROM procvisor_jobs j USING held h
    WHERE j.id = h.id AND h.cancel
    RETURNING j.*, procvisor_job_again(j) AS again
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease, attempt,
                                  evictions, reclaims, supervisor, worker_pid, error, job)
    SELECT id, event, terminal, queue, kind, priority, lease, attempt, evictions, reclaims,
           $10, pid, error, job
    FROM (
        SELECT u.id, d.event, false AS terminal, u.queue, u.kind, u.priority, d.lease,
               u.attempt + d.uncount AS attempt, u.evictions, u.reclaims, d.pid, d.error,
               NULL::jsonb AS job, d.ord
        FROM up u JOIN d ON d.id = u.id
        UNION ALL
        SELECT g.id, 'cancelled', true, g.queue, g.kind, g.priority, g.lease, g.attempt,
               g.evictions, g.reclaims, d.pid,
               'cancelled: its cancel was asked while it ran, and that attempt ended ('
                   || d.event || ': ' || coalesce(d.error, '') || ')',
               g.again,
               d.ord
        FROM gone g JOIN d ON d.id = g.id
    ) AS both_kinds
    ORDER BY ord
    RETURNING job_id
), wake AS (
    SELECT pg_notify($11, '') FROM (SELECT 1 FROM up WHERE state = 'available' LIMIT 1) AS hit
), ended AS (
    SELECT pg_notify($12, '') FROM (SELECT 1 FROM gone LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM ev) AS written, (SELECT count(*) FROM wake) AS woke,
       (SELECT count(*) FROM ended) AS ended
