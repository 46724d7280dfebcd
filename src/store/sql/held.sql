-- The running jobs of supervisor $1, locked: id and lease each.
SELECT id, lease FROM procvisor_jobs
WHERE state = 'running' AND supervisor = $1
ORDER BY id
FOR UPDATE
