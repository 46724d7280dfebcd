-- Leaner indexes for a queue's churn: each index a job passes through costs
-- a write (and its WAL) at every claim and every ending.

-- The claim reads one queue's available jobs in priority, then due-time
-- order: with the queue first, a backlog in a queue that no supervisor
-- serves costs the others nothing.
DROP INDEX procvisor_jobs_claim;
CREATE INDEX procvisor_jobs_claim ON procvisor_jobs (queue, priority, run_at, id)
    WHERE state = 'available';

-- Reclaims find running jobs past their deadline without reading every
-- running job; jobs without a timeout have no deadline and no entry.
CREATE INDEX procvisor_jobs_deadline ON procvisor_jobs (deadline_at)
    WHERE state = 'running' AND deadline_at IS NOT NULL;

-- Only jobs that have a unique key take room in its index.
ALTER TABLE procvisor_jobs DROP CONSTRAINT procvisor_jobs_unique_key_key;
CREATE UNIQUE INDEX procvisor_jobs_unique_key ON procvisor_jobs (unique_key)
    WHERE unique_key IS NOT NULL;

-- A job's events: its terminal one through the one-ending index, the
-- others through this one.
DROP INDEX procvisor_events_job;
CREATE INDEX procvisor_events_job ON procvisor_events (job_id, id) WHERE NOT terminal;

-- Pruning by age reads block ranges: events are written in time order, so
-- a BRIN index is enough and costs next to nothing to keep up.
DROP INDEX procvisor_events_at;
CREATE INDEX procvisor_events_at ON procvisor_events USING brin (at);
