-- Up to $4 available jobs of the queues $1 and kinds $2 more urgent than
-- $3, in priority then due-time order. The first $6 start at once; the rest
-- wait in the supervisor (claimed ahead of its workers, or prefetched behind
-- a running job) for up to $7 ms, so those stop before the first job whose
-- timeout is shorter than that: it is left for a supervisor that can start
-- it at once, and no job is claimed ahead of a more urgent one.
-- Each queue is read in its own ordered index scan (a scan over all the
-- queues at once would sort every available job of theirs), then the
-- queues' heads are merged. A queue's head rows that lose the merge, and
-- those left for another supervisor, stay locked only until this statement
-- commits. A paused queue is skipped.
open AS (
    SELECT u.name FROM unnest($1::text[]) AS u(name)
    WHERE NOT EXISTS (SELECT 1 FROM procvisor_queues p WHERE p.name = u.name AND p.paused)
      AND EXISTS (SELECT 1 FROM me)
), head AS MATERIALIZED (
    SELECT h.id, h.priority, h.run_at, h.timeout_ms FROM open AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at, timeout_ms FROM procvisor_jobs
        WHERE state = 'available' AND queue = q.name AND priority < $3 AND run_at <= now()
          AND kind = ANY($2) AND NOT cancel_requested
        ORDER BY priority, run_at, id
        LIMIT $4
        FOR UPDATE SKIP LOCKED
    ) AS h
    ORDER BY h.priority, h.run_at, h.id
    LIMIT $4
), placed AS (
    SELECT id, priority, run_at,
           row_number() OVER (ORDER BY priority, run_at, id) <= $6
               OR timeout_ms IS NULL OR timeout_ms >= $7 AS fits
    FROM head
), picked AS MATERIALIZED (
    SELECT id FROM (
        SELECT id, bool_and(fits) OVER (ORDER BY priority, run_at, id) AS all_fit FROM placed
    ) AS p
    WHERE all_fit
)
