//! Retention: old events and long-stopped supervisors are deleted, so the
//! history does not grow without end. A job's row leaves the live table
//! when it ends, so the events are the whole history of ended jobs.

use std::time::Duration;

use super::{millis, Store, StoreError};

/// Rows deleted in one statement (each its own transaction, so a prune
/// never holds many locks or a long transaction).
const PRUNE_BATCH: i64 = 10_000;

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events older than the retention.
    pub events: u64,
    /// Supervisors stopped longer ago than the retention, with no jobs.
    pub supervisors: u64,
}

impl Store {
    /// Delete events older than `older_than` (1 minute to 100 years),
    /// and the rows of supervisors stopped that long ago. Safe to run from
    /// several places at once. A job still waiting or running keeps its
    /// live row whatever its age; only its old events go.
    pub async fn prune(&self, older_than: Duration) -> Result<Pruned, StoreError> {
        check_retention(older_than)?;
        let client = self.client().await?;
        let ms = millis(older_than);
        let mut pruned = Pruned::default();
        loop {
            let n = client
                .execute(
                    // By row address: the rows are locked, so none moves.
                    "DELETE FROM procvisor_events WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM procvisor_events
                        WHERE at < now() - $1::bigint * interval '1 millisecond'
                        LIMIT $2::bigint
                        FOR UPDATE SKIP LOCKED))",
                    &[&ms, &PRUNE_BATCH],
                )
                .await
                .map_err(|e| StoreError::query("delete old events", e))?;
            pruned.events += n;
            if n < PRUNE_BATCH as u64 {
                break;
            }
        }
        pruned.supervisors = client
            .execute(
                "DELETE FROM procvisor_supervisors s
                 WHERE s.stopped_at < now() - $1::bigint * interval '1 millisecond'
                   AND NOT EXISTS (SELECT 1 FROM procvisor_jobs j
                                   WHERE j.state = 'running' AND j.supervisor = s.id)",
                &[&ms],
            )
            .await
            .map_err(|e| StoreError::query("delete long-stopped supervisors", e))?;
        Ok(pruned)
    }
}

/// A retention must be 1 minute to 100 years.
pub(crate) fn check_retention(d: Duration) -> Result<(), StoreError> {
    const YEAR: u64 = 365 * 24 * 3600;
    if d < Duration::from_secs(60) || d > Duration::from_secs(100 * YEAR) {
        return Err(StoreError::Invalid(format!(
            "a retention of {d:?} is out of range: use 1 minute to 100 years"
        )));
    }
    Ok(())
}
