//! Selection policies and flow control through real worker processes.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use procvisor::{Job, JobError, Outcome, SubmitError};
use procvisor::{Policy, RateLimit, RetryPolicy};
use serde_json::json;

#[test]
fn weighted_random_shares_follow_the_weights_end_to_end() {
    // One worker draws from a large pool (5,000 jobs of each weight), and we
    // stop after about 500 draws, so the pool hardly changes while we look.
    let sup = start(config(1).policy(Policy::WeightedRandom).seed(5));
    let weights = [1.0, 2.0, 3.0, 6.0];
    let blocker = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})).priority(0))
        .unwrap();
    running_pid(&blocker);
    let handles: Vec<_> = (0..5000)
        .flat_map(|_| weights.iter())
        .map(|&w| sup.submit(Job::json("echo", &json!(w)).weight(w)).unwrap())
        .collect();
    wait(blocker, 20);
    assert!(eventually(Duration::from_secs(30), || sup
        .snapshot_blocking()
        .is_some_and(|s| s.counts.completed >= 500)));
    sup.shutdown_blocking(Duration::ZERO);
    let mut counts: HashMap<String, u64> = HashMap::new();
    for h in handles {
        if let Outcome::Completed(v) = wait(h, 20).outcome {
            *counts.entry(v.to_string()).or_insert(0) += 1;
        }
    }
    let draws: u64 = counts.values().sum();
    assert!(draws >= 499, "{draws} draws");
    let total: f64 = weights.iter().sum();
    let chi2: f64 = weights
        .iter()
        .map(|w| {
            let expected = draws as f64 * w / total;
            let observed = *counts.get(&json!(w).to_string()).unwrap_or(&0) as f64;
            (observed - expected).powi(2) / expected
        })
        .sum();
    // Looser than the core's bound at p = 0.001 (16.27 for 3 degrees of
    // freedom): the pool shrinks a little as it is drawn from.
    assert!(
        chi2 < 25.0,
        "chi2 = {chi2:.1} over {draws} draws: {counts:?}"
    );
}

#[test]
fn retries_report_the_attempt_count_and_every_reason() {
    let sup = start(config(1));
    let policy = RetryPolicy::attempts(3, Duration::from_millis(10), Duration::from_millis(50));
    let r = wait(
        sup.submit(Job::json("fail", &json!({"message": "flaky"})).retry(policy))
            .unwrap(),
        20,
    );
    assert_eq!(
        r.outcome,
        Outcome::Failed(JobError::Handler("flaky".into()))
    );
    assert_eq!(r.attempts, 3);
    assert_eq!(r.history.len(), 2);
    for (i, a) in r.history.iter().enumerate() {
        assert_eq!(a.attempt, i as u32 + 1);
        assert_eq!(
            a.outcome,
            Outcome::Failed(JobError::Handler("flaky".into()))
        );
    }
    // Crashes and timeouts retry too.
    let r = wait(
        sup.submit(Job::json("segfault", &json!({})).retry(policy))
            .unwrap(),
        20,
    );
    assert!(matches!(r.outcome, Outcome::Crashed(_)));
    assert_eq!((r.attempts, r.history.len()), (3, 2));
    let r = wait(
        sup.submit(
            Job::json("hang", &json!({}))
                .timeout(Duration::from_millis(100))
                .retry(policy),
        )
        .unwrap(),
        20,
    );
    assert!(matches!(r.outcome, Outcome::TimedOut { .. }));
    assert_eq!(r.attempts, 3);
    // A job that succeeds is not retried.
    let r = wait(
        sup.submit(Job::json("echo", &json!(1)).retry(policy))
            .unwrap(),
        20,
    );
    assert_eq!((r.attempts, r.history.len()), (1, 0));
    assert_eq!(sup.snapshot_blocking().unwrap().counts.retries, 6);
}

#[test]
fn the_three_submit_flavours_of_a_bounded_queue() {
    let sup = start(config(1).capacity(Some(2)));
    let running = sup
        .submit(Job::json("sleep", &json!({"secs": 0.6})))
        .unwrap();
    running_pid(&running);
    let a = sup.submit(Job::json("echo", &json!("a"))).unwrap();
    let b = sup.submit(Job::json("echo", &json!("b"))).unwrap();
    // Full: try_submit fails at once, saying so.
    let t = Instant::now();
    let e = sup.try_submit(Job::json("echo", &json!("c"))).unwrap_err();
    assert_eq!(e, SubmitError::QueueFull { capacity: 2 });
    assert!(t.elapsed() < Duration::from_millis(200));
    // submit_timeout waits at most its limit, then gives up.
    let t = Instant::now();
    match sup
        .submit_timeout(Job::json("echo", &json!("d")), Duration::from_millis(150))
        .unwrap_err()
    {
        SubmitError::QueueFullFor {
            capacity: 2,
            waited,
        } => assert!(waited >= Duration::from_millis(140), "{waited:?}"),
        e => panic!("{e:?}"),
    }
    assert!(t.elapsed() >= Duration::from_millis(140));
    // submit waits for room: it returns once the running job ends and the
    // queue moves.
    let t = Instant::now();
    let e = sup.submit(Job::json("echo", &json!("e"))).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "did not wait: {:?}",
        t.elapsed()
    );
    for (h, v) in [(a, "a"), (b, "b"), (e, "e")] {
        assert_eq!(wait(h, 20).outcome, Outcome::Completed(json!(v)));
    }
    assert!(wait(running, 20).outcome.is_completed());
}

#[test]
fn a_full_queue_lets_a_more_urgent_job_push_out_the_least_urgent() {
    let sup = start(config(1).capacity(Some(1)).push_out(true));
    let running = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})))
        .unwrap();
    running_pid(&running);
    let low = sup
        .submit(Job::json("echo", &json!("low")).priority(9))
        .unwrap();
    let high = sup
        .try_submit(Job::json("echo", &json!("high")).priority(1))
        .unwrap();
    match wait(low, 20).outcome {
        Outcome::Rejected(why) => assert!(why.contains("pushed out"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(wait(high, 20).outcome, Outcome::Completed(json!("high")));
}

#[test]
fn kind_limits_and_rate_limits_hold_end_to_end() {
    let sup = start(
        config(3)
            .kind_limit("sleep", 1)
            .kind_rate_limit("echo", RateLimit::new(20.0, 1)),
    );
    wait_ready(&sup, 3);
    let sleeps: Vec<_> = (0..3)
        .map(|_| {
            sup.submit(Job::json("sleep", &json!({"secs": 0.15})))
                .unwrap()
        })
        .collect();
    let t = Instant::now();
    let echoes: Vec<_> = (0..6)
        .map(|i| sup.submit(Job::json("echo", &json!(i))).unwrap())
        .collect();
    // While sleeps run, never two at once.
    let mut max_running = 0;
    while t.elapsed() < Duration::from_millis(400) {
        let snap = sup.snapshot_blocking().unwrap();
        let n = snap
            .workers
            .iter()
            .filter(|w| w.running.as_ref().is_some_and(|r| r.kind == "sleep"))
            .count();
        max_running = max_running.max(n);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(max_running, 1);
    for h in echoes {
        assert!(wait(h, 20).outcome.is_completed());
    }
    // 6 echoes at 20/s with a burst of 1 take at least 5 × 50 ms.
    assert!(t.elapsed() >= Duration::from_millis(250));
    for h in sleeps {
        assert!(wait(h, 20).outcome.is_completed());
    }
}

#[test]
fn bad_weights_are_refused() {
    let sup = start(config(1));
    for w in [0.0, -1.0, f64::NAN, 2e6] {
        let e = sup
            .submit(Job::json("echo", &json!(1)).weight(w))
            .unwrap_err();
        assert!(matches!(e, SubmitError::Weight(_)), "{w}: {e:?}");
    }
}
