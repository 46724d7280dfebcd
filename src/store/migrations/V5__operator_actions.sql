-- What it takes to run an ended job again (its arguments and settings),
-- kept with endings other than `completed`, so that an operator can retry
-- a failed job. Completed endings keep nothing more.
ALTER TABLE procvisor_events ADD COLUMN job jsonb;

-- Queues an operator paused: supervisors claim nothing from a paused queue
-- (jobs already running finish); producers may still add to it.
CREATE TABLE procvisor_queues (
    name        text PRIMARY KEY,
    paused      boolean NOT NULL DEFAULT false,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

-- What operators did by hand, and when: cancel, retry, pause, resume.
CREATE TABLE procvisor_actions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,
    queue       text,
    job_id      bigint,
    new_job_id  bigint,
    by_whom     text NOT NULL
);

-- A running job's last progress (fraction 0 to 1, and the handler's note),
-- as its supervisor last wrote it (about once a second, when it changed).
ALTER TABLE procvisor_jobs ADD COLUMN progress real, ADD COLUMN progress_note text;
