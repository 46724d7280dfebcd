//! Metrics through the `metrics` facade, read back as Prometheus text: from
//! a recorder installed in this process (as an embedding application
//! would), and from `procvisor run --metrics ADDR` over real HTTP.
//!
//! One recorder serves the whole process, so this file holds one
//! in-process test; counters are read as differences where it matters.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, eventually, prom_sample as sample, start, wait};
use metrics_exporter_prometheus::PrometheusBuilder;
use procvisor::{Job, Outcome};
use serde_json::json;

#[test]
fn jobs_outcomes_times_workers_and_restarts_reach_an_installed_recorder() {
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let sup = start(config(2));
    let echoes: Vec<_> = (0..5)
        .map(|i| sup.submit(Job::json("echo", &json!(i))).unwrap())
        .collect();
    let fail = sup.submit(Job::json("fail", &json!({}))).unwrap();
    let crash = sup.submit(Job::json("segfault", &json!({}))).unwrap();
    let nap = sup
        .submit(Job::json("sleep", &json!({"secs": 0.2})))
        .unwrap();
    for h in echoes {
        assert!(wait(h, 20).outcome.is_completed());
    }
    assert!(matches!(wait(fail, 20).outcome, Outcome::Failed(_)));
    assert!(matches!(wait(crash, 20).outcome, Outcome::Crashed(_)));
    assert!(wait(nap, 20).outcome.is_completed());

    // The gauges are brought up to date every second: wait for the
    // crashed worker's replacement to show as ready.
    let mut text = String::new();
    let settled = eventually(Duration::from_secs(10), || {
        text = prometheus.render();
        sample(&text, "procvisor_workers", &[("phase", "ready")]) == Some(2.0)
            && sample(
                &text,
                "procvisor_jobs_ended_total",
                &[("kind", "sleep"), ("outcome", "completed")],
            ) == Some(1.0)
    });
    assert!(settled, "{text}");
    let get = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    assert_eq!(
        get("procvisor_jobs_submitted_total", &[("kind", "echo")]),
        5.0
    );
    assert_eq!(
        get("procvisor_jobs_started_total", &[("kind", "echo")]),
        5.0
    );
    assert_eq!(
        get(
            "procvisor_jobs_ended_total",
            &[("kind", "echo"), ("outcome", "completed")]
        ),
        5.0
    );
    assert_eq!(
        get(
            "procvisor_jobs_ended_total",
            &[("kind", "fail"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "procvisor_jobs_ended_total",
            &[("kind", "segfault"), ("outcome", "crashed")]
        ),
        1.0
    );
    // Run time as the worker measured it: the sleep took its 0.2 s.
    assert_eq!(
        get("procvisor_job_run_seconds_count", &[("kind", "sleep")]),
        1.0
    );
    let slept = get("procvisor_job_run_seconds_sum", &[("kind", "sleep")]);
    assert!((0.2..5.0).contains(&slept), "{slept}");
    assert_eq!(
        get(
            "procvisor_job_queue_wait_seconds_count",
            &[("kind", "echo")]
        ),
        5.0
    );
    assert_eq!(get("procvisor_worker_restarts_total", &[]), 1.0);
    assert_eq!(get("procvisor_jobs_waiting", &[("priority", "5")]), 0.0);
    assert!(text.contains("# HELP procvisor_jobs_ended_total"), "{text}");

    // Queue depth by priority: jobs stuck behind two busy workers.
    let busy: Vec<_> = (0..2)
        .map(|_| sup.submit(Job::json("sleep", &json!({"secs": 3}))).unwrap())
        .collect();
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            sup.submit(Job::json("echo", &json!(0)).priority(7))
                .unwrap()
        })
        .collect();
    let deep = eventually(Duration::from_secs(5), || {
        text = prometheus.render();
        sample(&text, "procvisor_jobs_waiting", &[("priority", "7")]) == Some(3.0)
    });
    assert!(deep, "{text}");
    for h in busy {
        h.cancel();
    }
    for h in waiting {
        assert!(wait(h, 20).outcome.is_completed());
    }
    // A stopped supervisor takes its share out of the gauges.
    sup.shutdown_blocking(Duration::from_secs(5));
    drop(sup);
    text = prometheus.render();
    assert_eq!(
        sample(&text, "procvisor_workers", &[("phase", "ready")]),
        Some(0.0),
        "{text}"
    );
}

#[test]
fn run_serves_metrics_over_http_while_its_job_runs() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["run", "--metrics", &addr, "sleep", r#"{"secs": 3}"#])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut body = String::new();
    let seen = eventually(Duration::from_secs(10), || {
        body = common::http::get(&addr, "/metrics").unwrap_or_default();
        sample(&body, "procvisor_jobs_started_total", &[("kind", "sleep")]) == Some(1.0)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "after {:?}:\n{body}", t.elapsed());
    assert!(body.starts_with("HTTP/1."), "{body}");
    assert!(body.contains("200"), "{body}");
}

#[test]
fn a_metrics_address_that_is_taken_or_malformed_is_refused_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["run", "--metrics", &addr, "noop"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot serve metrics at") && err.contains("--metrics"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["run", "--metrics", "localhost:abc", "noop"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--metrics"), "{err}");
}
