//! Deterministic tests of the core: time is a number of milliseconds after a
//! fixed origin.

use std::time::{Duration, Instant};

use super::*;
use crate::wire::JobId;

pub(super) struct Harness {
    t0: Instant,
    pub(super) core: Core<&'static str>,
    /// Decisions a helper polled but did not look at.
    pending: Vec<Decision<&'static str, ()>>,
}

pub(super) fn harness(slots: usize, prefetch: usize, eviction: EvictionMode) -> Harness {
    let mut core = Core::new(CoreConfig {
        slots,
        prefetch,
        eviction,
        ..CoreConfig::default()
    });
    for s in 0..slots {
        core.worker_ready(s);
    }
    Harness {
        t0: Instant::now(),
        core,
        pending: Vec::new(),
    }
}

pub(super) fn spec(priority: u8) -> JobSpec {
    JobSpec::new(0, priority)
}

pub(super) fn timed(priority: u8, ms: u64) -> JobSpec {
    JobSpec {
        timeout: Some(Duration::from_millis(ms)),
        ..spec(priority)
    }
}

impl Harness {
    pub(super) fn submit(&mut self, id: JobId, spec: JobSpec, data: &'static str) {
        self.core.submit(id, spec, data).unwrap();
    }

    /// The worker in `slot` reports `job` completed at `ms`: the decision it
    /// led to, which must be the job's end (the poll's other decisions, such
    /// as the next dispatch, stay for the next poll's caller to see).
    pub(super) fn finish(&mut self, slot: SlotId, job: JobId, ms: u64) -> Ended<&'static str> {
        assert!(self
            .core
            .finished(slot, job, Finish::Completed, None, self.at(ms))
            .is_ok());
        self.take_ended(ms)
    }

    /// Poll and take out the one `Ended` decision, keeping the others for
    /// the next poll's caller.
    pub(super) fn take_ended(&mut self, ms: u64) -> Ended<&'static str> {
        let mut out = Vec::new();
        self.core.poll(self.at(ms), &mut out);
        let pos = out
            .iter()
            .position(|d| matches!(d, Decision::Ended { .. }))
            .unwrap_or_else(|| panic!("no end in {out:?}"));
        let Decision::Ended { ended, .. } = out.remove(pos) else {
            unreachable!()
        };
        self.pending = out;
        ended
    }

    pub(super) fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    pub(super) fn poll(&mut self, ms: u64) -> Vec<Decision<&'static str, ()>> {
        let mut out = std::mem::take(&mut self.pending);
        self.core.poll(self.at(ms), &mut out);
        out
    }

    /// The (slot, job) pairs dispatched by a poll.
    pub(super) fn dispatched(&mut self, ms: u64) -> Vec<(SlotId, JobId)> {
        self.poll(ms)
            .into_iter()
            .filter_map(|d| match d {
                Decision::Dispatch { slot, job } => Some((slot, job)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn priority_order_under_contention_and_fifo_within() {
    let mut h = harness(1, 1, EvictionMode::Off);
    h.submit(1, spec(5), "first");
    assert_eq!(h.dispatched(0), vec![(0, 1)]);
    // While the only worker is busy: a mix of priorities.
    for (id, p) in [(2, 7), (3, 2), (4, 7), (5, 0), (6, 2), (7, 10)] {
        h.submit(id, spec(p), "x");
    }
    assert!(h.dispatched(1).is_empty());
    let mut order = Vec::new();
    let mut running = 1;
    for t in 2..10 {
        let done = h.finish(0, running, t);
        assert_eq!(done.job, running);
        match h.dispatched(t).as_slice() {
            [(0, next)] => {
                order.push(*next);
                running = *next;
            }
            [] => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(order, vec![5, 3, 6, 2, 4, 7]);
}

#[test]
fn timeout_fires_exactly_at_the_deadline() {
    let mut h = harness(1, 1, EvictionMode::Off);
    h.submit(1, timed(5, 1000), "slow");
    h.submit(2, spec(5), "next");
    assert_eq!(h.dispatched(10), vec![(0, 1)]);
    assert_eq!(h.core.next_deadline(), Some(h.at(1010)));
    assert!(h.poll(1009).is_empty());
    let d = h.poll(1010);
    assert!(
        matches!(
            d.as_slice(),
            [
                Decision::Kill {
                    slot: 0,
                    reason: KillReason::Timeout,
                    job: Some(1)
                },
                Decision::Ended {
                    end: End::TimedOut,
                    ended: Ended { job: 1, .. },
                    ..
                }
            ]
        ),
        "{d:?}"
    );
    // The slot waits for a new worker; then the next job runs there.
    assert_eq!(h.core.slot_states(), vec![SlotState::Pending]);
    assert!(h.dispatched(1011).is_empty());
    h.core.worker_ready(0);
    assert_eq!(h.dispatched(1020), vec![(0, 2)]);
}

#[test]
fn finishing_before_the_deadline_disarms_it() {
    let mut h = harness(1, 1, EvictionMode::Off);
    h.submit(1, timed(1, 100), "a");
    h.submit(2, timed(1, 100), "b");
    h.dispatched(0);
    h.finish(0, 1, 90);
    assert_eq!(h.dispatched(90), vec![(0, 2)]);
    // Job 1's old deadline (100) passes harmlessly; job 2's is at 190.
    assert!(h.poll(150).is_empty());
    assert!(matches!(
        h.poll(190)[0],
        Decision::Kill { job: Some(2), .. }
    ));
}

#[test]
fn eviction_requeues_the_least_urgent_and_keeps_its_place() {
    let mut h = harness(2, 1, EvictionMode::Requeue);
    h.submit(1, spec(3), "a");
    h.submit(2, spec(8), "b");
    assert_eq!(h.dispatched(0).len(), 2);
    h.submit(3, spec(8), "c"); // same priority as b, later
    assert!(h.poll(1).is_empty(), "no eviction for an equal priority");
    h.submit(4, spec(1), "urgent");
    let d = h.poll(2);
    assert!(
        matches!(
            d.as_slice(),
            [
                Decision::Kill {
                    slot: 1,
                    reason: KillReason::Evicted,
                    job: Some(2)
                },
                Decision::Requeued { job: 2, slot: 1 }
            ]
        ),
        "{d:?}"
    );
    // One urgent job, one eviction: polling again evicts nobody else.
    assert!(h.poll(3).is_empty());
    h.core.worker_ready(1);
    assert_eq!(h.dispatched(4), vec![(1, 4)]);
    // b goes back before c (its old place), and remembers the eviction.
    h.finish(0, 1, 5);
    assert_eq!(h.dispatched(5), vec![(0, 2)]);
    let b = h.finish(0, 2, 6);
    assert_eq!(b.meta.evictions, 1);
    assert_eq!(h.dispatched(6), vec![(0, 3)]);
}

#[test]
fn eviction_drop_mode_ends_the_victim() {
    let mut h = harness(1, 1, EvictionMode::Drop);
    h.submit(1, spec(9), "low");
    h.dispatched(0);
    h.submit(2, spec(0), "high");
    let d = h.poll(1);
    assert!(
        matches!(
            d.as_slice(),
            [
                Decision::Kill {
                    reason: KillReason::Evicted,
                    ..
                },
                Decision::Ended {
                    end: End::Evicted,
                    ended: Ended {
                        job: 1,
                        data: "low",
                        ..
                    },
                    ..
                }
            ]
        ),
        "{d:?}"
    );
}

#[test]
fn no_eviction_when_off_or_when_a_worker_is_coming() {
    let mut h = harness(1, 1, EvictionMode::Off);
    h.submit(1, spec(9), "low");
    h.dispatched(0);
    h.submit(2, spec(0), "high");
    assert!(h.poll(1).is_empty());

    let mut h = harness(2, 1, EvictionMode::Requeue);
    h.submit(1, spec(9), "low");
    h.dispatched(0);
    h.core.worker_lost(1, None, h.at(1)); // slot 1 restarting
    assert!(h.poll(1).is_empty(), "it held nothing");
    h.submit(2, spec(0), "high");
    assert!(h.poll(2).is_empty(), "a worker is coming: no need to evict");
    h.submit(3, spec(0), "high too");
    assert!(matches!(
        h.poll(3).as_slice(),
        [
            Decision::Kill { slot: 0, .. },
            Decision::Requeued { job: 1, .. }
        ]
    ));
}

#[test]
fn the_latest_started_among_equals_is_evicted() {
    let mut h = harness(2, 1, EvictionMode::Requeue);
    h.submit(1, spec(7), "old");
    h.dispatched(0);
    h.submit(2, spec(7), "new");
    h.dispatched(50);
    h.submit(3, spec(0), "urgent");
    assert!(matches!(
        h.poll(60).as_slice(),
        [
            Decision::Kill { job: Some(2), .. },
            Decision::Requeued { .. }
        ]
    ));
}

#[test]
fn a_job_whose_frame_never_reached_its_worker_is_requeued_not_crashed() {
    let mut h = harness(1, 1, EvictionMode::Off);
    h.submit(1, spec(5), "j");
    assert_eq!(h.dispatched(0).len(), 1);
    h.core.undelivered(1, 0);
    h.core.worker_lost(0, None, h.at(1));
    let d = h.poll(1);
    assert!(
        matches!(d.as_slice(), [Decision::Requeued { job: 1, slot: 0 }]),
        "{d:?}"
    );
    // It runs on the next worker, and a loss there is a crash as usual.
    h.core.worker_ready(0);
    assert_eq!(h.dispatched(2).len(), 1);
    h.core.worker_lost(0, None, h.at(3));
    assert!(matches!(
        h.poll(3).as_slice(),
        [Decision::Ended {
            end: End::Crashed,
            ..
        }]
    ));
}

#[test]
fn prefetched_jobs_are_requeued_when_their_worker_dies() {
    let mut h = harness(2, 3, EvictionMode::Off);
    for id in 1..=6 {
        h.submit(id, spec(5), "j");
    }
    let d = h.dispatched(0);
    assert_eq!(d.len(), 6);
    assert_eq!(h.core.stats().assigned, 6);
    // Slot 0 holds 1, 3, 5 (fewest-held first): lose it.
    h.core.worker_lost(0, None, h.at(1));
    assert_eq!(h.core.stats().queued, 2);
    let d = h.poll(1);
    assert!(
        matches!(
            d.as_slice(),
            [
                Decision::Ended {
                    end: End::Crashed,
                    ended: Ended { job: 1, .. },
                    ..
                },
                Decision::Requeued { job: 3, slot: 0 },
                Decision::Requeued { job: 5, slot: 0 },
            ]
        ),
        "{d:?}"
    );
    h.core.worker_ready(0);
    assert_eq!(h.dispatched(2), vec![(0, 3), (0, 5)]);
}

#[test]
fn cancel_queued_running_and_prefetched() {
    let mut h = harness(1, 2, EvictionMode::Off);
    for id in 1..=3 {
        h.submit(id, spec(5), "j");
    }
    assert_eq!(h.dispatched(0), vec![(0, 1), (0, 2)]);
    // Queued: ends at once, nothing else.
    assert!(h.core.cancel(3, h.at(1)));
    assert!(matches!(
        h.poll(1).as_slice(),
        [Decision::Ended {
            end: End::Cancelled,
            ended: Ended { job: 3, .. },
            ..
        }]
    ));
    // Prefetched: the worker is told, the submitter learns at once, and the
    // worker's later report is absorbed.
    assert!(h.core.cancel(2, h.at(2)));
    assert!(matches!(
        h.poll(2).as_slice(),
        [
            Decision::SendCancel { slot: 0, job: 2 },
            Decision::Ended {
                end: End::Cancelled,
                ended: Ended { job: 2, .. },
                ..
            }
        ]
    ));
    assert!(!h.core.cancel(2, h.at(2)), "ended once only");
    // Running, no grace: killed.
    assert!(h.core.cancel(1, h.at(3)));
    assert!(matches!(
        h.poll(3).as_slice(),
        [
            Decision::Kill {
                reason: KillReason::Cancelled,
                ..
            },
            Decision::Ended {
                end: End::Cancelled,
                ended: Ended { job: 1, .. },
                ..
            }
        ]
    ));
    assert_eq!(
        h.core.stats(),
        CoreStats {
            pending_slots: 1,
            ..CoreStats::default()
        }
    );
}

#[test]
fn cancel_with_grace_kills_only_if_the_job_does_not_stop() {
    let mut core: Core<&str> = Core::new(CoreConfig {
        eviction: EvictionMode::Off,
        cancel_grace: Duration::from_millis(100),
        ..CoreConfig::default()
    });
    core.worker_ready(0);
    let t0 = Instant::now();
    let ms = |m| t0 + Duration::from_millis(m);
    let mut out = Vec::new();
    core.submit(1, spec(1), "a").unwrap();
    core.submit(2, spec(1), "b").unwrap();
    core.poll(ms(0), &mut out);
    out.clear();
    core.cancel(1, ms(10));
    core.poll(ms(10), &mut out);
    assert!(matches!(out[0], Decision::SendCancel { .. }));
    assert!(matches!(
        out[1],
        Decision::Ended {
            end: End::Cancelled,
            ..
        }
    ));
    out.clear();
    // It stops by itself in time: no kill, the next job runs.
    // Its end was decided at the cancel: the report changes nothing.
    assert!(core
        .finished(0, 1, Finish::Cancelled, None, ms(50))
        .is_err());
    core.poll(ms(50), &mut out);
    assert!(matches!(
        out.as_slice(),
        [Decision::Dispatch { job: 2, .. }]
    ));
    out.clear();
    // The next one ignores the cancel: killed when the grace is over.
    core.cancel(2, ms(60));
    core.poll(ms(159), &mut out);
    assert!(!out.iter().any(|d| matches!(d, Decision::Kill { .. })));
    out.clear();
    core.poll(ms(160), &mut out);
    assert!(matches!(
        out.as_slice(),
        [Decision::Kill {
            reason: KillReason::Cancelled,
            ..
        }]
    ));
}

#[test]
fn shutdown_stops_dispatch_and_hands_back_the_queue() {
    let mut h = harness(1, 1, EvictionMode::Requeue);
    for id in 1..=3 {
        h.submit(id, spec(5), "j");
    }
    h.dispatched(0);
    h.core.stop(End::Cancelled);
    let cancelled: Vec<JobId> = h
        .poll(1)
        .into_iter()
        .map(|d| match d {
            Decision::Ended {
                ended,
                end: End::Cancelled,
                ..
            } => ended.job,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(cancelled, vec![2, 3]);
    assert_eq!(h.finish(0, 1, 1).job, 1);
    assert!(h.dispatched(1).is_empty());
    assert!(!h.core.any_assigned());
}

#[test]
fn no_job_is_handed_out_past_the_start_bound_until_a_later_bound_arrives() {
    let mut h = harness(2, 1, EvictionMode::Drop);
    h.core.hold_starts_from(Some(h.at(100)));
    h.submit(1, spec(5), "before");
    assert_eq!(h.dispatched(99), vec![(0, 1)]);
    h.submit(2, spec(5), "after");
    // At the bound and past it: nothing starts, and nothing is evicted
    // for an urgent arrival either.
    assert!(h.dispatched(100).is_empty());
    h.submit(3, spec(0), "urgent");
    let out = h.poll(5_000);
    assert!(
        out.iter()
            .all(|d| !matches!(d, Decision::Dispatch { .. } | Decision::Kill { .. })),
        "{out:?}"
    );
    assert!(!h.core.may_start(h.at(5_000)));
    // The lease is confirmed again: the waiting jobs start, most urgent
    // first.
    h.core.hold_starts_from(Some(h.at(10_000)));
    assert_eq!(h.dispatched(5_001), vec![(1, 3)]);
    h.core.hold_starts_from(None);
    let _ = h.finish(1, 3, 5_002);
    assert_eq!(h.dispatched(5_003), vec![(1, 2)]);
}

#[test]
fn a_timed_job_is_announced_when_it_becomes_the_running_job_of_its_slot() {
    // Prefetch 2: the second job reaches the worker at once but starts
    // (and its timeout starts counting) only when the first ends.
    let mut h = harness(1, 2, EvictionMode::Off);
    h.submit(1, spec(5), "untimed");
    h.submit(2, timed(5, 50), "timed");
    let out = h.poll(0);
    let started: Vec<JobId> = out
        .iter()
        .filter_map(|d| match d {
            Decision::Started { job, .. } => Some(*job),
            _ => None,
        })
        .collect();
    assert!(
        started.is_empty(),
        "only a running timed job is announced: {out:?}"
    );
    let _ = h.finish(0, 1, 1_000);
    let out = h.poll(1_000);
    assert!(
        out.iter()
            .any(|d| matches!(d, Decision::Started { slot: 0, job: 2 })),
        "{out:?}"
    );
    // Its timeout counts from 1,000 ms, not from its dispatch at 0.
    assert_eq!(h.core.next_deadline(), Some(h.at(1_050)));
}
