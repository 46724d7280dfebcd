-- The start of either claim: the claiming supervisor $5, unless it was
-- declared stopped. The share lock on its row makes a stop wait for a claim
-- in flight, and a claim that starts after a stop claims nothing, so once a
-- stop is committed no job can become running under it.
WITH me AS (
    SELECT id FROM procvisor_supervisors WHERE id = $5 AND stopped_at IS NULL FOR SHARE
),
