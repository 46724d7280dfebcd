//! A producer of test jobs: `sleep` jobs with a random priority
//! (0..=10) and runtime (3..=15 s), one every period, or with Gaussian gaps
//! (mean the period, standard deviation sigma, never negative). Seeded, so
//! a run can be replayed; all times can be scaled down together.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};

/// When the next job comes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// Every `period`.
    Periodic(Duration),
    /// Gaps drawn from a normal distribution (negative draws become zero).
    Gauss {
        /// Mean gap.
        mean: Duration,
        /// Standard deviation.
        sigma: Duration,
    },
}

/// One produced job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Produced {
    /// Wait this long after the previous job before submitting this one.
    pub gap: Duration,
    /// Its priority, 0..=10.
    pub priority: u8,
    /// How long it sleeps.
    pub runtime: Duration,
}

/// Runtimes of the test jobs, in seconds.
pub const RUNTIME_SECS: std::ops::RangeInclusive<u64> = 3..=15;

/// A seeded producer (an endless iterator of jobs).
#[derive(Debug)]
pub struct Producer {
    timing: Timing,
    scale: f64,
    rng: SmallRng,
}

impl Producer {
    /// A producer with `timing`, all times multiplied by `scale` (1.0: the
    /// original times; 0.01: a hundred times faster).
    pub fn new(timing: Timing, scale: f64, seed: u64) -> Producer {
        Producer {
            timing,
            scale,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }
}

impl Iterator for Producer {
    type Item = Produced;

    fn next(&mut self) -> Option<Produced> {
        let gap = match self.timing {
            Timing::Periodic(p) => p,
            Timing::Gauss { mean, sigma } => {
                let normal = Normal::new(mean.as_secs_f64(), sigma.as_secs_f64()).ok()?;
                Duration::from_secs_f64(normal.sample(&mut self.rng).max(0.0))
            }
        };
        let priority = self.rng.random_range(0..=10u8);
        let runtime = Duration::from_secs(self.rng.random_range(RUNTIME_SECS));
        Some(Produced {
            gap: self.scaled(gap),
            priority,
            runtime: self.scaled(runtime),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_gaps_are_the_period_and_jobs_are_in_range() {
        let jobs: Vec<Produced> = Producer::new(Timing::Periodic(Duration::from_secs(5)), 1.0, 1)
            .take(1000)
            .collect();
        assert!(jobs.iter().all(|j| j.gap == Duration::from_secs(5)));
        assert!(jobs.iter().all(|j| j.priority <= 10));
        assert!(jobs
            .iter()
            .all(|j| (3..=15).contains(&j.runtime.as_secs()) && j.runtime.subsec_nanos() == 0));
        // Every priority and runtime shows up.
        for p in 0..=10 {
            assert!(jobs.iter().any(|j| j.priority == p));
        }
        for s in 3..=15 {
            assert!(jobs.iter().any(|j| j.runtime.as_secs() == s));
        }
    }

    #[test]
    fn gaussian_gaps_have_the_mean_and_sigma_asked_for() {
        let mean = Duration::from_secs(5);
        let sigma = Duration::from_secs(2);
        let gaps: Vec<f64> = Producer::new(Timing::Gauss { mean, sigma }, 1.0, 7)
            .take(20_000)
            .map(|j| j.gap.as_secs_f64())
            .collect();
        let n = gaps.len() as f64;
        let m = gaps.iter().sum::<f64>() / n;
        let sd = (gaps.iter().map(|g| (g - m).powi(2)).sum::<f64>() / n).sqrt();
        // Clamping at zero (2.5 sigma below the mean) moves these very little.
        assert!((m - 5.0).abs() < 0.05, "mean {m}");
        assert!((sd - 2.0).abs() < 0.05, "sd {sd}");
        assert!(gaps.iter().all(|&g| g >= 0.0));
    }

    #[test]
    fn a_seed_replays_and_scale_shrinks_every_time() {
        let a: Vec<Produced> = Producer::new(Timing::Periodic(Duration::from_secs(5)), 1.0, 3)
            .take(50)
            .collect();
        let b: Vec<Produced> = Producer::new(Timing::Periodic(Duration::from_secs(5)), 0.01, 3)
            .take(50)
            .collect();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.priority, y.priority);
            assert_eq!(x.runtime.mul_f64(0.01), y.runtime);
            assert_eq!(y.gap, Duration::from_millis(50));
        }
        let c: Vec<Produced> = Producer::new(Timing::Periodic(Duration::from_secs(5)), 1.0, 3)
            .take(50)
            .collect();
        assert_eq!(a, c);
    }
}
