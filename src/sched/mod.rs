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

pub mod core;
pub mod queue;
pub mod rate;
pub mod restart;
pub mod retry;
pub mod weights;

pub use self::core::{
    weight_units, Core, CoreConfig, CoreStats, Decision, End, Ended, EvictionMode, JobMeta,
    JobSpec, KillReason, Refused, SlotId, SlotState, MAX_WEIGHT, WEIGHT_UNIT,
};
pub use queue::{KindId, Policy, Queue, QueueKey, LEAST_URGENT, MOST_URGENT, PRIORITY_LEVELS};
pub use rate::{RateLimit, TokenBucket};
pub use restart::{RestartDecision, RestartPolicy, RestartTracker};
pub use retry::{RetryPolicy, Retryable};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod policy_tests;

#[cfg(test)]
mod props;
