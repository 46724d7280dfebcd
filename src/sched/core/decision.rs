//! What the core tells its driver: the decisions that [`Core::poll`]
//! emits, and how jobs end.
//!
//! [`Core::poll`]: super::Core::poll

use std::time::Instant;

use super::spec::JobSpec;
use super::SlotId;
use crate::wire::JobId;

/// Why the core wants a worker killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Its running job passed its deadline.
    Timeout,
    /// Its running job is evicted for a more urgent one.
    Evicted,
    /// Its running job was cancelled (and did not stop within the grace).
    Cancelled,
    /// The supervisor is shutting down and the grace is over.
    Shutdown,
}

/// Why a job was rejected after it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A more urgent job pushed it out of the full queue.
    PushedOut,
    /// The supervisor gave up (or stopped) before the job could run.
    Stopped,
}

/// How a job (or one attempt of it) ended. Every ending is decided by the
/// core, and reaches the driver as a [`Decision::Ended`] or, for an attempt
/// that will be tried again, a [`Decision::Retrying`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The handler returned a result.
    Completed,
    /// The handler returned an error or panicked.
    Failed,
    /// It passed its deadline; its worker was killed.
    TimedOut,
    /// Its worker died (or broke, or went silent) while it ran.
    Crashed,
    /// Evicted and dropped.
    Evicted,
    /// Cancelled, or cut short by shutdown.
    Cancelled,
    /// Never ran to an end.
    Rejected(Rejection),
}

impl End {
    /// Whether a retry policy may give this ending another attempt.
    pub fn is_retryable(self) -> bool {
        matches!(self, End::Failed | End::TimedOut | End::Crashed)
    }
}

/// How a worker said a job ended (the input to [`Core::finished`]).
///
/// [`Core::finished`]: super::Core::finished
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The handler returned a result.
    Completed,
    /// The handler returned an error or panicked (or its input did not
    /// decode).
    Failed,
    /// The handler stopped on a cancel request (or never started).
    Cancelled,
}

/// Facts about a job when it leaves the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobMeta {
    /// Its kind.
    pub kind: crate::sched::KindId,
    /// Its priority.
    pub priority: u8,
    /// Which attempt this was (1 = first).
    pub attempt: u32,
    /// How many times it was evicted and put back.
    pub evictions: u32,
    /// When its last run started, if it ever ran.
    pub started: Option<Instant>,
    /// The slot it last ran on.
    pub slot: Option<SlotId>,
}

/// A job that left the core, with its data.
#[derive(Debug)]
pub struct Ended<J> {
    /// The job's id.
    pub job: JobId,
    /// What the driver stored with it.
    pub data: J,
    /// Facts about its life.
    pub meta: JobMeta,
    /// What it was submitted with.
    pub spec: JobSpec,
}

/// What the core asks its driver to do. `J` is the driver's data for a job,
/// `O` the detail the driver passed in with an ending (a worker's result, a
/// crash's cause), handed back with the decision it led to.
#[derive(Debug)]
pub enum Decision<J, O> {
    /// Send this job to the worker in this slot.
    Dispatch {
        /// The slot.
        slot: SlotId,
        /// The job (its data is still in the core: `Core::data`).
        job: JobId,
    },
    /// A job with a timeout became the running job of its slot: its
    /// timeout counts from now. Only jobs with a timeout are announced, so
    /// a job source that bounds a run elsewhere (the job store's deadline)
    /// learns when the run began.
    Started {
        /// The slot.
        slot: SlotId,
        /// The job.
        job: JobId,
    },
    /// Tell this slot's worker to cancel this job.
    SendCancel {
        /// The slot.
        slot: SlotId,
        /// The job.
        job: JobId,
    },
    /// Kill the worker in this slot; the slot waits for a new one.
    Kill {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: KillReason,
        /// The running job it was killed for, if any.
        job: Option<JobId>,
    },
    /// This job left a worker and is waiting again, its data still in the
    /// core (its worker died or was killed before it ran, or it was evicted
    /// and put back).
    Requeued {
        /// The job.
        job: JobId,
        /// The slot it left.
        slot: SlotId,
    },
    /// One attempt of this job ended and it will be tried again once `due`
    /// has passed; its data stays in the core.
    Retrying {
        /// The job.
        job: JobId,
        /// The slot the attempt ran on.
        slot: SlotId,
        /// The attempt that ended (1 = first).
        attempt: u32,
        /// How it ended.
        end: End,
        /// The driver's detail of that ending, if it gave one.
        detail: Option<O>,
        /// When the next attempt may start.
        due: Instant,
    },
    /// This job has ended for good; its data is handed back.
    Ended {
        /// The job and its data.
        ended: Ended<J>,
        /// How it ended.
        end: End,
        /// The driver's detail of that ending, if it gave one.
        detail: Option<O>,
    },
}
