//! A token bucket: at most `burst` starts at once, refilled at `rate` per
//! second. Time is passed in.

use std::time::{Duration, Instant};

/// Rate and burst of a [`TokenBucket`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (> 0).
    pub per_second: f64,
    /// Most tokens held (≥ 1).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` starts a second, at most `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    /// Whether the numbers make sense: see [`check`](Self::check).
    pub fn is_valid(&self) -> bool {
        self.check().is_ok()
    }

    /// Check the numbers: a rate from [`MIN_RATE`] to [`MAX_RATE`] per
    /// second, a burst from 1 to [`MAX_BURST`]. The error says which is off.
    pub fn check(&self) -> Result<(), String> {
        let r = self.per_second;
        if !(r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r)) {
            return Err(format!(
                "a rate of {r} per second is out of range: use {MIN_RATE} to {MAX_RATE:e}"
            ));
        }
        if !(1..=MAX_BURST).contains(&self.burst) {
            return Err(format!(
                "a burst of {} is out of range: use 1 to {MAX_BURST}",
                self.burst
            ));
        }
        Ok(())
    }
}

/// The slowest rate accepted: one start every 1,000 seconds.
pub const MIN_RATE: f64 = 0.001;

/// The fastest rate accepted.
pub const MAX_RATE: f64 = 1e9;

/// The largest burst accepted.
pub const MAX_BURST: u32 = 1_000_000;

/// A token bucket (see the module docs). It starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: limit.burst as f64,
            at: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.limit.per_second).min(self.limit.burst as f64);
        }
        self.at = Some(now);
    }

    /// Whether a token is there now (without taking it).
    pub fn ready(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    /// Take a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (now if one is).
    pub fn next_token(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        // The rate is checked to be at least MIN_RATE, but a bucket may be
        // built from any numbers: never let the wait overflow.
        let wait = (1.0 - self.tokens) / self.limit.per_second.max(MIN_RATE);
        let wait = Duration::try_from_secs_f64(wait).unwrap_or(super::core::MAX_DELAY);
        // Round up to the next microsecond so that a wake at that time finds
        // the token there.
        now.checked_add(wait.min(super::core::MAX_DELAY) + Duration::from_micros(1))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(RateLimit::new(10.0, 3));
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        let next = b.next_token(t0);
        assert!(next > t0 + Duration::from_millis(99) && next <= t0 + Duration::from_millis(101));
        assert!(!b.try_take(t0 + Duration::from_millis(99)));
        assert!(b.try_take(next));
        // Long idle refills to the burst, not beyond.
        // (see below)
        let later = t0 + Duration::from_secs(60);
        let taken = (0..10).filter(|_| b.try_take(later)).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn a_rate_of_zero_or_a_tiny_one_never_panics() {
        let t0 = Instant::now();
        for r in [0.0, 1e-300, f64::MIN_POSITIVE, -1.0, f64::NAN] {
            assert!(RateLimit::new(r, 1).check().is_err());
            let mut b = TokenBucket::new(RateLimit::new(r, 1));
            assert!(b.try_take(t0));
            // Checked configurations never get here; unchecked ones must
            // still not panic or overflow.
            let next = b.next_token(t0);
            assert!(next >= t0);
        }
        assert!(RateLimit::new(5.0, 0)
            .check()
            .unwrap_err()
            .contains("burst"));
        assert!(RateLimit::new(5.0, 2).check().is_ok());
    }
}
