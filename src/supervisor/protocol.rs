//! The messages the API handles send to the supervisor actor, and what the
//! actor keeps with each job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Message;
use tokio::sync::oneshot;

use super::outcome::AttemptEnd;
use super::status::{JobState, Snapshot};
use super::target::Target;
use crate::sched::{Demand, RetryPolicy};
use crate::wire::{JobId, Payload};

/// What the supervisor keeps with each job.
#[derive(Debug)]
pub(crate) struct JobRecord {
    pub(crate) kind: Arc<str>,
    pub(crate) payload: Payload,
    /// Where its report goes; moved to its worker's reader while it is held
    /// by a worker.
    pub(crate) target: Option<Target>,
    pub(crate) progress: Option<(f32, String)>,
    /// How earlier attempts ended.
    pub(crate) history: Vec<AttemptEnd>,
    /// When it joined the queue (accepted, put back, or due again).
    pub(crate) queued_at: std::time::Instant,
}

/// Why a job was not admitted to a bounded queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdmitError {
    /// Full, and the submitter would not wait.
    Full(usize),
    /// Still full when the submitter's wait ran out.
    StillFull(usize, Duration),
    /// The supervisor stopped accepting jobs (the reason).
    Closed(String),
}

/// How a submit meets a full queue.
pub(crate) enum Admission {
    /// No capacity is set: always admitted, no answer needed.
    Unbounded,
    /// Fail at once when full.
    Try(oneshot::Sender<Result<(), AdmitError>>),
    /// Wait for room, until a deadline if any.
    Wait {
        until: Option<Instant>,
        ack: oneshot::Sender<Result<(), AdmitError>>,
    },
}

impl Admission {
    pub(crate) fn answer(self, r: Result<(), AdmitError>) {
        match self {
            Admission::Unbounded => {}
            Admission::Try(ack) | Admission::Wait { ack, .. } => {
                let _ = ack.send(r);
            }
        }
    }
}

/// Submit a job (the API has validated it).
pub(crate) struct Submit {
    pub(crate) id: JobId,
    pub(crate) priority: u8,
    pub(crate) timeout: Option<Duration>,
    pub(crate) weight: u64,
    pub(crate) retry: Option<Box<RetryPolicy>>,
    pub(crate) record: JobRecord,
    pub(crate) admission: Admission,
}

impl Message for Submit {
    type Result = ();
}

/// Cancel a job.
pub(crate) struct Cancel(pub(crate) JobId);

impl Message for Cancel {
    type Result = ();
}

/// Hand out no job at or after this instant (see
/// `Supervisor::hold_starts_from`).
pub(crate) struct HoldStarts(pub(crate) Option<std::time::Instant>);

impl Message for HoldStarts {
    type Result = ();
}

/// Ask for a [`Snapshot`].
pub(crate) struct GetSnapshot;

impl Message for GetSnapshot {
    type Result = Snapshot;
}

/// Ask where a job is.
pub(crate) struct GetJob(pub(crate) JobId);

impl Message for GetJob {
    type Result = JobState;
}

/// Ask how much work the supervisor wants from a job source.
pub(crate) struct GetDemand;

impl Message for GetDemand {
    type Result = Demand;
}

/// Shut down: running jobs get `grace`; answered when no worker remains.
pub(crate) struct Shutdown {
    pub(crate) grace: Duration,
    pub(crate) done: oneshot::Sender<()>,
}

impl Message for Shutdown {
    type Result = ();
}
