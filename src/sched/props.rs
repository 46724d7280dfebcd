//! Property tests of the core: random sequences of events, checked against
//! invariants that must hold whatever happens.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::wire::JobId;

#[derive(Debug, Clone)]
enum Op {
    Submit {
        kind: KindId,
        priority: u8,
        weight: u8,
        timeout_ms: Option<u16>,
    },
    Ready(usize),
    Finish(usize),
    Fail(usize),
    Lost(usize),
    Cancel(usize),
    Advance(u16),
}

fn op(slots: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u32, 0..=10u8, 1..5u8, proptest::option::of(1..500u16)).prop_map(|(kind, priority, weight, timeout_ms)| Op::Submit { kind, priority, weight, timeout_ms }),
        2 => (0..slots).prop_map(Op::Ready),
        3 => (0..slots).prop_map(Op::Finish),
        1 => (0..slots).prop_map(Op::Fail),
        1 => (0..slots).prop_map(Op::Lost),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (0..400u16).prop_map(Op::Advance),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Priority),
        Just(Policy::WeightedRandom),
        Just(Policy::Uniform),
        Just(Policy::PriorityWeighted),
    ]
}

fn eviction() -> impl Strategy<Value = EvictionMode> {
    prop_oneof![
        Just(EvictionMode::Off),
        Just(EvictionMode::Requeue),
        Just(EvictionMode::Drop)
    ]
}

/// Follows every job through the core and checks each ends exactly once.
struct Ledger {
    submitted: Vec<JobId>,
    ended: HashSet<JobId>,
}

impl Ledger {
    fn end(&mut self, job: JobId) {
        assert!(self.ended.insert(job), "job {job} ended twice");
    }

    fn take(&mut self, out: &mut Vec<Decision<JobId, ()>>) -> Vec<(usize, JobId)> {
        let mut dispatched = Vec::new();
        for d in out.drain(..) {
            match d {
                Decision::Ended { ended, .. } => {
                    assert_eq!(ended.job, ended.data);
                    self.end(ended.job)
                }
                Decision::Dispatch { slot, job } => dispatched.push((slot, job)),
                _ => {}
            }
        }
        dispatched
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_job_is_lost_or_duplicated_and_kind_limits_hold(
        policy in policy(),
        eviction in eviction(),
        prefetch in 1..3usize,
        cancel_grace in prop_oneof![Just(0u64), Just(50)],
        ops in proptest::collection::vec(op(3), 1..200),
        seed in any::<u64>(),
    ) {
        let mut core: Core<JobId> = Core::new(CoreConfig {
            slots: 3,
            prefetch,
            eviction,
            cancel_grace: Duration::from_millis(cancel_grace),
            policy,
            kind_limits: vec![("k1".into(), 1)],
            retry: RetryPolicy::attempts(2, Duration::from_millis(10), Duration::from_millis(100)),
            seed,
            ..CoreConfig::default()
        });
        let kinds = [core.kind("k0"), core.kind("k1"), core.kind("k2")];
        let t0 = Instant::now();
        let mut now = t0;
        let mut ledger = Ledger { submitted: Vec::new(), ended: HashSet::new() };
        let mut out = Vec::new();
        let mut next = 1;
        for op in ops {
            match op {
                Op::Submit { kind, priority, weight, timeout_ms } => {
                    let spec = JobSpec {
                        timeout: timeout_ms.map(|m| Duration::from_millis(m as u64)),
                        weight: weight_units(weight as f64).unwrap(),
                        ..JobSpec::new(kinds[kind as usize], priority)
                    };
                    core.submit(next, spec, next).unwrap();
                    ledger.submitted.push(next);
                    next += 1;
                }
                Op::Ready(slot) => {
                    if core.slot_states()[slot] == SlotState::Pending {
                        core.worker_ready(slot);
                    }
                }
                Op::Finish(slot) => {
                    if let Some(job) = core.running_in(slot) {
                        assert!(core.finished(slot, job, Finish::Completed, None, now).is_ok());
                    }
                }
                Op::Fail(slot) => {
                    if let Some(job) = core.running_in(slot) {
                        assert!(core.finished(slot, job, Finish::Failed, None, now).is_ok());
                    }
                }
                Op::Lost(slot) => {
                    if core.slot_states()[slot] == SlotState::Ready {
                        core.worker_lost(slot, None, now);
                    }
                }
                Op::Cancel(i) => {
                    if !ledger.submitted.is_empty() {
                        let job = ledger.submitted[i % ledger.submitted.len()];
                        core.cancel(job, now);
                    }
                }
                Op::Advance(ms) => now += Duration::from_millis(ms as u64),
            }
            core.poll(now, &mut out);
            ledger.take(&mut out);
            prop_assert!(core.held_of(kinds[1]) <= 1, "kind limit exceeded");
        }
        // Wind down: everything still in the core comes out exactly once.
        core.stop(End::Cancelled);
        core.kill_busy(KillReason::Shutdown, now);
        for slot in 0..3 { core.slot_down(slot, now); }
        core.poll(now, &mut out);
        ledger.take(&mut out);
        let all: HashSet<JobId> = ledger.submitted.iter().copied().collect();
        prop_assert_eq!(&ledger.ended, &all, "jobs lost");
        prop_assert_eq!(core.stats(), CoreStats { down_slots: 3, ..CoreStats::default() });
    }

    #[test]
    fn the_exclusion_window_holds_whenever_an_alternative_exists(
        policy in policy(),
        window in 1..3usize,
        kinds_of in proptest::collection::vec(0..4u32, 1..60),
        seed in any::<u64>(),
    ) {
        let mut core: Core<JobId> = Core::new(CoreConfig {
            policy,
            exclusion_window: window,
            eviction: EvictionMode::Off,
            seed,
            ..CoreConfig::default()
        });
        core.worker_ready(0);
        for (i, &k) in kinds_of.iter().enumerate() {
            let id = i as JobId + 1;
            core.submit(id, JobSpec::new(k, (id % 11) as u8), id).unwrap();
        }
        let now = Instant::now();
        let mut out = Vec::new();
        let mut recent: VecDeque<KindId> = VecDeque::new();
        loop {
            let queued: Vec<usize> = (0..4).map(|k| core.queued_of(k)).collect();
            core.poll(now, &mut out);
            let Some(job) = out.iter().find_map(|d| match d { Decision::Dispatch { job, .. } => Some(*job), _ => None }) else { break };
            out.clear();
            core.finished(0, job, Finish::Completed, None, now).unwrap();
            let k = kinds_of[job as usize - 1];
            if recent.contains(&k) {
                let alternative = (0..4).any(|o| o != k && queued[o as usize] > 0 && !recent.contains(&o));
                prop_assert!(!alternative, "kind {k} started again within the window while another kind waited");
            }
            recent.push_back(k);
            if recent.len() > window { recent.pop_front(); }
        }
        prop_assert_eq!(core.waiting(), 0);
    }

    #[test]
    fn the_rate_limit_is_respected_in_the_long_run(
        per_second in 1.0..200.0f64,
        burst in 1..10u32,
        gaps in proptest::collection::vec(0..50u16, 50..300),
    ) {
        let mut core: Core<JobId> = Core::new(CoreConfig {
            slots: 4,
            prefetch: 1000,
            rate: Some(RateLimit::new(per_second, burst)),
            ..CoreConfig::default()
        });
        for s in 0..4 { core.worker_ready(s); }
        let t0 = Instant::now();
        let mut now = t0;
        let mut out = Vec::new();
        let mut started = 0u64;
        for (i, gap) in gaps.iter().enumerate() {
            now += Duration::from_millis(*gap as u64);
            core.submit(i as JobId + 1, JobSpec::new(0, 5), i as JobId + 1).unwrap();
            core.poll(now, &mut out);
            started += out.drain(..).filter(|d| matches!(d, Decision::Dispatch { .. })).count() as u64;
            let elapsed = now.duration_since(t0).as_secs_f64();
            let allowed = burst as f64 + per_second * elapsed;
            prop_assert!(started as f64 <= allowed + 1e-9, "{started} starts in {elapsed}s, allowed {allowed}");
        }
        // Nothing was dropped: the rest start once tokens come.
        let mut guard = 0;
        while core.waiting() > 0 && guard < 100_000 {
            now = core.next_deadline().unwrap().max(now);
            core.poll(now, &mut out);
            started += out.drain(..).filter(|d| matches!(d, Decision::Dispatch { .. })).count() as u64;
            guard += 1;
        }
        prop_assert_eq!(started, gaps.len() as u64);
    }
}
