//! Retries: which endings retry, how many attempts, and how long to wait
//! between them (exponential backoff with a cap and full jitter).

use std::time::Duration;

use rand::{Rng, RngExt};

/// Endings that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryable {
    /// The handler returned an error or panicked.
    Failed,
    /// The job ran past its timeout.
    TimedOut,
    /// The worker died under it.
    Crashed,
}

/// Most attempts a retry policy may allow.
pub const MAX_ATTEMPTS: u32 = 10_000;

/// When and how often a job is tried again. Evictions never count as
/// attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Retry after a failure.
    pub on_failed: bool,
    /// Retry after a timeout.
    pub on_timed_out: bool,
    /// Retry after a crash.
    pub on_crashed: bool,
    /// Backoff before the first retry (before jitter).
    pub base: Duration,
    /// Longest backoff.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// No retries.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            on_failed: true,
            on_timed_out: true,
            on_crashed: true,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Up to `max_attempts` attempts on any retryable ending, backoff from
    /// `base` doubling up to `cap`.
    pub fn attempts(max_attempts: u32, base: Duration, cap: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base,
            cap,
            ..RetryPolicy::default()
        }
    }

    /// Check the numbers: 1 to [`MAX_ATTEMPTS`] attempts, a base and a cap
    /// of at most a day.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(format!(
                "{} attempts is out of range: use 1 (no retry) to {MAX_ATTEMPTS}",
                self.max_attempts
            ));
        }
        super::core::check_delay("the backoff base", self.base)?;
        super::core::check_delay("the backoff cap", self.cap)
    }

    /// Whether an ending of this sort retries at all.
    pub fn retries(&self, ending: Retryable) -> bool {
        match ending {
            Retryable::Failed => self.on_failed,
            Retryable::TimedOut => self.on_timed_out,
            Retryable::Crashed => self.on_crashed,
        }
    }

    /// Whether `attempt` (1-based), ended so, gets another try.
    pub fn should_retry(&self, attempt: u32, ending: Retryable) -> bool {
        attempt < self.max_attempts && self.retries(ending)
    }

    /// The upper bound of the wait after `attempt` failed:
    /// `min(cap, base × 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait after `attempt` failed: uniform in `0..=ceiling` ("full
    /// jitter", which spreads retries of many jobs apart).
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(attempt).as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_lie_within_their_jitter_bounds() {
        let p = RetryPolicy::attempts(10, Duration::from_millis(100), Duration::from_secs(2));
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        for attempt in 1..=10 {
            let ceiling = p.ceiling(attempt);
            assert_eq!(
                ceiling,
                (Duration::from_millis(100) * 2u32.pow(attempt - 1)).min(Duration::from_secs(2))
            );
            let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
            for _ in 0..2000 {
                let d = p.delay(attempt, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                lo = lo.min(d);
                hi = hi.max(d);
            }
            // Full jitter really spreads over the range.
            assert!(
                lo < ceiling / 10 && hi > ceiling * 9 / 10,
                "attempt {attempt}: {lo:?}..{hi:?}"
            );
        }
    }

    #[test]
    fn max_attempts_and_endings_are_honoured() {
        let p = RetryPolicy {
            on_timed_out: false,
            ..RetryPolicy::attempts(3, Duration::ZERO, Duration::ZERO)
        };
        assert!(p.should_retry(1, Retryable::Failed));
        assert!(p.should_retry(2, Retryable::Crashed));
        assert!(!p.should_retry(3, Retryable::Failed));
        assert!(!p.should_retry(1, Retryable::TimedOut));
        assert!(!RetryPolicy::default().should_retry(1, Retryable::Failed));
    }
}
