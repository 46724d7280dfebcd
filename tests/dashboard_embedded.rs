//! The dashboard over an embedded supervisor with real worker processes,
//! over real HTTP: its workers with the job each runs and its progress,
//! a job's events, and cancelling a running job from its page.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use procvisor::dashboard::EmbeddedDashboard;
use procvisor::{Job, Outcome};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request (Connection: close): status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !body.is_empty() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn workers_progress_and_a_cancel_from_the_page_over_an_embedded_supervisor() {
    let sup = common::start(common::config(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = EmbeddedDashboard::new(&sup).router();
        tokio::spawn(async move { axum::serve(listener, router).await });

        let done = sup.submit(Job::json("echo", &json!("hi"))).unwrap();
        let done_id = done.id();
        assert!(done.await.outcome.is_completed());
        let slow = sup
            .submit(Job::json("sleep", &json!({"secs": 30})))
            .unwrap();
        let id = slow.id();
        let pid = common::running_pid(&slow);

        // The worker's row names its pid and the job, with progress.
        let mut page = String::new();
        let shown = common::eventually(Duration::from_secs(10), || {
            page = rt_get(addr, "/");
            page.contains(&format!("href=\"/jobs/{id}\"")) && page.contains(" %")
        });
        assert!(shown, "{page}");
        assert!(
            page.contains(&format!("<td class=\"n\">{pid}</td>")),
            "{page}"
        );
        assert!(
            page.contains(&format!(
                "data-job=\"{done_id}\" data-outcome=\"completed\""
            )),
            "{page}"
        );

        let (status, job) = http(addr, "GET", &format!("/jobs/{id}"), "").await;
        assert_eq!(status, 200);
        assert!(job.contains(&format!("running on worker {pid}")), "{job}");
        assert!(job.contains("started (attempt 1) on worker"), "{job}");
        let at = job.find("name=\"key\" value=\"").unwrap() + 18;
        let key = &job[at..at + 32];
        let (status, _) = http(addr, "POST", &format!("/jobs/{id}/cancel"), "key=forged").await;
        assert_eq!(status, 403);
        let (status, _) = http(
            addr,
            "POST",
            &format!("/jobs/{id}/cancel"),
            &format!("key={key}"),
        )
        .await;
        assert_eq!(status, 303);
        let report = slow.await;
        assert_eq!(report.outcome, Outcome::Cancelled);
        let ended = common::eventually(Duration::from_secs(5), || {
            rt_get(addr, "/").contains(&format!("data-job=\"{id}\" data-outcome=\"cancelled\""))
        });
        assert!(ended);
        let (_, job) = http(addr, "GET", &format!("/jobs/{id}"), "").await;
        assert!(job.contains("id=\"outcome\">cancelled<"), "{job}");
        assert!(!job.contains("id=\"cancel\""), "{job}");
        assert_eq!(http(addr, "GET", "/jobs/424242", "").await.0, 404);
    });
}

/// A GET from a plain thread (for `eventually`).
fn rt_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
