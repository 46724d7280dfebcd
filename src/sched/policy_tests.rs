//! Deterministic tests of the selection policies and flow control in the
//! core (fixed seeds, injected time).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::testkit::end_of;
use super::*;
use crate::wire::JobId;

/// Chi-squared critical values at p = 0.001, by degrees of freedom.
fn chi2_critical_p001(df: usize) -> f64 {
    match df {
        1 => 10.828,
        2 => 13.816,
        3 => 16.266,
        4 => 18.467,
        5 => 20.515,
        9 => 27.877,
        _ => panic!("no table entry for {df} degrees of freedom"),
    }
}

fn chi2(observed: &[u64], expected: &[f64]) -> f64 {
    observed
        .iter()
        .zip(expected)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum()
}

/// A one-slot core; each step dispatches one job, records its label,
/// finishes it and submits a fresh job with the same label, weight and kind.
struct Drawer {
    core: Core<usize>,
    t0: Instant,
    next_id: JobId,
    out: Vec<Decision<usize, ()>>,
    /// Label and spec of every job not drawn yet.
    specs: HashMap<JobId, (usize, JobSpec)>,
}

impl Drawer {
    fn new(cfg: CoreConfig) -> Drawer {
        let mut core = Core::new(CoreConfig { slots: 1, ..cfg });
        core.worker_ready(0);
        Drawer {
            core,
            t0: Instant::now(),
            next_id: 1,
            out: Vec::new(),
            specs: HashMap::new(),
        }
    }

    fn submit(&mut self, label: usize, kind: KindId, priority: u8, weight: f64) {
        let spec = JobSpec {
            weight: weight_units(weight).unwrap(),
            ..JobSpec::new(kind, priority)
        };
        let id = self.next_id;
        self.next_id += 1;
        self.specs.insert(id, (label, spec.clone()));
        self.core.submit(id, spec, label).unwrap();
    }

    /// Dispatch and finish the next job; its label and spec. The finish is
    /// only reported: the end (and the next draw) come with the next poll,
    /// after the caller has put a replacement in.
    fn step(&mut self, ms: u64) -> Option<(usize, JobSpec)> {
        let now = self.t0 + Duration::from_millis(ms);
        self.out.clear();
        self.core.poll(now, &mut self.out);
        let job = self.out.iter().find_map(|d| match d {
            Decision::Dispatch { job, .. } => Some(*job),
            _ => None,
        })?;
        let found = self.specs.remove(&job).expect("a submitted job");
        self.core
            .finished(0, job, Finish::Completed, None, now)
            .unwrap();
        Some(found)
    }

    /// Draw `n` times, putting each drawn job back (as a new job).
    fn draws(&mut self, n: usize) -> HashMap<usize, u64> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let (label, spec) = self.step(0).expect("a job to draw");
            *counts.entry(label).or_insert(0) += 1;
            let weight = spec.weight as f64 / WEIGHT_UNIT;
            self.submit(label, spec.kind, spec.priority, weight);
        }
        counts
    }
}

/// The jobs a poll dispatched, in order.
fn dispatched<J, O>(out: &[Decision<J, O>]) -> Vec<JobId> {
    out.iter()
        .filter_map(|d| match d {
            Decision::Dispatch { job, .. } => Some(*job),
            _ => None,
        })
        .collect()
}

fn config(policy: Policy, seed: u64) -> CoreConfig {
    CoreConfig {
        policy,
        seed,
        eviction: EvictionMode::Off,
        ..CoreConfig::default()
    }
}

#[test]
fn uniform_draws_match_equal_probabilities() {
    let mut d = Drawer::new(config(Policy::Uniform, 42));
    for label in 0..10 {
        // Weights and priorities are ignored by Uniform.
        d.submit(
            label,
            (label % 3) as KindId,
            (label % 4) as u8,
            1.0 + label as f64,
        );
    }
    let n = 100_000;
    let counts = d.draws(n);
    let observed: Vec<u64> = (0..10).map(|l| counts[&l]).collect();
    let x2 = chi2(&observed, &[n as f64 / 10.0; 10]);
    assert!(x2 < chi2_critical_p001(9), "chi2 = {x2:.2}: {observed:?}");
}

#[test]
fn weighted_draws_match_weight_over_total() {
    let weights = [1.0, 2.0, 3.0, 4.0, 10.0];
    let mut d = Drawer::new(config(Policy::WeightedRandom, 7));
    for (label, &w) in weights.iter().enumerate() {
        d.submit(label, (label % 2) as KindId, 5, w);
    }
    let n = 100_000;
    let counts = d.draws(n);
    let total: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| n as f64 * w / total).collect();
    let observed: Vec<u64> = (0..weights.len()).map(|l| counts[&l]).collect();
    let x2 = chi2(&observed, &expected);
    assert!(
        x2 < chi2_critical_p001(4),
        "chi2 = {x2:.2}: {observed:?} vs {expected:?}"
    );
}

#[test]
fn the_chi_squared_check_can_fail() {
    // Guard against a test that cannot fail: a skewed sample is caught.
    let observed = [
        11_000, 9_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000,
    ];
    assert!(chi2(&observed, &[10_000.0; 10]) > chi2_critical_p001(9));
}

#[test]
fn priority_weighted_draws_by_weight_within_the_most_urgent_priority() {
    let mut d = Drawer::new(config(Policy::PriorityWeighted, 3));
    d.submit(100, 0, 9, 1000.0); // heavy but less urgent: never drawn
    d.submit(0, 0, 2, 1.0);
    d.submit(1, 1, 2, 3.0);
    let n = 100_000;
    let counts = d.draws(n);
    assert!(!counts.contains_key(&100));
    let x2 = chi2(
        &[counts[&0], counts[&1]],
        &[n as f64 / 4.0, n as f64 * 3.0 / 4.0],
    );
    assert!(x2 < chi2_critical_p001(1), "chi2 = {x2:.2}: {counts:?}");
}

#[test]
fn same_seed_same_draws() {
    let run = |seed| {
        let mut d = Drawer::new(config(Policy::WeightedRandom, seed));
        for l in 0..5 {
            d.submit(l, 0, 5, 1.0 + l as f64);
        }
        (0..50)
            .map(|_| d.draws(1).into_keys().next().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn exclusion_window_avoids_recent_kinds_when_another_waits() {
    let mut d = Drawer::new(CoreConfig {
        exclusion_window: 2,
        ..config(Policy::Priority, 1)
    });
    // Kind 0 is more urgent and plentiful; kinds 1 and 2 have one job each.
    for i in 0..6 {
        d.submit(i, 0, 0, 1.0);
    }
    d.submit(10, 1, 9, 1.0);
    d.submit(20, 2, 9, 1.0);
    let kinds: Vec<KindId> = (0..8).map(|i| d.step(i).unwrap().1.kind).collect();
    // Never a kind among the last two started while another kind waited;
    // once only kind 0 is left, it runs back to back.
    assert_eq!(kinds, vec![0, 1, 2, 0, 0, 0, 0, 0]);
}

#[test]
fn per_kind_concurrency_limit_is_never_exceeded() {
    let mut core: Core<()> = Core::new(CoreConfig {
        slots: 3,
        kind_limits: vec![("render".into(), 1)],
        ..CoreConfig::default()
    });
    let render = core.kind("render");
    let other = core.kind("other");
    for s in 0..3 {
        core.worker_ready(s);
    }
    for id in 1..=4 {
        core.submit(id, JobSpec::new(render, 1), ()).unwrap();
    }
    core.submit(5, JobSpec::new(other, 9), ()).unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    core.poll(t, &mut out);
    let started = dispatched(&out);
    assert_eq!(
        started,
        vec![1, 5],
        "one render, then the other kind; a slot stays free"
    );
    assert_eq!(core.held_of(render), 1);
    let (_, out) = end_of(&mut core, 0, 1, Finish::Completed, t);
    assert!(matches!(
        out.as_slice(),
        [Decision::Dispatch { job: 2, .. }]
    ));
}

#[test]
fn rate_limit_spaces_starts_and_says_when_to_wake() {
    let mut core: Core<()> = Core::new(CoreConfig {
        slots: 4,
        rate: Some(RateLimit::new(10.0, 2)),
        ..CoreConfig::default()
    });
    for s in 0..4 {
        core.worker_ready(s);
    }
    for id in 1..=4 {
        core.submit(id, JobSpec::new(0, 5), ()).unwrap();
    }
    let t0 = Instant::now();
    let mut out = Vec::new();
    core.poll(t0, &mut out);
    assert_eq!(out.len(), 2, "the burst");
    let wake = core.next_deadline().unwrap();
    assert!(wake > t0 + Duration::from_millis(99) && wake <= t0 + Duration::from_millis(101));
    out.clear();
    core.poll(t0 + Duration::from_millis(50), &mut out);
    assert!(
        out.is_empty(),
        "no token yet; the job waits, it is not dropped"
    );
    core.poll(wake, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(core.stats().queued, 1);
}

#[test]
fn per_kind_rate_limit_lets_other_kinds_through() {
    let mut core: Core<()> = Core::new(CoreConfig {
        slots: 4,
        kind_rates: vec![("slow".into(), RateLimit::new(1.0, 1))],
        ..CoreConfig::default()
    });
    let slow = core.kind("slow");
    let fast = core.kind("fast");
    for s in 0..4 {
        core.worker_ready(s);
    }
    core.submit(1, JobSpec::new(slow, 0), ()).unwrap();
    core.submit(2, JobSpec::new(slow, 0), ()).unwrap();
    core.submit(3, JobSpec::new(fast, 9), ()).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    core.poll(t0, &mut out);
    let started = dispatched(&out);
    assert_eq!(started, vec![1, 3]);
    let wake = core.next_deadline().unwrap();
    assert!(wake >= t0 + Duration::from_secs(1));
}

#[test]
fn retries_wait_in_the_core_then_run_again_until_max_attempts() {
    let mut core: Core<&str> = Core::new(CoreConfig {
        retry: RetryPolicy::attempts(3, Duration::from_millis(100), Duration::from_secs(1)),
        seed: 5,
        ..CoreConfig::default()
    });
    core.worker_ready(0);
    core.submit(1, JobSpec::new(0, 5), "flaky").unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut now = t0;
    let mut attempts = Vec::new();
    loop {
        out.clear();
        core.poll(now, &mut out);
        assert!(
            matches!(out.as_slice(), [Decision::Dispatch { job: 1, .. }]),
            "{out:?}"
        );
        out.clear();
        assert!(core.finished(0, 1, Finish::Failed, None, now).is_ok());
        core.poll(now, &mut out);
        match out.as_slice() {
            [Decision::Retrying {
                job: 1,
                attempt,
                end: End::Failed,
                due,
                ..
            }] => {
                attempts.push(*attempt);
                let due = *due;
                let ceiling = Duration::from_millis(100) * 2u32.pow(attempt - 1);
                assert!(
                    due >= now && due <= now + ceiling,
                    "backoff within its jitter bound"
                );
                // Waiting for its retry, it holds no worker and is not queued.
                assert_eq!(core.stats().delayed, 1);
                assert_eq!(core.stats().queued, 0);
                if due > now {
                    out.clear();
                    core.poll(due - Duration::from_nanos(1), &mut out);
                    assert!(out.is_empty(), "not before it is due");
                }
                now = due;
            }
            [Decision::Ended {
                ended,
                end: End::Failed,
                ..
            }] => {
                attempts.push(ended.meta.attempt);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(attempts, vec![1, 2, 3]);
}

#[test]
fn evictions_never_count_as_attempts() {
    let mut core: Core<&str> = Core::new(CoreConfig {
        retry: RetryPolicy::attempts(2, Duration::ZERO, Duration::ZERO),
        ..CoreConfig::default()
    });
    core.worker_ready(0);
    core.submit(1, JobSpec::new(0, 9), "low").unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    core.poll(t, &mut out);
    core.submit(2, JobSpec::new(0, 0), "high").unwrap();
    core.poll(t, &mut out);
    core.worker_ready(0);
    core.poll(t, &mut out);
    end_of(&mut core, 0, 2, Finish::Completed, t);
    let (low, _) = end_of(&mut core, 0, 1, Finish::Completed, t);
    assert_eq!((low.meta.attempt, low.meta.evictions), (1, 1));
}

#[test]
fn a_bounded_queue_refuses_or_pushes_out() {
    let mut core: Core<&str> = Core::new(CoreConfig {
        capacity: Some(2),
        ..CoreConfig::default()
    });
    core.submit(1, JobSpec::new(0, 5), "a").unwrap();
    core.submit(2, JobSpec::new(0, 7), "b").unwrap();
    assert_eq!(
        core.submit(3, JobSpec::new(0, 0), "c").unwrap_err(),
        ("c", Refused::Full)
    );

    let mut core: Core<&str> = Core::new(CoreConfig {
        capacity: Some(2),
        push_out: true,
        ..CoreConfig::default()
    });
    core.submit(1, JobSpec::new(0, 5), "a").unwrap();
    core.submit(2, JobSpec::new(0, 7), "b").unwrap();
    // Not more urgent than the least urgent waiting job: refused.
    assert!(core.submit(3, JobSpec::new(0, 7), "c").is_err());
    // More urgent: the least urgent waiting job is pushed out.
    core.submit(4, JobSpec::new(0, 1), "d").unwrap();
    let mut out = Vec::new();
    core.poll(Instant::now(), &mut out);
    let [Decision::Ended { ended, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!((ended.job, ended.data), (2, "b"));
    assert_eq!(core.waiting(), 2);
}

#[test]
fn under_random_policies_an_arriving_urgent_job_evicts_the_lightest_and_gets_its_worker() {
    let mut core: Core<&str> = Core::new(CoreConfig {
        slots: 2,
        policy: Policy::WeightedRandom,
        seed: 11,
        ..CoreConfig::default()
    });
    core.worker_ready(0);
    core.worker_ready(1);
    let w = |x: f64| JobSpec {
        weight: weight_units(x).unwrap(),
        ..JobSpec::new(0, 8)
    };
    core.submit(1, w(5.0), "heavy").unwrap();
    core.submit(2, w(1.0), "light").unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    core.poll(t, &mut out);
    let light_slot = out
        .iter()
        .find_map(|d| match d {
            Decision::Dispatch { slot, job: 2 } => Some(*slot),
            _ => None,
        })
        .unwrap();
    // Many less urgent jobs wait; one urgent job arrives.
    for id in 3..50 {
        core.submit(id, w(100.0), "bulk").unwrap();
    }
    core.submit(50, JobSpec::new(0, 1), "urgent").unwrap();
    out.clear();
    core.poll(t, &mut out);
    assert!(
        matches!(
            out.as_slice(),
            [
                Decision::Kill {
                    reason: KillReason::Evicted,
                    job: Some(2),
                    ..
                },
                Decision::Requeued { job: 2, .. }
            ]
        ),
        "{out:?}"
    );
    // The freed worker takes the urgent job, not a random draw.
    core.worker_ready(light_slot);
    out.clear();
    core.poll(t, &mut out);
    assert!(
        matches!(out.as_slice(), [Decision::Dispatch { job: 50, .. }]),
        "{out:?}"
    );
    // Later polls do not evict again for jobs that were merely passed over.
    out.clear();
    core.poll(t, &mut out);
    assert!(out.is_empty());
}
