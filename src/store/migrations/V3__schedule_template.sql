-- A periodic schedule's jobs take the whole job template (backoff and weight),
-- and a schedule's name is bounded like a queue's.
ALTER TABLE procvisor_schedules
    ADD COLUMN backoff_ms     bigint NOT NULL DEFAULT 1000 CHECK (backoff_ms BETWEEN 0 AND 86400000),
    ADD COLUMN backoff_cap_ms bigint NOT NULL DEFAULT 3600000 CHECK (backoff_cap_ms BETWEEN 0 AND 86400000),
    ADD COLUMN weight         double precision NOT NULL DEFAULT 1 CHECK (weight > 0),
    ADD CONSTRAINT procvisor_schedules_name_len CHECK (length(name) BETWEEN 1 AND 100);
