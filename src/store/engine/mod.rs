//! Every change of a store job's state, each one named statement (a file
//! under `src/store/sql/`, read as SQL) behind one function, over any
//! executor (a pooled connection or a transaction). Every path that makes a
//! change goes through its function; later features (limits, unique jobs,
//! dependencies) hook into these places. All live here but the two inserts
//! that copy a job from a template (a schedule's fire, an operator's
//! retry), which stay beside their templates.
//!
//! | change | from → to | function | statement |
//! |---|---|---|---|
//! | insert | — → `available` / `scheduled` | [`insert`] | `insert.sql` |
//! | a schedule fires | — → `available` | `schedules::fire_due` | `fire.sql` |
//! | an operator retries an ended job | — → `available` | `Store::retry` | `retry.sql` |
//! | promote | `scheduled` / `retryable` → `available` | [`promote`] | `promote.sql` |
//! | claim | `available` → `running` (new lease) | [`claim`] | `claim/*.sql` |
//! | start | `running`, deadline set | [`start`] | `start.sql` |
//! | end | `running` → gone, terminal event | [`leave`] | `end.sql` |
//! | requeue (retry, preempt, release) | `running` → `available` / `retryable`, or gone `cancelled` if its cancel was asked | [`leave`] | `requeue.sql` |
//! | reclaim, give up | `running` of a lost supervisor or past its deadline → `available`, or gone `crashed` | [`reclaim`] → [`leave`] | `lost.sql`, `requeue.sql`, `end.sql` |
//! | release at stop | `running` → `available` | [`stop`] → [`leave`] | `stop.sql`, `held.sql`, `requeue.sql` |
//! | cancel | waiting → gone `cancelled`; `running` → marked | [`cancel`] | `cancel.sql` |
//!
//! So a job leaves `running` only through [`leave`]: by `end.sql` when its
//! attempt ended it, by `requeue.sql` when it waits again, which is also
//! where a marked cancel is carried out. The only other statement that
//! writes a terminal event is `cancel.sql`, for a job that never ran.
//! Supervisors' own rows: [`register`], [`heartbeat`] (which also returns
//! the rows the table says the supervisor runs, for it to reconcile).

mod claim;
mod leave;
mod running;
mod supervisors;
mod waiting;

pub(crate) use claim::{claim, Ask, Draw, Grant, Tries};
pub(crate) use leave::{leave, Exit};
pub(crate) use running::{cancels, progress, start};
pub(crate) use supervisors::{heartbeat, reclaim, register, stop};
pub(crate) use waiting::{cancel, insert, promote, Cancel};

/// A worker's pid for the table.
fn pid_column(pid: Option<u32>) -> Option<i32> {
    pid.map(|p| p.min(i32::MAX as u32) as i32)
}
