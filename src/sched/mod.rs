//! The scheduling core, free of IO: no actix, no processes, no clock reads, no
//! global randomness. Time is passed in, so every decision can be replayed
//! deterministically in tests.
//!
//! - [`queue`]: queued jobs by priority (FIFO within a priority).
//! - [`core`]: the queue plus the worker slots, and the decisions: dispatch,
//!   timeout, eviction, cancel.
//! - [`restart`]: backoff and the restart intensity limit.

pub mod core;
pub mod queue;
pub mod restart;

pub use self::core::{
    Core, CoreConfig, CoreStats, Decision, End, Ended, EvictionMode, JobMeta, JobSpec, KillReason,
    SlotId, SlotState,
};
pub use queue::{PriorityQueue, LEAST_URGENT, MOST_URGENT, PRIORITY_LEVELS};
pub use restart::{RestartDecision, RestartPolicy, RestartTracker};

#[cfg(test)]
mod tests;
