//! Where a job's one report goes: its completion target.
//!
//! A job submitted through `Supervisor::submit` reports to its
//! [`JobHandle`](crate::JobHandle); a job fed by another source (the
//! PostgreSQL store, or your own) reports to that source's [`JobSink`],
//! with the token the source gave it. Either way the report is the one the
//! scheduling core decided, sent once.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::outcome::{AttemptEnd, Report};
use crate::wire::Payload;

/// Receives the endings of the jobs a source submitted with
/// [`Supervisor::submit_for`](crate::Supervisor::submit_for). Called from
/// the supervisor's threads: keep it quick (hand the report to a channel).
pub trait JobSink: Send + Sync + 'static {
    /// The job submitted with `token` ended; this is its one report.
    fn ended(&self, token: u64, report: Report<Payload>);

    /// One attempt of the job ended and it will be tried again (the
    /// default does nothing).
    fn retrying(&self, token: u64, attempt: &AttemptEnd) {
        let _ = (token, attempt);
    }

    /// The job, which has a timeout, began running in a worker: its
    /// timeout counts from now (the default does nothing). A source that
    /// bounds a run on its own side (the job store's deadline) starts that
    /// bound here, not when it handed the job over.
    fn started(&self, token: u64) {
        let _ = token;
    }
}

/// A job's completion target.
pub(crate) enum Target {
    /// A submitter's handle in this process.
    Local(oneshot::Sender<Report<Payload>>),
    /// A job source, with its token for the job.
    Sink { sink: Arc<dyn JobSink>, token: u64 },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Local(_) => write!(f, "Local"),
            Target::Sink { token, .. } => write!(f, "Sink({token})"),
        }
    }
}

impl Target {
    /// Send the job's report.
    pub(crate) fn deliver(self, report: Report<Payload>) {
        match self {
            Target::Local(tx) => {
                let _ = tx.send(report);
            }
            Target::Sink { sink, token } => sink.ended(token, report),
        }
    }

    /// Tell a source that an attempt ended and will be retried.
    pub(crate) fn retrying(&self, attempt: &AttemptEnd) {
        if let Target::Sink { sink, token } = self {
            sink.retrying(*token, attempt);
        }
    }

    /// Tell a source that the job, which has a timeout, began running.
    pub(crate) fn started(&self) {
        if let Target::Sink { sink, token } = self {
            sink.started(*token);
        }
    }
}
