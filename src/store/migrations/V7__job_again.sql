-- What it takes to run an ended job again (its arguments and settings), as
-- kept with endings other than `completed` in the events' `job` column for
-- an operator's retry: one definition, called by every statement that ends
-- a job, where each used to spell it out.
CREATE FUNCTION procvisor_job_again(j procvisor_jobs) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('args', j.args, 'timeout_ms', j.timeout_ms,
                              'max_attempts', j.max_attempts, 'backoff_ms', j.backoff_ms,
                              'backoff_cap_ms', j.backoff_cap_ms, 'weight', j.weight)
$$;
