//! A supervisor's life in the store: its row and heartbeat, the upkeep
//! every supervisor shares (reclaiming the jobs of lost supervisors,
//! making due jobs available), cancels asked of it, and giving its jobs
//! back when it stops.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::store::{millis, StoreError, ENDED_CHANNEL, JOBS_CHANNEL};

/// Register a supervisor; returns its id.
pub(crate) async fn register(
    client: &impl GenericClient,
    queues: &[String],
    workers: usize,
    lease: Duration,
) -> Result<i64, StoreError> {
    let host = hostname();
    let row = client
        .query_one(
            "INSERT INTO procvisor_supervisors (host, pid, queues, workers, lease_ms)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &host,
                &(std::process::id() as i32),
                &queues,
                &(workers.min(i32::MAX as usize) as i32),
                &millis(lease),
            ],
        )
        .await
        .map_err(|e| StoreError::query("register this supervisor", e))?;
    Ok(row.get(0))
}

/// The machine's name, for status displays.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Heartbeat; false if this supervisor was declared lost (its jobs were
/// taken over; it must register again).
pub(crate) async fn heartbeat(client: &impl GenericClient, me: i64) -> Result<bool, StoreError> {
    let n = client
        .execute(include_str!("../sql/heartbeat.sql"), &[&me])
        .await
        .map_err(|e| StoreError::query("heartbeat", e))?;
    Ok(n == 1)
}

/// Declare lost the supervisors whose heartbeat is older than their lease,
/// and put back in the queue (under a new lease, with a `reclaimed` event)
/// the running jobs of lost or stopped supervisors and those past their
/// deadline; a job already reclaimed `max_reclaims` times ends `crashed`
/// instead, and one whose cancel was asked ends `cancelled` (see
/// `sql/reclaim.sql`). Returns how many jobs were reclaimed or ended.
pub(crate) async fn reclaim(
    client: &impl GenericClient,
    max_reclaims: u32,
) -> Result<u64, StoreError> {
    client
        .execute(
            "UPDATE procvisor_supervisors SET stopped_at = now()
             WHERE stopped_at IS NULL AND heartbeat_at < now() - lease_ms * interval '1 millisecond'",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("declare lost supervisors", e))?;
    let row = client
        .query_one(
            include_str!("../sql/reclaim.sql"),
            &[&JOBS_CHANNEL, &(max_reclaims as i32), &ENDED_CHANNEL],
        )
        .await
        .map_err(|e| StoreError::query("reclaim the jobs of lost supervisors", e))?;
    // Stopped supervisors left with no running job are done with: no job
    // can become running under them again (the claim refuses a stopped
    // supervisor, under a lock its stop waits for), so later sweeps skip
    // them. One whose jobs another supervisor is taking over right now
    // still shows them running, and is swept next time.
    client
        .execute(
            "UPDATE procvisor_supervisors s SET swept = true
             WHERE s.stopped_at IS NOT NULL AND NOT s.swept
               AND NOT EXISTS (SELECT 1 FROM procvisor_jobs j
                               WHERE j.supervisor = s.id AND j.state = 'running')",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("mark swept supervisors", e))?;
    Ok(row.get::<_, i64>("moved").max(0) as u64)
}

/// Make delayed jobs and retries that came due available; wake claimers
/// if any did. Returns how many.
pub(crate) async fn promote(client: &impl GenericClient) -> Result<u64, StoreError> {
    let row = client
        .query_one(
            "WITH due AS (
                SELECT id FROM procvisor_jobs
                WHERE state IN ('scheduled', 'retryable') AND run_at <= now()
                ORDER BY run_at LIMIT 10000
                FOR UPDATE SKIP LOCKED
             ), up AS (
                UPDATE procvisor_jobs j SET state = 'available' FROM due WHERE j.id = due.id
                RETURNING 1
             ), wake AS (
                SELECT pg_notify($1, '') FROM (SELECT 1 FROM up LIMIT 1) AS hit
             )
             SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM wake)",
            &[&JOBS_CHANNEL],
        )
        .await
        .map_err(|e| StoreError::query("make due jobs available", e))?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// The running jobs of supervisor `me` whose cancel was asked for: id and
/// lease.
pub(crate) async fn cancels(
    client: &impl GenericClient,
    me: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(client
        .query(
            "SELECT id, lease FROM procvisor_jobs
             WHERE state = 'running' AND supervisor = $1 AND cancel_requested",
            &[&me],
        )
        .await
        .map_err(|e| StoreError::query("look for cancels", e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Give back every job supervisor `me` still holds (a job whose cancel
/// was asked ends `cancelled`) and mark it stopped. Returns how many jobs
/// were given back.
pub(crate) async fn stop(client: &impl GenericClient, me: i64) -> Result<u64, StoreError> {
    let row = client
        .query_one(
            include_str!("../sql/release.sql"),
            &[&me, &JOBS_CHANNEL, &ENDED_CHANNEL],
        )
        .await
        .map_err(|e| StoreError::query("give back this supervisor's jobs", e))?;
    Ok(row.get::<_, i64>("released").max(0) as u64)
}

/// Write running jobs' progress: `(id, lease, (fraction, note))` each; a
/// job whose lease moved on is left alone.
pub(crate) async fn progress(
    client: &impl GenericClient,
    jobs: &[(i64, i64, (f32, String))],
) -> Result<(), StoreError> {
    let ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
    let leases: Vec<i64> = jobs.iter().map(|j| j.1).collect();
    let fractions: Vec<f32> = jobs.iter().map(|j| j.2 .0).collect();
    let notes: Vec<&str> = jobs.iter().map(|j| j.2 .1.as_str()).collect();
    client
        .execute(
            "UPDATE procvisor_jobs j SET progress = d.p, progress_note = d.n
             FROM unnest($1::bigint[], $2::bigint[], $3::real[], $4::text[]) AS d(id, lease, p, n)
             WHERE j.id = d.id AND j.lease = d.lease AND j.state = 'running'",
            &[&ids, &leases, &fractions, &notes],
        )
        .await
        .map_err(|e| StoreError::query("write running jobs' progress", e))?;
    Ok(())
}
