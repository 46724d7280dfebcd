//! `procvisor run KIND JSON`: one job, its outcome on stdout as JSON.

use std::time::Duration;

use procvisor::{Job, Outcome, Supervisor};
use serde_json::{json, Value};

use super::WorkerArgs;

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    metrics: crate::cli::metrics::MetricsArgs,
    /// The job kind (the stock worker serves noop, echo, sleep, fail, panic,
    /// abort, segfault, hang, alloc).
    kind: String,
    /// The payload, as JSON.
    #[arg(default_value = "{}")]
    payload: String,
    /// Priority, 0 (most urgent) to 10.
    #[arg(long, short, default_value_t = procvisor::DEFAULT_PRIORITY, value_parser = clap::value_parser!(u8).range(0..=10))]
    priority: u8,
    /// Timeout in seconds (more than 0, at most a day); the worker is
    /// killed when it passes.
    #[arg(long, short, value_name = "SECS", value_parser = super::num::positive_secs)]
    timeout: Option<std::time::Duration>,
    /// Number of worker processes, 1 to 4096.
    #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4096))]
    workers: u16,
    /// Weight for the random policies (more than 0, up to 1000000).
    #[arg(long, default_value_t = 1.0, value_parser = super::num::weight)]
    weight: f64,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    sched: super::SchedArgs,
}

pub fn run(a: Args) -> Result<i32, String> {
    a.metrics.install()?;
    let mut job = Job::json_text(&a.kind, &a.payload)
        .priority(a.priority)
        .weight(a.weight);
    if let Some(t) = a.timeout {
        job = job.timeout(t);
    }
    // What a handler prints must not corrupt the JSON this command prints.
    let cfg = a.worker.config(a.workers.into())?;
    let worker = cfg.worker_command().clone().stdout_to_stderr();
    let cfg = a.sched.apply(cfg.worker(worker))?;
    let sup = Supervisor::start(cfg).map_err(|e| e.to_string())?;
    let handle = sup.submit(job).map_err(|e| e.to_string())?;
    let report = handle.wait();
    let mut out = json!({
        "id": report.id,
        "kind": &*report.kind,
        "outcome": report.outcome.name(),
        "attempts": report.attempts,
        "evictions": report.evictions,
        "worker_pid": report.worker_pid,
        "ran_for_secs": report.ran_for.map(|d| d.as_secs_f64()),
    });
    if !report.history.is_empty() {
        out["earlier_attempts"] = report
            .history
            .iter()
            .map(|a| json!({"attempt": a.attempt, "outcome": a.outcome.name(), "error": a.outcome.to_string()}))
            .collect();
    }
    let code = match &report.outcome {
        Outcome::Completed(v) => {
            out["result"] = v.clone();
            0
        }
        other => {
            out["error"] = Value::String(other.to_string());
            eprintln!(
                "error: job {} ({}) {}",
                report.id,
                super::printable(&report.kind),
                super::printable(&other.to_string())
            );
            1
        }
    };
    say!("{out}");
    sup.shutdown_blocking(Duration::from_secs(1));
    Ok(code)
}
