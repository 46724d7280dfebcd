-- The one way out of `running`: every attempt that ends, however it ends
-- (completed, failed, retried, preempted, released, reclaimed, given up),
-- leaves its row here. Each row named ($1 ids, $2 leases) that is still
-- under that lease either
--   * ends: it leaves the live table with its one terminal event ($4 true:
--     the event $3 with its $6 result and $7 error), or
--   * waits again ($4 false): back to the state $5 (`available` or
--     `retryable`) under a new lease, due in $8 ms (NULL: it keeps its due
--     time), its attempt not counted ($9 1), its evictions ($10) and
--     reclaims ($11) raised by one, with the non-terminal event $3.
-- A cancel outlives the attempt: a row that would wait again but whose
-- cancel was asked ends `cancelled` here instead, naming who asked. $12 is
-- the worker's pid for the event. Claimers are woken ($13) when a row is
-- available at once, waiters ($14) when one ended. Returns how many rows
-- were still under their lease (the rest were taken over: stale).
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::boolean[], $5::text[],
                         $6::text[], $7::text[], $8::bigint[], $9::integer[], $10::integer[],
                         $11::integer[], $12::integer[])
        WITH ORDINALITY
        AS d(id, lease, event, terminal, state, result, error, delay_ms, uncount, evicted,
             reclaimed, pid, ord)
), held AS (
    -- The rows that would wait again, locked first so that a cancel that
    -- commits meanwhile is seen. (A terminal ending needs no look at it.)
    SELECT j.id, j.supervisor, j.cancel_requested AS cancel, j.cancel_requested_by AS cancel_by
    FROM procvisor_jobs j JOIN d ON j.id = d.id AND j.lease = d.lease
    WHERE NOT d.terminal
    FOR UPDATE OF j
), gone AS (
    DELETE FROM procvisor_jobs j
    USING d LEFT JOIN held h ON h.id = d.id
    WHERE j.id = d.id AND j.lease = d.lease AND (d.terminal OR h.cancel)
    RETURNING j.id, j.queue, j.kind, j.priority, j.lease, j.attempt, j.evictions, j.reclaims,
              j.supervisor, d.event, d.terminal, d.result, d.error, d.pid, d.ord, h.cancel_by,
              CASE WHEN NOT d.terminal OR d.event <> 'completed' THEN procvisor_job_again(j)
              END AS again
), up AS (
    UPDATE procvisor_jobs j
    SET state = d.state,
        run_at = CASE WHEN d.delay_ms IS NULL THEN j.run_at
                      ELSE now() + d.delay_ms * interval '1 millisecond' END,
        lease = j.lease + 1, supervisor = NULL, claimed_at = NULL, deadline_at = NULL,
        attempt = j.attempt - d.uncount, evictions = j.evictions + d.evicted,
        reclaims = j.reclaims + d.reclaimed
    FROM d JOIN held h ON h.id = d.id
    WHERE j.id = d.id AND NOT h.cancel
    RETURNING j.id, j.state, j.queue, j.kind, j.priority, d.lease, j.attempt + d.uncount AS attempt,
              j.evictions, j.reclaims, h.supervisor, d.event, d.error, d.pid, d.ord
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease, attempt,
                                  evictions, reclaims, supervisor, worker_pid, result, error, job)
    SELECT id, event, terminal, queue, kind, priority, lease, attempt, evictions, reclaims,
           supervisor, pid, result, error, job
    FROM (
        SELECT g.id, CASE WHEN g.terminal THEN g.event ELSE 'cancelled' END AS event,
               true AS terminal, g.queue, g.kind, g.priority, g.lease, g.attempt, g.evictions,
               g.reclaims, g.supervisor, g.pid,
               CASE WHEN g.terminal THEN g.result::jsonb END AS result,
               CASE WHEN g.terminal THEN g.error
                    ELSE 'cancelled (asked by ' || coalesce(g.cancel_by, 'an operator')
                         || ' while it ran) when its attempt ended: ' || g.event
                         || coalesce(': ' || g.error, '') END AS error,
               g.again AS job, g.ord
        FROM gone g
        UNION ALL
        SELECT u.id, u.event, false, u.queue, u.kind, u.priority, u.lease, u.attempt,
               u.evictions, u.reclaims, u.supervisor, u.pid, NULL, u.error, NULL, u.ord
        FROM up u
    ) AS both_kinds
    ORDER BY ord
    RETURNING job_id
), wake AS (
    SELECT pg_notify($13, '') FROM (SELECT 1 FROM up WHERE state = 'available' LIMIT 1) AS hit
), ended AS (
    SELECT pg_notify($14, '') FROM (SELECT 1 FROM gone LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM ev) AS written, (SELECT count(*) FROM wake) AS woke,
       (SELECT count(*) FROM ended) AS ended
