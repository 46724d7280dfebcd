//! Helpers shared by the integration tests: a supervisor over real worker
//! processes (the `procvisor` binary serving the stock handlers), waiting
//! with a limit, and looking at processes through /proc.
#![allow(dead_code)]

pub mod http;

use std::future::IntoFuture;
use std::path::Path;
use std::time::{Duration, Instant};

use procvisor::JobState;
use procvisor::{Config, JobHandle, Report, Supervisor, WorkerCommand};
use serde::de::DeserializeOwned;

/// The worker program: the `procvisor` binary, which serves the stock
/// handlers when a supervisor starts it.
pub fn worker() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_procvisor"))
}

/// A config with `n` workers of the stock kind.
pub fn config(n: usize) -> Config {
    Config::new(worker()).workers(n)
}

/// Start a supervisor.
pub fn start(cfg: Config) -> Supervisor {
    Supervisor::start(cfg).expect("supervisor starts")
}

/// Wait for a job's report, failing the test after `secs` seconds.
pub fn wait<R: DeserializeOwned + Send + 'static>(h: JobHandle<R>, secs: u64) -> Report<R> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let id = h.id();
    rt.block_on(async move {
        tokio::time::timeout(Duration::from_secs(secs), h.into_future())
            .await
            .unwrap_or_else(|_| panic!("job {id} did not end within {secs} s"))
    })
}

/// Poll `cond` every 5 ms until it holds; false if `limit` passes first.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Wait until the job runs (failing the test after 5 s); its worker's pid.
pub fn running_pid<R: DeserializeOwned>(h: &JobHandle<R>) -> u32 {
    let mut pid = None;
    let ran = eventually(Duration::from_secs(5), || match h.state_blocking() {
        JobState::Running { pid: p, .. } => {
            pid = p;
            true
        }
        _ => false,
    });
    assert!(ran, "job {} never started running", h.id());
    pid.expect("a running job has a worker pid")
}

/// The process's state letter from /proc (R, S, Z, …), or None if there is
/// no such process.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Whether a process is gone from /proc.
pub fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether a process is dead: gone, or a zombie nobody reaped yet.
pub fn dead(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// The children of a process, from /proc (all its threads).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out.sort();
    out
}

/// The pids of the supervisor's ready workers.
pub fn worker_pids(sup: &Supervisor) -> Vec<u32> {
    let snap = sup.snapshot_blocking().expect("supervisor is running");
    let mut pids: Vec<u32> = snap.workers.iter().filter_map(|w| w.pid).collect();
    pids.sort();
    pids
}

/// Wait until the supervisor has `n` ready workers.
pub fn wait_ready(sup: &Supervisor, n: usize) {
    let ok = eventually(Duration::from_secs(10), || {
        sup.snapshot_blocking().is_some_and(|s| {
            s.workers
                .iter()
                .filter(|w| w.phase == procvisor::WorkerPhase::Ready)
                .count()
                == n
        })
    });
    assert!(ok, "workers did not become ready");
}

/// The value of the sample `name{labels}` in Prometheus text, whatever the
/// labels' order.
pub fn prom_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let mut have: Vec<(String, String)> = rest
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').to_string()))
            })
            .collect();
        have.sort();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        (have == want).then(|| value.parse().ok())?
    })
}
