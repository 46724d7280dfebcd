//! A worker that floods its supervisor with chatter (heartbeat frames as
//! fast as the pipe takes them, progress reports as fast as it can send
//! them) costs the supervisor bounded memory, is not
//! killed for it, and holds back no other worker. Its own test program:
//! it measures this process's memory.

mod common;

use std::time::{Duration, Instant};

use common::*;
use procvisor::{Job, Outcome};
use serde_json::json;

/// This process's resident memory now and at its peak, in KiB (/proc).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_worker_flooding_chatter_costs_bounded_memory_and_delays_no_other() {
    for kind in ["flood_heartbeats", "flood_progress"] {
        flood(kind);
    }
}

fn flood(kind: &str) {
    let sup = start(config(2));
    wait_ready(&sup, 2);
    assert!(wait(sup.submit(Job::json("noop", &json!({}))).unwrap(), 20)
        .outcome
        .is_completed());
    let (before, _) = memory_kib();
    let flood = sup.submit(Job::json(kind, &json!({"secs": 4}))).unwrap();
    // The other worker's jobs go through meanwhile, promptly.
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = wait(sup.submit(Job::json("noop", &json!({}))).unwrap(), 20);
        assert!(r.outcome.is_completed(), "{:?}", r.outcome);
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = wait(flood, 30);
    let (_, peak) = memory_kib();
    let sent = match &r.outcome {
        Outcome::Completed(v) => v.as_u64().unwrap_or(0),
        other => panic!("{kind}: the flooding worker was not let finish: {other:?}"),
    };
    let grew_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "{kind}: {sent} messages in 4 s; supervisor memory {before} KiB before, peak {peak} KiB (+{grew_mib} MiB); slowest other job {slowest:?}"
    );
    assert!(sent > 10_000, "the flood was a flood: {sent}");
    assert!(
        grew_mib < 64,
        "{kind}: memory grew {grew_mib} MiB under the flood"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "another worker's job waited {slowest:?} behind the flood"
    );
}

#[test]
fn a_run_time_a_worker_reports_is_believed_only_up_to_the_time_since_the_job_was_sent() {
    let sup = start(config(1));
    let t = Instant::now();
    let r = wait(
        sup.submit(Job::json("lying_finish", &json!({}))).unwrap(),
        20,
    );
    assert!(r.outcome.is_completed(), "{:?}", r.outcome);
    let ran = r.ran_for.expect("a run time");
    assert!(ran <= t.elapsed(), "ran for {ran:?} in {:?}", t.elapsed());
}
