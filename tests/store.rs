//! The PostgreSQL store against a real server: durability with no
//! supervisor online, fenced writes, retries in the table, cancels,
//! delays and eviction across the store, with a supervisor in this
//! process fed by the store and running real worker processes.

mod common;
mod pg;

use std::time::{Duration, Instant};

use pg::{db_name, store};
use procvisor::store::{Cancelled, Event, Feed, FeedOptions, NewJob, Store};
use procvisor::{EvictionMode, Supervisor};
use serde_json::json;

fn supervisor(workers: usize) -> Supervisor {
    common::start(common::config(workers).eviction(EvictionMode::Drop))
}

fn fast() -> FeedOptions {
    FeedOptions::default()
        .poll(Duration::from_millis(50))
        .lease(Duration::from_secs(2))
}

/// Wait (20 s at most, else fail with `what`) until a worker runs a job.
async fn until_busy(sup: &Supervisor, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sup
        .snapshot()
        .await
        .is_some_and(|s| s.workers.iter().any(|w| w.running.is_some()))
    {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ended(store: &Store, id: i64, limit: Duration) -> Event {
    tokio::time::timeout(limit, store.wait(id))
        .await
        .unwrap_or_else(|_| panic!("job {id} did not end within {limit:?}"))
        .unwrap()
}

#[test]
fn jobs_submitted_with_no_supervisor_wait_then_all_run_once() {
    pg::runtime().block_on(async {
        let Some(store) = store("durable").await else {
            return;
        };
        let mut jobs: Vec<NewJob> = (0..300).map(|_| NewJob::new("noop", json!({}))).collect();
        jobs.push(NewJob::new("echo", json!({"hello": [1, 2]})).priority(0));
        let ids = store.submit_many(&jobs).await.unwrap();
        assert_eq!(ids.len(), 301);
        // Nobody runs them: they wait as committed rows.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = store.status().await.unwrap();
        let waiting: i64 = status
            .jobs
            .iter()
            .filter(|q| q.state == "available")
            .map(|q| q.jobs)
            .sum();
        assert_eq!(waiting, 301, "{status:?}");
        assert!(pg::all_events(&store).await.is_empty());

        let sup = supervisor(2);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let echo = ended(&store, ids[300], Duration::from_secs(30)).await;
        assert_eq!(echo.event, "completed");
        assert_eq!(echo.result, Some(json!({"hello": [1, 2]})));
        for id in &ids {
            ended(&store, *id, Duration::from_secs(30)).await;
        }
        let events = pg::all_events(&store).await;
        assert_eq!(events.len(), 301, "one event per job, and no other");
        let mut seen: Vec<i64> = events.iter().map(|e| e.job_id).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 301);
        assert!(events
            .iter()
            .all(|e| e.terminal && e.event == "completed" && e.attempt == 1));
        assert!(events
            .iter()
            .all(|e| e.worker_pid.is_some() && e.supervisor == Some(feed.supervisor_id())));
        assert!(store.status().await.unwrap().jobs.is_empty());
        let stats = feed.stop(Duration::from_secs(1)).await.unwrap();
        assert_eq!(stats.claimed, 301);
        assert_eq!(stats.written, 301);
        assert_eq!(stats.stale, 0);
    });
}

#[test]
fn a_write_under_a_lease_that_moved_on_changes_nothing_and_is_reported_stale() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("stale").await else {
            return;
        };
        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let id = store
            .submit(&NewJob::new("sleep", json!({"secs": 1.0})))
            .await
            .unwrap();
        assert!(common::eventually(Duration::from_secs(20), || {
            pg::psql(
                &url,
                &format!("SELECT state FROM procvisor_jobs WHERE id = {id}"),
            ) == "running"
        }));
        // As if another supervisor had reclaimed and claimed it meanwhile.
        pg::psql(
            &url,
            &format!("UPDATE procvisor_jobs SET lease = lease + 1 WHERE id = {id}"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while feed.stats().stale == 0 {
            assert!(
                Instant::now() < deadline,
                "the late write was not reported stale"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            store.ending_of(id).await.unwrap(),
            None,
            "no ending written"
        );
        assert_eq!(
            pg::psql(
                &url,
                &format!("SELECT state || ' ' || lease FROM procvisor_jobs WHERE id = {id}")
            ),
            "running 2",
            "the row is as the newer lease holder left it"
        );
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn retries_wait_in_the_table_with_backoff_then_the_job_ends_failed() {
    pg::runtime().block_on(async {
        let Some(store) = store("retries").await else {
            return;
        };
        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let id = store
            .submit(
                &NewJob::new("fail", json!({"message": "nope"}))
                    .retries(2)
                    .backoff(Duration::from_millis(200), Duration::from_millis(400)),
            )
            .await
            .unwrap();
        let end = ended(&store, id, Duration::from_secs(30)).await;
        assert_eq!(end.event, "failed");
        assert_eq!(end.attempt, 3);
        assert!(
            end.error.as_deref().unwrap_or("").contains("nope"),
            "{end:?}"
        );
        let events = store.events_of(id).await.unwrap();
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["retrying", "retrying", "failed"]);
        assert_eq!(
            events.iter().map(|e| e.attempt).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn a_waiting_job_and_a_running_job_are_cancelled_from_anywhere() {
    pg::runtime().block_on(async {
        let Some(store) = store("cancel").await else {
            return;
        };
        let waiting = store
            .submit(&NewJob::new("noop", json!({})).run_after(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(store.cancel(waiting).await.unwrap(), Cancelled::Ended);
        assert_eq!(
            store.ending_of(waiting).await.unwrap().unwrap().event,
            "cancelled"
        );
        assert_eq!(
            store.cancel(waiting).await.unwrap(),
            Cancelled::AlreadyEnded
        );
        assert!(store.cancel(999_999).await.is_err());

        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let running = store
            .submit(&NewJob::new("sleep", json!({"secs": 60.0})))
            .await
            .unwrap();
        until_busy(&sup, "the job never started").await;
        assert_eq!(store.cancel(running).await.unwrap(), Cancelled::Requested);
        let end = ended(&store, running, Duration::from_secs(10)).await;
        assert_eq!(end.event, "cancelled");
        let names: Vec<String> = store
            .events_of(running)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(names, ["cancel_requested", "cancelled"]);
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn a_delayed_job_runs_only_once_due() {
    pg::runtime().block_on(async {
        let Some(store) = store("delay").await else {
            return;
        };
        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let t = Instant::now();
        let id = store
            .submit(&NewJob::new("noop", json!({})).run_after(Duration::from_millis(1500)))
            .await
            .unwrap();
        let end = ended(&store, id, Duration::from_secs(20)).await;
        assert_eq!(end.event, "completed");
        assert!(
            t.elapsed() >= Duration::from_millis(1500),
            "ran after {:?}",
            t.elapsed()
        );
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn an_urgent_job_evicts_the_least_urgent_running_one_which_goes_back_to_the_table() {
    pg::runtime().block_on(async {
        let Some(store) = store("evict").await else {
            return;
        };
        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let low = store
            .submit(&NewJob::new("sleep", json!({"secs": 1.0})).priority(9))
            .await
            .unwrap();
        until_busy(&sup, "the low job never started").await;
        let urgent = store
            .submit(&NewJob::new("noop", json!({})).priority(0))
            .await
            .unwrap();
        let u = ended(&store, urgent, Duration::from_secs(10)).await;
        assert_eq!(u.event, "completed");
        let l = ended(&store, low, Duration::from_secs(20)).await;
        assert_eq!(
            l.event,
            "completed",
            "{l:?}\n{:#?}",
            store.events_of(low).await.unwrap()
        );
        assert_eq!(l.evictions, 1);
        assert_eq!(l.attempt, 1, "an eviction does not count as an attempt");
        let names: Vec<String> = store
            .events_of(low)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(names, ["preempted", "completed"]);
        let u_at = u.at;
        let l_at = l.at;
        assert!(u_at < l_at);
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn a_stopping_supervisor_gives_its_jobs_back_at_once() {
    pg::runtime().block_on(async {
        let Some(store) = store("release").await else {
            return;
        };
        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let id = store
            .submit(&NewJob::new("sleep", json!({"secs": 60.0})))
            .await
            .unwrap();
        until_busy(&sup, "the job never started").await;
        feed.stop(Duration::from_millis(100)).await.unwrap();
        let events = store.events_of(id).await.unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].event, "released");
        let status = store.status().await.unwrap();
        assert_eq!(status.jobs.len(), 1);
        assert_eq!(status.jobs[0].state, "available");
        assert!(status.supervisors.iter().all(|s| s.stopped));
        // Another supervisor takes it at once.
        let sup2 = supervisor(1);
        let feed2 = Feed::start(&store, &sup2, fast()).await.unwrap();
        until_busy(&sup2, "the job was not taken again").await;
        assert_eq!(store.cancel(id).await.unwrap(), Cancelled::Requested);
        assert_eq!(
            ended(&store, id, Duration::from_secs(10)).await.event,
            "cancelled"
        );
        feed2.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn pruning_deletes_only_history_older_than_the_retention() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("prune").await else {
            return;
        };
        // Ten ended jobs from ten days ago, five from an hour ago; a job
        // still waiting since ten days ago; a supervisor stopped ten days
        // ago, and one that stopped then but still (as far as the table
        // knows) holds a job.
        pg::psql(
            &url,
            "INSERT INTO procvisor_events (job_id, event, terminal, at, queue, kind, priority, \
             lease, attempt, evictions, reclaims) \
             SELECT g, 'completed', true, now() - CASE WHEN g <= 10 THEN interval '10 days' \
             ELSE interval '1 hour' END, 'default', 'noop', 5, 1, 1, 0, 0 \
             FROM generate_series(1, 15) g",
        );
        pg::psql(
            &url,
            "INSERT INTO procvisor_supervisors (host, pid, queues, workers, lease_ms, stopped_at) \
             VALUES ('gone', 1, '{default}', 1, 1000, now() - interval '10 days'), \
                    ('holding', 2, '{default}', 1, 1000, now() - interval '10 days')",
        );
        pg::psql(
            &url,
            "INSERT INTO procvisor_jobs (kind, args, created_at, run_at) \
             VALUES ('noop', '{}', now() - interval '10 days', now() - interval '10 days'); \
             INSERT INTO procvisor_jobs (kind, args, state, lease, supervisor) \
             SELECT 'noop', '{}', 'running', 1, id FROM procvisor_supervisors WHERE host = 'holding'",
        );
        assert!(store.prune(Duration::from_secs(1)).await.is_err());
        let pruned = store
            .prune(Duration::from_secs(7 * 24 * 3600))
            .await
            .unwrap();
        assert_eq!(pruned.events, 10);
        assert_eq!(pruned.supervisors, 1);
        assert_eq!(
            pg::psql(&url, "SELECT string_agg(job_id::text, ',' ORDER BY job_id) FROM procvisor_events"),
            "11,12,13,14,15"
        );
        assert_eq!(
            pg::psql(&url, "SELECT string_agg(host, ',') FROM procvisor_supervisors"),
            "holding"
        );
        assert_eq!(pg::psql(&url, "SELECT count(*) FROM procvisor_jobs"), "2");
        // Nothing more to delete the second time.
        assert_eq!(
            store.prune(Duration::from_secs(7 * 24 * 3600)).await.unwrap(),
            procvisor::store::Pruned::default()
        );
        assert!(FeedOptions::default()
            .retention(Some(Duration::from_secs(5)))
            .check()
            .is_err());
    });
}

#[test]
fn many_waits_share_one_connection_and_all_resolve_on_their_endings() {
    pg::runtime().block_on(async {
        let Some(url) = pg::database("waiters") else {
            return;
        };
        let store = Store::connect_with(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        let db = db_name(&url);
        let server = pg::server().unwrap();
        let jobs: Vec<NewJob> = (0..300).map(|_| NewJob::new("noop", json!({}))).collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        let waits: Vec<_> = ids
            .iter()
            .map(|&id| {
                let store = store.clone();
                tokio::spawn(async move { store.wait(id).await })
            })
            .collect();
        // While all 300 wait: the pool (2) and one listener, not 300.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let connections: u32 = server
            .psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"),
            )
            .parse()
            .unwrap();
        assert!(connections <= 3, "{connections} connections for 300 waits");
        let sup = supervisor(2);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        for (id, w) in ids.iter().zip(waits) {
            let end = tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("every wait resolves")
                .unwrap()
                .unwrap();
            assert_eq!((end.job_id, end.event.as_str()), (*id, "completed"));
        }
        assert!(matches!(
            store.wait(i64::MAX).await,
            Err(procvisor::store::StoreError::NoSuchJob(_))
        ));
        feed.stop(Duration::from_secs(1)).await.unwrap();
    });
}

#[test]
fn a_job_lost_with_its_supervisor_more_often_than_allowed_ends_crashed() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("reclaim_cap").await else {
            return;
        };
        let ids = store
            .submit_many(&[NewJob::new("noop", json!({})), NewJob::new("noop", json!({}))])
            .await
            .unwrap();
        // Both were running on a supervisor that is gone: the first had
        // been taken over twice already, the second never.
        pg::psql(
            &url,
            &format!(
                "INSERT INTO procvisor_supervisors (id, host, pid, queues, workers, lease_ms, stopped_at)
                     OVERRIDING SYSTEM VALUE VALUES (999, 'gone', 1, '{{default}}', 1, 1000, now());
                 UPDATE procvisor_jobs SET state = 'running', supervisor = 999, lease = lease + 1,
                     attempt = 1, reclaims = CASE WHEN id = {} THEN 2 ELSE 0 END",
                ids[0]
            ),
        );
        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast().max_reclaims(2)).await.unwrap();
        let first = ended(&store, ids[0], Duration::from_secs(20)).await;
        assert_eq!((first.event.as_str(), first.reclaims), ("crashed", 2));
        let why = first.error.unwrap_or_default();
        assert!(why.contains("taken over from lost supervisors 2 times"), "{why}");
        let second = ended(&store, ids[1], Duration::from_secs(20)).await;
        assert_eq!((second.event.as_str(), second.reclaims), ("completed", 1));
        // With none of its jobs left running, the lost supervisor is swept:
        // later upkeep passes it by.
        assert_eq!(
            pg::psql(&url, "SELECT swept FROM procvisor_supervisors WHERE id = 999"),
            "t"
        );
        feed.stop(Duration::ZERO).await.unwrap();
        assert!(FeedOptions::default().max_reclaims(1001).check().is_err());
    });
}

#[test]
fn a_supervisor_declared_lost_claims_nothing_more_under_its_old_id() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("lost_claims").await else {
            return;
        };
        let sup = supervisor(1);
        let feed = Feed::start(&store, &sup, fast()).await.unwrap();
        let old = feed.supervisor_id();
        // Another supervisor's upkeep declares this one lost (as it would
        // after a network partition longer than the lease), and sweeps it.
        pg::psql(
            &url,
            &format!("UPDATE procvisor_supervisors SET stopped_at = now(), swept = true WHERE id = {old}"),
        );
        let jobs: Vec<NewJob> = (0..20).map(|_| NewJob::new("noop", json!({}))).collect();
        let ids = store.submit_many(&jobs).await.unwrap();
        for id in &ids {
            let e = ended(&store, *id, Duration::from_secs(20)).await;
            assert_eq!(e.event, "completed");
        }
        // It noticed at its next heartbeat and registered again; until then
        // it claimed nothing, so no job ran under the old, swept id (where
        // no sweep would ever have found it had it been left running).
        let new = feed.supervisor_id();
        assert_ne!(new, old);
        let under_old = pg::psql(
            &url,
            &format!("SELECT count(*) FROM procvisor_events WHERE supervisor = {old}"),
        );
        assert_eq!(under_old, "0", "jobs ran under the stopped supervisor");
        let under_new = pg::psql(
            &url,
            &format!("SELECT count(*) FROM procvisor_events WHERE supervisor = {new} AND terminal"),
        );
        assert_eq!(under_new, "20");
        feed.stop(Duration::ZERO).await.unwrap();
    });
}
