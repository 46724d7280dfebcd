-- Jobs with a timeout that began running in a worker ($1 ids, $2 leases):
-- each one's deadline is its timeout plus the grace $3 (ms) from now. A job
-- claimed but not started has no deadline: its supervisor's heartbeat keeps
-- it. A row whose lease moved on is left alone.
UPDATE procvisor_jobs j
SET deadline_at = now() + (j.timeout_ms + $3) * interval '1 millisecond'
FROM unnest($1::bigint[], $2::bigint[]) AS d(id, lease)
WHERE j.id = d.id AND j.lease = d.lease AND j.state = 'running' AND j.timeout_ms IS NOT NULL
