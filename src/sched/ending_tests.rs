//! How jobs end, decided by the core: retries, stopping, slots given up
//! on, push-out, the detail of an ending, demand, and the fast path.

use std::time::{Duration, Instant};

use super::tests::{harness, spec, timed};
use super::*;

fn retrying(max_attempts: u32) -> JobSpec {
    JobSpec {
        retry: Some(Box::new(RetryPolicy::attempts(
            max_attempts,
            Duration::from_millis(100),
            Duration::from_millis(100),
        ))),
        ..timed(5, 50)
    }
}

#[test]
fn the_core_decides_retries_and_the_last_attempt_ends_the_job() {
    let mut h = harness(1, 1, EvictionMode::Off);
    h.submit(1, retrying(3), "flaky");
    assert_eq!(h.dispatched(0), vec![(0, 1)]);
    // Attempt 1 fails: the core keeps the job and says when it is due.
    assert!(h
        .core
        .finished(0, 1, Finish::Failed, None, h.at(10))
        .is_ok());
    let d = h.poll(10);
    let [Decision::Retrying {
        job: 1,
        slot: 0,
        attempt: 1,
        end: End::Failed,
        due,
        ..
    }] = d.as_slice()
    else {
        panic!("{d:?}")
    };
    assert!(*due >= h.at(10) && *due <= h.at(110));
    assert_eq!(h.core.stats().delayed, 1);
    // Attempt 2 times out: retried again (a timeout is retryable).
    assert_eq!(h.dispatched(110), vec![(0, 1)]);
    let d = h.poll(160);
    assert!(
        matches!(
            d.as_slice(),
            [
                Decision::Kill { .. },
                Decision::Retrying {
                    attempt: 2,
                    end: End::TimedOut,
                    ..
                }
            ]
        ),
        "{d:?}"
    );
    // Attempt 3 crashes: no attempt is left, so the job ends, crashed.
    h.core.worker_ready(0);
    assert_eq!(h.dispatched(300), vec![(0, 1)]);
    h.core.worker_lost(0, None, h.at(301));
    let d = h.poll(301);
    let [Decision::Ended {
        ended,
        end: End::Crashed,
        ..
    }] = d.as_slice()
    else {
        panic!("{d:?}")
    };
    assert_eq!(ended.meta.attempt, 3);
    assert_eq!(ended.meta.started, Some(h.at(300)));
}

#[test]
fn nothing_is_retried_once_the_core_stops() {
    let mut h = harness(1, 1, EvictionMode::Off);
    h.submit(1, retrying(5), "flaky");
    h.dispatched(0);
    assert!(!h.core.failure_is_final(1));
    h.core.stop(End::Cancelled);
    assert!(h.core.failure_is_final(1));
    h.core
        .finished(0, 1, Finish::Failed, None, h.at(5))
        .unwrap();
    assert!(matches!(
        h.poll(5).as_slice(),
        [Decision::Ended {
            end: End::Failed,
            ..
        }]
    ));
}

#[test]
fn a_slot_given_up_on_still_ends_its_running_job() {
    // The worker of a running job goes away for good (the supervisor gave
    // up): the job's end is decided and reported, never dropped.
    let mut h = harness(2, 1, EvictionMode::Off);
    h.submit(1, spec(5), "long");
    h.dispatched(0);
    h.core.stop(End::Rejected(Rejection::Stopped));
    h.core.slot_down(0, h.at(5));
    let d = h.poll(5);
    assert!(
        matches!(
            d.as_slice(),
            [Decision::Ended {
                end: End::Crashed,
                ended: Ended { job: 1, .. },
                ..
            }]
        ),
        "{d:?}"
    );
}

#[test]
fn push_out_ends_the_victim_through_poll() {
    let mut core: Core<&str> = Core::new(CoreConfig {
        capacity: Some(1),
        push_out: true,
        ..CoreConfig::default()
    });
    let now = Instant::now();
    core.submit(1, spec(9), "low").unwrap();
    assert_eq!(
        core.submit(2, spec(9), "same").unwrap_err().1,
        Refused::Full
    );
    core.submit(3, spec(0), "urgent").unwrap();
    let mut out = Vec::new();
    core.poll(now, &mut out);
    assert!(
        matches!(
            out.as_slice(),
            [Decision::Ended {
                end: End::Rejected(Rejection::PushedOut),
                ended: Ended { job: 1, .. },
                ..
            }]
        ),
        "{out:?}"
    );
}

#[test]
fn the_detail_of_an_ending_comes_back_with_its_decision() {
    let mut core: Core<&str, String> = Core::new(CoreConfig::default());
    core.worker_ready(0);
    let now = Instant::now();
    core.submit(1, spec(1), "a").unwrap();
    let mut out = Vec::new();
    core.poll(now, &mut out);
    out.clear();
    core.finished(0, 1, Finish::Completed, Some("42".into()), now)
        .unwrap();
    core.poll(now, &mut out);
    assert!(matches!(
        out.as_slice(),
        [Decision::Ended { end: End::Completed, detail: Some(d), .. }] if d == "42"
    ));
}

#[test]
fn demand_says_how_many_jobs_and_what_priority_evicts() {
    let mut h = harness(2, 2, EvictionMode::Requeue);
    assert_eq!(
        h.core.demand(),
        Demand {
            free: 4,
            idle: 2,
            evict_above: None,
            waiting: 0
        }
    );
    h.submit(1, spec(3), "a");
    assert_eq!(h.core.demand().free, 3);
    // One of the two empty workers will take the queued job: one left
    // that would start a job at once, the rest is prefetch room.
    assert_eq!(h.core.demand().idle, 1);
    for id in 2..=4 {
        h.submit(id, spec(6 - id as u8), "b");
    }
    h.dispatched(0);
    // Running (first in their slots): jobs 4 (priority 2) and 1 (3); the
    // least urgent running job is what an arrival must beat.
    assert_eq!(
        h.core.demand(),
        Demand {
            free: 0,
            idle: 0,
            evict_above: Some(3),
            waiting: 0
        }
    );
    h.submit(5, spec(7), "c");
    assert_eq!(h.core.demand().waiting, 1);
}

#[test]
fn a_job_delivered_on_the_fast_path_is_forgotten_after_a_requeue() {
    let mut h = harness(1, 2, EvictionMode::Requeue);
    h.submit(1, spec(5), "a");
    h.submit(2, spec(5), "b");
    h.dispatched(0);
    h.core.worker_lost(0, None, h.at(1));
    h.poll(1);
    // Job 2 went back to the queue, but its worker had already delivered
    // its result: the driver says so, and it is never run again.
    h.core.forget(2);
    h.core.worker_ready(0);
    assert!(h.dispatched(2).is_empty());
    assert_eq!(h.core.waiting(), 0);
}
