//! When to restart a worker that died, and when to stop trying.
//!
//! Two rules, as OTP supervisors have them: exponential backoff per slot
//! (a slot whose workers keep dying waits longer each time, up to a cap, and
//! starts from zero again once one of its workers completes a job), and an
//! intensity limit over the whole pool (more than `max_restarts` unexpected
//! deaths within `within` and the supervisor gives up instead of looping).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The restart rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Unexpected worker deaths tolerated within `within`.
    pub max_restarts: u32,
    /// The intensity window.
    pub within: Duration,
    /// First backoff delay after a death.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 20,
            within: Duration::from_secs(10),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// What to do about a worker that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start a new one after this delay.
    After(Duration),
    /// Too many deaths: give up.
    GiveUp {
        /// Deaths counted in the window.
        deaths: u32,
        /// The window.
        within: Duration,
    },
}

/// Tracks deaths against a [`RestartPolicy`].
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartTracker {
    /// A tracker with no deaths yet.
    pub fn new(policy: RestartPolicy) -> RestartTracker {
        RestartTracker {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// A worker died unexpectedly at `now`; its slot has seen `consecutive`
    /// deaths in a row (this one included) without completing a job.
    pub fn on_death(&mut self, now: Instant, consecutive: u32) -> RestartDecision {
        self.recent.push_back(now);
        while let Some(&t) = self.recent.front() {
            if now.saturating_duration_since(t) >= self.policy.within {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let deaths = self.recent.len() as u32;
        if deaths > self.policy.max_restarts {
            return RestartDecision::GiveUp {
                deaths,
                within: self.policy.within,
            };
        }
        RestartDecision::After(self.backoff(consecutive))
    }

    /// The backoff delay after `consecutive` deaths in a row.
    pub fn backoff(&self, consecutive: u32) -> Duration {
        if consecutive <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(consecutive - 2).unwrap_or(u32::MAX);
        self.policy
            .backoff_base
            .saturating_mul(factor)
            .min(self.policy.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let t = RestartTracker::new(RestartPolicy::default());
        let ms = |n| t.backoff(n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [0, 10, 20, 40]);
        assert_eq!(t.backoff(40), Duration::from_secs(5));
    }

    #[test]
    fn intensity_limit_trips_only_inside_the_window() {
        let policy = RestartPolicy {
            max_restarts: 3,
            within: Duration::from_secs(10),
            ..RestartPolicy::default()
        };
        let t0 = Instant::now();
        let mut t = RestartTracker::new(policy);
        for i in 0..3 {
            assert!(matches!(
                t.on_death(t0 + Duration::from_secs(i), 1),
                RestartDecision::After(_)
            ));
        }
        assert_eq!(
            t.on_death(t0 + Duration::from_secs(3), 1),
            RestartDecision::GiveUp {
                deaths: 4,
                within: Duration::from_secs(10)
            }
        );
        // Spread out, the same number of deaths is fine.
        let mut t = RestartTracker::new(policy);
        for i in 0..10 {
            assert!(matches!(
                t.on_death(t0 + Duration::from_secs(5 * i), 1),
                RestartDecision::After(_)
            ));
        }
    }
}
