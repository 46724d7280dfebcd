//! Changes of jobs that are not running: inserting them, making due ones
//! available, and cancelling (which only marks a running job).

use std::time::SystemTime;

use deadpool_postgres::GenericClient;

use crate::store::submit::NewJob;
use crate::store::{millis, StoreError, CANCEL_CHANNEL, ENDED_CHANNEL, JOBS_CHANNEL};

/// Insert `jobs` (checked already) in one statement (`insert.sql`);
/// returns their ids in order.
pub(crate) async fn insert(
    client: &impl GenericClient,
    jobs: &[NewJob],
) -> Result<Vec<i64>, StoreError> {
    let stmt = client
        .prepare_cached(include_str!("../sql/insert.sql"))
        .await
        .map_err(|e| StoreError::query("prepare the insert", e))?;
    let queue: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let kind: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let args: Vec<String> = jobs.iter().map(|j| j.args.to_string()).collect();
    let priority: Vec<i16> = jobs.iter().map(|j| j.priority.into()).collect();
    let timeout: Vec<Option<i64>> = jobs.iter().map(|j| j.timeout.map(millis)).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts as i32).collect();
    let backoff: Vec<i64> = jobs.iter().map(|j| millis(j.backoff)).collect();
    let cap: Vec<i64> = jobs.iter().map(|j| millis(j.backoff_cap)).collect();
    let (delay, at): (Vec<Option<i64>>, Vec<Option<SystemTime>>) =
        jobs.iter().map(NewJob::due).unzip();
    let weight: Vec<f64> = jobs.iter().map(|j| j.weight).collect();
    let rows = client
        .query(
            &stmt,
            &[
                &queue,
                &kind,
                &args,
                &priority,
                &timeout,
                &attempts,
                &backoff,
                &cap,
                &delay,
                &at,
                &weight,
                &JOBS_CHANNEL,
            ],
        )
        .await
        .map_err(|e| StoreError::query("insert jobs", e))?;
    Ok(rows.iter().map(|r| r.get::<_, i64>("id")).collect())
}

/// Make delayed jobs and retries that came due available, waking claimers
/// if any did (`promote.sql`). Returns how many.
pub(crate) async fn promote(client: &impl GenericClient) -> Result<u64, StoreError> {
    let row = client
        .query_one(include_str!("../sql/promote.sql"), &[&JOBS_CHANNEL])
        .await
        .map_err(|e| StoreError::query("make due jobs available", e))?;
    Ok(row.get::<_, i64>("promoted").max(0) as u64)
}

/// What a cancel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancel {
    /// The job was waiting: it ended `cancelled`.
    Ended,
    /// The job is running: it is marked, and its holder will stop it.
    Marked,
    /// No such job in the live table (it ended, or never was).
    NotLive,
}

/// Cancel job `id` as asked by `by` (`cancel.sql`).
pub(crate) async fn cancel(
    client: &impl GenericClient,
    id: i64,
    by: &str,
) -> Result<Cancel, StoreError> {
    let row = client
        .query_one(
            include_str!("../sql/cancel.sql"),
            &[&id, &by, &CANCEL_CHANNEL, &ENDED_CHANNEL],
        )
        .await
        .map_err(|e| StoreError::query("cancel the job", e))?;
    Ok(match row.get::<_, Option<String>>("state").as_deref() {
        None => Cancel::NotLive,
        Some("running") => Cancel::Marked,
        Some(_) => Cancel::Ended,
    })
}
