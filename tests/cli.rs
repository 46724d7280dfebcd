//! The `procvisor` command end to end: run, hunt, test-scheduler,
//! test-process.

use std::collections::HashMap;
use std::process::Command;

const CLI: &str = env!("CARGO_BIN_EXE_procvisor");

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(CLI).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether a process is gone or a zombie, from /proc.
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn a_killed_supervisor_takes_its_workers_and_their_children_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("child.pid");
    let args = serde_json::json!({"pid_file": pid_file, "then": "hang"}).to_string();
    let mut sup = Command::new(CLI)
        .args(["run", "spawn_then", &args])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let child: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break pid;
        }
        assert!(started.elapsed().as_secs() < 20, "the job never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // The job's child runs in the worker's process group; SIGKILL the
    // supervisor, which can clean up nothing.
    let worker: u32 = std::fs::read_to_string(format!("/proc/{child}/stat"))
        .unwrap()
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    sup.kill().unwrap();
    sup.wait().unwrap();
    let t = std::time::Instant::now();
    while !(dead(child) && dead(worker)) && t.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(dead(worker), "the worker {worker} outlived its supervisor");
    assert!(
        dead(child),
        "the job's child {child} outlived its supervisor"
    );
}

#[test]
fn run_prints_the_outcome_and_exits_0_only_when_completed() {
    let (code, out, _) = cli(&["run", "echo", r#"{"x": 1}"#]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["outcome"].as_str(), &v["result"]),
        (Some("completed"), &serde_json::json!({"x": 1}))
    );

    let (code, out, err) = cli(&["run", "hang", "--timeout", "0.2"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("\"timed_out\"") && err.contains("timed out"),
        "{out} {err}"
    );

    // Over the memory limit: crashed, saying so.
    let (code, out, _) = cli(&[
        "run",
        "alloc",
        r#"{"mib": 512, "plain": true}"#,
        "--memory-limit",
        "64",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("memory") && out.contains("64 MiB"), "{out}");

    let (code, _, err) = cli(&["run", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown job kind"), "{err}");

    let (code, out, _) = cli(&["run", "fail", "--retries", "2", "--backoff", "0.01"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["attempts"], 3);
    assert_eq!(v["earlier_attempts"].as_array().unwrap().len(), 2);
}

#[test]
fn test_scheduler_fast_runs_end_to_end_and_its_summary_adds_up() {
    for extra in [&[][..], &["--gauss"][..]] {
        let mut args = vec![
            "test-scheduler",
            "--fast",
            "--duration",
            "2",
            "-s",
            "2",
            "--seed",
            "3",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = cli(&args);
        assert_eq!(code, 0, "{err}");
        let line = out
            .lines()
            .find(|l| l.starts_with("summary: "))
            .expect("a summary line");
        let counts: HashMap<&str, usize> = line["summary: ".len()..]
            .split_whitespace()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let produced = counts["produced"];
        assert!(
            produced >= 10,
            "only {produced} jobs in 2 s at a job per 50 ms: {line}"
        );
        let ended: usize = [
            "completed",
            "timed_out",
            "evicted",
            "crashed",
            "failed",
            "cancelled",
            "rejected",
        ]
        .iter()
        .map(|k| counts[k])
        .sum();
        assert_eq!(ended, produced, "{line}");
        // Runtimes 30..150 ms against a 100 ms timeout: some of each.
        assert!(counts["completed"] > 0 && counts["timed_out"] > 0, "{line}");
    }
}

#[test]
fn hunt_prints_a_table_where_every_strategy_finds_the_treasure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let (code, out, err) = cli(&[
        "hunt",
        "--files",
        "200",
        "--lines",
        "10",
        "--dir",
        dir,
        "--seed",
        "5",
        "--full-scan",
    ]);
    assert_eq!(code, 0, "{err}");
    let treasure = out
        .lines()
        .find_map(|l| l.split("the treasure is file ").nth(1))
        .expect("the data set line")
        .trim()
        .to_string();
    for strategy in ["sequential", "threads", "async", "procvisor"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(strategy))
            .unwrap_or_else(|| panic!("no {strategy} row in {out}"));
        assert!(row.contains(&format!("file {treasure}")), "{row}");
        assert!(
            row.contains(" 200 "),
            "full scan reads all 200 files: {row}"
        );
    }
    // A second run reuses the data set.
    let (_, out, _) = cli(&[
        "hunt", "--files", "200", "--lines", "10", "--dir", dir, "--seed", "5",
    ]);
    assert!(out.contains("(reused)"), "{out}");
}

#[test]
fn test_process_shows_every_way_a_process_ends() {
    let (code, out, _) = cli(&["test-process"]);
    assert_eq!(code, 0);
    for expect in [
        "ended: Success",
        "still working",
        "Error(Code(3))",
        "TimedOut(Signal(9))",
        "Terminated(Signal(15))",
        "Terminated(Signal(9))",
    ] {
        assert!(out.contains(expect), "missing {expect:?} in {out}");
    }
}

/// A `procvisor` copied into `dir`, and a fake `procvisor-worker` planted
/// at `plant` that leaves a mark if anyone runs it.
fn planted(
    dir: &std::path::Path,
    plant: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let exe = dir.join("procvisor");
    std::fs::copy(CLI, &exe).unwrap();
    let mark = plant.join("mark.ran");
    let fake = plant.join("procvisor-worker");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", mark.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    (exe, mark)
}

/// `exe run echo 1` succeeds.
fn runs_echo(exe: &std::path::Path) {
    let out = Command::new(exe)
        .args(["run", "echo", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_worker_program_is_never_taken_from_a_parent_or_a_shared_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // A `procvisor-worker` one directory up is not looked at.
    let sub = tmp.path().join("bin");
    std::fs::create_dir(&sub).unwrap();
    let (exe, mark) = planted(&sub, tmp.path());
    runs_echo(&exe);
    assert!(!mark.exists(), "the worker in the parent directory was run");
    // Nor one beside the executable in a directory others can write.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let (exe, mark) = planted(&shared, &shared);
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    runs_echo(&exe);
    assert!(
        !mark.exists(),
        "the worker in a world-writable directory was run"
    );
    // Beside it in a private directory, it is the one used.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .args(["run", "echo", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the planted worker fails at start");
    assert!(mark.exists(), "a worker beside the executable is used");
}

#[test]
fn bench_prints_throughput_latency_and_the_fault_figures() {
    let (code, out, err) = cli(&[
        "bench",
        "--jobs",
        "300",
        "--latency-jobs",
        "20",
        "--fault-reps",
        "3",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "throughput: 300 jobs",
        "round trip, one job at a time (20 jobs)",
        "timeout: deadline → reported, worker killed (3 times)",
        "crash: submitted → crash reported (3 times)",
        "crash: reported → a replacement served a job (3 times)",
        "eviction: urgent submitted → urgent done (3 times)",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    let (code, _, err) = cli(&["bench", "--fault-reps", "1000000"]);
    assert_eq!(code, 2);
    assert!(err.contains("fault-reps"), "{err}");
}

#[test]
fn test_scheduler_ends_gracefully_with_its_summary_on_sigint_sigterm_and_sighup() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let child = Command::new(CLI)
            .args(["test-scheduler", "--fast", "-s", "2", "--seed", "5"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "signal {signal}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("summary: "))
            .unwrap_or_else(|| panic!("signal {signal}: no summary in {stdout}"));
        assert!(line.contains("produced="), "{line}");
    }
}

#[test]
fn numbers_out_of_range_are_refused_naming_the_flag_and_the_range() {
    for (args, flag) in [
        (&["run", "noop", "--timeout", "1e30"][..], "--timeout"),
        (&["run", "noop", "--timeout=-1"][..], "--timeout"),
        (&["run", "noop", "--workers", "0"][..], "--workers"),
        (&["run", "noop", "--workers", "100000"][..], "--workers"),
        (&["run", "noop", "--priority", "11"][..], "--priority"),
        (&["run", "noop", "--rate", "0"][..], "--rate"),
        (&["run", "noop", "--backoff", "inf"][..], "--backoff"),
        (
            &["bench", "--latency-jobs", "18446744073709551615"][..],
            "--latency-jobs",
        ),
        (&["bench", "--inflight", "0"][..], "--inflight"),
        (&["hunt", "--workers", "0"][..], "--workers"),
        (&["hunt", "--lines", "100000000"][..], "--lines"),
        (&["test-scheduler", "--period", "0"][..], "--period"),
        (&["test-scheduler", "--duration", "1e300"][..], "--duration"),
        (
            &["run", "noop", "--memory-limit", "8"][..],
            "--memory-limit",
        ),
        (
            &["run", "noop", "--recycle-after", "0"][..],
            "--recycle-after",
        ),
        (
            &["hunt", "--recycle-above-rss", "99999999"][..],
            "--recycle-above-rss",
        ),
    ] {
        let (code, out, err) = cli(args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

#[test]
fn what_a_handler_prints_stays_out_of_runs_json() {
    let (code, out, err) = cli(&["run", "chatty", r#""hello from the handler""#]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out:?}"));
    assert_eq!(v["result"], "hello from the handler");
    assert!(err.contains("hello from the handler"), "{err}");
}

#[test]
fn errors_come_once_without_colour_and_job_text_cannot_drive_the_terminal() {
    let (code, _, err) = cli(&["run", "garbage"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "said more than once: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes into a pipe: {err:?}");
    assert!(err.contains("over the limit"), "{err}");
    // A handler's error text with an escape sequence is shown, not obeyed.
    let (code, _, err) = cli(&["run", "fail", "{\"message\": \"\\u001b[2J wiped\"}"]);
    assert_eq!(code, 1);
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("\\u{1b}[2J wiped"), "{err:?}");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::Read;
    let mut child = Command::new(CLI)
        .args([
            "bench",
            "--jobs",
            "500",
            "--latency-jobs",
            "10",
            "--fault-reps",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the first line is printed.
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn the_workers_marker_in_a_users_environment_makes_nothing_a_worker() {
    // Exported by hand, or inherited by a program a job started: the
    // variable alone does not name this process's parent, so `run` runs.
    for marker in ["4", "4:1", "garbage"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_procvisor"))
            .args(["run", "noop", "{}"])
            .env("PROCVISOR_HANDSHAKE_FD", marker)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("\"outcome\":\"completed\""),
            "PROCVISOR_HANDSHAKE_FD={marker}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let worker =
        std::path::Path::new(env!("CARGO_BIN_EXE_procvisor")).with_file_name("procvisor-worker");
    if worker.exists() {
        let out = std::process::Command::new(&worker)
            .arg("--list")
            .env("PROCVISOR_HANDSHAKE_FD", "4")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("noop"), "{stdout}");
    }
}
