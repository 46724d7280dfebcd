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

    /// Whether the numbers make sense (finite positive rate, burst ≥ 1).
    pub fn is_valid(&self) -> bool {
        self.per_second.is_finite() && self.per_second > 0.0 && self.burst >= 1
    }
}

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
        let wait = (1.0 - self.tokens) / self.limit.per_second;
        // Round up to the next microsecond so that a wake at that time finds
        // the token there.
        now + Duration::from_secs_f64(wait) + Duration::from_micros(1)
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
        let later = t0 + Duration::from_secs(60);
        let taken = (0..10).filter(|_| b.try_take(later)).count();
        assert_eq!(taken, 3);
    }
}
