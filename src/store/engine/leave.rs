//! The one way out of `running`: a batch of attempts that ended, each under
//! the lease it was claimed with. Endings go through `end.sql`, attempts
//! that leave their job waiting again through `requeue.sql` (which also
//! carries out a cancel asked meanwhile): one statement each, two at most
//! per batch.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use std::borrow::Cow;

use super::pid_column;
use crate::store::{millis, storable, StoreError, ENDED_CHANNEL, JOBS_CHANNEL};

const END: &str = include_str!("../sql/end.sql");
const REQUEUE: &str = include_str!("../sql/requeue.sql");

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

impl Exit {
    /// This exit without the job's own data (its result and error text),
    /// which the database refused (`why`), and a note that says so.
    pub(crate) fn without_data(&self, why: &str) -> Exit {
        let note = Some(format!(
            "its ending could not be stored as reported (the database refused it: {why}); it is recorded without its result and error text"
        ));
        let mut exit = self.clone();
        match &mut exit {
            Exit::End { result, error, .. } => {
                *result = None;
                *error = note;
            }
            Exit::Requeue { error, .. } => *error = note,
        }
        exit
    }
}

/// Take each `(id, lease, exit)` out of `running`, if the row is still
/// under that lease. Returns how many were (the rest are stale: taken over
/// by another supervisor). Run it in a transaction for the batch to be
/// written whole. Results and error texts are made storable first (see
/// `store::storable`): a job's own data cannot make the batch fail.
pub(crate) async fn leave(
    client: &impl GenericClient,
    exits: &[(i64, i64, &Exit)],
) -> Result<usize, StoreError> {
    let mut ends = EndColumns::default();
    let mut waits = RequeueColumns::default();
    for &(id, lease, exit) in exits {
        match exit {
            Exit::End {
                event,
                result,
                error,
                pid,
            } => {
                ends.id.push(id);
                ends.lease.push(lease);
                ends.event.push(event);
                ends.result.push(result.as_deref().map(storable::json));
                ends.error.push(error.as_deref().map(storable::text));
                ends.pid.push(pid_column(*pid));
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
                waits.id.push(id);
                waits.lease.push(lease);
                waits.event.push(event);
                waits.state.push(state);
                waits.error.push(error.as_deref().map(storable::text));
                waits.delay.push(delay.map(millis));
                waits.bits.push(
                    i32::from(*uncount) | i32::from(*evicted) << 1 | i32::from(*reclaimed) << 2,
                );
                waits.pid.push(pid_column(*pid));
            }
        }
    }
    let mut written = 0;
    if !ends.id.is_empty() {
        let params: [&(dyn ToSql + Sync); 7] = [
            &ends.id,
            &ends.lease,
            &ends.event,
            &ends.result,
            &ends.error,
            &ends.pid,
            &ENDED_CHANNEL,
        ];
        written += run(client, END, "write job endings", &params).await?;
    }
    if !waits.id.is_empty() {
        let params: [&(dyn ToSql + Sync); 10] = [
            &waits.id,
            &waits.lease,
            &waits.event,
            &waits.state,
            &waits.error,
            &waits.delay,
            &waits.bits,
            &waits.pid,
            &JOBS_CHANNEL,
            &ENDED_CHANNEL,
        ];
        written += run(client, REQUEUE, "put jobs back in the queue", &params).await?;
    }
    Ok(written)
}

/// Run one of the two statements (prepared once per connection); returns
/// the rows it found still under their lease.
async fn run(
    client: &impl GenericClient,
    sql: &str,
    what: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<usize, StoreError> {
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| StoreError::query(what, e))?;
    let row = client
        .query_one(&stmt, params)
        .await
        .map_err(|e| StoreError::query(what, e))?;
    Ok(row.get::<_, i64>("written").max(0) as usize)
}

/// `end.sql`'s parameters, a column each.
#[derive(Default)]
struct EndColumns<'a> {
    id: Vec<i64>,
    lease: Vec<i64>,
    event: Vec<&'a str>,
    result: Vec<Option<Cow<'a, str>>>,
    error: Vec<Option<Cow<'a, str>>>,
    pid: Vec<Option<i32>>,
}

/// `requeue.sql`'s parameters, a column each.
#[derive(Default)]
struct RequeueColumns<'a> {
    id: Vec<i64>,
    lease: Vec<i64>,
    event: Vec<&'a str>,
    state: Vec<&'a str>,
    error: Vec<Option<Cow<'a, str>>>,
    delay: Vec<Option<i64>>,
    bits: Vec<i32>,
    pid: Vec<Option<i32>>,
}
