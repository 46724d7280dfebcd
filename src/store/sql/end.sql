-- Attempts that end their job: each row still under the lease named ($1
-- ids, $2 leases) leaves the live table with its one terminal event ($3,
-- with the result $4 and error $5; $6 the worker's pid), in one statement.
-- An ending other than `completed` keeps what it takes to run the job again
-- (for an operator's retry); a `cancelled` one names who asked. Waiters are woken ($7). The events take their
-- ids in the order the endings came. Returns how many rows were still under
-- their lease (the rest were taken over: stale).
--
-- A row still under the lease a write names is running under that claim:
-- every move out of `running` raises the lease. So this matches on (id,
-- lease) only, a primary-key lookup per job, and needs no lock first: a
-- cancel asked meanwhile is moot, the job has ended.
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::integer[]) WITH ORDINALITY
        AS d(id, lease, event, result, error, pid, ord)
), gone AS (
    DELETE FROM procvisor_jobs j USING d
    WHERE j.id = d.id AND j.lease = d.lease
    RETURNING j.id, d.event, j.queue, j.kind, j.priority, j.lease, j.attempt, j.evictions,
              j.reclaims, j.supervisor, d.pid, d.result,
              CASE WHEN d.event = 'cancelled' AND j.cancel_requested_by IS NOT NULL
                   THEN coalesce(d.error, 'cancelled') || ' (asked by ' || j.cancel_requested_by || ')'
                   ELSE d.error END AS error,
              d.ord,
              CASE WHEN d.event <> 'completed' THEN procvisor_job_again(j) END AS job
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease, attempt,
                                  evictions, reclaims, supervisor, worker_pid, result, error, job)
    SELECT id, event, true, queue, kind, priority, lease, attempt, evictions, reclaims,
           supervisor, pid, result::jsonb, error, job
    FROM gone
    ORDER BY ord
    RETURNING job_id
), wake AS (
    SELECT pg_notify($7, '') FROM (SELECT 1 FROM ev LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM ev) AS written, (SELECT count(*) FROM wake) AS woke
