//! Cancel, shutdown, drop, restarts and their limit, start-up errors, and an
//! embedding process that is SIGKILLed.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use procvisor::RestartPolicy;
use procvisor::{Config, Job, Outcome, StartError, SubmitError, Supervisor, WorkerCommand};
use procvisor::{JobState, State, WorkerPhase};
use serde_json::json;

#[test]
fn cancel_a_queued_job_and_a_running_one() {
    let sup = start(config(1));
    let running = sup
        .submit(Job::json("sleep", &json!({"secs": 30})))
        .unwrap();
    let queued = sup
        .submit(Job::json("sleep", &json!({"secs": 30})))
        .unwrap();
    let pid = running_pid(&running);
    assert_eq!(queued.state_blocking(), JobState::Queued);
    queued.cancel();
    assert_eq!(wait(queued, 5).outcome, Outcome::Cancelled);
    running.cancel();
    assert_eq!(wait(running, 5).outcome, Outcome::Cancelled);
    assert!(
        eventually(Duration::from_secs(2), || gone(pid)),
        "cancelled job's worker {pid} lives"
    );
    assert!(wait(sup.submit(Job::json("echo", &json!(1))).unwrap(), 20)
        .outcome
        .is_completed());
}

#[test]
fn with_a_cancel_grace_a_cooperative_handler_stops_and_its_worker_lives() {
    let sup = start(config(1).cancel_grace(Duration::from_secs(5)));
    let h = sup
        .submit(Job::json("sleep", &json!({"secs": 30})))
        .unwrap();
    let pid = running_pid(&h);
    h.cancel();
    assert_eq!(wait(h, 5).outcome, Outcome::Cancelled);
    let next = wait(sup.submit(Job::json("echo", &json!(2))).unwrap(), 20);
    assert!(next.outcome.is_completed());
    assert_eq!(
        next.worker_pid,
        Some(pid),
        "the worker that stopped by itself serves on"
    );
}

#[test]
fn shutdown_lets_running_jobs_finish_cancels_the_rest_and_leaves_no_process() {
    let sup = start(config(2));
    wait_ready(&sup, 2);
    let pids = worker_pids(&sup);
    assert_eq!(pids.len(), 2);
    let quick = sup
        .submit(Job::json("sleep", &json!({"secs": 0.2})))
        .unwrap();
    let slow = sup
        .submit(Job::json("sleep", &json!({"secs": 30})))
        .unwrap();
    let queued = sup.submit(Job::json("sleep", &json!({"secs": 1}))).unwrap();
    running_pid(&slow);
    sup.shutdown_blocking(Duration::from_millis(600));
    assert_eq!(
        wait(quick, 5).outcome,
        Outcome::Completed(json!({"slept": 0.2}))
    );
    assert_eq!(wait(slow, 5).outcome, Outcome::Cancelled);
    assert_eq!(wait(queued, 5).outcome, Outcome::Cancelled);
    for pid in pids {
        assert!(gone(pid), "worker {pid} outlived shutdown");
    }
    assert_eq!(
        sup.submit(Job::json("echo", &json!(1))).unwrap_err(),
        SubmitError::ShuttingDown
    );
}

#[test]
fn dropping_the_last_handle_leaves_no_process() {
    let sup = start(config(2));
    wait_ready(&sup, 2);
    let pids = worker_pids(&sup);
    let busy = sup
        .submit(Job::json("sleep", &json!({"secs": 30})))
        .unwrap();
    let clone = sup.clone();
    drop(sup);
    assert!(
        clone.snapshot_blocking().is_some(),
        "a clone keeps it alive"
    );
    drop(clone);
    for pid in pids {
        assert!(gone(pid), "worker {pid} outlived the supervisor");
    }
    assert_eq!(wait(busy, 5).outcome, Outcome::Cancelled);
}

#[test]
fn an_embedding_process_that_is_sigkilled_takes_its_workers_with_it() {
    // The procvisor CLI embeds a supervisor: run a long job in it with two
    // workers, then SIGKILL it.
    let mut cli = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["run", "sleep", r#"{"secs": 60}"#, "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut workers = Vec::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            workers = children(cli.id());
            workers.len() == 2
        }),
        "the CLI did not start two workers"
    );
    cli.kill().unwrap();
    cli.wait().unwrap();
    for pid in workers {
        assert!(
            eventually(Duration::from_secs(5), || dead(pid)),
            "worker {pid} outlived its SIGKILLed parent"
        );
    }
}

#[test]
fn a_crash_loop_trips_the_restart_intensity_limit() {
    let policy = RestartPolicy {
        max_restarts: 2,
        within: Duration::from_secs(60),
        ..RestartPolicy::default()
    };
    let sup = start(config(1).restart(policy));
    let crashes: Vec<_> = (0..3)
        .map(|_| sup.submit(Job::json("segfault", &json!({}))).unwrap())
        .collect();
    let queued = sup.submit(Job::json("echo", &json!(1))).unwrap();
    for h in crashes {
        assert!(matches!(wait(h, 20).outcome, Outcome::Crashed(_)));
    }
    match wait(queued, 20).outcome {
        Outcome::Rejected(why) => assert!(why.contains("restart intensity"), "{why}"),
        other => panic!("{other:?}"),
    }
    match sup.submit(Job::json("echo", &json!(1))).unwrap_err() {
        SubmitError::Failed(why) => assert!(why.contains("died 3 times"), "{why}"),
        e => panic!("{e:?}"),
    }
    // No fork loop: nothing was restarted after the trip.
    std::thread::sleep(Duration::from_millis(200));
    let snap = sup.snapshot_blocking().unwrap();
    assert!(matches!(snap.state, State::Failed(_)));
    assert!(
        snap.workers
            .iter()
            .all(|w| w.pid.is_none() && w.phase == WorkerPhase::Down),
        "{:?}",
        snap.workers
    );
}

#[test]
fn workers_that_cannot_start_give_a_clear_error() {
    let e = Supervisor::start(Config::new(WorkerCommand::new("/nonexistent/worker")).workers(1))
        .unwrap_err();
    assert!(matches!(e, StartError::Workers(_)));
    assert!(e.to_string().contains("/nonexistent/worker"), "{e}");

    // A program that runs but is no worker.
    let e = Supervisor::start(Config::new(WorkerCommand::new("/bin/true")).workers(2)).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("/bin/true") && m.contains("procvisor worker"),
        "{m}"
    );
}

#[test]
fn what_a_worker_starts_dies_with_it_however_the_worker_ends() {
    let sup = start(config(1));
    let tmp = tempfile::tempdir().unwrap();
    for then in ["segfault", "exit", "return"] {
        let pid_file = tmp.path().join(format!("{then}.pid"));
        let job = Job::json(
            "spawn_then",
            &serde_json::json!({"pid_file": pid_file, "then": then}),
        );
        let report = wait(sup.submit(job).unwrap(), 20);
        let child: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if then == "return" {
            // The worker lives on; its child dies when the worker ends.
            assert!(report.outcome.is_completed(), "{:?}", report.outcome);
            assert!(!dead(child), "the child runs while its worker does");
            continue;
        }
        assert!(
            matches!(report.outcome, Outcome::Crashed(_)),
            "{then}: {:?}",
            report.outcome
        );
        assert!(
            eventually(Duration::from_secs(5), || dead(child)),
            "{then}: the worker's child {child} outlived it"
        );
    }
    // At shutdown, the last worker's child goes with it.
    let child: u32 = std::fs::read_to_string(tmp.path().join("return.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sup.shutdown_blocking(Duration::from_secs(1));
    assert!(
        eventually(Duration::from_secs(5), || dead(child)),
        "the child {child} outlived its worker's shutdown"
    );
}

/// The paths of a process's open file descriptors, from /proc.
fn open_files(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A process's environment, from /proc.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|&c| c == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn workers_inherit_no_stray_descriptors_and_a_clean_environment_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let leaked = tmp.path().join("left-open-by-the-application");
    std::fs::write(&leaked, "x").unwrap();
    // As a careless application would: open without close-on-exec.
    let path = std::ffi::CString::new(leaked.to_str().unwrap()).unwrap();
    let first = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(first >= 0);
    // Far from the descriptors a worker gets (0 to 3), so that nothing
    // replaces it by chance; dup2 leaves it open across exec.
    let fd = unsafe { libc::dup2(first, 200) };
    assert_eq!(fd, 200);
    unsafe { libc::close(first) };
    let sup = start(config(1));
    let pid = worker_pids(&sup)[0];
    let files = open_files(pid);
    assert!(!files.is_empty(), "cannot read the worker's descriptors");
    assert!(
        !files
            .iter()
            .any(|f| f.contains("left-open-by-the-application")),
        "the worker inherited {files:?}"
    );
    assert!(
        environ(pid)
            .iter()
            .any(|v| v.starts_with("CARGO_MANIFEST_DIR=")),
        "by default a worker inherits the environment"
    );
    drop(sup);
    unsafe { libc::close(fd) };

    let clean = Config::new(worker().clean_env(["PATH"])).workers(1);
    let sup = start(clean);
    let env = environ(worker_pids(&sup)[0]);
    assert!(env.iter().any(|v| v.starts_with("PATH=")), "{env:?}");
    assert!(
        !env.iter().any(|v| v.starts_with("CARGO_MANIFEST_DIR=")),
        "a clean environment keeps only what was named: {env:?}"
    );
}
