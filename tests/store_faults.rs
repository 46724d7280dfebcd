//! The job queue under real faults, on the supervisor's side: a cancel that
//! outlives its supervisor, a supervisor stopped (SIGSTOP) past its lease
//! that starts nothing it no longer holds, a deadline that counts from the
//! start, not the claim. Supervisors are real `procvisor supervise`
//! processes; what the workers did is read from their own records
//! (`examples/recording_worker.rs`), not from what the supervisor believes.

mod pg;
mod record;

use std::path::Path;
use std::time::Duration;

use procvisor::store::{Cancelled, Event, NewJob, Store};
use record::{kill, marks, supervise, until, Mark};
use serde_json::json;

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
        a.signal(libc::SIGSTOP);
        let stopped = until(Duration::from_secs(5), async || {
            std::fs::read_to_string(format!("/proc/{}/stat", a.id())).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('T')
            })
        })
        .await;
        assert!(stopped, "supervisor a stopped");
        assert_eq!(
            store.cancel_as(id, "the night operator").await.unwrap(),
            Cancelled::Requested
        );
        kill(a);
        let b = supervise(&url, Some(&file), &["--workers", "1", "--lease", "2"]);
        let end = ending(&store, id, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        kill(b);
        assert_eq!(end.event, "cancelled", "{end:?}");
        // Its one ending names who asked, though a supervisor that never
        // heard the request wrote it.
        let why = end.error.clone().unwrap_or_default();
        assert!(why.contains("asked by the night operator"), "{why}");
        let asked = store.events_of(id).await.unwrap();
        assert!(
            asked.iter().any(|e| e.event == "cancel_requested"
                && e.error.as_deref() == Some("asked by the night operator")),
            "{asked:?}"
        );
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
        a.signal(libc::SIGSTOP);
        assert_eq!(store.cancel(id).await.unwrap(), Cancelled::Requested);
        // b takes a's job over once a's lease lapses: it must end it
        // cancelled, not run it again.
        let end = ending(&store, id, Duration::from_secs(20)).await;
        a.signal(libc::SIGCONT);
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
        a.signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(5)).await;
        a.signal(libc::SIGCONT);
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
        record::assert_no_two_runs_overlap(&all);
    });
}

/// This supervisor's id in the store (its latest registration).
fn supervisor_id(url: &str, sup: &record::Sup) -> Option<i64> {
    pg::psql(
        url,
        &format!(
            "SELECT id FROM procvisor_supervisors WHERE pid = {} AND stopped_at IS NULL \
             ORDER BY id DESC LIMIT 1",
            sup.id()
        ),
    )
    .trim()
    .parse()
    .ok()
}

#[test]
fn a_job_claimed_by_a_supervisor_that_never_heard_the_answer_is_given_back_and_runs_once() {
    // A claim that committed but whose answer never reached its supervisor
    // (the connection died between the commit and the rows) leaves a row
    // running under a live, heartbeating supervisor that does not know it.
    // The row is made here exactly as that commit leaves it; a job without
    // a timeout has no deadline, so only the supervisor can notice.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record");
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("lost_claim_answer").await else {
            return;
        };
        let sup = supervise(&url, Some(&file), &["--workers", "1", "--lease", "2"]);
        let mut me = None;
        assert!(
            until(Duration::from_secs(20), async || {
                me = supervisor_id(&url, &sup);
                me.is_some()
            })
            .await,
            "the supervisor registered"
        );
        let me = me.unwrap();
        let id: i64 = pg::psql(
            &url,
            &format!(
                "INSERT INTO procvisor_jobs (kind, args, state, lease, attempt, supervisor, claimed_at) \
                 VALUES ('record', '{{\"tag\": 1, \"secs\": 0.1}}', 'running', 1, 1, {me}, now()) \
                 RETURNING id"
            ),
        )
        .trim()
        .parse()
        .unwrap();
        let end = ending(&store, id, Duration::from_secs(30)).await;
        kill(sup);
        assert_eq!(
            (end.event.as_str(), end.attempt, end.reclaims),
            ("completed", 1, 0),
            "{:?}",
            store.events_of(id).await
        );
        let events = store.events_of(id).await.unwrap();
        let back = events
            .iter()
            .find(|e| e.event == "released")
            .unwrap_or_else(|| panic!("given back first: {events:?}"));
        assert!(
            back.error.as_deref().unwrap_or("").contains("did not know it held it"),
            "{back:?}"
        );
        assert_started_once(&file, 1);
    });
}

#[test]
fn a_short_timeout_job_is_not_claimed_to_wait_behind_a_long_one() {
    // One worker holding a long job, room for one more behind it
    // (prefetch 2): a job whose timeout is shorter than its wait there is
    // left in the table for a supervisor that can start it at once.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("record");
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("no_short_job_ahead").await else {
            return;
        };
        let args = ["--workers", "1", "--prefetch", "2", "--lease", "2"];
        let a = supervise(&url, Some(&file), &args);
        let long = started_record(&store, &file, 1, 6.0).await;
        let short = store
            .submit(
                &NewJob::new("record", json!({"tag": 2, "secs": 0.1}))
                    .timeout(Duration::from_secs(1)),
            )
            .await
            .unwrap();
        // Long enough for a's claimer to have looked several times.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let state = pg::psql(
            &url,
            &format!("SELECT state FROM procvisor_jobs WHERE id = {short}"),
        );
        assert_eq!(state.trim(), "available", "left waiting in the table");
        let b = supervise(&url, Some(&file), &args);
        let end = ending(&store, short, Duration::from_secs(20)).await;
        let long_end = ending(&store, long, Duration::from_secs(20)).await;
        let (a_pid, b_pid) = (a.id(), b.id());
        kill(a);
        kill(b);
        assert_eq!(end.event, "completed", "{end:?}");
        assert_eq!(long_end.event, "completed", "{long_end:?}");
        let all = marks(&file);
        let short_start = all
            .iter()
            .find(|m| m.what == "start" && m.tag == 2)
            .expect("the short job ran");
        let long_mark = all
            .iter()
            .find(|m| m.what == "end" && m.tag == 1)
            .expect("the long job ended");
        assert_eq!(
            short_start.ppid, b_pid,
            "the short job ran in the idle supervisor b ({b_pid}), not behind a's long job (a is {a_pid}): {all:?}"
        );
        assert!(short_start.at_ms < long_mark.at_ms, "{all:?}");
    });
}
