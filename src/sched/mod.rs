//! The scheduling core, free of IO: no actix, no processes, no clock reads, no
//! global randomness. Time is passed in, so every decision can be replayed
//! deterministically in tests.
//!
//! - [`weights`]: an 8-ary sum tree for O(log n) weighted draws.
//! - [`queue`]: queued jobs and the selection policies (priority, weighted
//!   random, uniform, priority-weighted).
//! - [`rate`]: token buckets.
//! - [`retry`]: retry policy, backoff with full jitter.
//! - [`core`]: the queue plus the worker slots, and the decisions: dispatch
//!   (with per-kind limits, rate limits, the exclusion window), timeout,
//!   eviction, cancel, retries, a bounded queue.
//! - [`restart`]: worker restart backoff and the intensity limit.
//! - [`pool`]: the worker pool's life cycle (starts, timeouts, heartbeats,
//!   restarts, exit graces) as a state machine beside the core.

// The core is public under the `internals` feature (for its benchmark), so
// its items are `pub`; without the feature, some of them are used only by
// its own tests.
#![cfg_attr(
    not(feature = "internals"),
    allow(dead_code, unused_imports, unreachable_pub)
)]

pub mod core;

/// `by` after `now`; `now` itself if that instant is past what an
/// `Instant` can hold (no panic on overflow).
pub(crate) fn later(now: std::time::Instant, by: std::time::Duration) -> std::time::Instant {
    now.checked_add(by).unwrap_or(now)
}

pub mod pool;
pub mod queue;
pub mod rate;
pub mod restart;
pub mod retry;
pub mod weights;

pub use self::core::{
    weight_units, Core, CoreConfig, CoreStats, Decision, Demand, End, Ended, EvictionMode, Finish,
    JobMeta, JobSpec, KillReason, Refused, Rejection, SlotId, SlotState, MAX_WEIGHT, WEIGHT_UNIT,
};
pub use queue::{KindId, Policy, Queue, QueueKey, LEAST_URGENT, MOST_URGENT, PRIORITY_LEVELS};
pub use rate::{RateLimit, TokenBucket};
pub use restart::{RestartDecision, RestartPolicy, RestartTracker};
pub use retry::{RetryPolicy, Retryable};

#[cfg(test)]
mod testkit {
    use std::time::Instant;

    use super::{Core, Decision, Ended, Finish, SlotId};
    use crate::wire::JobId;

    /// The worker in `slot` reports `job` ended `how` at `now`: poll, and
    /// return the job's `Ended` decision and the poll's other decisions.
    pub(crate) fn end_of<J: std::fmt::Debug, O: std::fmt::Debug>(
        core: &mut Core<J, O>,
        slot: SlotId,
        job: JobId,
        how: Finish,
        now: Instant,
    ) -> (Ended<J>, Vec<Decision<J, O>>) {
        assert!(
            core.finished(slot, job, how, None, now).is_ok(),
            "job {job} not in slot {slot}"
        );
        let mut out = Vec::new();
        core.poll(now, &mut out);
        let pos = out
            .iter()
            .position(|d| matches!(d, Decision::Ended { ended, .. } if ended.job == job))
            .unwrap_or_else(|| panic!("job {job} did not end: {out:?}"));
        let Decision::Ended { ended, .. } = out.remove(pos) else {
            unreachable!()
        };
        (ended, out)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ending_tests;

#[cfg(test)]
mod policy_tests;

#[cfg(test)]
mod props;
