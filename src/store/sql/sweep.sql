-- Stopped supervisors left with no running job are done with: no job can
-- become running under them again (the claim refuses a stopped supervisor,
-- under a lock its stop waits for), so later sweeps skip them. One whose
-- jobs another supervisor is taking over right now still shows them
-- running, and is swept next time.
UPDATE procvisor_supervisors s SET swept = true
WHERE s.stopped_at IS NOT NULL AND NOT s.swept
  AND NOT EXISTS (SELECT 1 FROM procvisor_jobs j
                  WHERE j.supervisor = s.id AND j.state = 'running')
