//! A worker program that writes down, on its own side, when each job
//! starts and ends: the proof a test of the job queue needs that no job
//! started when it should not have, and how long two runs of one job
//! overlapped, whatever the supervisor believes.
//!
//! It serves one kind, `record`, with `{"tag": N, "secs": S}`: it appends
//! `start N PID PPID UNIX_MS` to the file named by the environment
//! variable `PROCVISOR_RECORD_FILE`, sleeps `S` seconds (stopping early
//! when cancelled), then appends `end N PID PPID UNIX_MS` (`cancelled`
//! instead of `end` when it stopped early). Each line is one `write` to a
//! file opened for appending, so lines of many workers never mix.
//!
//! Built by `cargo test` (examples are), run by a supervisor as its worker:
//! `procvisor supervise --worker target/debug/examples/recording_worker`.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use procvisor::{JobContext, Worker};
use serde::Deserialize;

#[derive(Deserialize)]
struct Record {
    tag: i64,
    #[serde(default)]
    secs: f64,
}

fn note(what: &str, tag: i64) -> Result<(), String> {
    let path = std::env::var_os("PROCVISOR_RECORD_FILE")
        .ok_or("PROCVISOR_RECORD_FILE is not set: name the file to record starts and ends in")?;
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis();
    let line = format!(
        "{what} {tag} {} {} {ms}\n",
        std::process::id(),
        std::os::unix::process::parent_id()
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("cannot record in {}: {e}", path.to_string_lossy()))
}

fn record(job: Record, ctx: &JobContext) -> Result<i64, String> {
    if !(0.0..=3600.0).contains(&job.secs) {
        return Err(format!("secs {} is out of range: use 0 to 3600", job.secs));
    }
    note("start", job.tag)?;
    let until = Instant::now() + Duration::from_secs_f64(job.secs);
    while Instant::now() < until {
        if ctx.is_cancelled() {
            note("cancelled", job.tag)?;
            return Err("cancelled".into());
        }
        std::thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
    }
    note("end", job.tag)?;
    Ok(job.tag)
}

fn main() {
    Worker::new().handler("record", record).main()
}
