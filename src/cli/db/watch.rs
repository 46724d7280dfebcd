//! `procvisor events` and `procvisor status`: what happened, and what is
//! there now; as text, or one JSON object per line with `--json`.

use std::time::Duration;

use procvisor::store::{Event, EventCursor};

use super::DbArgs;
use crate::cli::printable;

/// Arguments of `events`.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Only the events of this job.
    #[arg(long)]
    job: Option<i64>,
    /// Keep printing new events as they happen (until interrupted).
    #[arg(long, short)]
    follow: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

fn show(e: &Event, json: bool) {
    if json {
        say!("{}", e.to_json());
        return;
    }
    let detail = match (&e.result, &e.error) {
        (Some(r), _) => printable(&r.to_string()).into_owned(),
        (None, Some(err)) => printable(err).into_owned(),
        (None, None) => String::new(),
    };
    say!(
        "{:>8} job {:<8} {:<16} attempt {} {} {} {}",
        e.id,
        e.job_id,
        e.event,
        e.attempt,
        printable(&e.kind),
        e.supervisor
            .map(|s| format!("supervisor {s}"))
            .unwrap_or_default(),
        detail
    );
}

pub fn events(a: EventsArgs) -> Result<i32, String> {
    super::block_on(async move {
        let store = a.db.connect(1).await?;
        let mut cursor = EventCursor::from_start();
        if let Some(job) = a.job {
            cursor = cursor.only_job(job);
        }
        loop {
            let batch = store
                .next_events(&mut cursor)
                .await
                .map_err(|e| e.to_string())?;
            for e in &batch {
                show(e, a.json);
            }
            if batch.is_empty() {
                if !a.follow {
                    return Ok(0);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })?
}

/// Arguments of `status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    db: DbArgs,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub fn status(a: StatusArgs) -> Result<i32, String> {
    super::block_on_bounded(a.db.db_timeout, async move {
        let store = a.db.connect(1).await?;
        let s = store.status().await.map_err(|e| e.to_string())?;
        if a.json {
            for q in &s.jobs {
                say!(
                    "{}",
                    serde_json::json!({"type": "jobs", "queue": q.queue, "state": q.state, "priority": q.priority, "jobs": q.jobs})
                );
            }
            for v in &s.supervisors {
                say!(
                    "{}",
                    serde_json::json!({"type": "supervisor", "id": v.id, "host": v.host, "pid": v.pid,
                        "queues": v.queues, "workers": v.workers, "running": v.running,
                        "heartbeat_age_secs": v.heartbeat_age.as_secs_f64(), "stopped": v.stopped})
                );
            }
            return Ok(0);
        }
        say!("jobs (queue, state, priority: count)");
        if s.jobs.is_empty() {
            say!("  none waiting or running");
        }
        for q in &s.jobs {
            say!(
                "  {:<12} {:<10} {:>2}: {}",
                printable(&q.queue),
                q.state,
                q.priority,
                q.jobs
            );
        }
        say!("supervisors");
        if s.supervisors.is_empty() {
            say!("  none");
        }
        for v in &s.supervisors {
            say!(
                "  {:>4} {}:{} queues {} workers {} running {} heartbeat {:.1} s ago{}",
                v.id,
                printable(&v.host),
                v.pid,
                v.queues.join(","),
                v.workers,
                v.running,
                v.heartbeat_age.as_secs_f64(),
                if v.stopped { " (stopped)" } else { "" }
            );
        }
        Ok(0)
    })
}
