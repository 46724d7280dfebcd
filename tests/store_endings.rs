//! Endings the database cannot keep as a worker sent them: they are made
//! storable, or written alone with the reason, and never hold back the
//! endings of other jobs. The worker is a real program whose handlers
//! return what careless handlers do (`examples/odd_results.rs`); the
//! refusal is a real PostgreSQL refusing a write.

mod pg;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use procvisor::store::{Event, NewJob};
use serde_json::json;

fn odd_worker() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let path = debug.join("examples").join("odd_results");
    assert!(
        path.exists(),
        "{} is missing: cargo test builds it (examples/odd_results.rs)",
        path.display()
    );
    path
}

/// A supervisor with the odd worker, killed when dropped.
struct Sup(Child);

impl Drop for Sup {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn supervise(url: &str) -> Sup {
    Sup(Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args([
            "supervise",
            "--workers",
            "2",
            "--poll-ms",
            "100",
            "--grace",
            "1",
        ])
        .arg("--worker")
        .arg(odd_worker())
        .env("PROCVISOR_DATABASE_URL", url)
        .stdin(Stdio::null())
        .spawn()
        .expect("start procvisor supervise"))
}

fn ending(events: &[Event], id: i64) -> &Event {
    events
        .iter()
        .find(|e| e.job_id == id && e.terminal)
        .unwrap_or_else(|| panic!("job {id} ended: {events:?}"))
}

#[test]
fn endings_with_nul_characters_or_deep_results_are_stored_and_hold_back_no_other() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("odd_endings").await else {
            return;
        };
        let sup = supervise(&url);
        let mut jobs = vec![
            NewJob::new("nul_error", json!({})),
            NewJob::new("nul_result", json!({})),
            NewJob::new("deep_result", json!({})),
        ];
        jobs.extend((0..20).map(|_| NewJob::new("plain", json!({}))));
        let ids = store.submit_many(&jobs).await.unwrap();
        let events = pg::until_ended(&store, ids.len(), Duration::from_secs(30)).await;
        drop(sup);
        pg::assert_each_ended_once(&events, &ids);
        let failed = ending(&events, ids[0]);
        assert_eq!(failed.event, "failed");
        assert!(
            failed
                .error
                .as_deref()
                .unwrap_or("")
                .contains("bad\u{FFFD}output"),
            "{failed:?}"
        );
        let nul = ending(&events, ids[1]);
        assert_eq!(nul.event, "completed");
        assert_eq!(nul.result, Some(json!({"out": "a\u{FFFD}b"})));
        let deep = ending(&events, ids[2]);
        assert_eq!(deep.event, "completed");
        let kept = deep.result.clone().unwrap_or_default();
        assert!(
            kept.get("unstorable_result").is_some() || kept.get("invalid_json_bytes").is_some(),
            "a note in place of the result: {kept}"
        );
        for &id in &ids[3..] {
            assert_eq!(ending(&events, id).result, Some(json!({"ok": true})));
        }
        // Every history reads back, one job at a time too.
        for &id in &ids {
            store.events_of(id).await.unwrap();
        }
    });
}

/// Make the database refuse the terminal events with a result of the
/// jobs listed in `test_refused`, as a constraint of its own would.
const REFUSE: &str = "
CREATE TABLE test_refused (id bigint PRIMARY KEY);
CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.terminal AND NEW.result IS NOT NULL
       AND EXISTS (SELECT 1 FROM test_refused WHERE id = NEW.job_id) THEN
        RAISE EXCEPTION 'refused for the test' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse BEFORE INSERT ON procvisor_events
    FOR EACH ROW EXECUTE FUNCTION test_refuse();";

#[test]
fn an_ending_the_database_refuses_is_written_alone_with_the_reason_and_the_rest_are_written() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("refused_ending").await else {
            return;
        };
        pg::psql(&url, REFUSE);
        // Held in a paused queue until the refused job is named.
        store.set_paused("default", true, "test").await.unwrap();
        let sup = supervise(&url);
        let jobs: Vec<NewJob> = (0..30).map(|_| NewJob::new("plain", json!({}))).collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        let refused = ids[7];
        pg::psql(
            &url,
            &format!("INSERT INTO test_refused VALUES ({refused})"),
        );
        store.set_paused("default", false, "test").await.unwrap();
        let events = pg::until_ended(&store, ids.len(), Duration::from_secs(30)).await;
        drop(sup);
        pg::assert_each_ended_once(&events, &ids);
        let end = ending(&events, refused);
        assert_eq!(end.event, "completed", "{end:?}");
        assert_eq!(end.result, None);
        let why = end.error.as_deref().unwrap_or("");
        assert!(
            why.contains("could not be stored") && why.contains("refused for the test"),
            "the reason names the database's own message: {why}"
        );
        for &id in ids.iter().filter(|&&i| i != refused) {
            assert_eq!(ending(&events, id).result, Some(json!({"ok": true})));
        }
    });
}
