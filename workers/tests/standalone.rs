//! The stock worker binary on its own (`--once`, `--list`, `--help`) and
//! under a supervisor.

use std::process::Command;
use std::time::Duration;

use procvisor::{Config, Job, Outcome, Supervisor, WorkerCommand};
use serde_json::json;

const WORKER: &str = env!("CARGO_BIN_EXE_procvisor-worker");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(WORKER).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn once_runs_a_job_and_prints_its_result_as_json() {
    let (code, out, _) = run(&["--once", "sleep", r#"{"secs": 0.01}"#]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v, json!({"slept": 0.01}));

    let (code, out, _) = run(&["--once", "echo", r#"{"a": [1, 2]}"#]);
    assert_eq!((code, out.trim()), (0, r#"{"a":[1,2]}"#));
}

#[test]
fn once_reports_failures_clearly() {
    let (code, _, err) = run(&["--once", "fail"]);
    assert_eq!(code, 1);
    assert!(err.contains("the fail handler always fails"), "{err}");

    let (code, _, err) = run(&["--once", "sleep", r#"{"secs": "x"}"#]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad input") && err.contains("invalid type"),
        "{err}"
    );

    let (code, _, err) = run(&["--once", "sleep", "{oops"]);
    assert_eq!(code, 2);
    assert!(err.contains("not valid JSON"), "{err}");

    let (code, _, err) = run(&["--once", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no handler for kind \"nope\""), "{err}");

    let (code, _, _) = run(&["--once", "segfault"]);
    assert_eq!(code, -1, "died of a signal");
}

#[test]
fn list_and_help() {
    let (code, out, _) = run(&["--list"]);
    assert_eq!(code, 0);
    for k in [
        "noop", "echo", "sleep", "fail", "panic", "abort", "segfault", "hang", "alloc",
    ] {
        assert!(out.lines().any(|l| l == k), "{k} missing from {out}");
    }
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--once") && out.contains("supervisor"),
        "{out}"
    );
    let (code, _, err) = run(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("--once"), "{err}");
}

#[test]
fn serves_a_supervisor() {
    let sup = Supervisor::start(Config::new(WorkerCommand::new(WORKER)).workers(2)).unwrap();
    let r = sup.submit(Job::json("echo", &json!("hi"))).unwrap().wait();
    assert_eq!(r.outcome, Outcome::Completed(json!("hi")));
    sup.shutdown_blocking(Duration::from_secs(1));
}
