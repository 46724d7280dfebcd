-- The rest of either claim: the picked jobs become running under a new
-- lease for supervisor $5. They get no deadline yet: a job's deadline is set
-- when it starts in a worker (start.sql), and until then its supervisor's
-- heartbeat keeps it. A job whose cancel was asked is never picked (no such
-- row waits: every way out of `running` ends it).
--
-- The jobs come back most urgent first. The supervisor starts each as it is
-- handed over, so the order matters: an UPDATE returns its rows in the
-- order its join meets them (often the table's physical order).
--
-- The rows are found by primary key from an array of the picked ids: a join
-- with the picked set lets the planner choose, for a large batch, a hash
-- join that reads the whole table (measured: a claim of 4,000 from 100,000
-- waiting jobs took twice as long as by key).
, taken AS (
    UPDATE procvisor_jobs j
    SET state = 'running', lease = j.lease + 1, attempt = j.attempt + 1, supervisor = $5,
        claimed_at = now(), progress = NULL, progress_note = NULL, deadline_at = NULL
    WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.lease, j.kind, j.args::text AS args, j.priority, j.timeout_ms, j.attempt,
              j.max_attempts, j.backoff_ms, j.backoff_cap_ms, j.weight, j.run_at
)
SELECT id, lease, kind, args, priority, timeout_ms, attempt, max_attempts, backoff_ms,
       backoff_cap_ms, weight
FROM taken ORDER BY priority, run_at, id
