//! What a supervisor reports about itself and its jobs.

use std::time::Duration;

use crate::sched::PRIORITY_LEVELS;
use crate::wire::JobId;

use super::outcome::Outcome;

/// The supervisor's life stage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Accepting and running jobs.
    Running,
    /// Shutting down: no new jobs; running ones get their grace.
    ShuttingDown,
    /// Stopped: no worker remains.
    Stopped,
    /// Gave up (restart intensity exceeded, or workers cannot start); why.
    Failed(String),
}

/// What a worker slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerPhase {
    /// Its process is being started.
    Starting,
    /// Serving jobs.
    Ready,
    /// Being stopped (killed, or asked to exit).
    Stopping,
    /// Waiting out a restart backoff.
    Backoff,
    /// Not running and not coming back.
    Down,
}

/// A running job, as a status display shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    /// Its id.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its priority.
    pub priority: u8,
    /// How long it has been running.
    pub elapsed: Duration,
    /// The last progress its handler reported (fraction, note).
    pub progress: Option<(f32, String)>,
}

/// One worker slot.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// The slot index.
    pub slot: usize,
    /// The worker's process id, if it has a process.
    pub pid: Option<u32>,
    /// What it is doing.
    pub phase: WorkerPhase,
    /// The job it runs, if any.
    pub running: Option<RunningJob>,
    /// Jobs it holds (running and prefetched).
    pub held: usize,
}

/// Running totals since the supervisor started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Jobs accepted.
    pub submitted: u64,
    /// Ended `Completed`.
    pub completed: u64,
    /// Ended `Failed`.
    pub failed: u64,
    /// Ended `TimedOut`.
    pub timed_out: u64,
    /// Ended `Crashed`.
    pub crashed: u64,
    /// Ended `Evicted` (dropped).
    pub evicted: u64,
    /// Ended `Cancelled`.
    pub cancelled: u64,
    /// Ended `Rejected` after being accepted.
    pub rejected: u64,
    /// Evictions, whether the job was put back or dropped.
    pub evictions: u64,
    /// Worker processes started after the first ones.
    pub restarts: u64,
    /// Attempts that ended in a way that was retried.
    pub retries: u64,
}

impl Counts {
    pub(crate) fn record<R>(&mut self, outcome: &Outcome<R>) {
        let c = match outcome {
            Outcome::Completed(_) => &mut self.completed,
            Outcome::Failed(_) => &mut self.failed,
            Outcome::TimedOut { .. } => &mut self.timed_out,
            Outcome::Crashed(_) => &mut self.crashed,
            Outcome::Evicted => &mut self.evicted,
            Outcome::Cancelled => &mut self.cancelled,
            Outcome::Rejected(_) => &mut self.rejected,
        };
        *c += 1;
    }

    /// Jobs that have ended, whatever the outcome.
    pub fn ended(&self) -> u64 {
        self.completed
            + self.failed
            + self.timed_out
            + self.crashed
            + self.evicted
            + self.cancelled
            + self.rejected
    }
}

/// A picture of the supervisor at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Life stage.
    pub state: State,
    /// Every worker slot.
    pub workers: Vec<WorkerInfo>,
    /// Queued jobs per priority (index 0 = most urgent).
    pub queued_per_priority: [usize; PRIORITY_LEVELS],
    /// Totals.
    pub counts: Counts,
}

impl Snapshot {
    /// Jobs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queued_per_priority.iter().sum()
    }
}

/// Where one job is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Handed to a worker, waiting behind the job it runs.
    Prefetched {
        /// The worker's pid.
        pid: Option<u32>,
    },
    /// Running.
    Running {
        /// The worker's pid.
        pid: Option<u32>,
        /// For how long.
        elapsed: Duration,
        /// The last progress the handler reported (fraction, note).
        progress: Option<(f32, String)>,
    },
    /// Ended (or unknown to this supervisor).
    Ended,
}
