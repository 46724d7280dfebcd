-- Who asked for a running job's cancel (as the caller said: `dashboard`,
-- `procvisor cancel`, an application's name), so that the job's
-- `cancelled` event, written by whichever statement takes it out of
-- `running`, can name them.
ALTER TABLE procvisor_jobs ADD COLUMN cancel_requested_by text;
