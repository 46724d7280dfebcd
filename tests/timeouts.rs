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

#[test]
fn a_supervisor_process_stopped_for_7_s_right_after_start_kills_no_healthy_worker() {
    // `procvisor run` stopped (as Ctrl-Z or a debugger would) at several
    // moments of its first second, before its first heartbeat check, for
    // 7 s (more than the 5 missed heartbeats that mark a worker silent).
    let runs: Vec<(std::process::Child, u64)> = [500, 700, 900, 1100]
        .into_iter()
        .map(|after_ms| {
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_procvisor"))
                .args(["run", "sleep", r#"{"secs": 9}"#])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (child, after_ms)
        })
        .collect();
    let stoppers: Vec<_> = runs
        .iter()
        .map(|(c, after_ms)| {
            let (pid, after_ms) = (c.id() as i32, *after_ms);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(after_ms));
                // SAFETY: signals to a child we spawned and have not reaped.
                unsafe { libc::kill(pid, libc::SIGSTOP) };
                std::thread::sleep(Duration::from_secs(7));
                unsafe { libc::kill(pid, libc::SIGCONT) };
            })
        })
        .collect();
    for s in stoppers {
        s.join().unwrap();
    }
    for (child, after_ms) in runs {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("\"outcome\":\"completed\""),
            "stopped {after_ms} ms after start: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
