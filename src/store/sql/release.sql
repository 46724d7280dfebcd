-- Supervisor $1 stops: every job it still holds goes back to waiting under a
-- new lease, its attempt not counted, with a `released` event; a job whose
-- cancel was asked ends `cancelled` instead. The supervisor is marked
-- stopped. Claimers are woken when jobs came back, waiters when one ended.
WITH held AS (
    SELECT id, cancel_requested AS cancel FROM procvisor_jobs
    WHERE state = 'running' AND supervisor = $1
    FOR UPDATE
), up AS (
    UPDATE procvisor_jobs j
    SET state = 'available', lease = j.lease + 1, attempt = j.attempt - 1,
        supervisor = NULL, claimed_at = NULL, deadline_at = NULL
    FROM held h WHERE j.id = h.id AND NOT h.cancel
    RETURNING j.*
), gone AS (
    DELETE FROM procvisor_jobs j USING held h
    WHERE j.id = h.id AND h.cancel
    RETURNING j.*, procvisor_job_again(j) AS again
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease,
                                  attempt, evictions, reclaims, supervisor, error, job)
    SELECT id, 'released', false, queue, kind, priority, lease - 1, attempt + 1,
           evictions, reclaims, $1, 'its supervisor stopped; it is queued again', NULL
    FROM up
    UNION ALL
    SELECT id, 'cancelled', true, queue, kind, priority, lease, attempt, evictions, reclaims, $1,
           'cancelled: its cancel was asked while it ran, and its supervisor stopped',
           again
    FROM gone
    RETURNING 1
), stopped AS (
    UPDATE procvisor_supervisors SET stopped_at = now() WHERE id = $1 RETURNING 1
), wake AS (
    SELECT pg_notify($2, '') FROM (SELECT 1 FROM up LIMIT 1) AS hit
), ended AS (
    SELECT pg_notify($3, '') FROM (SELECT 1 FROM gone LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM up) AS released, (SELECT count(*) FROM gone) AS cancelled,
       (SELECT count(*) FROM stopped) AS stopped, (SELECT count(*) FROM wake) AS woke,
       (SELECT count(*) FROM ended) AS ended
