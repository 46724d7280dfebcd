-- Supervisors whose heartbeat is older than their lease are lost: marked
-- stopped, so their jobs may be taken over (lost.sql).
UPDATE procvisor_supervisors SET stopped_at = now()
WHERE stopped_at IS NULL AND heartbeat_at < now() - lease_ms * interval '1 millisecond'
