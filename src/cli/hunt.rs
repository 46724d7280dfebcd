//! `procvisor hunt`: the treasure hunt, four ways, with a comparison table.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use procvisor::demo::hunt::{self, DataSet, HuntReport, Progress};
use procvisor::Supervisor;

use super::WorkerArgs;

/// Arguments of `hunt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of files (1 to 1000000; the original hunt: 10000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    files: u32,
    /// Lines per file (1 to 100000; the original hunt: 10000).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    lines: u32,
    /// Where the data set lives (default: a folder private to you in the
    /// temp dir, named after its size and seed; reused when it matches).
    /// hunt writes only into a new or empty folder, or one it made before.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Remove the data set (only the files hunt wrote) and stop.
    #[arg(long)]
    clean: bool,
    /// Seed that chooses the treasure file.
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Read every file even after the treasure is found (the honest
    /// parallelism figure, independent of where the treasure lies).
    #[arg(long)]
    full_scan: bool,
    /// Threads, worker processes and tokio threads (1 to 4096; default:
    /// CPUs).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096))]
    workers: Option<u16>,
    /// Files per procvisor job (1 to 1000000; default: enough for 8 jobs
    /// per worker).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    chunk: Option<u32>,
    #[command(flatten)]
    worker: WorkerArgs,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} files ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

pub fn run(a: Args) -> Result<i32, String> {
    let n: usize = a.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let (files, lines) = (a.files as usize, a.lines as usize);
    let dir = match a.dir.clone() {
        Some(d) => d,
        None => DataSet::default_dir(a.files, a.lines, a.seed).map_err(|e| e.to_string())?,
    };
    let _lock = DataSet::lock(&dir).map_err(|e| e.to_string())?;
    if a.clean {
        let n = DataSet::clean(&dir).map_err(|e| e.to_string())?;
        say!("removed the data set in {} ({n} files)", dir.display());
        return Ok(0);
    }
    let pb = bar(a.files as u64, "preparing the data set");
    let (ds, created) =
        DataSet::prepare(&dir, files, lines, a.seed, &|i| pb.set_position(i as u64))
            .map_err(|e| format!("cannot prepare the data set in {}: {e}", dir.display()))?;
    pb.finish_and_clear();
    say!(
        "data set: {} files x {} lines in {} ({}); the treasure is file {}",
        ds.files,
        ds.lines,
        ds.dir.display(),
        if created { "created" } else { "reused" },
        ds.treasure
    );
    // Every strategy must meet the same (warm) page cache: read all files
    // once, untimed, so that whichever runs first is not charged for the disk.
    let pb = bar(a.files as u64, "warming the page cache");
    hunt::sequential(&ds, true, &|k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let sup = Supervisor::start(a.worker.config(n)?.cancel_grace(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let chunk = a
        .chunk
        .map_or_else(|| files.div_ceil(n * 8).max(1), |c| c as usize);
    let with_bar = |name: &str, f: &dyn Fn(Progress<'_>) -> Result<HuntReport, String>| {
        let pb = bar(a.files as u64, name);
        let r = f(&|k| pb.inc(k as u64));
        pb.finish_and_clear();
        r
    };
    let full = a.full_scan;
    let reports = vec![
        with_bar("sequential", &|p| hunt::sequential(&ds, full, p))?,
        with_bar("threads", &|p| hunt::threads(&ds, full, n, p))?,
        with_bar("async (tokio)", &|p| hunt::async_tokio(&ds, full, 64, p))?,
        with_bar("procvisor workers", &|p| {
            hunt::procvisor(&sup, &ds, full, chunk, p)
        })?,
    ];
    sup.shutdown_blocking(Duration::from_secs(1));
    print_table(&reports, full);
    let all_right = reports.iter().all(|r| r.found == Some(ds.treasure));
    if !all_right {
        eprintln!(
            "error: a strategy did not find the treasure (file {})",
            ds.treasure
        );
    }
    Ok(if all_right { 0 } else { 1 })
}

fn print_table(reports: &[HuntReport], full_scan: bool) {
    let base = reports[0].wall.as_secs_f64();
    say!(
        "\ntreasure hunt ({})",
        if full_scan {
            "full scan: every file read"
        } else {
            "stop at the first hit"
        }
    );
    say!(
        "{:<40} {:>10} {:>8} {:>10} {:>12} {:>8}",
        "strategy",
        "found",
        "files",
        "wall",
        "files/s",
        "speedup"
    );
    for r in reports {
        say!(
            "{:<40} {:>10} {:>8} {:>9.3}s {:>12.0} {:>7.2}x",
            r.strategy,
            r.found.map_or("-".to_string(), |f| format!("file {f}")),
            r.files,
            r.wall.as_secs_f64(),
            r.files_per_sec(),
            base / r.wall.as_secs_f64().max(1e-9)
        );
    }
}
