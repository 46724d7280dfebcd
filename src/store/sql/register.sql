-- A supervisor joins: host $1, pid $2, serving queues $3 with $4 workers,
-- lease $5 ms. Returns its id.
INSERT INTO procvisor_supervisors (host, pid, queues, workers, lease_ms)
VALUES ($1, $2, $3, $4, $5)
RETURNING id
