-- Running jobs' progress ($1 ids, $2 leases, $3 fractions, $4 notes); a row
-- whose lease moved on is left alone.
UPDATE procvisor_jobs j SET progress = d.p, progress_note = d.n
FROM unnest($1::bigint[], $2::bigint[], $3::real[], $4::text[]) AS d(id, lease, p, n)
WHERE j.id = d.id AND j.lease = d.lease AND j.state = 'running'
