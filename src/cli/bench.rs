//! `procvisor bench`: no-op jobs through the supervisor; throughput, then the
//! round trip of one job at a time, then how fast faults are handled: a
//! timeout's kill, a crash's report and replacement, an eviction. With
//! `--db`, the PostgreSQL job queue instead (see `db::bench`).

use std::time::{Duration, Instant};

use procvisor::stock::Empty;
use procvisor::{EvictionMode, Job, JobState, Outcome, RestartPolicy, Supervisor};

use super::WorkerArgs;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    metrics: crate::cli::metrics::MetricsArgs,
    /// No-op jobs for the throughput run (1 to 100000000).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    jobs: u32,
    /// Worker processes (1 to 4096).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=4096))]
    workers: u16,
    /// Jobs a worker may hold at once (prefetch, 1 to 1024).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    inflight: u16,
    /// How long waiting threads poll before blocking, in microseconds
    /// (default: the supervisor's default; at most 1000000).
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    spin_us: Option<u64>,
    /// Jobs for the one-at-a-time latency run (0 to 10000000).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    latency_jobs: u32,
    /// Repetitions of each fault measurement (timeout, crash, eviction);
    /// 0 skips them.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    fault_reps: u32,
    /// Measure the PostgreSQL job queue at this database URL instead:
    /// enqueue rate, burn-down with one and two supervisors, and the time
    /// from insert to start. It works in a queue of its own and removes
    /// what it wrote, but use a database made for it.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// With --db: completed jobs to put in the history before measuring
    /// the time from insert to start again (0 to 10000000).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    history: u32,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    sched: super::SchedArgs,
}

pub fn run(a: Args) -> Result<i32, String> {
    a.metrics.install()?;
    if let Some(url) = a.db {
        return super::db::bench::run(super::db::bench::Plan {
            url,
            jobs: a.jobs,
            workers: a.workers.into(),
            inflight: a.inflight.into(),
            latency_jobs: a.latency_jobs.min(2_000),
            history: a.history,
            spin: a.spin_us.map(Duration::from_micros),
            worker: a.worker,
        });
    }
    let mut cfg = a.sched.apply(
        a.worker
            .config(a.workers.into())?
            .prefetch(a.inflight.into()),
    )?;
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
    say!(
        "throughput: {} jobs in {:.3} s = {:.0} jobs/s ({} workers, inflight {}, {} not completed)",
        a.jobs,
        secs,
        a.jobs as f64 / secs,
        a.workers,
        a.inflight,
        failed
    );

    let mut rtt: Vec<Duration> = Vec::with_capacity(a.latency_jobs as usize);
    for _ in 0..a.latency_jobs {
        let t = Instant::now();
        let r = sup.submit(noop()).map_err(|e| e.to_string())?.wait();
        rtt.push(t.elapsed());
        if !r.outcome.is_completed() {
            failed += 1;
        }
    }
    if !rtt.is_empty() {
        let (p50, p90, p99) = percentiles(&mut rtt);
        say!(
            "round trip, one job at a time ({} jobs): p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
            rtt.len(),
            p50 * 1e3,
            p90 * 1e3,
            p99 * 1e3
        );
    }
    sup.shutdown_blocking(Duration::from_secs(1));
    if a.fault_reps > 0 {
        failed += faults(&a.worker, a.fault_reps as usize)?;
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// p50, p90 and p99 of `samples`, in milliseconds.
pub(super) fn percentiles(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let pct =
        |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    (pct(0.5), pct(0.9), pct(0.99))
}

fn print(what: &str, samples: &mut [Duration]) {
    let (p50, p90, p99) = percentiles(samples);
    say!(
        "{what} ({} times): p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms",
        samples.len()
    );
}

/// Fresh starts measured at most (each starts and stops a supervisor).
const FRESH_REPS: usize = 50;

/// How fast faults are handled, one worker, `reps` times each. Returns how
/// many repetitions did not end as they must.
fn faults(worker: &WorkerArgs, reps: usize) -> Result<usize, String> {
    let restart = RestartPolicy {
        max_restarts: u32::MAX,
        within: Duration::from_secs(1),
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
    };
    let cfg = worker
        .config(1)?
        .restart(restart)
        .eviction(EvictionMode::Drop);
    let sup = Supervisor::start(cfg).map_err(|e| e.to_string())?;
    let noop = || Job::<()>::new("noop", &Empty {});
    let json = |kind: &str| Job::json(kind, &serde_json::json!({}));
    let mut wrong = 0;
    let serve = |sup: &Supervisor| -> Result<Duration, String> {
        let t = Instant::now();
        sup.submit(noop()).map_err(|e| e.to_string())?.wait();
        Ok(t.elapsed())
    };
    serve(&sup)?;

    // A job that ignores SIGTERM and spins, with a 10 ms timeout: from its
    // deadline to its report (an upper bound: it counts from the submit).
    let timeout = Duration::from_millis(10);
    let mut late = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let r = sup
            .submit(json("hang").timeout(timeout))
            .map_err(|e| e.to_string())?
            .wait();
        late.push(t.elapsed().saturating_sub(timeout));
        wrong += usize::from(!matches!(r.outcome, Outcome::TimedOut { .. }));
        serve(&sup)?;
    }
    print("timeout: deadline → reported, worker killed", &mut late);

    // A worker that segfaults: the report, then a replacement serving.
    let (mut reported, mut replaced) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let t = Instant::now();
        let r = sup
            .submit(json("segfault"))
            .map_err(|e| e.to_string())?
            .wait();
        reported.push(t.elapsed());
        wrong += usize::from(!matches!(r.outcome, Outcome::Crashed(_)));
        replaced.push(serve(&sup)?);
    }
    print("crash: submitted → crash reported", &mut reported);
    print(
        "crash: reported → a replacement served a job",
        &mut replaced,
    );
    // What a replacement is measured against: a whole fresh start (a new
    // supervisor, its worker spawned and connected, one job served).
    let mut fresh = Vec::with_capacity(reps.min(FRESH_REPS));
    for _ in 0..reps.min(FRESH_REPS) {
        let t = Instant::now();
        let one = Supervisor::start(worker.config(1)?).map_err(|e| e.to_string())?;
        serve(&one)?;
        fresh.push(t.elapsed());
        one.shutdown_blocking(Duration::from_secs(1));
    }
    let ratio = percentiles(&mut replaced).0 / percentiles(&mut fresh).0;
    print(
        "fresh start: a new supervisor's first worker served a job",
        &mut fresh,
    );
    say!("replacement / fresh start, p50: {ratio:.2}×");

    // A long job evicted (dropped) for an urgent one: from the urgent
    // submit to its report (kill, replacement, run).
    let mut evicted = Vec::with_capacity(reps);
    for _ in 0..reps {
        let low = sup
            .submit(json("hang").priority(10))
            .map_err(|e| e.to_string())?;
        while !matches!(low.state_blocking(), JobState::Running { .. }) {
            std::thread::yield_now();
        }
        let t = Instant::now();
        let r = sup
            .submit(noop().priority(0))
            .map_err(|e| e.to_string())?
            .wait();
        evicted.push(t.elapsed());
        wrong += usize::from(!r.outcome.is_completed());
        wrong += usize::from(!matches!(low.wait().outcome, Outcome::Evicted));
    }
    print("eviction: urgent submitted → urgent done", &mut evicted);
    sup.shutdown_blocking(Duration::from_secs(1));
    Ok(wrong)
}
