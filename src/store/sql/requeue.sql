-- Attempts that leave their job waiting again (a retry, a preemption, a
-- release, a reclaim): each row still under the lease named ($1 ids, $2
-- leases) goes back to the state $4 (`available` or `retryable`) under a
-- new lease, due in $6 ms (NULL: it keeps its due time), with the
-- non-terminal event $3 and error $5. $7 holds what else changes, as bits:
-- 1 the attempt does not count, 2 it was an eviction, 4 a reclaim (the
-- job's counts of each go up by one). $8 is the worker's pid.
-- A cancel outlives the attempt: a row whose cancel was asked ends
-- `cancelled` here instead, in the same statement, naming who asked, so it
-- never waits again. Claimers are woken ($9) when a row is available at
-- once, waiters ($10) when one ended. Returns how many rows were still under
-- their lease (the rest were taken over: stale).
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[], $7::integer[], $8::integer[])
        WITH ORDINALITY
        AS d(id, lease, event, state, error, delay_ms, bits, pid, ord)
), held AS (
    -- Locked first, so that a cancel that commits meanwhile is seen.
    SELECT j.id, j.supervisor, j.cancel_requested AS cancel, j.cancel_requested_by AS cancel_by
    FROM procvisor_jobs j JOIN d ON j.id = d.id AND j.lease = d.lease
    FOR UPDATE OF j
), up AS (
    UPDATE procvisor_jobs j
    SET state = d.state,
        run_at = CASE WHEN d.delay_ms IS NULL THEN j.run_at
                      ELSE now() + d.delay_ms * interval '1 millisecond' END,
        lease = j.lease + 1, supervisor = NULL, claimed_at = NULL, deadline_at = NULL,
        attempt = j.attempt - (d.bits & 1),
        evictions = j.evictions + ((d.bits >> 1) & 1),
        reclaims = j.reclaims + ((d.bits >> 2) & 1)
    FROM d JOIN held h ON h.id = d.id
    WHERE j.id = d.id AND NOT h.cancel
    RETURNING j.id, j.state, j.queue, j.kind, j.priority, d.lease,
              j.attempt + (d.bits & 1) AS attempt, j.evictions, j.reclaims, h.supervisor,
              d.event, d.error, d.pid, d.ord
), gone AS (
    DELETE FROM procvisor_jobs j USING d JOIN held h ON h.id = d.id
    WHERE j.id = d.id AND h.cancel
    RETURNING j.id, j.queue, j.kind, j.priority, j.lease, j.attempt, j.evictions, j.reclaims,
              j.supervisor, d.event, d.error, d.pid, d.ord, h.cancel_by,
              procvisor_job_again(j) AS again
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease, attempt,
                                  evictions, reclaims, supervisor, worker_pid, error, job)
    SELECT id, event, terminal, queue, kind, priority, lease, attempt, evictions, reclaims,
           supervisor, pid, error, job
    FROM (
        SELECT u.id, u.event, false AS terminal, u.queue, u.kind, u.priority, u.lease,
               u.attempt, u.evictions, u.reclaims, u.supervisor, u.pid, u.error,
               NULL::jsonb AS job, u.ord
        FROM up u
        UNION ALL
        SELECT g.id, 'cancelled', true, g.queue, g.kind, g.priority, g.lease, g.attempt,
               g.evictions, g.reclaims, g.supervisor, g.pid,
               'cancelled (asked by ' || coalesce(g.cancel_by, 'an operator')
                   || ' while it ran) when its attempt ended: ' || g.event
                   || coalesce(': ' || g.error, ''),
               g.again, g.ord
        FROM gone g
    ) AS both_kinds
    ORDER BY ord
    RETURNING job_id
), wake AS (
    SELECT pg_notify($9, '') FROM (SELECT 1 FROM up WHERE state = 'available' LIMIT 1) AS hit
), ended AS (
    SELECT pg_notify($10, '') FROM (SELECT 1 FROM gone LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM ev) AS written, (SELECT count(*) FROM wake) AS woke,
       (SELECT count(*) FROM ended) AS ended
