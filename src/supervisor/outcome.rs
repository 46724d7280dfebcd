//! How a job ended: the one terminal outcome each job gets, and the report
//! that carries it to the submitter.

use std::time::Duration;

use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::process::Exit;
use crate::wire::{JobId, JobResult, Payload};

/// The one way a job ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome<R> {
    /// The handler returned this result.
    Completed(R),
    /// The handler returned an error or panicked, or the input or result did
    /// not (de)serialize.
    Failed(JobError),
    /// The job ran past its timeout and its worker was killed.
    TimedOut {
        /// The timeout that passed.
        after: Duration,
    },
    /// The worker died under the job (or broke the protocol, or stopped
    /// answering).
    Crashed(Crash),
    /// A more urgent job took its worker and eviction drops evicted jobs.
    Evicted,
    /// Cancelled by its submitter, or by shutdown.
    Cancelled,
    /// Never run: the supervisor refused it or gave up before it started.
    Rejected(String),
}

impl<R> Outcome<R> {
    /// Short lower-case name: `completed`, `failed`, `timed_out`, `crashed`,
    /// `evicted`, `cancelled`, `rejected`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Completed(_) => "completed",
            Outcome::Failed(_) => "failed",
            Outcome::TimedOut { .. } => "timed_out",
            Outcome::Crashed(_) => "crashed",
            Outcome::Evicted => "evicted",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected(_) => "rejected",
        }
    }

    /// Turn a completed result into another type; an error from `f` makes
    /// the outcome `Failed`. Other outcomes carry over unchanged.
    pub fn and_then_result<S>(self, f: impl FnOnce(R) -> Result<S, JobError>) -> Outcome<S> {
        match self {
            Outcome::Completed(r) => match f(r) {
                Ok(s) => Outcome::Completed(s),
                Err(e) => Outcome::Failed(e),
            },
            Outcome::Failed(e) => Outcome::Failed(e),
            Outcome::TimedOut { after } => Outcome::TimedOut { after },
            Outcome::Crashed(c) => Outcome::Crashed(c),
            Outcome::Evicted => Outcome::Evicted,
            Outcome::Cancelled => Outcome::Cancelled,
            Outcome::Rejected(r) => Outcome::Rejected(r),
        }
    }

    /// The same outcome without its result (for counting and logs).
    pub fn without_result(&self) -> Outcome<()> {
        match self {
            Outcome::Completed(_) => Outcome::Completed(()),
            Outcome::Failed(e) => Outcome::Failed(e.clone()),
            Outcome::TimedOut { after } => Outcome::TimedOut { after: *after },
            Outcome::Crashed(c) => Outcome::Crashed(c.clone()),
            Outcome::Evicted => Outcome::Evicted,
            Outcome::Cancelled => Outcome::Cancelled,
            Outcome::Rejected(r) => Outcome::Rejected(r.clone()),
        }
    }

    /// Whether it is `Completed`.
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed(_))
    }
}

impl<R> std::fmt::Display for Outcome<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Completed(_) => write!(f, "completed"),
            Outcome::Failed(e) => write!(f, "failed: {e}"),
            Outcome::TimedOut { after } => {
                write!(f, "timed out after {after:?}; the worker was killed")
            }
            Outcome::Crashed(c) => write!(f, "crashed: {c}"),
            Outcome::Evicted => write!(f, "evicted by a more urgent job"),
            Outcome::Cancelled => write!(f, "cancelled"),
            Outcome::Rejected(why) => write!(f, "rejected: {why}"),
        }
    }
}

/// An outcome other than `Completed` is an error: `report.into_result()?`
/// works in a function that returns `Result<_, Box<dyn Error>>`, and its
/// source is the [`JobError`] or [`Crash`] behind it.
impl<R: std::fmt::Debug> std::error::Error for Outcome<R> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Outcome::Failed(e) => Some(e),
            Outcome::Crashed(c) => Some(c),
            _ => None,
        }
    }
}

impl<R> Outcome<R> {
    /// How a worker's report of this outcome reads to the scheduling core.
    pub(crate) fn finish(&self) -> crate::sched::Finish {
        match self {
            Outcome::Completed(_) => crate::sched::Finish::Completed,
            Outcome::Cancelled => crate::sched::Finish::Cancelled,
            _ => crate::sched::Finish::Failed,
        }
    }
}

impl Outcome<Payload> {
    /// The outcome a worker's report of a job's end stands for.
    pub fn from_result(result: JobResult) -> Outcome<Payload> {
        match result {
            JobResult::Ok(p) => Outcome::Completed(p),
            JobResult::Err(e) => Outcome::Failed(JobError::Handler(e)),
            JobResult::Panic(e) => Outcome::Failed(JobError::Panic(e)),
            JobResult::BadInput(e) => Outcome::Failed(JobError::BadInput(e)),
            JobResult::UnknownKind(e) => Outcome::Failed(JobError::UnknownKind(e)),
            JobResult::Cancelled => Outcome::Cancelled,
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The handler returned an error.
    #[error("the handler returned an error: {0}")]
    Handler(String),
    /// The handler panicked.
    #[error("the handler panicked: {0}")]
    Panic(String),
    /// The payload did not deserialize into the handler's input type.
    #[error("the payload does not fit the handler's input type: {0}")]
    BadInput(String),
    /// No handler for the kind in the worker that got it.
    #[error("{0}")]
    UnknownKind(String),
    /// The result did not deserialize into the type the submitter asked for.
    #[error("the result does not fit the type the submitter expects: {0}")]
    BadResult(String),
}

/// How a worker died or broke under a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Crash {
    /// The process ended: exit code or signal.
    #[error("the worker process ended with {0}")]
    Exited(Exit),
    /// It sent something that is not a procvisor frame; it was killed.
    #[error("the worker broke the protocol and was killed: {0}")]
    ProtocolFault(String),
    /// It stopped sending heartbeats; it was killed.
    #[error("the worker sent no heartbeat for {0:?} and was killed")]
    Unresponsive(Duration),
    /// Another process connected to the worker's handshake socket before
    /// the worker did, without the secret only the worker knows. It was
    /// refused before any job reached it, and the worker was replaced.
    #[error("another process of this user connected to the worker's handshake socket first, without the worker's secret; it was refused before any job reached it and the worker was replaced")]
    HandshakeTaken,
    /// The job was refused memory past the worker's cap
    /// ([`Config::memory_limit`](crate::Config::memory_limit)), and the
    /// worker died of it.
    #[error("the job needed more memory than the worker's limit of {} MiB (Config::memory_limit) and the worker was stopped", limit >> 20)]
    MemoryLimit {
        /// The cap, in bytes.
        limit: u64,
    },
}

/// How an earlier attempt of a retried job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    /// Which attempt (1 = the first).
    pub attempt: u32,
    /// How it ended (without a result: a completed attempt is never retried).
    pub outcome: Outcome<()>,
}

/// The end of a job, as its submitter receives it.
///
/// ```
/// use procvisor::{Outcome, Report};
///
/// fn show(report: Report<u64>) {
///     match &report.outcome {
///         Outcome::Completed(n) => println!("job {} gave {n}", report.id),
///         Outcome::TimedOut { after } => println!("killed after {after:?}"),
///         other => println!("job {} ended {other} after {} attempts", report.id, report.attempts),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Report<R> {
    /// The job's id.
    pub id: JobId,
    /// Its kind.
    pub kind: Arc<str>,
    /// How it ended.
    pub outcome: Outcome<R>,
    /// Which attempt ended it (1 = the first).
    pub attempts: u32,
    /// How many times it was evicted and put back before this.
    pub evictions: u32,
    /// The worker process that ran it last, if any.
    pub worker_pid: Option<u32>,
    /// How long its last run took, if it ran.
    pub ran_for: Option<Duration>,
    /// How each earlier attempt ended, when the job was retried.
    pub history: Vec<AttemptEnd>,
}

impl Report<Payload> {
    /// Decode a completed result into `R` (a result that does not decode
    /// becomes [`JobError::BadResult`]).
    pub fn decode<R: DeserializeOwned>(self) -> Report<R> {
        let outcome = self.outcome.and_then_result(|p| {
            p.decode::<R>()
                .map_err(|e| JobError::BadResult(e.to_string()))
        });
        Report {
            id: self.id,
            kind: self.kind,
            outcome,
            attempts: self.attempts,
            evictions: self.evictions,
            worker_pid: self.worker_pid,
            ran_for: self.ran_for,
            history: self.history,
        }
    }
}

impl<R> Report<R> {
    /// The report of a job whose supervisor thread ended without reporting
    /// it: it panicked, or its process is going down. Every job the
    /// supervisor accepted otherwise gets the one report its scheduling
    /// core decided; this is no decision, only the fact that none came.
    pub(crate) fn supervisor_lost(id: JobId, kind: Arc<str>) -> Report<R> {
        Report {
            id,
            kind,
            outcome: Outcome::Rejected(
                "the supervisor ended abnormally before the job ended (see its log)".into(),
            ),
            attempts: 0,
            evictions: 0,
            worker_pid: None,
            ran_for: None,
            history: Vec::new(),
        }
    }

    /// The result if completed, otherwise the outcome as an error.
    pub fn into_result(self) -> Result<R, Outcome<std::convert::Infallible>> {
        match self.outcome {
            Outcome::Completed(r) => Ok(r),
            other => Err(other.and_then_result(|_| unreachable!("not completed"))),
        }
    }
}
