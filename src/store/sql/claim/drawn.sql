-- The claim of a supervisor that draws at random: up to $4 available jobs
-- of the queues $1 and kinds $2 more urgent than $3, drawn as $6 says: 1 by
-- weight, 2 every job alike, 3 by weight among the most urgent priority
-- waiting. (A drawing supervisor claims nothing ahead of its workers.)
--
-- A weighted draw of n without replacement across every waiting job of the
-- queues: each job gets the key ln(u) / weight, u uniform in (0, 1], and
-- the n largest keys win (Efraimidis and Spirakis): the first is job j with
-- probability weight_j / total, and so on for the rest. It reads every
-- waiting job of the queues (or of the band), so it costs more than the
-- priority claim as the backlog grows.
open AS (
    SELECT q.name FROM unnest($1::text[]) AS q(name)
    WHERE NOT EXISTS (SELECT 1 FROM procvisor_queues p WHERE p.name = q.name AND p.paused)
      AND EXISTS (SELECT 1 FROM me)
), band AS (
    SELECT min(priority) AS p FROM procvisor_jobs
    WHERE state = 'available' AND queue IN (SELECT name FROM open) AND priority < $3
      AND run_at <= now() AND kind = ANY($2)
), picked AS MATERIALIZED (
    SELECT id FROM procvisor_jobs
    WHERE state = 'available' AND queue IN (SELECT name FROM open) AND priority < $3
      AND run_at <= now() AND NOT cancel_requested
      AND kind = ANY($2) AND ($6 <> 3 OR priority = (SELECT p FROM band))
    ORDER BY ln(1 - random()) / CASE WHEN $6 = 2 THEN 1 ELSE weight END DESC
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
