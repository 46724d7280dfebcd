-- Take back the running jobs of lost or stopped supervisors, and those that
-- ran past their deadline (set when they started: timeout plus a grace).
-- Each goes back to waiting under a new lease with a `reclaimed` event; one
-- already taken over $2 times (the most allowed) ends `crashed`; one whose
-- cancel was asked ends `cancelled`. Claimers are woken ($1) when jobs came
-- back, waiters ($3) when one ended.
WITH lost AS (
    SELECT DISTINCT ON (id) * FROM (
        SELECT * FROM (
            SELECT j.id, j.lease AS old_lease, j.supervisor AS old_supervisor, j.cancel,
                   'its supervisor stopped heartbeating' AS why
            FROM procvisor_supervisors s
            CROSS JOIN LATERAL (
                SELECT id, lease, supervisor, cancel_requested AS cancel FROM procvisor_jobs
                WHERE supervisor = s.id AND state = 'running'
                LIMIT 1000
                FOR UPDATE SKIP LOCKED
            ) AS j
            WHERE s.stopped_at IS NOT NULL AND NOT s.swept
            LIMIT 1000
        ) AS of_lost
        UNION ALL
        SELECT * FROM (
            SELECT j.id, j.lease, j.supervisor, j.cancel_requested,
                   'it ran past its deadline (its timeout plus a grace, from its start) without an ending'
            FROM procvisor_jobs j
            WHERE j.state = 'running' AND j.deadline_at < now()
            LIMIT 1000
            FOR UPDATE SKIP LOCKED
        ) AS overdue
    ) AS both_kinds
    ORDER BY id
), up AS (
    UPDATE procvisor_jobs j
    SET state = 'available', lease = j.lease + 1, reclaims = j.reclaims + 1,
        supervisor = NULL, claimed_at = NULL, deadline_at = NULL
    FROM lost WHERE j.id = lost.id AND j.reclaims < $2 AND NOT lost.cancel
    RETURNING j.*, lost.old_lease, lost.old_supervisor, lost.why
), given_up AS (
    DELETE FROM procvisor_jobs j
    USING lost WHERE j.id = lost.id AND (j.reclaims >= $2 OR lost.cancel)
    RETURNING j.*, lost.old_supervisor, lost.why, lost.cancel, procvisor_job_again(j) AS again
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease,
                                  attempt, evictions, reclaims, supervisor, error, job)
    SELECT id, 'reclaimed', false, queue, kind, priority, old_lease, attempt, evictions,
           reclaims, old_supervisor, why, NULL FROM up
    UNION ALL
    SELECT id, CASE WHEN cancel THEN 'cancelled' ELSE 'crashed' END, true, queue, kind,
           priority, lease, attempt, evictions, reclaims, old_supervisor,
           CASE WHEN cancel
                THEN 'cancelled: its cancel was asked while it ran, and ' || why
                ELSE why || '; it had been taken over from lost supervisors ' || reclaims
                     || ' times already (the most allowed), so it is not run again' END,
           again
    FROM given_up
    RETURNING 1
), wake AS (
    SELECT pg_notify($1, '') FROM (SELECT 1 FROM up LIMIT 1) AS hit
), ended AS (
    SELECT pg_notify($3, '') FROM (SELECT 1 FROM given_up LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM ev) AS moved, (SELECT count(*) FROM wake) AS woke,
       (SELECT count(*) FROM ended) AS ended
