//! The one way out of `running` (`leave.sql`): a batch of attempts that
//! ended, each under the lease it was claimed with, in one statement.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::pid_column;
use crate::store::{millis, StoreError, ENDED_CHANNEL, JOBS_CHANNEL};

const LEAVE: &str = include_str!("../sql/leave.sql");

/// How one attempt leaves `running`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exit {
    /// The job's one terminal event; the row leaves the live table.
    End {
        event: &'static str,
        result: Option<String>,
        error: Option<String>,
        pid: Option<u32>,
    },
    /// The row goes back to waiting, with a non-terminal event (or ends
    /// `cancelled`, if its cancel was asked).
    Requeue {
        event: &'static str,
        /// `available` or `retryable`.
        state: &'static str,
        /// Due this long from now; `None` keeps its place (its due time).
        delay: Option<Duration>,
        /// The attempt did not count (evictions and releases never do).
        uncount: bool,
        evicted: bool,
        /// It was taken over from a lost supervisor.
        reclaimed: bool,
        error: Option<String>,
        pid: Option<u32>,
    },
}

impl Exit {
    /// Back to the queue, its attempt not counted: its supervisor could
    /// not finish it (it stopped, or could not take it): `why`.
    pub(crate) fn released(why: String, pid: Option<u32>) -> Exit {
        Exit::Requeue {
            event: "released",
            state: "available",
            delay: None,
            uncount: true,
            evicted: false,
            reclaimed: false,
            error: Some(why),
            pid,
        }
    }
}

/// Take each `(id, lease, exit)` out of `running`, if the row is still
/// under that lease. Returns how many were (the rest are stale: taken over
/// by another supervisor).
pub(crate) async fn leave(
    client: &impl GenericClient,
    exits: &[(i64, i64, &Exit)],
) -> Result<usize, StoreError> {
    if exits.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::default();
    for &(id, lease, exit) in exits {
        c.id.push(id);
        c.lease.push(lease);
        match exit {
            Exit::End {
                event,
                result,
                error,
                pid,
            } => {
                c.event.push(event);
                c.terminal.push(true);
                c.state.push(None);
                c.result.push(result.as_deref());
                c.error.push(error.as_deref());
                c.delay.push(None);
                c.uncount.push(0);
                c.evicted.push(0);
                c.reclaimed.push(0);
                c.pid.push(pid_column(*pid));
            }
            Exit::Requeue {
                event,
                state,
                delay,
                uncount,
                evicted,
                reclaimed,
                error,
                pid,
            } => {
                c.event.push(event);
                c.terminal.push(false);
                c.state.push(Some(state));
                c.result.push(None);
                c.error.push(error.as_deref());
                c.delay.push(delay.map(millis));
                c.uncount.push(i32::from(*uncount));
                c.evicted.push(i32::from(*evicted));
                c.reclaimed.push(i32::from(*reclaimed));
                c.pid.push(pid_column(*pid));
            }
        }
    }
    let stmt = client
        .prepare_cached(LEAVE)
        .await
        .map_err(|e| StoreError::query("prepare the ending write", e))?;
    let row = client
        .query_one(
            &stmt,
            &[
                &c.id,
                &c.lease,
                &c.event,
                &c.terminal,
                &c.state,
                &c.result,
                &c.error,
                &c.delay,
                &c.uncount,
                &c.evicted,
                &c.reclaimed,
                &c.pid,
                &JOBS_CHANNEL,
                &ENDED_CHANNEL,
            ],
        )
        .await
        .map_err(|e| StoreError::query("write job endings", e))?;
    Ok(row.get::<_, i64>("written").max(0) as usize)
}

/// The statement's parameters, a column each.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<i64>,
    lease: Vec<i64>,
    event: Vec<&'a str>,
    terminal: Vec<bool>,
    state: Vec<Option<&'a str>>,
    result: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    delay: Vec<Option<i64>>,
    uncount: Vec<i32>,
    evicted: Vec<i32>,
    reclaimed: Vec<i32>,
    pid: Vec<Option<i32>>,
}
