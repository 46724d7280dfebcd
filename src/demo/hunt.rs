//! The treasure hunt: N files, one of which (chosen at random, seedable)
//! reads `Treasure` on every line, the others `Not a treasure`. Find it
//! sequentially, with threads, with async IO (tokio), and with procvisor
//! worker processes, and compare.
//!
//! Every strategy stops at the first hit (procvisor cancels the chunks still
//! queued or running), unless asked for a full scan, which reads every file
//! and so measures the parallelism honestly, wherever the treasure lies.

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::api::{Job, Supervisor};
use crate::supervisor::Outcome;
use crate::worker::stock::hunt::{file_path, holds_treasure, HuntArgs, HuntFound};

/// Told how many more files a strategy has read.
pub type Progress<'a> = &'a (dyn Fn(usize) + Sync);

pub use super::dataset::DataSet;

/// What one strategy found, and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct HuntReport {
    /// The strategy's name.
    pub strategy: String,
    /// The treasure file's number, if found.
    pub found: Option<usize>,
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Wall time.
    pub wall: Duration,
}

impl HuntReport {
    /// Files read per second.
    pub fn files_per_sec(&self) -> f64 {
        self.files as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn read_file(ds: &DataSet, i: usize) -> Result<Vec<u8>, String> {
    let path = file_path(&ds.dir, i);
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// What a strategy (or one of its threads) has read and found so far.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    found: Option<usize>,
    files: usize,
    bytes: u64,
}

impl Tally {
    /// Count file `i` with contents `data`; true when the treasure is in it.
    fn read(&mut self, i: usize, data: &[u8]) -> bool {
        self.files += 1;
        self.bytes += data.len() as u64;
        let hit = holds_treasure(data);
        if hit && self.found.is_none() {
            self.found = Some(i);
        }
        hit
    }

    fn merge(self, other: Tally) -> Tally {
        Tally {
            found: self.found.or(other.found),
            files: self.files + other.files,
            bytes: self.bytes + other.bytes,
        }
    }

    fn report(self, strategy: String, started: Instant) -> HuntReport {
        HuntReport {
            strategy,
            found: self.found,
            files: self.files,
            bytes: self.bytes,
            wall: started.elapsed(),
        }
    }
}

/// One file after another.
pub fn sequential(
    ds: &DataSet,
    full_scan: bool,
    progress: Progress<'_>,
) -> Result<HuntReport, String> {
    let t = Instant::now();
    let mut tally = Tally::default();
    for i in 0..ds.files {
        let hit = tally.read(i, &read_file(ds, i)?);
        progress(1);
        if hit && !full_scan {
            break;
        }
    }
    Ok(tally.report("sequential".into(), t))
}

/// `n` threads taking files from a shared counter, stopping all at a hit.
pub fn threads(
    ds: &DataSet,
    full_scan: bool,
    n: usize,
    progress: Progress<'_>,
) -> Result<HuntReport, String> {
    let t = Instant::now();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<Result<Tally, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= ds.files {
                            break;
                        }
                        let hit = tally.read(i, &read_file(ds, i)?);
                        progress(1);
                        if hit && !full_scan {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Ok(tally)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    let mut tally = Tally::default();
    for r in results {
        tally = tally.merge(r?);
    }
    Ok(tally.report(format!("threads ({n})"), t))
}

/// Async reads on a tokio runtime, `inflight` at a time; the first hit
/// aborts the rest.
pub fn async_tokio(
    ds: &DataSet,
    full_scan: bool,
    inflight: usize,
    progress: Progress<'_>,
) -> Result<HuntReport, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let t = Instant::now();
    let tally = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut tally = Tally::default();
        let mut next = 0;
        loop {
            while next < ds.files && set.len() < inflight.max(1) {
                let path = file_path(&ds.dir, next);
                let i = next;
                set.spawn(async move {
                    let data = tokio::fs::read(&path).await;
                    (
                        i,
                        data.map_err(|e| format!("cannot read {}: {e}", path.display())),
                    )
                });
                next += 1;
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let (i, data) = done.map_err(|e| format!("a read task failed: {e}"))?;
            let hit = tally.read(i, &data?);
            progress(1);
            if hit && !full_scan {
                set.abort_all();
                break;
            }
        }
        Ok::<_, String>(tally)
    })?;
    Ok(tally.report(format!("async (tokio, {inflight} in flight)"), t))
}

/// Chunks of `chunk` files as `hunt` jobs on `sup`'s worker processes; the
/// first hit cancels every other chunk (queued ones are removed, running
/// ones stop at their next file).
pub fn procvisor(
    sup: &Supervisor,
    ds: &DataSet,
    full_scan: bool,
    chunk: usize,
    progress: Progress<'_>,
) -> Result<HuntReport, String> {
    let chunk = chunk.max(1);
    let t = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let mut set = tokio::task::JoinSet::new();
    let mut ids = Vec::new();
    let _guard = rt.enter();
    for first in (0..ds.files).step_by(chunk) {
        let args = HuntArgs {
            dir: ds.dir.clone(),
            first,
            count: chunk.min(ds.files - first),
            full_scan,
        };
        let h = sup
            .submit(Job::<HuntFound>::new("hunt", &args))
            .map_err(|e| e.to_string())?;
        ids.push(h.id());
        set.spawn(h.into_future());
    }
    let mut tally = Tally::default();
    rt.block_on(async {
        while let Some(done) = set.join_next().await {
            let report = done.map_err(|e| format!("a job task failed: {e}"))?;
            match report.outcome {
                Outcome::Completed(hit) => {
                    let first = tally.found.is_none() && hit.found.is_some();
                    tally = tally.merge(Tally {
                        found: hit.found,
                        files: hit.files,
                        bytes: hit.bytes,
                    });
                    progress(hit.files);
                    if first && !full_scan {
                        for &id in &ids {
                            sup.cancel(id);
                        }
                    }
                }
                Outcome::Cancelled => {}
                other => return Err(format!("a hunt job ended {other}")),
            }
        }
        Ok(())
    })?;
    Ok(tally.report(format!("procvisor ({} chunks of {chunk})", ids.len()), t))
}
