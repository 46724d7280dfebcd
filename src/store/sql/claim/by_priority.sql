-- Up to $4 available jobs of the queues $1 and kinds $2 more urgent than
-- $3, in priority then due-time order. The first $6 start at once; the rest
-- wait in the supervisor (claimed ahead of its workers, or prefetched behind
-- a running job) for up to $7 ms, so those stop before the first job whose
-- timeout is shorter than that: it is left for a supervisor that can start
-- it at once, and no job is claimed ahead of a more urgent one.
-- Each queue is read in its own ordered index scan (a scan over all the
-- queues at once would sort every available job of theirs), then the
-- queues' heads are merged. A queue's head rows that lose the merge stay
-- locked only until this statement commits. A paused queue is skipped.
open AS (
    SELECT u.name FROM unnest($1::text[]) AS u(name)
    WHERE NOT EXISTS (SELECT 1 FROM procvisor_queues p WHERE p.name = u.name AND p.paused)
      AND EXISTS (SELECT 1 FROM me)
), now_ AS MATERIALIZED (
    SELECT head.id, head.priority, head.run_at FROM open AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM procvisor_jobs
        WHERE state = 'available' AND queue = q.name AND priority < $3 AND run_at <= now()
          AND kind = ANY($2) AND NOT cancel_requested
        ORDER BY priority, run_at, id
        LIMIT $6
        FOR UPDATE SKIP LOCKED
    ) AS head
    ORDER BY head.priority, head.run_at, head.id
    LIMIT $6
), ahead_all AS MATERIALIZED (
    SELECT head.id, head.priority, head.run_at, head.timeout_ms FROM open AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at, timeout_ms FROM procvisor_jobs
        WHERE state = 'available' AND queue = q.name AND priority < $3 AND run_at <= now()
          AND kind = ANY($2) AND NOT cancel_requested
          AND id <> ALL (ARRAY(SELECT id FROM now_))
        ORDER BY priority, run_at, id
        LIMIT $4 - (SELECT count(*) FROM now_)
        FOR UPDATE SKIP LOCKED
    ) AS head
    ORDER BY head.priority, head.run_at, head.id
    LIMIT $4 - (SELECT count(*) FROM now_)
), ahead AS (
    SELECT id FROM (
        SELECT id, bool_and(timeout_ms IS NULL OR timeout_ms >= $7)
                   OVER (ORDER BY priority, run_at, id) AS fits
        FROM ahead_all
    ) AS a
    WHERE fits
), picked AS MATERIALIZED (
    SELECT id FROM now_ UNION ALL SELECT id FROM ahead
)
