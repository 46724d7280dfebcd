//! `procvisor bench`: no-op jobs through the supervisor; throughput, then the
//! round trip of one job at a time.

use std::time::{Duration, Instant};

use procvisor::stock::Empty;
use procvisor::{Job, Outcome, Supervisor};

use super::WorkerArgs;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// No-op jobs for the throughput run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Jobs a worker may hold at once (prefetch).
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// How long waiting threads poll before blocking, in microseconds
    /// (default: the supervisor's default).
    #[arg(long, value_name = "US")]
    spin_us: Option<u64>,
    /// Jobs for the one-at-a-time latency run.
    #[arg(long, default_value_t = 5_000)]
    latency_jobs: usize,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    sched: super::SchedArgs,
}

pub fn run(a: Args) -> Result<i32, String> {
    let mut cfg = a
        .sched
        .apply(a.worker.config(a.workers)?.prefetch(a.inflight))?;
    if let Some(us) = a.spin_us {
        cfg = cfg.spin(Duration::from_micros(us));
    }
    let sup = Supervisor::start(cfg).map_err(|e| e.to_string())?;
    let noop = || Job::<()>::new("noop", &Empty {});

    // Warm up: page in the code paths on both sides.
    for _ in 0..200 {
        sup.submit(noop()).map_err(|e| e.to_string())?.wait();
    }

    let t = Instant::now();
    let handles = (0..a.jobs)
        .map(|_| sup.submit(noop()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut failed = 0;
    for h in handles {
        if !matches!(h.wait().outcome, Outcome::Completed(())) {
            failed += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "throughput: {} jobs in {:.3} s = {:.0} jobs/s ({} workers, inflight {}, {} not completed)",
        a.jobs,
        secs,
        a.jobs as f64 / secs,
        a.workers,
        a.inflight,
        failed
    );

    let mut rtt: Vec<Duration> = Vec::with_capacity(a.latency_jobs);
    for _ in 0..a.latency_jobs {
        let t = Instant::now();
        let r = sup.submit(noop()).map_err(|e| e.to_string())?.wait();
        rtt.push(t.elapsed());
        if !r.outcome.is_completed() {
            failed += 1;
        }
    }
    rtt.sort();
    let pct = |p: f64| rtt[((rtt.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6;
    if !rtt.is_empty() {
        println!(
            "round trip, one job at a time ({} jobs): p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
            rtt.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99)
        );
    }
    sup.shutdown_blocking(Duration::from_secs(1));
    Ok(if failed == 0 { 0 } else { 1 })
}
