//! `procvisor top`: the job queue in the terminal, redrawn every second:
//! jobs by queue, state and priority; the supervisors with their
//! heartbeats; the longest-running jobs; the latest failures. On a pipe
//! (not a terminal) it prints one picture and exits.

use std::io::IsTerminal;
use std::time::Duration;

use procvisor::store::Store;

use super::DbArgs;
use crate::cli::printable;

/// Arguments of `top`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
    /// Seconds between redraws (0.1 to 3600).
    #[arg(long, default_value = "1", value_parser = every_secs)]
    every: Duration,
    /// Print one picture and exit (as on a pipe).
    #[arg(long)]
    once: bool,
}

/// `--every`: 0.1 to 3600 seconds.
fn every_secs(s: &str) -> Result<Duration, String> {
    let d = crate::cli::num::positive_secs(s)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
        return Err(format!("{s} s: it must be from 0.1 to 3600 seconds"));
    }
    Ok(d)
}

/// The picture, as lines (job text made safe for a terminal).
async fn picture(store: &Store) -> Result<Vec<String>, String> {
    let err = |e: procvisor::store::StoreError| e.to_string();
    let status = store.status().await.map_err(err)?;
    let running = store.running_jobs(10).await.map_err(err)?;
    let failures = store.recent_endings(5, true).await.map_err(err)?;
    let paused = store.paused_queues().await.map_err(err)?;
    let mut out = Vec::new();
    out.push(format!(
        "procvisor top: the job queue at {}",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC")
    ));
    out.push(String::new());
    out.push(format!(
        "{:<16} {:<10} {:>8}  by priority",
        "queue", "state", "jobs"
    ));
    if status.jobs.is_empty() {
        out.push("  (no job waiting or running)".into());
    }
    for row in status.by_queue_state() {
        let by: Vec<String> = row
            .by_priority
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(p, n)| format!("p{p}:{n}"))
            .collect();
        let mark = if paused.iter().any(|p| p == row.queue) {
            " (paused)"
        } else {
            ""
        };
        out.push(format!(
            "{:<16} {:<10} {:>8}  {}{mark}",
            printable(row.queue),
            row.state,
            row.total(),
            by.join(" ")
        ));
    }
    out.push(String::new());
    out.push(format!(
        "{:>6} {:<16} {:>5} {:>7} {:>8}  {}",
        "super", "host", "pid", "workers", "running", "heartbeat"
    ));
    for s in status.supervisors.iter().filter(|s| !s.stopped) {
        out.push(format!(
            "{:>6} {:<16} {:>5} {:>7} {:>8}  {:.1} s ago",
            s.id,
            printable(&s.host),
            s.pid,
            s.workers,
            s.running,
            s.heartbeat_age.as_secs_f64()
        ));
    }
    out.push(String::new());
    out.push(format!(
        "{:>10} {:<16} {:<16} {:>4} {:>7} {:>10}  progress",
        "running", "queue", "kind", "prio", "attempt", "for"
    ));
    for j in &running {
        let progress = j.progress.as_ref().map_or(String::new(), |(f, note)| {
            format!("{:.0} % {}", f * 100.0, printable(note))
        });
        out.push(format!(
            "{:>10} {:<16} {:<16} {:>4} {:>7} {:>9.1}s  {progress}",
            j.id,
            printable(&j.queue),
            printable(&j.kind),
            j.priority,
            j.attempt,
            j.running_for.as_secs_f64()
        ));
    }
    out.push(String::new());
    out.push("latest failures".into());
    for e in &failures {
        out.push(format!(
            "{:>10} {:<16} {:<10} {}",
            e.job_id,
            printable(&e.kind),
            e.event,
            printable(e.error.as_deref().unwrap_or(""))
        ));
    }
    Ok(out)
}

/// The terminal's size (columns, rows), if standard output is one.
fn size() -> Option<(usize, usize)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col.into(), ws.ws_row.into()))
}

/// Run until interrupted (Ctrl-C).
pub fn run(a: Args) -> Result<i32, String> {
    let live = !a.once && std::io::stdout().is_terminal();
    super::block_on(async move {
        let store = a.db.connect(1).await?;
        store.require_schema().await.map_err(|e| e.to_string())?;
        loop {
            let lines = picture(&store).await;
            let lines = match lines {
                Ok(l) => l,
                Err(e) if live => vec![format!("cannot read the job queue (retrying): {e}")],
                Err(e) => return Err(e),
            };
            if !live {
                for l in lines {
                    say!("{l}");
                }
                return Ok(0);
            }
            let (cols, rows) = size().unwrap_or((80, 24));
            let mut screen = String::from("\x1b[H\x1b[2J");
            for l in lines.iter().take(rows.saturating_sub(1)) {
                screen.extend(l.chars().take(cols));
                screen.push_str("\r\n");
            }
            screen.push_str("(Ctrl-C to quit)");
            crate::cli::show(&screen);
            tokio::time::sleep(a.every).await;
        }
    })?
}
