-- Supervisor $1 stops: marked stopped (waiting for any claim of its in
-- flight), then every job it still holds is returned, locked, to be given
-- back through leave.sql in the same transaction.
WITH stopped AS (
    UPDATE procvisor_supervisors SET stopped_at = coalesce(stopped_at, now())
    WHERE id = $1
    RETURNING 1
)
SELECT (SELECT count(*) FROM stopped) AS stopped
