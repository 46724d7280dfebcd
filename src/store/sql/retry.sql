-- An operator ($2) runs ended job $1 again: a new job with its kind, queue,
-- priority, arguments and settings (as its terminal event kept them), due
-- now; the old job's history gets a `retried` event naming the new one,
-- and the action is recorded. Returns the new job's id. A job retried
-- already is not retried again: the job its first retry made is returned
-- (a form posted twice makes one job); to run it once more, retry that one.
WITH old AS (
    SELECT * FROM procvisor_events WHERE job_id = $1 AND terminal
), prior AS (
    SELECT (result->>'new_job')::bigint AS id FROM procvisor_events
    WHERE job_id = $1 AND event = 'retried'
    ORDER BY id DESC LIMIT 1
), new AS (
    INSERT INTO procvisor_jobs (queue, kind, args, priority, weight, timeout_ms,
                                max_attempts, backoff_ms, backoff_cap_ms, state)
    SELECT queue, kind, job->'args', priority, (job->>'weight')::float8,
           (job->>'timeout_ms')::bigint, (job->>'max_attempts')::integer,
           (job->>'backoff_ms')::bigint, (job->>'backoff_cap_ms')::bigint,
           'available'
    FROM old
    WHERE NOT EXISTS (SELECT 1 FROM prior)
    RETURNING id
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority,
                                  lease, attempt, evictions, reclaims, result)
    SELECT old.job_id, 'retried', false, old.queue, old.kind, old.priority,
           old.lease, old.attempt, old.evictions, old.reclaims,
           jsonb_build_object('new_job', new.id)
    FROM old, new
    RETURNING 1
), a AS (
    INSERT INTO procvisor_actions (action, job_id, new_job_id, by_whom)
    SELECT 'retry', $1, new.id, $2 FROM new
    RETURNING 1
)
SELECT coalesce((SELECT id FROM new), (SELECT id FROM prior)) AS id,
       (SELECT count(*) FROM ev) AS events, (SELECT count(*) FROM a) AS recorded
