-- procvisor's job queue: live jobs, supervisors, the event history, and
-- periodic schedules. Terminal jobs leave the live table (deleted in the
-- same statement that writes their terminal event), so it stays small.

CREATE TABLE procvisor_jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue           text NOT NULL DEFAULT 'default',
    kind            text NOT NULL,
    args            jsonb NOT NULL,
    priority        smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 10),
    weight          double precision NOT NULL DEFAULT 1 CHECK (weight > 0),
    -- scheduled: waits for run_at; available: may be claimed; running:
    -- claimed under `lease` by `supervisor`; retryable: waits for run_at
    -- before another attempt.
    state           text NOT NULL DEFAULT 'available'
                    CHECK (state IN ('scheduled', 'available', 'running', 'retryable')),
    run_at          timestamptz NOT NULL DEFAULT now(),
    attempt         integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 10000),
    backoff_ms      bigint NOT NULL DEFAULT 1000 CHECK (backoff_ms BETWEEN 0 AND 86400000),
    backoff_cap_ms  bigint NOT NULL DEFAULT 3600000 CHECK (backoff_cap_ms BETWEEN 0 AND 86400000),
    timeout_ms      bigint CHECK (timeout_ms BETWEEN 1 AND 86400000),
    evictions       integer NOT NULL DEFAULT 0,
    reclaims        integer NOT NULL DEFAULT 0,
    -- The fencing token: raised by every claim and every release; a write
    -- that names an older lease changes nothing.
    lease           bigint NOT NULL DEFAULT 0,
    supervisor      bigint,
    claimed_at      timestamptz,
    -- Past this, a running job's supervisor is presumed stuck and the job
    -- is reclaimed (its timeout plus a grace).
    deadline_at     timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    unique_key      text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The claim: available jobs in priority, then due-time order (the queue
-- and the kinds a supervisor serves are filters on that scan).
CREATE INDEX procvisor_jobs_claim ON procvisor_jobs (priority, run_at, id)
    WHERE state = 'available';
-- Promotion of delayed jobs and retries when they come due.
CREATE INDEX procvisor_jobs_due ON procvisor_jobs (run_at)
    WHERE state IN ('scheduled', 'retryable');
-- A supervisor's running jobs (heartbeats, reclaims, cancels).
CREATE INDEX procvisor_jobs_running ON procvisor_jobs (supervisor)
    WHERE state = 'running';

-- A queue's churn: vacuum after a fixed number of dead rows, not a
-- fraction of the table, and keep room on each page for updates.
ALTER TABLE procvisor_jobs SET (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

CREATE TABLE procvisor_supervisors (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host            text NOT NULL,
    pid             integer NOT NULL,
    queues          text[] NOT NULL,
    workers         integer NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    heartbeat_at    timestamptz NOT NULL DEFAULT now(),
    -- How long after its last heartbeat its jobs may be taken from it.
    lease_ms        bigint NOT NULL CHECK (lease_ms BETWEEN 1000 AND 3600000),
    stopped_at      timestamptz
);

CREATE TABLE procvisor_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction: readers that follow the stream read by
    -- transaction horizon, so no event that commits late is skipped.
    tx              xid8 NOT NULL DEFAULT pg_current_xact_id(),
    job_id          bigint NOT NULL,
    event           text NOT NULL,
    terminal        boolean NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    queue           text NOT NULL,
    kind            text NOT NULL,
    priority        smallint NOT NULL,
    lease           bigint NOT NULL,
    attempt         integer NOT NULL,
    evictions       integer NOT NULL,
    reclaims        integer NOT NULL,
    supervisor      bigint,
    worker_pid      integer,
    result          jsonb,
    error           text
);

-- The database itself refuses a second ending of one job.
CREATE UNIQUE INDEX procvisor_events_one_end ON procvisor_events (job_id) WHERE terminal;
CREATE INDEX procvisor_events_job ON procvisor_events (job_id, id);
CREATE INDEX procvisor_events_tx ON procvisor_events (tx);
CREATE INDEX procvisor_events_at ON procvisor_events (at);

ALTER TABLE procvisor_events SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 100000
);

CREATE TABLE procvisor_schedules (
    name            text PRIMARY KEY,
    cron            text NOT NULL,
    time_zone       text NOT NULL,
    queue           text NOT NULL DEFAULT 'default',
    kind            text NOT NULL,
    args            jsonb NOT NULL,
    priority        smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 10),
    timeout_ms      bigint CHECK (timeout_ms BETWEEN 1 AND 86400000),
    max_attempts    integer NOT NULL DEFAULT 1 CHECK (max_attempts BETWEEN 1 AND 10000),
    -- The last fire enqueued: a fire is a compare-and-swap on it.
    last_fire       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
