-- Cancel job $1, asked by $2 (recorded as an operator action): a waiting
-- job ends `cancelled` at once, and waiters are woken ($4); a running one
-- is marked, and its holder is woken ($3) to stop it. The mark is state,
-- not a message: every way out of `running` (leave.sql) ends a marked job
-- `cancelled`, naming who asked, and no claim takes one. Returns the job's
-- state before the cancel (NULL: it is not in the live table).
WITH j AS (
    SELECT id, state FROM procvisor_jobs WHERE id = $1 FOR UPDATE
), asked AS (
    UPDATE procvisor_jobs r SET cancel_requested = true, cancel_requested_by = $2
    FROM j WHERE r.id = j.id AND j.state = 'running' AND NOT r.cancel_requested
    RETURNING r.*
), gone AS (
    DELETE FROM procvisor_jobs r USING j
    WHERE r.id = j.id AND j.state <> 'running'
    RETURNING r.*, procvisor_job_again(r) AS again
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease,
                                  attempt, evictions, reclaims, supervisor, error, job)
    SELECT id, 'cancel_requested', false, queue, kind, priority, lease, attempt, evictions,
           reclaims, supervisor, 'asked by ' || $2, NULL
    FROM asked
    UNION ALL
    SELECT id, 'cancelled', true, queue, kind, priority, lease, attempt, evictions, reclaims,
           NULL, 'cancelled before it ran (asked by ' || $2 || ')', again
    FROM gone
    RETURNING 1
), act AS (
    INSERT INTO procvisor_actions (action, job_id, by_whom)
    SELECT 'cancel', id, $2 FROM j
    RETURNING 1
), wake AS (
    SELECT pg_notify(CASE WHEN j.state = 'running' THEN $3 ELSE $4 END, '') FROM j
)
SELECT (SELECT state FROM j) AS state, (SELECT count(*) FROM ev) AS events,
       (SELECT count(*) FROM act) AS recorded, (SELECT count(*) FROM wake) AS woke
