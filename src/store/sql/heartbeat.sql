-- Supervisor $1 is alive: its heartbeat moves on, unless it was declared
-- lost (its jobs were taken over and it must register again). Returns
-- whether it is alive, and the rows the table says it runs (id and lease
-- each), for the supervisor to compare with what it knows it holds.
WITH beat AS (
    UPDATE procvisor_supervisors SET heartbeat_at = now()
    WHERE id = $1 AND stopped_at IS NULL
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM beat) AS alive,
       ARRAY(SELECT id FROM procvisor_jobs WHERE supervisor = $1 AND state = 'running'
             ORDER BY id) AS ids,
       ARRAY(SELECT lease FROM procvisor_jobs WHERE supervisor = $1 AND state = 'running'
             ORDER BY id) AS leases
