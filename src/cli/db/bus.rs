//! The test scheduler and its producer over the PostgreSQL job queue:
//! `procvisor producer --db` puts the test `sleep` jobs into the queue,
//! and `procvisor test-scheduler --db` is one supervisor of it with the
//! live view. Run several of each on one database: no job is lost when no
//! scheduler runs, none is run by two at once, and every one ends in one
//! recorded outcome (`procvisor events` shows them).

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use procvisor::store::{Feed, FeedOptions, NewJob, Status, Store};
use procvisor::{EvictionMode, Supervisor};
use serde_json::json;

use super::DbArgs;
use crate::cli::test_scheduler::{counts_line, draw, interrupted, ProduceArgs};
use crate::cli::WorkerArgs;

/// Arguments of `producer`.
#[derive(clap::Args, Debug)]
pub struct ProducerArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    produce: ProduceArgs,
    /// The queue to put the jobs in.
    #[arg(long, short, default_value = "default")]
    queue: String,
}

/// `procvisor producer --db`: the test jobs into the store, until Ctrl-C
/// or --duration; prints each job's id, priority and runtime.
pub fn producer(a: ProducerArgs) -> Result<i32, String> {
    NewJob::new("sleep", json!({}))
        .queue(&a.queue)
        .check()
        .map_err(|e| e.to_string())?;
    let stop = interrupted();
    super::block_on(async move {
        let store = a.db.connect(1).await?;
        store.require_schema().await.map_err(|e| e.to_string())?;
        eprintln!(
            "procvisor producer: sleep jobs into queue {}, {}; stop with Ctrl-C",
            a.queue,
            a.produce.describe()
        );
        let started = Instant::now();
        let stop_at = a.produce.duration.map(|d| started + d);
        let mut next_at = started;
        for (produced, job) in a.produce.producer().enumerate() {
            next_at += job.gap;
            loop {
                let now = Instant::now();
                if stop.load(Ordering::SeqCst) || stop_at.is_some_and(|t| now >= t) {
                    eprintln!("procvisor producer: produced {produced} jobs");
                    return Ok(0);
                }
                if now >= next_at {
                    break;
                }
                tokio::time::sleep((next_at - now).min(Duration::from_millis(50))).await;
            }
            let secs = job.runtime.as_secs_f64();
            let new = NewJob::new("sleep", json!({ "secs": secs }))
                .queue(&a.queue)
                .priority(job.priority);
            let id = store.submit(&new).await.map_err(|e| e.to_string())?;
            say!("{id} priority={} secs={secs}", job.priority);
        }
        Ok(0)
    })?
}

/// Waiting jobs in the store by priority, and the supervisors online.
fn store_line(status: &Status) -> String {
    let mut by_priority = [0i64; 11];
    for q in status.jobs.iter().filter(|q| q.state == "available") {
        if let Some(n) = by_priority.get_mut(usize::from(q.priority)) {
            *n += q.jobs;
        }
    }
    let mut out = String::from("waiting in the database by priority: ");
    for (p, n) in by_priority.iter().enumerate() {
        out.push_str(&format!("p{p}:{n} "));
    }
    let online = status.supervisors.iter().filter(|s| !s.stopped).count();
    out.push_str(&format!("  supervisors online: {online}\n"));
    out
}

/// `procvisor test-scheduler --db URL`: one supervisor of the store, with
/// `size` workers and the live view, until Ctrl-C or `--duration`.
pub fn schedule(
    url: &str,
    size: u16,
    timeout: Duration,
    produce: &ProduceArgs,
    worker: &WorkerArgs,
) -> Result<i32, String> {
    let cfg = worker
        .config(size.into())?
        .default_timeout(Some(timeout))
        .eviction(EvictionMode::Drop);
    let stop = interrupted();
    let stop_after = produce.duration;
    super::block_on(async move {
        let store = Store::connect_with(url, 4)
            .await
            .map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        let sup = Supervisor::start(cfg).map_err(|e| e.to_string())?;
        let feed = Feed::start(&store, &sup, FeedOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let live = std::io::stdout().is_terminal();
        let header = format!(
            "procvisor test-scheduler: supervisor {} of the job queue in PostgreSQL, {size} slots, timeout {timeout:?}{}",
            feed.supervisor_id(),
            if live { " (Ctrl-C to stop)" } else { "" }
        );
        say!("{header}");
        let started = Instant::now();
        let mut store_view = String::new();
        let mut next_status = started;
        while !stop.load(Ordering::SeqCst) && stop_after.is_none_or(|d| started.elapsed() < d) {
            if live {
                if Instant::now() >= next_status {
                    if let Ok(status) = store.status().await {
                        store_view = store_line(&status);
                    }
                    next_status = Instant::now() + Duration::from_secs(1);
                }
                if let Some(snap) = sup.snapshot().await {
                    let stats = feed.stats();
                    let footer = format!(
                        "{}{store_view}",
                        counts_line(&snap, &format!("claimed {}", stats.claimed))
                    );
                    let name = |local| {
                        feed.store_id(local)
                            .map_or_else(|| "?".into(), |id| format!("#{id}"))
                    };
                    draw(&header, &snap, &name, &footer, started.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        say!("stopping: running jobs get {timeout:?} to finish; what does not goes back to the queue");
        let before = sup.snapshot().await.map(|s| s.counts).unwrap_or_default();
        let stats = feed.stop(timeout).await.map_err(|e| e.to_string())?;
        say!("\nsummary after {:.1} s:", started.elapsed().as_secs_f64());
        say!("  claimed     {}", stats.claimed);
        say!("  endings written to the database: {} ({} stale, refused because another supervisor had taken the job over)", stats.written, stats.stale);
        say!(
            "  outcomes here before stopping: completed {} timed_out {} crashed {} failed {} cancelled {}; evictions {} (an evicted job goes back to the queue)",
            before.completed,
            before.timed_out,
            before.crashed,
            before.failed,
            before.cancelled,
            before.evictions
        );
        say!(
            "summary: claimed={} written={} stale={} reclaimed={}",
            stats.claimed,
            stats.written,
            stats.stale,
            stats.reclaimed
        );
        Ok(0)
    })?
}
