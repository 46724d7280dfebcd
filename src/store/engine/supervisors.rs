//! A supervisor's life in the table: it registers, heartbeats (and learns
//! which rows the table says it runs), takes back the jobs of lost
//! supervisors, and gives its own back when it stops.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::leave::{leave, Exit};
use crate::store::{millis, StoreError};

/// Register a supervisor serving `queues` with `workers` under `lease`;
/// returns its id (`register.sql`).
pub(crate) async fn register(
    client: &impl GenericClient,
    queues: &[String],
    workers: usize,
    lease: Duration,
) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            include_str!("../sql/register.sql"),
            &[
                &hostname(),
                &(std::process::id() as i32),
                &queues,
                &(workers.min(i32::MAX as usize) as i32),
                &millis(lease),
            ],
        )
        .await
        .map_err(|e| StoreError::query("register this supervisor", e))?;
    Ok(row.get("id"))
}

/// The machine's name, for status displays.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What a heartbeat learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Beat {
    /// False: the supervisor was declared lost (its jobs were taken over;
    /// it must register again).
    pub(crate) alive: bool,
    /// The rows the table says it runs: id and lease each.
    pub(crate) running: Vec<(i64, i64)>,
}

/// Heartbeat of supervisor `me` (`heartbeat.sql`).
pub(crate) async fn heartbeat(client: &impl GenericClient, me: i64) -> Result<Beat, StoreError> {
    let row = client
        .query_one(include_str!("../sql/heartbeat.sql"), &[&me])
        .await
        .map_err(|e| StoreError::query("heartbeat", e))?;
    let ids: Vec<i64> = row.get("ids");
    let leases: Vec<i64> = row.get("leases");
    Ok(Beat {
        alive: row.get("alive"),
        running: ids.into_iter().zip(leases).collect(),
    })
}

/// Declare lost the supervisors whose heartbeat is older than their lease,
/// and take back the running jobs of lost or stopped supervisors and those
/// past their deadline: each goes back to waiting under a new lease with a
/// `reclaimed` event, except one already taken over `max_reclaims` times,
/// which ends `crashed`, and one whose cancel was asked, which ends
/// `cancelled` (both through `leave.sql`). Returns how many jobs were
/// reclaimed or ended.
pub(crate) async fn reclaim(
    client: &mut impl GenericClient,
    max_reclaims: u32,
) -> Result<u64, StoreError> {
    client
        .execute(include_str!("../sql/declare_lost.sql"), &[])
        .await
        .map_err(|e| StoreError::query("declare lost supervisors", e))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::query("begin taking back jobs", e))?;
    let lost = tx
        .query(include_str!("../sql/lost.sql"), &[])
        .await
        .map_err(|e| StoreError::query("find the jobs of lost supervisors", e))?;
    let exits: Vec<(i64, i64, Exit)> = lost
        .iter()
        .map(|r| {
            let reclaims = r.get::<_, i32>("reclaims").max(0) as u32;
            let why: String = r.get("why");
            let exit = if reclaims >= max_reclaims && !r.get::<_, bool>("cancel") {
                Exit::End {
                    event: "crashed",
                    result: None,
                    error: Some(format!(
                        "{why}; it had been taken over from lost supervisors {reclaims} times already (the most allowed), so it is not run again"
                    )),
                    pid: None,
                }
            } else {
                Exit::Requeue {
                    event: "reclaimed",
                    state: "available",
                    delay: None,
                    uncount: false,
                    evicted: false,
                    reclaimed: true,
                    error: Some(why),
                    pid: None,
                }
            };
            (r.get("id"), r.get("lease"), exit)
        })
        .collect();
    let refs: Vec<(i64, i64, &Exit)> = exits.iter().map(|(i, l, e)| (*i, *l, e)).collect();
    let moved = leave(&tx, &refs).await?;
    tx.commit()
        .await
        .map_err(|e| StoreError::query("commit taking back jobs", e))?;
    client
        .execute(include_str!("../sql/sweep.sql"), &[])
        .await
        .map_err(|e| StoreError::query("mark swept supervisors", e))?;
    Ok(moved as u64)
}

/// Supervisor `me` stops: it is marked stopped, and every job it still
/// holds goes back to waiting under a new lease, its attempt not counted,
/// with a `released` event (a job whose cancel was asked ends `cancelled`).
/// Returns how many jobs were given back or ended.
pub(crate) async fn stop(client: &mut impl GenericClient, me: i64) -> Result<u64, StoreError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::query("begin giving back this supervisor's jobs", e))?;
    tx.query_one(include_str!("../sql/stop.sql"), &[&me])
        .await
        .map_err(|e| StoreError::query("mark this supervisor stopped", e))?;
    let held = tx
        .query(include_str!("../sql/held.sql"), &[&me])
        .await
        .map_err(|e| StoreError::query("find this supervisor's jobs", e))?;
    let exit = Exit::released("its supervisor stopped; it is queued again".into(), None);
    let exits: Vec<(i64, i64, &Exit)> = held
        .iter()
        .map(|r| (r.get("id"), r.get("lease"), &exit))
        .collect();
    let n = leave(&tx, &exits).await?;
    tx.commit()
        .await
        .map_err(|e| StoreError::query("commit giving back this supervisor's jobs", e))?;
    Ok(n as u64)
}
