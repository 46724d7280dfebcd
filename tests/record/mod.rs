//! Supervisors whose workers record what they really did: each start and
//! end of a `record` job, with the worker's pid, its parent (the
//! supervisor) and the time (`examples/recording_worker.rs`). The fault
//! tests read these records, not what the supervisors believe.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The recording worker program (`cargo test` builds the examples).
pub fn recording_worker() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let path = debug.join("examples").join("recording_worker");
    assert!(
        path.exists(),
        "{} is missing: cargo test builds it (examples/recording_worker.rs)",
        path.display()
    );
    path
}

/// A supervisor process, killed when dropped: a failing test leaves no
/// supervisor (and no worker) behind.
pub struct Sup(Option<Child>);

impl Sup {
    pub fn id(&self) -> u32 {
        self.child().id()
    }

    fn child(&self) -> &Child {
        self.0.as_ref().expect("a supervisor not yet given up")
    }

    /// Send it `sig`.
    pub fn signal(&self, sig: i32) {
        super::pg::signal(self.child(), sig);
    }

    /// The process, no longer killed on drop (to stop it gracefully).
    pub fn into_child(mut self) -> Child {
        self.0.take().expect("a supervisor not yet given up")
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SIGCONT first: a stopped process dies of SIGKILL all the
            // same, but its workers are reaped sooner.
            super::pg::signal(&child, libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `procvisor supervise` with these extra arguments, its workers recording
/// to `record` (when given, with the recording worker).
pub fn supervise(url: &str, record: Option<&Path>, args: &[&str]) -> Sup {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_procvisor"));
    cmd.args(["supervise", "--poll-ms", "100", "--grace", "1"])
        .args(args)
        .env("PROCVISOR_DATABASE_URL", url)
        .stdin(Stdio::null());
    if let Some(file) = record {
        cmd.arg("--worker")
            .arg(recording_worker())
            .env("PROCVISOR_RECORD_FILE", file);
    }
    Sup(Some(cmd.spawn().expect("start procvisor supervise")))
}

pub fn kill(sup: Sup) {
    drop(sup);
}

/// One line of a worker's record.
#[derive(Debug, Clone)]
pub struct Mark {
    pub what: String,
    pub tag: i64,
    pub ppid: u32,
    pub at_ms: u128,
}

pub fn marks(file: &Path) -> Vec<Mark> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Mark {
                what: f[0].to_string(),
                tag: f[1].parse().unwrap(),
                ppid: f[3].parse().unwrap(),
                at_ms: f[4].parse().unwrap(),
            }
        })
        .collect()
}

pub async fn until(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// No two runs of one job (by tag) overlapped in time, whichever workers
/// ran them.
pub fn assert_no_two_runs_overlap(all: &[Mark]) {
    let mut runs: BTreeMap<i64, Vec<(u128, u128)>> = BTreeMap::new();
    let mut open: BTreeMap<(i64, u32), u128> = BTreeMap::new();
    for m in all {
        match m.what.as_str() {
            "start" => {
                open.insert((m.tag, m.ppid), m.at_ms);
            }
            _ => {
                if let Some(s) = open.remove(&(m.tag, m.ppid)) {
                    runs.entry(m.tag).or_default().push((s, m.at_ms));
                }
            }
        }
    }
    for (tag, r) in &runs {
        for (i, x) in r.iter().enumerate() {
            for y in &r[i + 1..] {
                let overlap = x.1.min(y.1).saturating_sub(x.0.max(y.0));
                assert!(overlap == 0, "job {tag} ran twice at once: {r:?}");
            }
        }
    }
}
