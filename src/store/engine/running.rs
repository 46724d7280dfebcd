//! What changes on a running job without taking it out of `running`: its
//! deadline when it starts, its progress, and reading the cancels asked of
//! a supervisor's jobs.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::store::{millis, storable, StoreError};

/// Jobs with a timeout that began running in a worker (`(id, lease)`
/// each): each one's deadline becomes its timeout plus `grace` from now
/// (`start.sql`).
pub(crate) async fn start(
    client: &impl GenericClient,
    started: &[(i64, i64)],
    grace: Duration,
) -> Result<(), StoreError> {
    if started.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = started.iter().map(|s| s.0).collect();
    let leases: Vec<i64> = started.iter().map(|s| s.1).collect();
    let stmt = client
        .prepare_cached(include_str!("../sql/start.sql"))
        .await
        .map_err(|e| StoreError::query("prepare the deadline write", e))?;
    client
        .execute(&stmt, &[&ids, &leases, &millis(grace)])
        .await
        .map_err(|e| StoreError::query("write started jobs' deadlines", e))?;
    Ok(())
}

/// Write running jobs' progress: `(id, lease, (fraction, note))` each; a
/// job whose lease moved on is left alone (`progress.sql`).
pub(crate) async fn progress(
    client: &impl GenericClient,
    jobs: &[(i64, i64, (f32, String))],
) -> Result<(), StoreError> {
    let ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
    let leases: Vec<i64> = jobs.iter().map(|j| j.1).collect();
    let fractions: Vec<f32> = jobs.iter().map(|j| j.2 .0).collect();
    let notes: Vec<std::borrow::Cow<'_, str>> =
        jobs.iter().map(|j| storable::text(&j.2 .1)).collect();
    client
        .execute(
            include_str!("../sql/progress.sql"),
            &[&ids, &leases, &fractions, &notes],
        )
        .await
        .map_err(|e| StoreError::query("write running jobs' progress", e))?;
    Ok(())
}

/// The running jobs of supervisor `me` whose cancel was asked for: id and
/// lease (`cancels.sql`).
pub(crate) async fn cancels(
    client: &impl GenericClient,
    me: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    Ok(client
        .query(include_str!("../sql/cancels.sql"), &[&me])
        .await
        .map_err(|e| StoreError::query("look for cancels", e))?
        .iter()
        .map(|r| (r.get("id"), r.get("lease")))
        .collect())
}
