//! The core's fixed settings, and the ranges they must lie in.

use std::time::Duration;

use crate::sched::queue::Policy;
use crate::sched::rate::RateLimit;
use crate::sched::retry::RetryPolicy;

/// What happens to the job whose worker is killed to make room for a more
/// urgent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionMode {
    /// Never evict: urgent jobs wait for a free worker.
    Off,
    /// Put the evicted job back in the queue, in its old place (default).
    #[default]
    Requeue,
    /// End the evicted job with the outcome `Evicted`.
    Drop,
}

/// Most worker slots.
pub const MAX_SLOTS: usize = 4096;

/// Most jobs a worker may hold at once.
pub const MAX_PREFETCH: usize = 1024;

/// Longest grace, timeout or backoff the core accepts (a day): anything
/// longer is a mistake, and keeps time arithmetic far from overflow.
pub const MAX_DELAY: Duration = Duration::from_secs(86_400);

/// Most kinds an exclusion window may span.
pub const MAX_EXCLUSION_WINDOW: usize = 1024;

/// The core's fixed settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Number of worker slots.
    pub slots: usize,
    /// Jobs a worker may hold at once (1 = no prefetch).
    pub prefetch: usize,
    /// What eviction does.
    pub eviction: EvictionMode,
    /// How long a cancelled running job may take to stop by itself before
    /// its worker is killed (zero: kill at once).
    pub cancel_grace: Duration,
    /// How the next job is chosen.
    pub policy: Policy,
    /// Avoid starting a job of the same kind as one of the last this many
    /// started, when a job of another kind is waiting (0: off).
    pub exclusion_window: usize,
    /// At most this many jobs of a kind held by workers at once.
    pub kind_limits: Vec<(String, usize)>,
    /// Rate limit on starts, over all kinds.
    pub rate: Option<RateLimit>,
    /// Rate limits on starts, per kind.
    pub kind_rates: Vec<(String, RateLimit)>,
    /// Most jobs waiting (queued or waiting to retry); `None`: unbounded.
    pub capacity: Option<usize>,
    /// When full, a more urgent job pushes out the least urgent waiting one.
    pub push_out: bool,
    /// Retries for jobs that do not set their own.
    pub retry: RetryPolicy,
    /// Seed of the core's random choices (draws, jitter).
    pub seed: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            slots: 1,
            prefetch: 1,
            eviction: EvictionMode::Requeue,
            cancel_grace: Duration::ZERO,
            policy: Policy::Priority,
            exclusion_window: 0,
            kind_limits: Vec::new(),
            rate: None,
            kind_rates: Vec::new(),
            capacity: None,
            push_out: false,
            retry: RetryPolicy::default(),
            seed: 0,
        }
    }
}

impl CoreConfig {
    /// Check every setting against its range; the error names the setting,
    /// the value and the range.
    pub fn check(&self) -> Result<(), String> {
        in_range("the number of workers", self.slots, 1, MAX_SLOTS)?;
        in_range("prefetch", self.prefetch, 1, MAX_PREFETCH)?;
        check_delay("cancel_grace", self.cancel_grace)?;
        in_range(
            "exclusion_window",
            self.exclusion_window,
            0,
            MAX_EXCLUSION_WINDOW,
        )?;
        for (kind, n) in &self.kind_limits {
            in_range(&format!("the limit of kind {kind:?}"), *n, 1, usize::MAX)?;
        }
        if let Some(rate) = &self.rate {
            rate.check().map_err(|e| format!("rate_limit: {e}"))?;
        }
        for (kind, rate) in &self.kind_rates {
            rate.check()
                .map_err(|e| format!("the rate limit of kind {kind:?}: {e}"))?;
        }
        if let Some(c) = self.capacity {
            in_range("capacity", c, 1, usize::MAX)?;
        }
        self.retry.check().map_err(|e| format!("retry: {e}"))
    }
}

fn in_range(what: &str, v: usize, lo: usize, hi: usize) -> Result<(), String> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else if hi == usize::MAX {
        Err(format!("{what} is {v}; it must be at least {lo}"))
    } else {
        Err(format!("{what} is {v}; it must be from {lo} to {hi}"))
    }
}

/// Check that a delay is at most [`MAX_DELAY`].
pub fn check_delay(what: &str, d: Duration) -> Result<(), String> {
    if d <= MAX_DELAY {
        Ok(())
    } else {
        Err(format!(
            "{what} is {d:?}; it must be at most {} s (a day)",
            MAX_DELAY.as_secs()
        ))
    }
}
