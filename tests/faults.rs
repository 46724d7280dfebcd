//! Every job ends exactly once, with an outcome possible for it, while
//! workers are killed from outside every few tens of milliseconds.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, start, wait};
use procvisor::RestartPolicy;
use procvisor::WorkerPhase;
use procvisor::{Job, Outcome};
use rand::{RngExt, SeedableRng};
use serde_json::json;

/// What a job does, and so which outcomes are possible for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Quick,
    Short,
    Failing,
    /// Sleeps well past its timeout: it can never complete.
    Overrunning,
}

fn job(mix: Mix, i: usize) -> Job {
    match mix {
        Mix::Quick => Job::json("echo", &json!(i)),
        Mix::Short => Job::json("sleep", &json!({"secs": 0.002})),
        Mix::Failing => Job::json("fail", &json!({})),
        Mix::Overrunning => {
            Job::json("sleep", &json!({"secs": 0.2})).timeout(Duration::from_millis(5))
        }
    }
}

fn possible(mix: Mix, outcome: &Outcome<serde_json::Value>, i: usize) -> bool {
    match (mix, outcome) {
        (_, Outcome::Crashed(_)) => true, // checked against the kills below
        (Mix::Quick, Outcome::Completed(v)) => v == &json!(i),
        (Mix::Short, Outcome::Completed(_)) => true,
        (Mix::Failing, Outcome::Failed(_)) => true,
        (Mix::Overrunning, Outcome::TimedOut { .. }) => true,
        _ => false,
    }
}

fn run_under_fire(prefetch: usize, jobs: usize) {
    let sup = start(
        config(2)
            .prefetch(prefetch)
            .restart(RestartPolicy {
                max_restarts: 100_000,
                within: Duration::from_secs(1),
                backoff_base: Duration::from_millis(1),
                backoff_max: Duration::from_millis(5),
            })
            .seed(7),
    );
    let mixes = [Mix::Quick, Mix::Short, Mix::Failing, Mix::Overrunning];
    let killed: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (sup, killed, stop) = (sup.clone(), killed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(prefetch as u64);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(rng.random_range(20..40)));
                let Some(snap) = sup.snapshot_blocking() else {
                    break;
                };
                let ready: Vec<u32> = snap
                    .workers
                    .iter()
                    .filter(|w| w.phase == WorkerPhase::Ready)
                    .filter_map(|w| w.pid)
                    .collect();
                if ready.is_empty() {
                    continue;
                }
                let pid = ready[rng.random_range(0..ready.len())];
                // Recorded before the kill, so a report never names a pid
                // that is not in the set yet.
                killed.lock().unwrap().insert(pid);
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        })
    };
    let handles: Vec<_> = (0..jobs)
        .map(|i| {
            let mix = mixes[i % mixes.len()];
            (i, mix, sup.submit(job(mix, i)).expect("valid job"))
        })
        .collect();
    let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (i, mix, h) in handles {
        let report = wait(h, 120);
        assert!(
            possible(mix, &report.outcome, i),
            "job {i} ({mix:?}) ended {:?}",
            report.outcome
        );
        if let Outcome::Crashed(_) = &report.outcome {
            let pid = report.worker_pid.expect("a crashed job names its worker");
            assert!(
                killed.lock().unwrap().contains(&pid),
                "job {i} ({mix:?}) reported crashed, but its worker {pid} was never killed"
            );
        }
        *tally.entry(report.outcome.name()).or_default() += 1;
    }
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    let kills = killed.lock().unwrap().len();
    assert!(
        kills >= 5,
        "only {kills} workers were killed: the test did not bite"
    );
    let counts = sup.snapshot_blocking().unwrap().counts;
    let counted: BTreeMap<&'static str, u64> = [
        ("completed", counts.completed),
        ("failed", counts.failed),
        ("timed_out", counts.timed_out),
        ("crashed", counts.crashed),
        ("evicted", counts.evicted),
        ("cancelled", counts.cancelled),
        ("rejected", counts.rejected),
    ]
    .into_iter()
    .filter(|&(_, n)| n > 0)
    .collect();
    assert_eq!(counted, tally, "the supervisor's counts equal the reports");
    assert_eq!(counts.submitted, jobs as u64);
    eprintln!("prefetch {prefetch}: {jobs} jobs, {kills} workers killed: {tally:?}");
}

#[test]
fn every_job_ends_once_and_possibly_while_workers_are_killed_prefetch_1() {
    run_under_fire(1, 2000);
}

#[test]
fn every_job_ends_once_and_possibly_while_workers_are_killed_prefetch_4() {
    run_under_fire(4, 2000);
}
