//! Per-job memory caps and worker recycling, with real worker processes.

mod common;

use std::collections::BTreeMap;

use common::*;
use procvisor::{Crash, Job, Outcome};
use serde_json::json;

#[test]
fn a_job_over_the_memory_cap_crashes_with_its_own_reason_and_harms_no_other() {
    let sup = start(config(2).memory_limit(Some(96 << 20)));
    let hog = sup
        .submit(Job::json("alloc", &json!({"mib": 512, "plain": true})))
        .unwrap();
    let quiet: Vec<_> = (0..20)
        .map(|i| sup.submit(Job::json("echo", &json!(i))).unwrap())
        .collect();
    let report = wait(hog, 30);
    assert_eq!(
        report.outcome,
        Outcome::Crashed(Crash::MemoryLimit { limit: 96 << 20 }),
        "{report:?}"
    );
    assert!(
        report.outcome.to_string().contains("96 MiB"),
        "{}",
        report.outcome
    );
    for (i, h) in quiet.into_iter().enumerate() {
        let r = wait(h, 30);
        assert_eq!(r.outcome, Outcome::Completed(json!(i)));
    }
    // Under the cap, the same job runs (in a replacement worker); a handler
    // that asks before it allocates fails cleanly instead.
    let small = wait(
        sup.submit(Job::json("alloc", &json!({"mib": 16, "plain": true})))
            .unwrap(),
        30,
    );
    assert!(small.outcome.is_completed(), "{small:?}");
    let careful = wait(
        sup.submit(Job::json("alloc", &json!({"mib": 512})))
            .unwrap(),
        30,
    );
    assert!(matches!(careful.outcome, Outcome::Failed(_)), "{careful:?}");
}

#[test]
fn a_worker_is_replaced_after_its_share_of_jobs() {
    let sup = start(config(1).recycle_after(Some(3)));
    let mut per_pid: BTreeMap<u32, usize> = BTreeMap::new();
    for i in 0..9 {
        let r = wait(sup.submit(Job::json("echo", &json!(i))).unwrap(), 30);
        assert_eq!(r.outcome, Outcome::Completed(json!(i)));
        *per_pid.entry(r.worker_pid.unwrap()).or_default() += 1;
    }
    assert_eq!(
        per_pid.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3],
        "jobs per worker: {per_pid:?}"
    );
    let counts = sup.snapshot_blocking().unwrap().counts;
    assert_eq!(counts.crashed, 0, "recycling is no crash: {counts:?}");
    assert_eq!(counts.restarts, 2, "{counts:?}");
}

#[test]
fn a_worker_whose_memory_grew_past_the_limit_is_replaced_after_the_job() {
    let sup = start(config(1).recycle_above_rss(Some(64 << 20)));
    let grow = wait(
        sup.submit(Job::json("alloc", &json!({"mib": 128, "keep": true})))
            .unwrap(),
        30,
    );
    assert!(grow.outcome.is_completed(), "{grow:?}");
    let next = wait(sup.submit(Job::json("echo", &json!(1))).unwrap(), 30);
    assert!(next.outcome.is_completed());
    assert_ne!(
        next.worker_pid, grow.worker_pid,
        "the grown worker was kept"
    );
    // A fresh worker is small again: it is not replaced after each job.
    let again = wait(sup.submit(Job::json("echo", &json!(2))).unwrap(), 30);
    assert_eq!(again.worker_pid, next.worker_pid);
}

#[test]
fn limits_out_of_range_are_refused() {
    for cfg in [
        config(1).memory_limit(Some(1 << 20)),
        config(1).recycle_after(Some(0)),
        config(1).recycle_above_rss(Some(10)),
    ] {
        let e = cfg.check().unwrap_err().to_string();
        assert!(e.contains("must be from"), "{e}");
    }
}
