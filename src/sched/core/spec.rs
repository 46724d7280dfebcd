//! What the core knows of a job: its spec as submitted, and the compact
//! entry it keeps for it.

use std::time::Duration;

use super::SlotId;
use crate::sched::queue::{KindId, QueueKey};
use crate::sched::retry::RetryPolicy;

/// Weights are stored in fixed point with this many units per 1.0.
pub const WEIGHT_UNIT: f64 = 1_000_000.0;

/// Largest accepted weight.
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// A weight in fixed point (None if not finite, not positive or too large).
pub fn weight_units(weight: f64) -> Option<u64> {
    (weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT)
        .then(|| ((weight * WEIGHT_UNIT).round() as u64).max(1))
}

/// What the core needs to know about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// 0 (most urgent) to 10.
    pub priority: u8,
    /// Longest run before the worker is killed; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Its kind (`Core::kind`).
    pub kind: KindId,
    /// Its weight for the random policies, in fixed point ([`weight_units`]).
    pub weight: u64,
    /// Its own retry policy, if not the core's default.
    pub retry: Option<Box<RetryPolicy>>,
}

impl JobSpec {
    /// A job of `kind` with `priority`, weight 1, no timeout, default retries.
    pub fn new(kind: KindId, priority: u8) -> JobSpec {
        JobSpec {
            priority,
            timeout: None,
            kind,
            weight: WEIGHT_UNIT as u64,
            retry: None,
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Queued(QueueKey),
    /// Waiting for its retry to be due.
    Delayed,
    /// In a worker slot (u32 keeps the entry small).
    Slot(u32),
}

impl Place {
    pub(super) fn slot(self) -> Option<SlotId> {
        match self {
            Place::Slot(s) => Some(s as SlotId),
            Place::Queued(_) | Place::Delayed => None,
        }
    }
}

/// A job's spec as the core stores it: the same facts as [`JobSpec`] in
/// fewer bytes, so that a map slot (id + entry) fits one 64-byte cache line.
#[derive(Debug)]
pub(super) struct Spec {
    pub(super) weight: u64,
    /// Timeout in nanoseconds; 0: none.
    timeout_ns: u64,
    pub(super) retry: Option<Box<RetryPolicy>>,
    pub(super) kind: KindId,
    pub(super) priority: u8,
}

impl Spec {
    pub(super) fn new(spec: JobSpec) -> Spec {
        Spec {
            weight: spec.weight,
            timeout_ns: spec
                .timeout
                .map_or(0, |t| t.as_nanos().clamp(1, u64::MAX as u128) as u64),
            retry: spec.retry,
            kind: spec.kind,
            priority: spec.priority,
        }
    }

    pub(super) fn timeout(&self) -> Option<Duration> {
        (self.timeout_ns > 0).then(|| Duration::from_nanos(self.timeout_ns))
    }

    pub(super) fn to_job_spec(&self) -> JobSpec {
        JobSpec {
            priority: self.priority,
            timeout: self.timeout(),
            kind: self.kind,
            weight: self.weight,
            retry: self.retry.clone(),
        }
    }
}

/// The core's record of one job.
#[derive(Debug)]
pub(super) struct Entry<J> {
    pub(super) spec: Spec,
    /// `None` once the job's end was decided while its worker still holds
    /// it (cancelled in a worker): the entry only keeps the slot's order.
    pub(super) data: Option<J>,
    pub(super) place: Place,
    pub(super) attempt: u16,
    pub(super) evictions: u16,
    /// Its frame never reached its worker (see `Core::undelivered`).
    pub(super) undelivered: bool,
}

#[cfg(test)]
mod size {
    /// A map slot (id + entry, no payload) fits one 64-byte cache line.
    #[test]
    fn an_entry_and_its_id_fit_a_cache_line() {
        assert!(8 + std::mem::size_of::<super::Entry<()>>() <= 64);
    }
}
