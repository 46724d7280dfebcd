//! The dashboard as a person uses it: headless Chromium (Debian's
//! `chromium`, driven through `chromedriver` over WebDriver) against a
//! real PostgreSQL with a real supervisor and worker processes. A job
//! submitted appears running and then completed on the open page without
//! a reload; a running job cancelled from its page ends cancelled and its
//! worker process is gone from /proc. Screenshots go to the test output
//! folder (`target/tmp`).
//!
//! Without Chromium and chromedriver the test says so and skips, unless
//! `PROCVISOR_REQUIRE_BROWSER` is set (as CI sets it), when it fails.

mod common;
mod pg;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use procvisor::dashboard::Dashboard;
use procvisor::store::{Feed, FeedOptions, NewJob};
use serde_json::json;

/// A chromedriver of this test, killed at the end.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(program: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
        .iter()
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.exists())
}

/// chromedriver and chromium, or `None` after saying why (a failure when
/// they are required).
fn browser() -> Option<(Driver, PathBuf)> {
    let missing = |why: String| {
        if std::env::var_os("PROCVISOR_REQUIRE_BROWSER").is_some() {
            panic!("a browser is required (PROCVISOR_REQUIRE_BROWSER is set): {why}");
        }
        eprintln!("\n*** SKIPPED: no browser for the dashboard test: {why}\n*** install it (apt-get install chromium chromium-driver)\n");
        None
    };
    let Some(driver) = find("chromedriver", "PROCVISOR_CHROMEDRIVER") else {
        return missing("no chromedriver".into());
    };
    let Some(chromium) = find("chromium", "PROCVISOR_CHROMIUM") else {
        return missing("no chromium".into());
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = match Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return missing(format!("cannot start {}: {e}", driver.display())),
    };
    let d = Driver(child, port);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            return missing("chromedriver did not listen within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((d, chromium))
}

async fn open_browser(driver: &Driver, chromium: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("chromedriver starts a headless chromium")
}

/// Wait until `css` matches something on the page (without reloading it).
async fn until_present(c: &Client, css: &str, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if c.find(Locator::Css(css)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The text of the element with this id.
async fn text_of(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn a_person_sees_jobs_run_live_and_cancels_one_whose_worker_then_dies() {
    let Some((driver, chromium)) = browser() else {
        return;
    };
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_browser").await else {
            return;
        };
        let sup = common::start(common::config(2));
        let feed = Feed::start(&store, &sup, FeedOptions::default())
            .await
            .unwrap();
        let d = Dashboard::new(store.clone());
        let listener = d.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(d.serve_on(listener));
        let c = open_browser(&driver, &chromium).await;
        let base = format!("http://{addr}");

        // The overview, connected to its live stream.
        c.goto(&format!("{base}/")).await.unwrap();
        assert!(
            until_present(&c, "#supervisors", Duration::from_secs(10)).await,
            "{}",
            c.source().await.unwrap()
        );
        let t = Instant::now();
        while text_of(&c, "state").await != "live" {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the page never went live"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Marks this page: a reload would lose it.
        c.execute("window.procvisorMark = 7;", vec![])
            .await
            .unwrap();

        // A job submitted now shows running, then completed, live.
        let id = store
            .submit(&NewJob::new("sleep", json!({"secs": 4})))
            .await
            .unwrap();
        let running = format!("#running tr[data-job=\"{id}\"]");
        assert!(
            until_present(&c, &running, Duration::from_secs(15)).await,
            "job {id} never showed as running"
        );
        // Its progress, as the handler reports it, reaches the page.
        let progress = format!("#running tr[data-job=\"{id}\"] td.progress span");
        assert!(
            until_present(&c, &progress, Duration::from_secs(10)).await,
            "no progress for job {id}"
        );
        let note = c
            .find(Locator::Css(&progress))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(note.starts_with("slept"), "{note}");
        shot(&c, "dashboard-running.png").await;
        let done = format!("#endings tr[data-job=\"{id}\"][data-outcome=\"completed\"]");
        assert!(
            until_present(&c, &done, Duration::from_secs(20)).await,
            "job {id} never showed as completed"
        );
        let mark = c
            .execute("return window.procvisorMark;", vec![])
            .await
            .unwrap();
        assert_eq!(mark, json!(7), "the page was reloaded");
        assert!(
            c.find(Locator::Css(&running)).await.is_err(),
            "job {id} still shows as running"
        );
        shot(&c, "dashboard-overview.png").await;

        // A job that ignores polite requests, cancelled from its page:
        // it ends cancelled and its worker process is killed.
        let hang = store.submit(&NewJob::new("hang", json!({}))).await.unwrap();
        assert!(
            until_present(
                &c,
                &format!("#running tr[data-job=\"{hang}\"]"),
                Duration::from_secs(15)
            )
            .await
        );
        c.find(Locator::Css(&format!("#running tr[data-job=\"{hang}\"] a")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert!(until_present(&c, "#cancel", Duration::from_secs(10)).await);
        assert_eq!(
            c.current_url().await.unwrap().path(),
            format!("/jobs/{hang}")
        );
        c.find(Locator::Id("cancel"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let t = Instant::now();
        loop {
            c.refresh().await.unwrap();
            let outcome = text_of(&c, "outcome").await;
            if outcome == "cancelled" {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "still {outcome}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        shot(&c, "dashboard-job.png").await;
        let events = store.events_of(hang).await.unwrap();
        let end = events.iter().find(|e| e.terminal).unwrap();
        assert_eq!(end.event, "cancelled");
        let pid = end.worker_pid.expect("the ending names the worker");
        assert!(
            common::eventually(Duration::from_secs(10), || common::dead(pid)),
            "worker {pid} of the cancelled job is still alive"
        );
        // The page shows the worker's pid in the job's history.
        let history = text_of(&c, "history").await;
        assert!(history.contains(&pid.to_string()), "{history}");

        c.close().await.unwrap();
        feed.stop(Duration::ZERO).await.unwrap();
    });
    drop(driver);
}
