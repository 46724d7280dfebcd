-- Supervisor $1 is alive. Changes no row when it was declared lost: its
-- jobs were taken over and it must register again.
UPDATE procvisor_supervisors SET heartbeat_at = now()
WHERE id = $1 AND stopped_at IS NULL
