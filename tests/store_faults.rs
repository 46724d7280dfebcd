//! The job queue under real faults, on the supervisor's side: a cancel that
//! outlives its supervisor, a supervisor stopped (SIGSTOP) past its lease
//! that starts nothing it no longer holds, a deadline that counts from the
//! start, not the claim. Supervisors are real `procvisor supervise`
//! processes; what the workers did is read from their own records
//! (`examples/recording_worker.rs`), not from what the supervisor believes.

mod pg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use procvisor::store::{Cancelled, Event, NewJob, Store};
use serde_json::json;

/// The recording worker program (`cargo test` builds the examples).
fn recording_worker() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let path = debug.join("examples").join("recording_worker");
    assert!(
        path.exists(),
        "{} is missing: cargo test builds it (examples/recording_worker.rs)",
        path.display()
    );
    path
}

/// A supervisor process, killed when dropped: a failing test leaves no
/// supervisor (and no worker) behind.
struct Sup(Child);

impl Sup {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        // SIGCONT first: a stopped process dies of SIGKILL all the same,
        // but its workers are reaped sooner.
        pg::signal(&self.0, libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `procvisor supervise` with these extra arguments, its workers recording
/// to `record` (when given, with the recording worker).
fn supervise(url: &str, record: Option<&Path>, args: &[&str]) -> Sup {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procvisor"));
    cmd.args(["supervise", "--poll-ms", "100", "--grace", "1"])
        .args(args)
        .env("PROCVISOR_DATABASE_URL", url)
        .stdin(Stdio::null());
    if let Some(file) = record {
        cmd.arg("--worker")
            .arg(recording_worker())
            .env("PROCVISOR_RECORD_FILE", file);
    }
    Sup(cmd.spawn().expect("start procvisor supervise"))
}

fn kill(sup: Sup) {
    drop(sup);
}

/// One line of a worker's record.
#[derive(Debug, Clone)]
struct Mark {
    what: String,
    tag: i64,
    ppid: u32,
    at_ms: u128,
}

fn marks(file: &Path) -> Vec<Mark> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Mark {
                what: f[0].to_string(),
                tag: f[1].parse().unwrap(),
                ppid: f[3].parse().unwrap(),
                at_ms: f[4].parse().unwrap(),
            }
        })
        .collect()
}

async fn until(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn ending(store: &Store, id: i64, limit: Duration) -> Event {
    let mut end = None;
    let found = until(limit, async || {
        end = store.ending_of(id).await.unwrap();
        end.is_some()
    })
    .await;
    assert!(
        found,
        "job {id} did not end within {limit:?}: {:?}",
        store.events_of(id).await
    );
    end.unwrap()
}

/// The job recorded as `tag` started once, in all the record.
fn assert_started_once(file: &Path, tag: i64) {
    let all = marks(file);
    let starts = all
        .iter()
        .filter(|m| m.what == "start" && m.tag == tag)
        .count();
    assert_eq!(starts, 1, "the cancelled job never ran again: {all:?}");
}

/// Submit a `record` job that runs `secs`, started once the record shows it.
async fn started_record(store: &Store, file: &Path, tag: i64, secs: f64) -> i64 {
    let id = store
        .submit(&NewJob::new("record", json!({"tag": tag, "secs": secs})))
        .await
        .unwrap();
    let seen = until(Duration::from_secs(20), async || {
        marks(file)
            .iter()
            .any(|m| m.what == "start" && m.tag == tag)
    })
    .await;
    assert!(seen, "the job never started in a worker");
    id
}

#[test]
fn a_cancel_asked_while_its_supervisor_is_stopped_survives_that_supervisor_being_killed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record");
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("cancel_then_kill").await else {
            return;
        };
        let a = supervise(&url, Some(&file), &["--workers", "1", "--lease", "2"]);
        let id = started_record(&store, &file, 1, 30.0).await;
        // The supervisor cannot act on the cancel: it is stopped, then
        // killed (its worker dies with it).
        pg::signal(&a.0, libc::SIGSTOP);
        assert_eq!(store.cancel(id).await.unwrap(), Cancelled::Requested);
        kill(a);
        let b = supervise(&url, Some(&file), &["--workers", "1", "--lease", "2"]);
        let end = ending(&store, id, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        kill(b);
        assert_eq!(end.event, "cancelled", "{end:?}");
        assert_started_once(&file, 1);
    });
}

#[test]
fn a_cancel_asked_while_its_supervisor_is_paused_past_its_lease_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record");
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("cancel_then_pause").await else {
            return;
        };
        let a = supervise(&url, Some(&file), &["--workers", "1", "--lease", "2"]);
        let b = supervise(&url, Some(&file), &["--workers", "1", "--lease", "2"]);
        // Keep b busy with a job of its own until a's is running, so that
        // the one to cancel runs in a.
        let mut ids = Vec::new();
        for tag in 1..=2 {
            ids.push(started_record(&store, &file, tag, 30.0).await);
        }
        let in_a = marks(&file)
            .iter()
            .find(|m| m.what == "start" && m.ppid == a.id())
            .map(|m| m.tag)
            .expect("a runs one of the two jobs");
        let id = ids[(in_a - 1) as usize];
        pg::signal(&a.0, libc::SIGSTOP);
        assert_eq!(store.cancel(id).await.unwrap(), Cancelled::Requested);
        // b takes a's job over once a's lease lapses: it must end it
        // cancelled, not run it again.
        let end = ending(&store, id, Duration::from_secs(20)).await;
        pg::signal(&a.0, libc::SIGCONT);
        tokio::time::sleep(Duration::from_secs(2)).await;
        for other in ids.iter().filter(|&&i| i != id) {
            store.cancel(*other).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        kill(a);
        kill(b);
        assert_eq!(end.event, "cancelled", "{end:?}");
        assert_started_once(&file, in_a);
    });
}

#[test]
fn a_job_waiting_behind_a_long_one_in_its_worker_is_not_taken_from_a_healthy_supervisor() {
    // The reproduction: one worker holding two jobs (prefetch 2), a 1 s
    // lease, no reclaim allowed. The second job's 0.5 s timeout must count
    // from its start, after the 5 s job, not from its claim.
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("deadline_from_start").await else {
            return;
        };
        let sup = supervise(
            &url,
            None,
            &[
                "--workers",
                "1",
                "--prefetch",
                "2",
                "--lease",
                "1",
                "--max-reclaims",
                "0",
            ],
        );
        let long = store
            .submit(&NewJob::new("sleep", json!({"secs": 5})))
            .await
            .unwrap();
        let short = store
            .submit(&NewJob::new("sleep", json!({"secs": 0.1})).timeout(Duration::from_millis(500)))
            .await
            .unwrap();
        let long_end = ending(&store, long, Duration::from_secs(30)).await;
        let short_end = ending(&store, short, Duration::from_secs(10)).await;
        kill(sup);
        for (end, id) in [(&long_end, long), (&short_end, short)] {
            assert_eq!(
                (end.event.as_str(), end.attempt, end.reclaims),
                ("completed", 1, 0),
                "job {id}: {:?}",
                store.events_of(id).await
            );
        }
        assert!(
            !store
                .events_of(short)
                .await
                .unwrap()
                .iter()
                .any(|e| e.event == "reclaimed"),
            "the waiting job was never reclaimed"
        );
    });
}

#[test]
fn a_supervisor_stopped_past_its_lease_starts_nothing_it_no_longer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record");
    const LEASE_MS: u128 = 2000;
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("sigstop_fence").await else {
            return;
        };
        let args = ["--workers", "2", "--lease", "2"];
        let a = supervise(&url, Some(&file), &args);
        let b = supervise(&url, Some(&file), &args);
        let jobs: Vec<NewJob> = (0..300)
            .map(|tag| NewJob::new("record", json!({"tag": tag, "secs": 0.05})))
            .collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        let busy = until(Duration::from_secs(20), async || {
            marks(&file).iter().filter(|m| m.ppid == a.id()).count() >= 10
        })
        .await;
        assert!(busy, "supervisor a started jobs");
        pg::signal(&a.0, libc::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(5)).await;
        pg::signal(&a.0, libc::SIGCONT);
        let events = pg::until_ended(&store, ids.len(), Duration::from_secs(90)).await;
        pg::assert_each_ended_once(&events, &ids);
        // a's registrations: the one lost during the pause, then the new
        // one it took on waking.
        let rows = pg::psql(
            &url,
            &format!(
                "SELECT (extract(epoch FROM heartbeat_at) * 1000)::bigint || ' ' || \
                 (extract(epoch FROM started_at) * 1000)::bigint \
                 FROM procvisor_supervisors WHERE pid = {} ORDER BY id",
                a.id()
            ),
        );
        let a_pid = a.id();
        kill(a);
        kill(b);
        let regs: Vec<(u128, u128)> = rows
            .lines()
            .map(|l| {
                let (hb, st) = l.trim().split_once(' ').unwrap();
                (hb.parse().unwrap(), st.parse().unwrap())
            })
            .collect();
        assert!(regs.len() >= 2, "a was declared lost and registered again: {rows}");
        // From two thirds of the lease after a's last heartbeat until its
        // new registration, none of a's workers (their parent is a) may
        // start a job.
        let lapsed = regs[0].0 + LEASE_MS * 2 / 3;
        let again = regs[1].1;
        let all = marks(&file);
        let late: Vec<&Mark> = all
            .iter()
            .filter(|m| m.what == "start" && m.ppid == a_pid)
            .filter(|m| m.at_ms > lapsed + 100 && m.at_ms < again)
            .collect();
        assert!(
            late.is_empty(),
            "a started {} jobs after its lease was in doubt and before it registered again: {late:?}",
            late.len()
        );
        // Two runs of one job never overlapped: jobs take 50 ms, and a
        // worker holds one at a time, so the window of the README's promise
        // (pause − ⅔ lease + grace) is never reached.
        let mut runs: BTreeMap<i64, Vec<(u128, u128)>> = BTreeMap::new();
        let mut open: BTreeMap<(i64, u32), u128> = BTreeMap::new();
        for m in &all {
            match m.what.as_str() {
                "start" => {
                    open.insert((m.tag, m.ppid), m.at_ms);
                }
                _ => {
                    if let Some(s) = open.remove(&(m.tag, m.ppid)) {
                        runs.entry(m.tag).or_default().push((s, m.at_ms));
                    }
                }
            }
        }
        for (tag, r) in &runs {
            for (i, x) in r.iter().enumerate() {
                for y in &r[i + 1..] {
                    let overlap = x.1.min(y.1).saturating_sub(x.0.max(y.0));
                    assert!(overlap == 0, "job {tag} ran twice at once: {r:?}");
                }
            }
        }
    });
}
