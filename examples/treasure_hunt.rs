//! The treasure hunt through the library: make a data set, then find the
//! treasure with worker processes (this executable is its own worker) and
//! sequentially, and compare. `cargo run --release --example treasure_hunt`;
//! the `procvisor hunt` command does all four strategies with progress bars.

use std::time::Duration;

use procvisor::demo::hunt::{self, DataSet};
use procvisor::{Config, Supervisor, WorkerCommand};

fn main() -> Result<(), String> {
    // Started by the supervisor below: serve the stock handlers (hunt among them).
    procvisor::stock::worker().run_if_worker();

    let dir = DataSet::default_dir(5_000, 1_000, 7).map_err(|e| e.to_string())?;
    let _lock = DataSet::lock(&dir).map_err(|e| e.to_string())?;
    let (ds, _) = DataSet::prepare(&dir, 5_000, 1_000, 7, &|_| {}).map_err(|e| e.to_string())?;
    println!(
        "{} files in {}; the treasure is file {}",
        ds.files,
        dir.display(),
        ds.treasure
    );

    let exe = WorkerCommand::current_exe().map_err(|e| e.to_string())?;
    let sup = Supervisor::start(Config::new(exe).cancel_grace(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    for full_scan in [false, true] {
        let seq = hunt::sequential(&ds, full_scan, &|_| {})?;
        let par = hunt::procvisor(&sup, &ds, full_scan, 250, &|_| {})?;
        for r in [&seq, &par] {
            println!(
                "{:<32} found {:?} after {:>5} files in {:>7.3} s{}",
                r.strategy,
                r.found,
                r.files,
                r.wall.as_secs_f64(),
                if full_scan { " (full scan)" } else { "" }
            );
        }
    }
    sup.shutdown_blocking(Duration::from_secs(1));
    Ok(())
}
