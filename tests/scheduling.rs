//! Priority, FIFO, eviction and prefetch, through real worker processes.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use procvisor::process::Exit;
use procvisor::{Crash, JobState};
use procvisor::{EvictionMode, Job, Outcome};
use serde_json::json;

/// Submit `(label, priority)` sleep jobs behind a blocker on one worker and
/// return the labels in the order they finished.
fn finishing_order(jobs: &[(u32, u8)]) -> Vec<u32> {
    let sup = start(config(1).eviction(EvictionMode::Off));
    let blocker = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})).priority(5))
        .unwrap();
    running_pid(&blocker);
    let (tx, rx) = mpsc::channel();
    for &(label, p) in jobs {
        let h = sup
            .submit(Job::json("sleep", &json!({"secs": 0.03})).priority(p))
            .unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let r = wait(h, 30);
            tx.send((Instant::now(), label, r.outcome.is_completed()))
                .unwrap();
        });
    }
    drop(tx);
    assert!(wait(blocker, 30).outcome.is_completed());
    let mut done: Vec<_> = rx.iter().collect();
    assert!(done.iter().all(|d| d.2), "every job completes");
    done.sort_by_key(|d| d.0);
    done.into_iter().map(|d| d.1).collect()
}

#[test]
fn priority_order_under_contention_and_fifo_within_a_priority() {
    // label = submission order; priorities mixed.
    let order = finishing_order(&[(1, 7), (2, 2), (3, 7), (4, 0), (5, 2), (6, 10), (7, 0)]);
    assert_eq!(order, vec![4, 7, 2, 5, 1, 3, 6]);
}

#[test]
fn eviction_requeues_and_the_job_remembers() {
    let sup = start(config(1)); // eviction requeues by default
    let low = sup
        .submit(Job::json("sleep", &json!({"secs": 0.5})).priority(9))
        .unwrap();
    let pid = running_pid(&low);
    let low_pid = pid;
    let urgent = sup
        .submit(Job::json("echo", &json!("urgent")).priority(0))
        .unwrap();
    let u = wait(urgent, 20);
    assert_eq!(u.outcome, Outcome::Completed(json!("urgent")));
    assert!(
        eventually(Duration::from_secs(2), || gone(low_pid)),
        "evicted worker {low_pid} still in /proc"
    );
    assert_ne!(u.worker_pid, Some(low_pid));
    // The evicted job went back to the queue and ran again, from the start.
    let l = wait(low, 20);
    assert_eq!(l.outcome, Outcome::Completed(json!({"slept": 0.5})));
    assert_eq!(l.evictions, 1);
    assert_eq!(sup.snapshot_blocking().unwrap().counts.evictions, 1);
}

#[test]
fn eviction_can_drop_instead() {
    let sup = start(config(1).eviction(EvictionMode::Drop));
    let low = sup
        .submit(Job::json("sleep", &json!({"secs": 5})).priority(10))
        .unwrap();
    running_pid(&low);
    let urgent = sup
        .submit(Job::json("echo", &json!(1)).priority(3))
        .unwrap();
    let l = wait(low, 20);
    assert_eq!(l.outcome, Outcome::Evicted);
    let pid = l.worker_pid.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || gone(pid)),
        "evicted worker {pid} still in /proc"
    );
    assert!(wait(urgent, 20).outcome.is_completed());
}

#[test]
fn eviction_off_makes_urgent_jobs_wait() {
    let sup = start(config(1).eviction(EvictionMode::Off));
    let low = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})).priority(10))
        .unwrap();
    running_pid(&low);
    let urgent = sup
        .submit(Job::json("echo", &json!(1)).priority(0))
        .unwrap();
    let l = wait(low, 20);
    assert!(l.outcome.is_completed());
    assert_eq!(l.evictions, 0);
    assert!(wait(urgent, 20).outcome.is_completed());
}

#[test]
fn prefetched_jobs_survive_their_workers_death() {
    let sup = start(config(1).prefetch(4));
    let head = sup.submit(Job::json("sleep", &json!({"secs": 5}))).unwrap();
    let held: Vec<_> = (0..3)
        .map(|i| sup.submit(Job::json("echo", &json!(i))).unwrap())
        .collect();
    let pid = running_pid(&head);
    // A worker is topped up once it holds half its prefetch or less: it
    // holds the head and two more; the third waits in the queue.
    assert!(eventually(Duration::from_secs(5), || matches!(
        held[1].state_blocking(),
        JobState::Prefetched { .. }
    )));
    assert_eq!(held[2].state_blocking(), JobState::Queued);
    // Kill the worker from outside: the running job crashed, the held ones
    // are put back and run on the replacement.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_eq!(
        wait(head, 20).outcome,
        Outcome::Crashed(Crash::Exited(Exit::Signal(9)))
    );
    for (i, h) in held.into_iter().enumerate() {
        let r = wait(h, 20);
        assert_eq!(r.outcome, Outcome::Completed(json!(i)));
        assert_ne!(r.worker_pid, Some(pid));
    }
}
