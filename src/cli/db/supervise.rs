//! `procvisor supervise`: a long-running supervisor fed from the store,
//! until SIGINT, SIGTERM or SIGHUP; then it stops claiming, gives running
//! jobs a grace to finish, and gives back what it could not finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use procvisor::store::{Feed, FeedOptions};
use procvisor::{EvictionMode, Supervisor};

use super::DbArgs;
use crate::cli::sched_args::PolicyArg;
use crate::cli::WorkerArgs;

/// Arguments of `supervise`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    metrics: crate::cli::metrics::MetricsArgs,
    #[command(flatten)]
    db: DbArgs,
    /// Worker processes (1 to 4096; default: one per CPU).
    #[arg(long, short, value_parser = clap::value_parser!(u16).range(1..=4096))]
    workers: Option<u16>,
    /// A queue to take jobs from (repeat for several; default: default).
    #[arg(long = "queue", short, value_name = "QUEUE")]
    queues: Vec<String>,
    /// Seconds after this supervisor's last heartbeat before other
    /// supervisors take its jobs over (1 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease: u64,
    /// How often to look for due delayed jobs, retries, lost supervisors
    /// and cancels without being told, in milliseconds (10 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_ms: u64,
    /// On stopping, seconds running jobs get to finish before they are
    /// cut short and given back (0 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    grace: u64,
    /// Hours to keep the history of ended jobs (their events) and of
    /// stopped supervisors before deleting it; 0 keeps it all (0 to
    /// 876000).
    #[arg(long, value_name = "HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(0..=876_000))]
    retention_hours: u64,
    /// Jobs each worker may hold at once (1 to 1024). 1 hands a job only
    /// to an idle worker; more lets a stream of quick jobs flow without a
    /// round trip between jobs (8 about doubles the rate of no-op jobs),
    /// at the cost that an urgent job may wait behind the few a worker
    /// already holds.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    prefetch: u16,
    /// Times a job may be taken over from supervisors lost while running
    /// it and run again; a job lost once more ends crashed (0 to 1000).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    max_reclaims: u32,
    /// How to pick the next job among all the waiting ones in the
    /// database: most urgent first (priority), or at random by each job's
    /// --weight (weighted), every job alike (uniform), or by weight among
    /// the most urgent priority waiting (priority-weighted).
    #[arg(long, value_enum, default_value_t = PolicyArg::Priority)]
    policy: PolicyArg,
    #[command(flatten)]
    worker: WorkerArgs,
    /// Without --worker, serve the stock worker's test handlers too (panic,
    /// abort, segfault, hang, alloc, garbage, spawn_then, chatty, hunt), not
    /// only noop, echo, sleep and fail. They crash, hang, exhaust memory and
    /// read or write files a job names: only for trials, never on a queue
    /// that others can write to.
    #[arg(long = "test-handlers")]
    test_handlers: bool,
}

pub fn run(a: Args) -> Result<i32, String> {
    a.metrics.install()?;
    let workers = a.workers.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let queues: Vec<&str> = if a.queues.is_empty() {
        vec!["default"]
    } else {
        a.queues.iter().map(String::as_str).collect()
    };
    let options = FeedOptions::default()
        .queues(&queues)
        .lease(Duration::from_secs(a.lease))
        .poll(Duration::from_millis(a.poll_ms))
        .max_reclaims(a.max_reclaims)
        .retention((a.retention_hours > 0).then(|| Duration::from_secs(a.retention_hours * 3600)));
    options.check().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // Ctrl-C, SIGTERM and SIGHUP all stop it the same graceful way.
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| format!("cannot handle signals: {e}"))?;
    }
    let cfg = a
        .worker
        .config_serving(workers, a.test_handlers)?
        .eviction(EvictionMode::Drop)
        .prefetch(a.prefetch.into())
        .policy(a.policy.policy());
    super::block_on(async move {
        let store = a.db.connect(4).await?;
        store.migrate().await.map_err(|e| e.to_string())?;
        let sup = Supervisor::start(cfg).map_err(|e| e.to_string())?;
        let feed = Feed::start(&store, &sup, options)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "procvisor: supervisor {} runs jobs of queues {} with {workers} workers (kinds: {}); stop with Ctrl-C",
            feed.supervisor_id(),
            queues.join(", "),
            sup.kinds().collect::<Vec<_>>().join(", ")
        );
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("procvisor: stopping (running jobs get {} s)", a.grace);
        let stats = feed
            .stop(Duration::from_secs(a.grace))
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "procvisor: stopped: {} jobs claimed, {} endings written, {} stale, {} reclaimed from others",
            stats.claimed, stats.written, stats.stale, stats.reclaimed
        );
        Ok(0)
    })?
}
