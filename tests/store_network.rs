//! The job queue's connections under faults of the network and the server:
//! a database whose sessions turn read-only and back (what a fail-over
//! leaves on a demoted primary), and a loopback TCP proxy that stops
//! forwarding without closing (a dropped route, a hung proxy). Each time
//! the supervisor gives up on what does not answer within its bound and
//! recovers by itself once the database is reachable again.

mod common;
mod pg;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procvisor::store::{Feed, FeedOptions, NewJob, Store};
use procvisor::EvictionMode;
use serde_json::json;

fn options(lease_secs: u64) -> FeedOptions {
    FeedOptions::default()
        .poll(Duration::from_millis(100))
        .lease(Duration::from_secs(lease_secs))
}

/// Submit `n` no-op jobs through a store of its own and wait (at most
/// `limit`) until each has completed.
async fn jobs_complete(url: &str, n: usize, limit: Duration) -> Result<(), String> {
    let store = Store::connect(url).await.map_err(|e| e.to_string())?;
    let jobs: Vec<NewJob> = (0..n).map(|_| NewJob::new("noop", json!({}))).collect();
    let ids = store.submit_many(&jobs).await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    for id in ids {
        loop {
            match store.ending_of(id).await.map_err(|e| e.to_string())? {
                Some(e) if e.event == "completed" => break,
                Some(e) => return Err(format!("job {id} ended {}: {:?}", e.event, e.error)),
                None if Instant::now() > deadline => {
                    return Err(format!("job {id} did not end within {limit:?}"))
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(())
}

#[test]
fn a_supervisor_heals_by_itself_once_a_database_that_turned_read_only_is_writable_again() {
    pg::runtime().block_on(async {
        let Some((store, url)) = pg::migrated("read_only").await else {
            return;
        };
        let db = pg::db_name(&url);
        let sup = common::start(common::config(2).eviction(EvictionMode::Drop));
        let feed = Feed::start(&store, &sup, options(3)).await.unwrap();
        jobs_complete(&url, 5, Duration::from_secs(20))
            .await
            .unwrap();
        // Every new session is read-only, and the supervisor's sessions are
        // cut: it reconnects into read-only sessions.
        pg::psql(
            &url,
            &format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
        );
        pg::psql(
            &url,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Writable again for new sessions; the ones opened meanwhile stay
        // read-only until they are dropped.
        pg::server().unwrap().psql(
            "postgres",
            &format!("ALTER DATABASE {db} RESET default_transaction_read_only"),
        );
        let healed = jobs_complete(&url, 20, Duration::from_secs(6)).await;
        let stats = feed.stats();
        let _ = feed.stop(Duration::ZERO).await;
        healed.unwrap_or_else(|e| {
            panic!("the supervisor did not recover within the lease and a poll: {e}; {stats:?}")
        });
        assert!(stats.errors > 0, "the read-only period was seen: {stats:?}");
    });
}

/// A TCP proxy on loopback in front of the test's PostgreSQL. [`stall`]
/// stops it forwarding on every connection it has, without closing any:
/// those stay silent for good (as over a route that was dropped), and
/// connections made while stalled forward nothing either; after
/// [`resume`] new connections forward again.
///
/// [`stall`]: Proxy::stall
/// [`resume`]: Proxy::resume
struct Proxy {
    port: u16,
    /// Even: forwarding; odd: stalled. A connection forwards only while
    /// this is the even value it was born under.
    epoch: Arc<AtomicU32>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let epoch = Arc::new(AtomicU32::new(0));
        let e = epoch.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let born = e.load(Ordering::SeqCst);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let e = e.clone();
                    std::thread::spawn(move || pump(from, to, born, &e));
                }
            }
        });
        Proxy { port, epoch }
    }

    fn stall(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// `url` with this proxy's port.
    fn url(&self, url: &str) -> String {
        let (head, tail) = url.rsplit_once(':').unwrap();
        let db = tail.split_once('/').unwrap().1;
        format!("{head}:{}/{db}", self.port)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, born: u32, epoch: &AtomicU32) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if born % 2 == 1 || epoch.load(Ordering::SeqCst) != born {
            // Silent for good, holding the connection open.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// `procvisor status` through `url` with a 2 s bound: its exit status,
/// standard error and how long it took.
fn status(url: &str) -> (bool, String, Duration) {
    let began = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["status", "--db-timeout", "2"])
        .env("PROCVISOR_DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.success(), err, began.elapsed());
        }
        if began.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return (false, "still waiting after 20 s".into(), began.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_connection_that_stops_answering_is_given_up_within_its_bound_and_the_supervisor_recovers() {
    let Some(url) = pg::database("stalled_proxy") else {
        return;
    };
    let upstream: u16 = url
        .rsplit_once(':')
        .unwrap()
        .1
        .split_once('/')
        .unwrap()
        .0
        .parse()
        .unwrap();
    let proxy = Proxy::start(upstream);
    let via = proxy.url(&url);
    pg::runtime().block_on(async {
        let direct = Store::connect(&url).await.unwrap();
        direct.migrate().await.unwrap();
        let store = Store::connect(&via).await.unwrap();
        let sup = common::start(common::config(2).eviction(EvictionMode::Drop));
        let feed = Feed::start(&store, &sup, options(3)).await.unwrap();
        jobs_complete(&url, 5, Duration::from_secs(20)).await.unwrap();

        proxy.stall();
        let (ok, err, took) = tokio::task::spawn_blocking({
            let via = via.clone();
            move || status(&via)
        })
        .await
        .unwrap();
        assert!(!ok, "status cannot succeed through a silent connection");
        assert!(
            took < Duration::from_secs(8),
            "status gave up within its bound (2 s; the connect's own bound is 10 s): {took:?}, {err}"
        );
        assert!(
            err.contains("no answer") || err.contains("timed out") || err.contains("timeout"),
            "status says why: {err}"
        );
        // Past the lease: the supervisor's heartbeats, claims and writes
        // each gave up within a third of it.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let stalled = feed.stats();

        proxy.resume();
        let recovered = jobs_complete(&url, 10, Duration::from_secs(30)).await;
        let after = feed.stats();
        let (ok, err, _) = tokio::task::spawn_blocking({
            let via = via.clone();
            move || status(&via)
        })
        .await
        .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(15), feed.stop(Duration::ZERO)).await;
        recovered.unwrap_or_else(|e| {
            panic!("the supervisor did not recover once the network forwarded again: {e}; while stalled {stalled:?}, after {after:?}")
        });
        assert!(ok, "status works again: {err}");
        assert!(stalled.errors > 0, "the stall was seen: {stalled:?}");
    });
}
