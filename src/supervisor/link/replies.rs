//! The completion targets of the jobs a worker holds, shared between the
//! actor and the worker's reader thread (the fast path).
//!
//! At dispatch the actor moves a job's target here, with what the core said
//! about it: a completion is always final, a failure only when
//! `Core::failure_is_final` said so. The reader thread delivers such a final
//! report the moment it reads it. Whoever takes a target out first reports
//! with it: the reader (a final result) or the actor (any decision of the
//! core), so every job is reported once.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::super::outcome::{AttemptEnd, Outcome, Report};
use super::super::target::Target;
use crate::wire::{JobId, Payload};

/// A dispatched job's target, and what its report says besides the outcome.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) target: Target,
    pub(crate) kind: Arc<str>,
    /// The core's id of its kind.
    pub(crate) kind_id: crate::sched::KindId,
    pub(crate) attempt: u32,
    pub(crate) evictions: u32,
    pub(crate) pid: Option<u32>,
    /// How earlier attempts ended.
    pub(crate) history: Vec<AttemptEnd>,
    /// A failure of this attempt ends the job (no retry is left).
    pub(crate) failure_is_final: bool,
    /// When the job was sent to the worker: no run the worker reports is
    /// longer than the time since.
    pub(crate) sent_at: std::time::Instant,
}

impl Reply {
    /// Send the report.
    pub(crate) fn send(self, id: JobId, outcome: Outcome<Payload>, ran_for: Option<Duration>) {
        tracing::debug!(job = id, kind = %self.kind, attempt = self.attempt, pid = self.pid, outcome = outcome.name(), ?ran_for, "job ended");
        self.target.deliver(Report {
            id,
            kind: self.kind,
            outcome,
            attempts: self.attempt,
            evictions: self.evictions,
            worker_pid: self.pid,
            ran_for,
            history: self.history,
        });
    }
}

/// The targets of the jobs a worker holds (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Replies(Arc<Mutex<FxHashMap<JobId, Reply>>>);

impl Replies {
    pub(crate) fn lock(&self) -> MutexGuard<'_, FxHashMap<JobId, Reply>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a job's target out, if nobody has yet.
    pub(crate) fn take(&self, job: JobId) -> Option<Reply> {
        self.lock().remove(&job)
    }

    /// Take it out to report `outcome` if that outcome is final as the core
    /// decided at dispatch (a completion, or a failure with no retry left).
    pub(crate) fn take_if_final(&self, job: JobId, outcome: &Outcome<Payload>) -> Option<Reply> {
        let mut map = self.lock();
        let is_final = match outcome {
            Outcome::Completed(_) => true,
            Outcome::Failed(_) => map.get(&job).is_some_and(|r| r.failure_is_final),
            _ => false,
        };
        if is_final {
            map.remove(&job)
        } else {
            None
        }
    }
}
