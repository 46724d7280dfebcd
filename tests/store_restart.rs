//! PostgreSQL restarted under running supervisors, for far less than their
//! lease: they reconnect on their own, no job is lost, none ends twice, and
//! — by the workers' own records — none runs twice. (Its own test program:
//! the restart would cut the connections of any other test on the server.)

mod pg;
mod record;

use std::time::Duration;

use procvisor::store::{NewJob, Store};
use serde_json::json;

/// The tests of this program restart the one server: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The server to this test alone (while the guard lives), and a migrated
/// database of its own, `test`: its URL.
fn alone(
    test: &str,
) -> Option<(
    std::sync::MutexGuard<'static, ()>,
    String,
    &'static pg::Server,
)> {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let url = pg::database(test)?;
    let server = pg::server().expect("the server behind the database");
    pg::runtime().block_on(async {
        Store::connect(&url).await.unwrap().migrate().await.unwrap();
    });
    Some((guard, url, server))
}

#[test]
fn supervisors_ride_out_a_database_restart_and_every_job_ends_once() {
    let Some((_alone, url, server)) = alone("restart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record");
    pg::runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let args = ["--workers", "2", "--lease", "15"];
        let supervisors: Vec<_> = (0..2)
            .map(|_| record::supervise(&url, Some(&file), &args))
            .collect();
        // Short jobs, so many are running and many endings are being
        // written when the server goes down.
        let jobs: Vec<NewJob> = (0..1500)
            .map(|i| {
                NewJob::new("record", json!({"tag": i, "secs": 0.004})).priority((i % 11) as u8)
            })
            .collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        pg::until_ended(&store, 300, Duration::from_secs(120)).await;

        server.restart();
        // The store's own pool reconnects too: the first uses may fail.
        let mut after = None;
        for _ in 0..50 {
            let last = NewJob::new("record", json!({"tag": 1500, "secs": 0.004}));
            match store.submit(&last).await {
                Ok(id) => {
                    after = Some(id);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let after = after.expect("a submit after the restart");

        let events = pg::until_ended(&store, ids.len() + 1, Duration::from_secs(180)).await;
        for s in supervisors {
            pg::stop(s.into_child());
        }
        // Each job started in a worker exactly once.
        let marks = record::marks(&file);
        let mut starts = std::collections::BTreeMap::<i64, usize>::new();
        for m in marks.iter().filter(|m| m.what == "start") {
            *starts.entry(m.tag).or_default() += 1;
        }
        let twice: Vec<_> = starts.iter().filter(|(_, &n)| n > 1).collect();
        assert!(
            twice.is_empty(),
            "jobs that ran twice (tag, starts): {twice:?}"
        );
        assert_eq!(starts.len(), 1501, "every job ran");
        let mut expected = ids.clone();
        expected.push(after);
        pg::assert_each_ended_once(&events, &expected);
        let not_completed: Vec<_> = events
            .iter()
            .filter(|e| e.terminal && e.event != "completed")
            .collect();
        assert!(
            not_completed.is_empty(),
            "jobs that did not complete: {not_completed:?}"
        );
        // Both supervisors lived through it (neither was declared lost
        // and had its jobs reclaimed: the restart is far shorter than
        // their lease).
        assert!(
            !events.iter().any(|e| e.event == "reclaimed"),
            "no job should have been reclaimed"
        );
        let status = store.status().await.unwrap();
        assert!(
            status.jobs.iter().all(|q| q.jobs == 0),
            "nothing left in the queue: {:?}",
            status.jobs
        );
    });
}

#[test]
fn a_restart_shorter_than_the_lease_runs_no_job_twice_not_even_one_waiting_with_a_short_timeout() {
    // One worker, room for a second job behind its first (prefetch 2), a
    // 6 s lease; a 7 s job, then one with a 1 s timeout. The server is down
    // for 3 s meanwhile, less than the two thirds of the lease after which
    // the supervisor would hold its starts. No job may run twice: the
    // short job's deadline must not pass while it waits, nor during the
    // outage.
    let Some((_alone, url, server)) = alone("short_restart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record");
    pg::runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let args = ["--workers", "1", "--prefetch", "2", "--lease", "6"];
        let sup = record::supervise(&url, Some(&file), &args);
        let long = store
            .submit(&NewJob::new("record", json!({"tag": 1, "secs": 7})))
            .await
            .unwrap();
        let short = store
            .submit(
                &NewJob::new("record", json!({"tag": 2, "secs": 0.1}))
                    .timeout(Duration::from_secs(1)),
            )
            .await
            .unwrap();
        let started = record::until(Duration::from_secs(20), async || {
            record::marks(&file).iter().any(|m| m.tag == 1)
        })
        .await;
        assert!(started, "the long job started");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.restart_after(Duration::from_secs(3));
        let events = pg::until_ended(&store, 2, Duration::from_secs(60)).await;
        // A moment for a second run, if there were one, to show.
        tokio::time::sleep(Duration::from_secs(2)).await;
        pg::stop(sup.into_child());
        pg::assert_each_ended_once(&events, &[long, short]);
        let ends: Vec<_> = events.iter().filter(|e| e.terminal).collect();
        assert!(
            ends.iter()
                .all(|e| e.event == "completed" && e.reclaims == 0),
            "{ends:?}"
        );
        let marks = record::marks(&file);
        for tag in [1, 2] {
            let starts = marks
                .iter()
                .filter(|m| m.what == "start" && m.tag == tag)
                .count();
            assert_eq!(starts, 1, "job {tag} started once: {marks:?}");
        }
    });
}

#[test]
fn submit_wait_rides_out_a_database_restart_and_reports_the_ending() {
    let Some((_alone, url, server)) = alone("wait_restart") else {
        return;
    };
    let sup = pg::supervise(&url, 1, 15);
    let waiting = std::process::Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["submit", "sleep", r#"{"secs": 4}"#, "--wait"])
        .env("PROCVISOR_DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run procvisor submit --wait");
    std::thread::sleep(Duration::from_millis(1500));
    server.restart_after(Duration::from_secs(1));
    let out = waiting.wait_with_output().unwrap();
    pg::stop(sup);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "submit --wait gave up: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"event\":\"completed\""), "{stdout}");
}
