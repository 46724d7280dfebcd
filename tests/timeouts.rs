//! Timeouts kill for real, heartbeats catch a frozen worker.

mod common;

use std::time::Duration;

use common::*;
use procvisor::Crash;
use procvisor::{Job, Outcome};
use serde_json::json;

#[test]
fn timeout_kills_the_worker_and_a_replacement_serves_the_next_job() {
    let sup = start(config(1));
    let r = wait(
        sup.submit(Job::json("sleep", &json!({"secs": 30})).timeout(Duration::from_millis(250)))
            .unwrap(),
        20,
    );
    assert_eq!(
        r.outcome,
        Outcome::TimedOut {
            after: Duration::from_millis(250)
        }
    );
    let ran = r.ran_for.unwrap();
    assert!(
        ran >= Duration::from_millis(250) && ran < Duration::from_secs(2),
        "ran {ran:?}"
    );
    let pid = r.worker_pid.unwrap();
    assert!(
        eventually(Duration::from_secs(2), || gone(pid)),
        "timed-out worker {pid} still in /proc"
    );
    let next = wait(sup.submit(Job::json("echo", &json!("next"))).unwrap(), 20);
    assert_eq!(next.outcome, Outcome::Completed(json!("next")));
    assert_ne!(next.worker_pid, Some(pid));
}

#[test]
fn a_job_that_ignores_sigterm_is_killed_after_the_grace() {
    let sup = start(config(1).kill_grace(Duration::from_millis(200)));
    let r = wait(
        sup.submit(Job::json("hang", &json!({})).timeout(Duration::from_millis(200)))
            .unwrap(),
        20,
    );
    assert!(matches!(r.outcome, Outcome::TimedOut { .. }));
    let pid = r.worker_pid.unwrap();
    assert!(
        eventually(Duration::from_secs(3), || gone(pid)),
        "hang worker {pid} survived SIGKILL"
    );
}

#[test]
fn the_supervisor_default_timeout_applies_and_a_job_may_override_it() {
    let sup = start(config(1).default_timeout(Some(Duration::from_millis(200))));
    let r = wait(
        sup.submit(Job::json("sleep", &json!({"secs": 10})))
            .unwrap(),
        20,
    );
    assert!(matches!(r.outcome, Outcome::TimedOut { .. }));
    let r = wait(
        sup.submit(Job::json("sleep", &json!({"secs": 0.4})).timeout(Duration::from_secs(5)))
            .unwrap(),
        20,
    );
    assert!(r.outcome.is_completed());
}

#[test]
fn a_frozen_worker_misses_heartbeats_and_is_replaced() {
    let sup = start(config(1).heartbeat(Duration::from_millis(50), 4));
    let h = sup
        .submit(Job::json("sleep", &json!({"secs": 30})))
        .unwrap();
    let pid = running_pid(&h);
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let r = wait(h, 20);
    assert!(
        matches!(r.outcome, Outcome::Crashed(Crash::Unresponsive(_))),
        "{:?}",
        r.outcome
    );
    assert!(
        eventually(Duration::from_secs(2), || gone(pid)),
        "frozen worker {pid} still in /proc"
    );
    assert!(wait(sup.submit(Job::json("echo", &json!(1))).unwrap(), 20)
        .outcome
        .is_completed());
}
