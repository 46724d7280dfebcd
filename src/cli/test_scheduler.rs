//! `procvisor test-scheduler`: a test scheduler. A supervisor fed by
//! a producer of `sleep` jobs (random priority 0..=10, runtime 3..=15 s),
//! periodic or Gaussian, with a live view; Ctrl-C (or --duration) shuts it
//! down gracefully and prints a summary whose counts add up.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procvisor::demo::producer::{Producer, Timing};
use procvisor::{Job, JobHandle, Supervisor};
use procvisor::{Snapshot, WorkerPhase};
use serde_json::{json, Value};

use super::WorkerArgs;

/// Arguments of `test-scheduler`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    metrics: crate::cli::metrics::MetricsArgs,
    /// Jobs run at once (worker processes).
    #[arg(short = 's', long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=4096))]
    size: u16,
    /// Timeout per job, seconds (more than 0, at most a day).
    #[arg(short = 't', long, default_value = "10", value_parser = super::num::positive_secs)]
    timeout: Duration,
    #[command(flatten)]
    produce: ProduceArgs,
    /// Instead of producing jobs itself, be one supervisor of the
    /// PostgreSQL job queue at this URL (postgres://USER:PASSWORD@HOST/DB),
    /// running the jobs that `procvisor producer --db` puts there; start as
    /// many as you like, anywhere.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    #[command(flatten)]
    worker: WorkerArgs,
}

/// How the test jobs come: shared by `test-scheduler` and `producer`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProduceArgs {
    /// Seconds between jobs (the mean, with --gauss; more than 0, at most a
    /// day).
    #[arg(long, default_value = "5", value_parser = super::num::positive_secs)]
    period: Duration,
    /// Gaussian gaps instead of a fixed period.
    #[arg(long)]
    gauss: bool,
    /// Standard deviation of the Gaussian gaps, seconds (0 to a day).
    #[arg(long, default_value = "2", value_parser = super::num::secs)]
    sigma: Duration,
    /// Stop after this many seconds (wall time), as Ctrl-C would.
    #[arg(long, value_name = "SECS", value_parser = super::num::positive_secs)]
    pub duration: Option<Duration>,
    /// Scale every time (period, sigma, runtimes, timeout) down 100 times.
    #[arg(long)]
    fast: bool,
    /// Seed of the producer.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl ProduceArgs {
    /// 0.01 with --fast, else 1.
    pub fn scale(&self) -> f64 {
        if self.fast {
            0.01
        } else {
            1.0
        }
    }

    /// When jobs come (unscaled).
    pub fn timing(&self) -> Timing {
        if self.gauss {
            Timing::Gauss {
                mean: self.period,
                sigma: self.sigma,
            }
        } else {
            Timing::Periodic(self.period)
        }
    }

    /// The seeded producer.
    pub fn producer(&self) -> Producer {
        Producer::new(self.timing(), self.scale(), self.seed)
    }

    /// How jobs come, for a header.
    pub fn describe(&self) -> String {
        let scale = self.scale();
        match self.timing() {
            Timing::Periodic(p) => format!("a job every {:?}", p.mul_f64(scale)),
            Timing::Gauss { mean, sigma } => format!(
                "gaps ~ N({:?}, {:?})",
                mean.mul_f64(scale),
                sigma.mul_f64(scale)
            ),
        }
    }
}

/// Set by Ctrl-C, SIGTERM and SIGHUP: they all end a run the same
/// graceful way.
pub(crate) fn interrupted() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let _ = ctrlc::set_handler(move || set.store(true, Ordering::SeqCst));
    flag
}

pub fn run(a: Args) -> Result<i32, String> {
    a.metrics.install()?;
    let scale = a.produce.scale();
    // At least a millisecond, however small --fast makes it.
    let timeout = a.timeout.mul_f64(scale).max(Duration::from_millis(1));
    if let Some(url) = &a.db {
        return super::db::bus::schedule(url, a.size, timeout, &a.produce, &a.worker);
    }
    let stop_after = a.produce.duration;
    let sup = Supervisor::start(
        a.worker
            .config(a.size.into())?
            .default_timeout(Some(timeout)),
    )
    .map_err(|e| e.to_string())?;
    let interrupted = interrupted();
    let live = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut producer = a.produce.producer();
    let mut handles: Vec<JobHandle<Value>> = Vec::new();
    let mut next = producer.next();
    let mut next_at = started + next.map_or(Duration::ZERO, |j| j.gap);
    let mut next_draw = started;
    let header = format!(
        "procvisor test-scheduler: {} slots, timeout {:?}, {}{}",
        a.size,
        timeout,
        a.produce.describe(),
        if live { " (Ctrl-C to stop)" } else { "" }
    );
    say!("{header}");
    loop {
        let now = Instant::now();
        if interrupted.load(Ordering::SeqCst) || stop_after.is_some_and(|d| now >= started + d) {
            break;
        }
        if let Some(job) = next.filter(|_| now >= next_at) {
            let h = sup
                .submit(
                    Job::json("sleep", &json!({"secs": job.runtime.as_secs_f64()}))
                        .priority(job.priority),
                )
                .map_err(|e| e.to_string())?;
            handles.push(h);
            next = producer.next();
            next_at += next.map_or(Duration::ZERO, |j| j.gap);
        }
        if live && now >= next_draw {
            if let Some(snap) = sup.snapshot_blocking() {
                let footer = counts_line(&snap, &format!("produced {}", handles.len()));
                draw(
                    &header,
                    &snap,
                    &|id| format!("#{id}"),
                    &footer,
                    now - started,
                );
            }
            next_draw = now + Duration::from_millis(200);
        }
        let wake = [
            next_at,
            next_draw,
            stop_after.map_or(next_at, |d| started + d),
        ]
        .into_iter()
        .min()
        .unwrap_or(now);
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        );
    }
    say!("stopping: running jobs get {timeout:?} to finish, queued ones are cancelled");
    let evictions = sup.snapshot_blocking().map_or(0, |s| s.counts.evictions);
    sup.shutdown_blocking(timeout);
    let produced = handles.len();
    let mut tally: BTreeMap<&'static str, usize> = BTreeMap::new();
    for h in handles {
        *tally.entry(h.wait().outcome.name()).or_insert(0) += 1;
    }
    print_summary(&tally, produced, evictions, started.elapsed());
    Ok(0)
}

/// The queue by priority and the outcomes so far, after `first`.
pub(crate) fn counts_line(snap: &Snapshot, first: &str) -> String {
    let mut out = String::from("queue by priority: ");
    for (p, n) in snap.queued_per_priority.iter().enumerate() {
        out.push_str(&format!("p{p}:{n} "));
    }
    let c = &snap.counts;
    out.push_str(&format!(
        "(total {})\n\n{first}  completed {}  timed out {}  evictions {}  crashed {}  cancelled {}\n",
        snap.queued(),
        c.completed,
        c.timed_out,
        c.evictions,
        c.crashed,
        c.cancelled
    ));
    out
}

/// Redraw the live view (the terminal is cleared first): the header, each
/// worker with the job it runs (named by `job_name`), then `footer`.
pub(crate) fn draw(
    header: &str,
    snap: &Snapshot,
    job_name: &dyn Fn(procvisor::JobId) -> String,
    footer: &str,
    elapsed: Duration,
) {
    let mut out = String::new();
    out.push_str("\x1b[2J\x1b[H");
    out.push_str(&format!("{header}   [{:.1} s]\n\n", elapsed.as_secs_f64()));
    out.push_str(&format!(
        "{:<5} {:>8}  {:<10} {:>4} {:>9}\n",
        "slot", "pid", "job", "prio", "elapsed"
    ));
    for w in &snap.workers {
        let pid = w.pid.map_or("-".to_string(), |p| p.to_string());
        match (&w.running, w.phase) {
            (Some(r), _) => out.push_str(&format!(
                "{:<5} {:>8}  {:<10} {:>4} {:>8.1}s\n",
                w.slot,
                pid,
                job_name(r.id),
                r.priority,
                r.elapsed.as_secs_f64()
            )),
            (None, WorkerPhase::Ready) => {
                out.push_str(&format!("{:<5} {:>8}  idle\n", w.slot, pid))
            }
            (None, phase) => out.push_str(&format!("{:<5} {:>8}  {phase:?}\n", w.slot, pid)),
        }
    }
    out.push('\n');
    out.push_str(footer);
    crate::cli::show(&out);
}

fn print_summary(
    tally: &BTreeMap<&'static str, usize>,
    produced: usize,
    evictions: u64,
    elapsed: Duration,
) {
    let get = |k: &str| tally.get(k).copied().unwrap_or(0);
    let ended: usize = tally.values().sum();
    say!("\nsummary after {:.1} s:", elapsed.as_secs_f64());
    say!("  produced    {produced}");
    for k in [
        "completed",
        "timed_out",
        "evicted",
        "crashed",
        "failed",
        "cancelled",
        "rejected",
    ] {
        say!("  {k:<11} {}", get(k));
    }
    say!("  (evictions: {evictions}; an evicted job goes back to the queue and ends as one of the above)");
    say!(
        "summary: produced={produced} completed={} timed_out={} evicted={} crashed={} failed={} cancelled={} rejected={} ended={ended}",
        get("completed"),
        get("timed_out"),
        get("evicted"),
        get("crashed"),
        get("failed"),
        get("cancelled"),
        get("rejected")
    );
}
