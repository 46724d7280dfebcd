//! The web dashboard over a real PostgreSQL with real supervisors, spoken
//! to over real HTTP: its pages, its live stream, the cancel action and
//! its key, the token rule, and escaping what jobs wrote.

mod common;
mod pg;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::{form_key, request as http};
use procvisor::dashboard::{Dashboard, DashboardError};
use procvisor::store::{Feed, FeedOptions, NewJob, Store};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serve(d: Dashboard) -> SocketAddr {
    let listener = d.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(d.serve_on(listener));
    addr
}

async fn running(store: &Store, id: i64) -> bool {
    let r = store.running_jobs(100).await.unwrap();
    r.iter().any(|j| j.id == id)
}

#[test]
fn the_overview_and_a_jobs_page_show_the_store_and_escape_what_jobs_wrote() {
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_pages").await else {
            return;
        };
        let evil = "<script>alert(1)</script>";
        let failed = store
            .submit(&NewJob::new("fail", json!({ "message": evil })).queue("q1"))
            .await
            .unwrap();
        let done = store
            .submit(&NewJob::new("echo", json!("hi")).queue("q1"))
            .await
            .unwrap();
        let waiting = store
            .submit(&NewJob::new("echo", json!(1)).queue("elsewhere").priority(2))
            .await
            .unwrap();
        let sup = common::start(common::config(1));
        let feed = Feed::start(&store, &sup, FeedOptions::default().queues(&["q1"]))
            .await
            .unwrap();
        pg::until_ended(&store, 2, Duration::from_secs(30)).await;
        let addr = serve(Dashboard::new(store.clone())).await;

        let page = http(addr, "GET", "/", &[], "").await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.head.contains("content-type: text/html"),
            "{}",
            page.head
        );
        let b = &page.body;
        // What the failing job wrote is shown, escaped, never obeyed.
        assert!(b.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{b}");
        assert!(!b.contains(evil), "{b}");
        assert!(
            b.contains(&format!("data-job=\"{failed}\" data-outcome=\"failed\"")),
            "{b}"
        );
        assert!(
            b.contains(&format!("data-job=\"{done}\" data-outcome=\"completed\"")),
            "{b}"
        );
        // The waiting job of the other queue, counted at its priority.
        assert!(
            b.contains("data-queue=\"elsewhere\" data-state=\"available\""),
            "{b}"
        );
        // The supervisor, live, with its one worker.
        assert!(b.contains("<table id=\"supervisors\">"), "{b}");
        assert!(b.contains("class=\"ok\">live<"), "{b}");

        let job = http(addr, "GET", &format!("/jobs/{failed}"), &[], "").await;
        assert_eq!(job.status, 200);
        assert!(job.body.contains("id=\"outcome\">failed<"), "{}", job.body);
        assert!(job.body.contains("&lt;script&gt;"), "{}", job.body);
        assert!(
            !job.body.contains("id=\"cancel\""),
            "an ended job has no cancel button"
        );
        let w = http(addr, "GET", &format!("/jobs/{waiting}"), &[], "").await;
        assert!(w.body.contains("id=\"outcome\">available<"), "{}", w.body);
        assert!(w.body.contains("id=\"cancel\""), "{}", w.body);
        assert_eq!(
            http(addr, "GET", "/jobs/99999999", &[], "").await.status,
            404
        );
        assert_eq!(http(addr, "GET", "/jobs/abc", &[], "").await.status, 404);

        // The live stream sends the overview at once.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET /live HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let first = tokio::time::timeout(Duration::from_secs(5), async {
            while !String::from_utf8_lossy(&got).contains("id=\"endings\"") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the stream closed");
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(first.is_ok(), "{text}");
        assert!(text.contains("text/event-stream"), "{text}");
        assert!(text.contains("event: overview"), "{text}");
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn cancel_needs_the_forms_key_and_then_ends_a_running_job() {
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_cancel").await else {
            return;
        };
        let id = store
            .submit(&NewJob::new("sleep", json!({"secs": 30})))
            .await
            .unwrap();
        let sup = common::start(common::config(1));
        let feed = Feed::start(&store, &sup, FeedOptions::default())
            .await
            .unwrap();
        let addr = serve(Dashboard::new(store.clone())).await;
        let t = tokio::time::Instant::now();
        while !running(&store, id).await {
            assert!(t.elapsed() < Duration::from_secs(20), "job {id} never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let page = http(addr, "GET", &format!("/jobs/{id}"), &[], "").await;
        let key = form_key(&page.body);
        let path = format!("/jobs/{id}/cancel");
        // Without the form's key (as another site's form would post):
        // refused, and the job runs on.
        for body in ["", "key=nope", "key=00000000000000000000000000000000"] {
            let r = http(addr, "POST", &path, &[], body).await;
            assert!(
                matches!(r.status, 400 | 403 | 415 | 422),
                "{} {}",
                r.status,
                r.body
            );
        }
        assert!(running(&store, id).await);
        let r = http(addr, "POST", &path, &[], &format!("key={key}")).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(
            r.head.contains(&format!("location: /jobs/{id}")),
            "{}",
            r.head
        );
        let events = pg::until_ended(&store, 1, Duration::from_secs(30)).await;
        let end = events.iter().find(|e| e.terminal).unwrap();
        assert_eq!(end.event, "cancelled");
        let after = http(addr, "GET", &format!("/jobs/{id}"), &[], "").await;
        assert!(
            after.body.contains("id=\"outcome\">cancelled<"),
            "{}",
            after.body
        );
        assert!(
            after.body.contains("cancel_requested"),
            "the request is in the history"
        );
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

#[test]
fn a_token_is_required_when_set_and_a_public_address_needs_one() {
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_token").await else {
            return;
        };
        let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let open = Dashboard::new(store.clone());
        assert!(matches!(
            open.check(public),
            Err(DashboardError::NeedsToken(_))
        ));
        let err = open.bind(public).await.unwrap_err().to_string();
        assert!(err.contains("token"), "{err}");
        let weak = Dashboard::new(store.clone()).token(Some("short".into()));
        assert!(matches!(
            weak.check(public),
            Err(DashboardError::WeakToken(5))
        ));

        let secret = "0123456789abcdef-secret";
        let guarded = Dashboard::new(store.clone()).token(Some(secret.into()));
        assert!(guarded.check(public).is_ok());
        let addr = serve(guarded).await;
        let no = http(addr, "GET", "/", &[], "").await;
        assert_eq!(no.status, 401);
        assert!(no.body.contains("?token="), "{}", no.body);
        assert_eq!(http(addr, "GET", "/live", &[], "").await.status, 401);
        assert_eq!(
            http(addr, "POST", "/jobs/1/cancel", &[], "key=x")
                .await
                .status,
            401
        );
        let wrong = http(
            addr,
            "GET",
            "/",
            &["Authorization: Bearer 0123456789abcdef-secreT"],
            "",
        )
        .await;
        assert_eq!(wrong.status, 401);
        let bearer = format!("Authorization: Bearer {secret}");
        assert_eq!(http(addr, "GET", "/", &[&bearer], "").await.status, 200);
        // Opening a page with ?token= sets the cookie and drops the token
        // from the address.
        let first = http(addr, "GET", &format!("/?token={secret}"), &[], "").await;
        assert_eq!(first.status, 303);
        assert!(first.head.contains("location: /\r\n"), "{}", first.head);
        assert!(
            first.head.contains("set-cookie: procvisor_token="),
            "{}",
            first.head
        );
        assert!(first.head.contains("httponly"), "{}", first.head);
        let cookie = format!("Cookie: procvisor_token={secret}");
        assert_eq!(http(addr, "GET", "/", &[&cookie], "").await.status, 200);
        assert_eq!(
            http(addr, "GET", "/?token=wrong", &[], "").await.status,
            401
        );
    });
}

#[test]
fn the_command_refuses_a_public_address_without_a_token() {
    let Some(url) = pg::database("dash_cli") else {
        return;
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["dashboard", "--db", &url, "--listen", "0.0.0.0:0"])
        .env_remove("PROCVISOR_DASHBOARD_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("without a token") && err.contains("127.0.0.1"),
        "{err}"
    );
}

#[test]
fn pausing_a_queue_stops_its_claims_and_a_failed_job_can_be_run_again() {
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_pause").await else {
            return;
        };
        let addr = serve(Dashboard::new(store.clone())).await;
        let key = {
            // A queue shows once it has a job; its form carries the key.
            store
                .submit(&NewJob::new("noop", json!({})).queue("other"))
                .await
                .unwrap();
            form_key(&http(addr, "GET", "/", &[], "").await.body)
        };
        let r = http(
            addr,
            "POST",
            "/queues/pause",
            &[],
            &format!("key={key}&queue=p"),
        )
        .await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(store.paused_queues().await.unwrap(), ["p"]);
        let forged = http(addr, "POST", "/queues/resume", &[], "key=0&queue=p").await;
        assert_eq!(forged.status, 403);
        let waiting = store
            .submit(&NewJob::new("echo", json!(1)).queue("p"))
            .await
            .unwrap();
        let sup = common::start(common::config(1));
        let feed = Feed::start(&store, &sup, FeedOptions::default().queues(&["p"]))
            .await
            .unwrap();
        // Paused: the job is left waiting, however long we look.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let live = store
            .live_job(waiting)
            .await
            .unwrap()
            .expect("still in the queue");
        assert_eq!(live.state, "available");
        let page = http(addr, "GET", "/", &[], "").await.body;
        assert!(
            page.contains("data-queue=\"p\" data-paused=\"true\""),
            "{page}"
        );
        // Resumed: it runs at once.
        let r = http(
            addr,
            "POST",
            "/queues/resume",
            &[],
            &format!("key={key}&queue=p"),
        )
        .await;
        assert_eq!(r.status, 303);
        pg::until_ended(&store, 1, Duration::from_secs(20)).await;
        assert_eq!(
            store.ending_of(waiting).await.unwrap().unwrap().event,
            "completed"
        );

        // A failed job, run again from its page: a new job with the same
        // arguments and settings, linked from the old one's history.
        let failed = store
            .submit(
                &NewJob::new("fail", json!({"message": "flaky upstream"}))
                    .queue("p")
                    .priority(3),
            )
            .await
            .unwrap();
        pg::until_ended(&store, 2, Duration::from_secs(20)).await;
        let page = http(addr, "GET", &format!("/jobs/{failed}"), &[], "")
            .await
            .body;
        assert!(page.contains("id=\"retry\""), "{page}");
        let r = http(
            addr,
            "POST",
            &format!("/jobs/{failed}/retry"),
            &[],
            &format!("key={key}"),
        )
        .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let location = r
            .head
            .lines()
            .find_map(|l| l.strip_prefix("location: /jobs/"))
            .unwrap();
        let again: i64 = location.trim().parse().unwrap();
        assert_ne!(again, failed);
        pg::until_ended(&store, 3, Duration::from_secs(20)).await;
        let end = store.ending_of(again).await.unwrap().unwrap();
        assert_eq!(
            (end.event.as_str(), end.queue.as_str(), end.priority),
            ("failed", "p", 3)
        );
        assert!(end.error.unwrap().contains("flaky upstream"));
        let history = store.events_of(failed).await.unwrap();
        let retried = history
            .iter()
            .find(|e| e.event == "retried")
            .expect("a retried event");
        assert_eq!(retried.result, Some(json!({"new_job": again})));
        // A completed job is not retried.
        let r = http(
            addr,
            "POST",
            &format!("/jobs/{waiting}/retry"),
            &[],
            &format!("key={key}"),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("completed"), "{}", r.body);
        // Every action is on record, newest first.
        let actions: Vec<String> = store
            .actions(10)
            .await
            .unwrap()
            .iter()
            .map(|a| format!("{} {}", a.action, a.by))
            .collect();
        assert_eq!(
            actions,
            ["retry dashboard", "resume dashboard", "pause dashboard"]
        );
        feed.stop(Duration::ZERO).await.unwrap();
    });
}

/// One raw HTTP/1.1 request with exactly these header lines (no Host of
/// the helper's): the status and the head, lower-cased.
async fn raw(addr: SocketAddr, request_line: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{request_line}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_lowercase();
    let status = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    (status, text)
}

#[test]
fn a_page_that_rebinds_its_name_to_this_machine_reads_nothing_and_sends_nothing() {
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_rebind").await else {
            return;
        };
        // No token: a loopback dashboard, as most run it.
        let addr = serve(Dashboard::new(store.clone()).allow_host("jobs.internal")).await;
        let port = addr.port();
        let get = "GET / HTTP/1.1";
        // A page at rebind.example whose name now resolves to 127.0.0.1.
        let (status, head) = raw(addr, get, &["Host: rebind.example"]).await;
        assert_eq!(status, 421, "{head}");
        let (status, _) = raw(addr, get, &[&format!("Host: rebind.example:{port}")]).await;
        assert_eq!(status, 421);
        // Its own addresses, and the name it was told to answer to.
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("JOBS.internal:{port}"),
        ] {
            let (status, head) = raw(addr, get, &[&format!("Host: {host}")]).await;
            assert_eq!(status, 200, "{host}: {head}");
        }
        // An action posted from another site's page is refused, key or not.
        let id = store.submit(&NewJob::new("noop", json!({}))).await.unwrap();
        let key = form_key(
            &http(addr, "GET", &format!("/jobs/{id}"), &[], "")
                .await
                .body,
        );
        let forged = http(
            addr,
            "POST",
            &format!("/jobs/{id}/cancel"),
            &["Origin: http://evil.example"],
            &format!("key={key}"),
        )
        .await;
        assert_eq!(forged.status, 403, "{}", forged.body);
        assert!(store.live_job(id).await.unwrap().is_some(), "not cancelled");
        let own = http(
            addr,
            "POST",
            &format!("/jobs/{id}/cancel"),
            &[&format!("Origin: http://{addr}")],
            &format!("key={key}"),
        )
        .await;
        assert_eq!(own.status, 303, "{}", own.body);
    });
}

#[test]
fn the_token_must_look_like_a_secret_and_never_sends_the_browser_elsewhere() {
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_token_rules").await else {
            return;
        };
        let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
        for plain in [
            "                ",
            "aaaaaaaaaaaaaaaa",
            "abababababababab",
            "0123456789 abcdef",
        ] {
            let d = Dashboard::new(store.clone()).token(Some(plain.into()));
            assert!(
                matches!(d.check(public), Err(DashboardError::PlainToken)),
                "{plain:?} refused"
            );
        }
        let secret = "0123456789abcdef-secret";
        let addr = serve(Dashboard::new(store.clone()).token(Some(secret.into()))).await;
        let r = http(
            addr,
            "GET",
            &format!("//other.site/?token={secret}"),
            &[],
            "",
        )
        .await;
        // The token is taken, and the browser sent to a path of this
        // dashboard: `//other.site/` would be another site.
        assert_eq!(r.status, 303, "{}", r.head);
        let location = r
            .head
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or("");
        assert_eq!(location, "/other.site/");
    });
}

#[test]
fn run_it_again_posted_three_times_makes_one_job() {
    pg::runtime().block_on(async {
        let Some(store) = pg::store("dash_retry_once").await else {
            return;
        };
        let id = store
            .submit(&NewJob::new("noop", json!({})).run_after(Duration::from_secs(3600)))
            .await
            .unwrap();
        store.cancel(id).await.unwrap();
        let addr = serve(Dashboard::new(store.clone())).await;
        let key = form_key(
            &http(addr, "GET", &format!("/jobs/{id}"), &[], "")
                .await
                .body,
        );
        let mut made = Vec::new();
        for _ in 0..3 {
            let r = http(
                addr,
                "POST",
                &format!("/jobs/{id}/retry"),
                &[],
                &format!("key={key}"),
            )
            .await;
            assert_eq!(r.status, 303, "{}", r.body);
            made.push(
                r.head
                    .lines()
                    .find_map(|l| l.strip_prefix("location: /jobs/"))
                    .unwrap()
                    .to_string(),
            );
        }
        made.dedup();
        assert_eq!(made.len(), 1, "one new job: {made:?}");
        let retried = store
            .events_of(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event == "retried")
            .count();
        assert_eq!(retried, 1);
    });
}
