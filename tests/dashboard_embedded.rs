//! The dashboard over an embedded supervisor with real worker processes,
//! over real HTTP: its workers with the job each runs and its progress,
//! a job's events, and cancelling a running job from its page.

mod common;

use std::time::Duration;

use common::http::{form_key, request};
use procvisor::dashboard::EmbeddedDashboard;
use procvisor::{Job, Outcome};
use serde_json::json;

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
            page = common::http::get(&addr.to_string(), "/").unwrap();
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

        let r = request(addr, "GET", &format!("/jobs/{id}"), &[], "").await;
        let (status, job) = (r.status, r.body);
        assert_eq!(status, 200);
        assert!(job.contains(&format!("running on worker {pid}")), "{job}");
        assert!(job.contains("started (attempt 1) on worker"), "{job}");
        let key = form_key(&job);
        let status = request(
            addr,
            "POST",
            &format!("/jobs/{id}/cancel"),
            &[],
            "key=forged",
        )
        .await
        .status;
        assert_eq!(status, 403);
        let status = request(
            addr,
            "POST",
            &format!("/jobs/{id}/cancel"),
            &[],
            &format!("key={key}"),
        )
        .await
        .status;
        assert_eq!(status, 303);
        let report = slow.await;
        assert_eq!(report.outcome, Outcome::Cancelled);
        let ended = common::eventually(Duration::from_secs(5), || {
            common::http::get(&addr.to_string(), "/")
                .unwrap()
                .contains(&format!("data-job=\"{id}\" data-outcome=\"cancelled\""))
        });
        assert!(ended);
        let job = request(addr, "GET", &format!("/jobs/{id}"), &[], "")
            .await
            .body;
        assert!(job.contains("id=\"outcome\">cancelled<"), "{job}");
        assert!(!job.contains("id=\"cancel\""), "{job}");
        assert_eq!(
            request(addr, "GET", "/jobs/424242", &[], "").await.status,
            404
        );
    });
}
