//! Many supervisor *processes* on one PostgreSQL store (`procvisor
//! supervise`), many producers: each job claimed by one supervisor at a
//! time and ended once; a SIGKILLed supervisor's jobs reclaimed and ended
//! once elsewhere.

mod pg;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use procvisor::store::{Event, NewJob, Store};
use serde_json::json;

#[test]
fn four_producers_and_three_supervisor_processes_end_every_job_once() {
    let Some(url) = pg::database("cluster") else {
        return;
    };
    pg::runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let supervisors: Vec<Child> = (0..3).map(|_| pg::supervise(&url, 2, 5)).collect();
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for batch in 0..25 {
                        let jobs: Vec<NewJob> = (0..50)
                            .map(|i| {
                                NewJob::new("noop", json!({}))
                                    .priority(((p + batch + i) % 11) as u8)
                            })
                            .collect();
                        ids.extend(store.submit_many(&jobs).await.unwrap());
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::new();
        for p in producers {
            ids.extend(p.await.unwrap());
        }
        assert_eq!(ids.len(), 5000);
        let events = pg::until_ended(&store, 5000, Duration::from_secs(240)).await;
        for s in supervisors {
            pg::stop(s);
        }
        pg::assert_each_ended_once(&events, &ids);
        assert!(
            events
                .iter()
                .all(|e| e.event == "completed" && e.attempt == 1),
            "each job ran once: {:?}",
            events
                .iter()
                .find(|e| e.event != "completed" || e.attempt != 1)
        );
        let mut by: std::collections::BTreeMap<i64, usize> = Default::default();
        for e in &events {
            *by.entry(e.supervisor.unwrap()).or_default() += 1;
        }
        assert_eq!(by.len(), 3, "all three supervisors ran jobs: {by:?}");
        let status = store.status().await.unwrap();
        assert!(status.jobs.is_empty(), "{status:?}");
        assert!(status
            .supervisors
            .iter()
            .all(|s| s.stopped && s.running == 0));
    });
}

#[test]
fn a_killed_supervisors_jobs_are_reclaimed_within_its_lease_and_end_once_elsewhere() {
    let Some(url) = pg::database("reclaim") else {
        return;
    };
    pg::runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let doomed = pg::supervise(&url, 2, 2);
        let jobs: Vec<NewJob> = (0..4)
            .map(|_| NewJob::new("sleep", json!({"secs": 1.5})))
            .collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        // Wait until the doomed supervisor holds two running jobs.
        let deadline = Instant::now() + Duration::from_secs(30);
        let victim = loop {
            let s = store.status().await.unwrap();
            if let Some(v) = s.supervisors.iter().find(|v| v.running == 2) {
                break v.id;
            }
            assert!(
                Instant::now() < deadline,
                "the supervisor never ran two jobs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let mut doomed = doomed;
        doomed.kill().unwrap();
        doomed.wait().unwrap();
        let killed_at = Instant::now();
        let rescuer = pg::supervise(&url, 2, 2);
        let events = pg::until_ended(&store, 4, Duration::from_secs(60)).await;
        let reclaimed: Vec<&Event> = events.iter().filter(|e| e.event == "reclaimed").collect();
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "reclaimed and rerun within the lease, not {:?}",
            killed_at.elapsed()
        );
        pg::stop(rescuer);
        assert!(!reclaimed.is_empty(), "{events:?}");
        assert!(reclaimed.iter().all(|e| e.supervisor == Some(victim)));
        for id in &ids {
            let ends: Vec<&Event> = events
                .iter()
                .filter(|e| e.job_id == *id && e.terminal)
                .collect();
            assert_eq!(ends.len(), 1, "job {id} ended once: {events:?}");
            assert_eq!(ends[0].event, "completed");
            assert_ne!(
                ends[0].supervisor,
                Some(victim),
                "not by the dead supervisor"
            );
        }
        for e in &reclaimed {
            let end = events
                .iter()
                .find(|x| x.job_id == e.job_id && x.terminal)
                .unwrap();
            assert_eq!(end.reclaims, 1);
            assert_eq!(
                end.attempt, 2,
                "the attempt that died under the lost supervisor counts"
            );
        }
    });
}

fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(args)
        .env("PROCVISOR_DATABASE_URL", url)
        .output()
        .expect("run procvisor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_submits_waits_cancels_and_reports_as_json() {
    let Some(url) = pg::database("cli") else {
        return;
    };
    let (code, out, err) = cli(&url, &["db", "status"]);
    assert_eq!(code, 1, "an empty database is behind: {out}{err}");
    assert!(out.contains("procvisor db migrate"), "{out}");
    let (code, out, _) = cli(&url, &["db", "migrate"]);
    assert_eq!(code, 0);
    assert!(out.contains("applied version 1"), "{out}");
    let (code, out, _) = cli(&url, &["db", "migrate"]);
    assert_eq!((code, out.trim()), (0, "the database is up to date"));

    // Waiting jobs: a delayed one, cancelled before it runs.
    let (code, out, _) = cli(&url, &["submit", "noop", "{}", "--delay", "3600"]);
    assert_eq!(code, 0);
    let delayed: i64 = out.trim().parse().expect("submit prints the id");
    let (code, out, err) = cli(&url, &["status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["state"], "scheduled");
    assert_eq!(line["jobs"], 1);
    let (code, out, _) = cli(&url, &["cancel", &delayed.to_string()]);
    assert_eq!(code, 0, "{out}");

    let sup = pg::supervise(&url, 1, 5);
    let (code, out, err) = cli(
        &url,
        &["submit", "echo", r#"{"x": 1}"#, "-p", "2", "--wait"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut lines = out.lines();
    let id: i64 = lines.next().unwrap().parse().unwrap();
    let end: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(end["job_id"], id);
    assert_eq!(end["event"], "completed");
    assert_eq!(end["result"], json!({"x": 1}));
    assert_eq!(end["attempt"], 1);
    assert!(end["supervisor"].is_i64());

    let (code, out, _) = cli(&url, &["submit", "fail", "{}", "--wait"]);
    assert_eq!(code, 1, "a job that did not complete: {out}");
    assert!(out.contains("\"event\":\"failed\""), "{out}");

    let (code, out, _) = cli(&url, &["events", "--json", "--job", &delayed.to_string()]);
    assert_eq!(code, 0);
    let ev: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (ev["event"].as_str(), ev["terminal"].as_bool()),
        (Some("cancelled"), Some(true))
    );
    let (_, out, _) = cli(&url, &["events", "--json"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    pg::stop(sup);
    let (code, out, _) = cli(&url, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("(stopped)"), "{out}");

    // Bad input: clear errors, exit 2, nothing written.
    let (code, _, err) = cli(&url, &["submit", "noop", "{not json"]);
    assert_eq!(code, 2);
    assert!(err.contains("not valid JSON"), "{err}");
    let (code, _, err) = cli(&url, &["submit", "noop", "-p", "11"]);
    assert_eq!(code, 2);
    assert!(err.contains("11"), "{err}");
    let (code, _, err) = cli("postgres://nobody@127.0.0.1:1/none", &["status"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot connect to the database at 127.0.0.1:1/none"),
        "{err}"
    );
    assert!(!err.contains("password"), "{err}");
    let (code, _, err) = cli("not a url", &["status"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not parse"), "{err}");
}

#[test]
fn the_command_line_takes_the_database_after_the_subcommand_long_delays_and_refuses_rounded_numbers(
) {
    let Some(url) = pg::database("cli_args") else {
        return;
    };
    // The README's form: the database URL after `db migrate`, with no
    // environment to fall back on.
    let out = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["db", "migrate", "--db", &url])
        .env_remove("PROCVISOR_DATABASE_URL")
        .output()
        .expect("run procvisor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A delay of a year, as the help says it may be.
    let (code, out, err) = cli(&url, &["submit", "noop", "{}", "--delay", "31536000"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = cli(&url, &["submit", "noop", "{}", "--delay", "400000000"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("10 years"), "{err}");
    // A whole number a JSON reader would round is refused, not changed.
    let (code, out, err) = cli(
        &url,
        &["submit", "echo", r#"{"n": 123456789012345678901234567890}"#],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("123456789012345678901234567890") && err.contains("as a string"),
        "{err}"
    );
    // Numbers that fit, and digits inside strings, are fine.
    let (code, out, err) = cli(
        &url,
        &[
            "submit",
            "echo",
            r#"{"n": -9223372036854775808, "s": "123456789012345678901234567890", "f": 1.5e300}"#,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_supervisor_serves_only_the_safe_stock_handlers_unless_told_test_handlers() {
    use std::io::BufRead;
    let Some(url) = pg::database("safe_stock") else {
        return;
    };
    assert_eq!(cli(&url, &["db", "migrate"]).0, 0);
    let mut sup = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args([
            "supervise",
            "--workers",
            "1",
            "--poll-ms",
            "100",
            "--grace",
            "1",
        ])
        .env("PROCVISOR_DATABASE_URL", &url)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(sup.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.contains("(kinds: echo, fail, noop, sleep)"),
        "{first}"
    );
    // A job for a test handler is not taken; a safe one runs.
    let (_, out, _) = cli(
        &url,
        &[
            "submit",
            "spawn_then",
            r#"{"pid_file": "/tmp/x", "then": "return"}"#,
        ],
    );
    let risky: i64 = out.trim().parse().unwrap();
    let (code, out, err) = cli(&url, &["submit", "noop", "{}", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, status, _) = cli(&url, &["status", "--json"]);
    let _ = sup.kill();
    let _ = sup.wait();
    assert!(
        status.contains("\"state\":\"available\""),
        "the spawn_then job {risky} still waits: {status}"
    );
}
