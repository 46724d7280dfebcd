-- The running jobs of supervisor $1 whose cancel was asked: id and lease.
SELECT id, lease FROM procvisor_jobs
WHERE state = 'running' AND supervisor = $1 AND cancel_requested
