-- Every supervisor's upkeep looks, about once a second, for cancels asked
-- of its running jobs and for jobs left running by stopped supervisors.
-- Both read every running job without these, and a supervisor that claims
-- ahead holds thousands.

-- A supervisor's running jobs with a cancel asked: only those have an
-- entry.
CREATE INDEX procvisor_jobs_cancels ON procvisor_jobs (supervisor)
    WHERE state = 'running' AND cancel_requested;

-- A stopped supervisor is swept once none of its jobs is left running.
-- A claim holds a share lock on its supervisor's row and claims nothing
-- for a stopped one, so no job can become running under a supervisor
-- after the stop that marks it is committed: a swept supervisor stays
-- empty, and upkeep only looks at the others.
ALTER TABLE procvisor_supervisors ADD COLUMN swept boolean NOT NULL DEFAULT false;
