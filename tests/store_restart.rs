//! PostgreSQL restarted under running supervisors: they reconnect on their
//! own, no job is lost, and none ends twice. (Its own test program: the
//! restart would cut the connections of any other test on the server.)

mod pg;

use std::time::Duration;

use procvisor::store::{NewJob, Store};
use serde_json::json;

#[test]
fn supervisors_ride_out_a_database_restart_and_every_job_ends_once() {
    let Some(url) = pg::database("restart") else {
        return;
    };
    let server = pg::server().expect("the server behind the database");
    pg::runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let supervisors: Vec<_> = (0..2).map(|_| pg::supervise(&url, 2, 15)).collect();
        // Short jobs, so many are running and many endings are being
        // written when the server goes down.
        let jobs: Vec<NewJob> = (0..1500)
            .map(|i| NewJob::new("sleep", json!({"secs": 0.004})).priority((i % 11) as u8))
            .collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        pg::until_ended(&store, 300, Duration::from_secs(120)).await;

        server.restart();
        // The store's own pool reconnects too: the first uses may fail.
        let mut after = None;
        for _ in 0..50 {
            match store.submit(&NewJob::new("noop", json!({}))).await {
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
            pg::stop(s);
        }
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
