-- Supervisor $1 is alive. Returns how many running rows the table says it
-- holds (to compare with what it knows it holds), or no row when it was
-- declared lost: its jobs were taken over and it must register again.
WITH beat AS (
    UPDATE procvisor_supervisors SET heartbeat_at = now()
    WHERE id = $1 AND stopped_at IS NULL
    RETURNING id
)
SELECT (SELECT count(*) FROM procvisor_jobs j WHERE j.supervisor = beat.id AND j.state = 'running')
       AS running
FROM beat
