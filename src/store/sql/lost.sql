-- The running jobs to take back, locked (up to 1000 of each kind): those of
-- stopped supervisors not yet swept, and those that ran past their deadline
-- (set when they started: timeout plus a grace). Each with its lease, how
-- often it was taken over already, whether its cancel was asked, and why.
-- They leave `running` through leave.sql, in the same transaction.
SELECT DISTINCT ON (id) id, lease, reclaims, cancel, why FROM (
    SELECT * FROM (
        SELECT j.id, j.lease, j.reclaims, j.cancel_requested AS cancel,
               'its supervisor stopped heartbeating' AS why
        FROM procvisor_supervisors s
        CROSS JOIN LATERAL (
            SELECT id, lease, reclaims, cancel_requested FROM procvisor_jobs
            WHERE supervisor = s.id AND state = 'running'
            LIMIT 1000
            FOR UPDATE SKIP LOCKED
        ) AS j
        WHERE s.stopped_at IS NOT NULL AND NOT s.swept
        LIMIT 1000
    ) AS of_lost
    UNION ALL
    SELECT * FROM (
        SELECT j.id, j.lease, j.reclaims, j.cancel_requested,
               'it ran past its deadline (its timeout plus a grace, from its start) without an ending'
        FROM procvisor_jobs j
        WHERE j.state = 'running' AND j.deadline_at < now()
        LIMIT 1000
        FOR UPDATE SKIP LOCKED
    ) AS overdue
) AS both_kinds
ORDER BY id
