//! The worker's serving loop: handshake, then run jobs one at a time.
//!
//! The main thread reads the jobs channel itself and runs handlers, so a job
//! costs no hand-off between threads. A control thread reads the control
//! channel and flags cancels at once, even while a handler runs. A heartbeat
//! thread says "alive" every interval. When the supervisor goes away the
//! worker exits.
//!
//! Each job's result is written to the supervisor the moment the job ends,
//! before the next job starts, with the run time the worker measured: a
//! result never waits behind the next job, so the supervisor always knows
//! which job a worker is running and since when.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcSender};

use super::{JobContext, Worker};
use crate::wire::bootstrap::{Bootstrap, HANDSHAKE_FD_ENV};
use crate::wire::spin::{recv_spinning, SPIN_ENV};
use crate::wire::stream::{FrameWriter, RESULTS_FD_ENV};
use crate::wire::{
    self, FromWorker, Handshake, Hello, JobId, JobResult, Run, ToWorker, HEARTBEAT_ENV,
    MEMORY_LIMIT_ENV, PROTOCOL_VERSION, RSS_LIMIT_ENV,
};

/// Why a worker could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Not started by a supervisor.
    #[error("{HANDSHAKE_FD_ENV} is not set, or names another parent: this process was not started by a procvisor supervisor (run it with --once KIND JSON to try a job by hand)")]
    NotAWorker,
    /// The handshake failed.
    #[error("could not reach the supervisor at {name:?}: {reason}")]
    Handshake {
        /// Where the worker tried to connect (the handshake server's name,
        /// or the descriptor it should have read the name from).
        name: String,
        /// What went wrong.
        reason: String,
    },
}

/// The worker's end of the results socket, shared by the threads.
pub(crate) struct Link {
    tx: Mutex<FrameWriter>,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, FrameWriter> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a frame; if the supervisor is gone, there is nobody to work for:
    /// exit.
    pub(crate) fn send(&self, messages: &[FromWorker]) {
        if self.lock().send(messages).is_err() {
            supervisor_gone();
        }
    }

    pub(crate) fn send_raw(&self, bytes: &[u8]) {
        if self.lock().send_raw(bytes).is_err() {
            supervisor_gone();
        }
    }
}

fn supervisor_gone() -> ! {
    tracing::debug!("the supervisor went away; exiting");
    std::process::exit(0)
}

/// Cancel bookkeeping shared by the control and the main thread.
#[derive(Default)]
struct Cancels {
    current: Option<(JobId, Arc<AtomicBool>)>,
    pending: HashSet<JobId>,
}

/// The channels a worker holds after its handshake.
struct Channels {
    jobs: IpcBytesReceiver,
    control: IpcBytesReceiver,
}

/// What the supervisor told this worker through its environment.
struct Settings {
    handshake_fd: Option<i32>,
    results_fd: Option<i32>,
    heartbeat: Duration,
    spin: Duration,
    memory_limit: Option<u64>,
    rss_limit: Option<u64>,
}

impl Settings {
    /// Read the settings and take them out of the environment, so that
    /// programs a job starts neither see them nor mistake themselves for
    /// workers. Runs before this process starts any thread.
    fn take_from_env() -> Result<Settings, ServeError> {
        let Some(handshake_fd) = crate::wire::bootstrap::marked() else {
            return Err(ServeError::NotAWorker);
        };
        let num = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
        let fd = |key: &str| num(key).and_then(|fd| i32::try_from(fd).ok());
        let settings = Settings {
            handshake_fd: Some(handshake_fd),
            results_fd: fd(RESULTS_FD_ENV),
            heartbeat: Duration::from_millis(
                num(HEARTBEAT_ENV).unwrap_or(1000).clamp(1, 3_600_000),
            ),
            spin: Duration::from_micros(num(SPIN_ENV).unwrap_or(0).min(1_000_000)),
            memory_limit: num(MEMORY_LIMIT_ENV),
            rss_limit: num(RSS_LIMIT_ENV),
        };
        for key in [
            HANDSHAKE_FD_ENV,
            RESULTS_FD_ENV,
            HEARTBEAT_ENV,
            SPIN_ENV,
            MEMORY_LIMIT_ENV,
            RSS_LIMIT_ENV,
        ] {
            std::env::remove_var(key);
        }
        Ok(settings)
    }
}

impl Worker {
    /// Serve the supervisor named in the environment until it says shut down
    /// (or goes away).
    pub fn serve(self) -> Result<(), ServeError> {
        let Settings {
            handshake_fd,
            results_fd,
            heartbeat,
            spin,
            memory_limit,
            rss_limit,
        } = Settings::take_from_env()?;
        super::mark_serving();
        crate::wire::spin::tune_allocator();
        // Processes the jobs start die with this worker, even if the
        // supervisor is killed; without the guard they would only die
        // when the supervisor sees this worker exit.
        if let Err(e) = super::guard::start() {
            eprintln!("procvisor worker: cannot start the process group's guard: {e}");
        }
        let boot = handshake_fd
            .ok_or_else(|| format!("{HANDSHAKE_FD_ENV} is not a descriptor number"))
            .and_then(Bootstrap::read_inherited)
            .map_err(|reason| ServeError::Handshake {
                name: format!("the handshake pipe ({HANDSHAKE_FD_ENV})"),
                reason,
            })?;
        let handshake_error = |reason: String| ServeError::Handshake {
            name: boot.server.clone(),
            reason,
        };
        let fd = results_fd.ok_or_else(|| {
            handshake_error(format!("{RESULTS_FD_ENV} is not set or not a number"))
        })?;
        let writer = FrameWriter::inherited(fd)
            .map_err(|e| handshake_error(format!("the results socket (fd {fd}): {e}")))?;
        if memory_limit.is_some() {
            super::memory::report_breaches(fd);
        }
        let link = Link {
            tx: Mutex::new(writer),
        };
        let Channels { jobs, control } =
            handshake(&boot, self.kind_infos()).map_err(handshake_error)?;
        let link = Arc::new(link);
        let cancels = Arc::new(Mutex::new(Cancels::default()));
        {
            let cancels = cancels.clone();
            std::thread::Builder::new()
                .name("procvisor-control".into())
                .spawn(move || control_loop(control, cancels))
                .map_err(|e| handshake_error(format!("cannot start the control thread: {e}")))?;
        }
        {
            let link = link.clone();
            std::thread::Builder::new()
                .name("procvisor-heartbeat".into())
                .spawn(move || loop {
                    std::thread::sleep(heartbeat);
                    link.send(&[FromWorker::Heartbeat]);
                })
                .map_err(|e| handshake_error(format!("cannot start the heartbeat thread: {e}")))?;
        }
        self.job_loop(&link, &jobs, &cancels, spin, rss_limit);
        Ok(())
    }

    fn job_loop(
        &self,
        link: &Arc<Link>,
        jobs: &IpcBytesReceiver,
        cancels: &Mutex<Cancels>,
        spin: Duration,
        rss_limit: Option<u64>,
    ) {
        let mut queue: VecDeque<ToWorker> = VecDeque::new();
        let mut asked_out = false;
        loop {
            let run = match queue.pop_front() {
                Some(ToWorker::Run(run)) => run,
                Some(ToWorker::Cancel(job)) => {
                    lock(cancels).pending.insert(job);
                    continue;
                }
                Some(ToWorker::Shutdown) => break,
                None => {
                    match recv_spinning(jobs, spin) {
                        Ok(bytes) => queue.extend(decode_or_exit(&bytes)),
                        Err(_) => supervisor_gone(),
                    }
                    continue;
                }
            };
            let started = Instant::now();
            let result = self.run_one(&run, link, cancels);
            let run_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let finished = FromWorker::Finished {
                job: run.job,
                result,
                run_us,
            };
            // Past the memory limit, say so in the same frame as the
            // result, so that the supervisor sends no job in between.
            let high = match (rss_limit, asked_out) {
                (Some(limit), false) => super::memory::resident_bytes().filter(|&r| r > limit),
                _ => None,
            };
            match high {
                Some(rss) => {
                    asked_out = true;
                    link.send(&[finished, FromWorker::MemoryHigh { rss }]);
                }
                None => link.send(&[finished]),
            }
        }
    }

    fn run_one(&self, run: &Run, link: &Arc<Link>, cancels: &Mutex<Cancels>) -> JobResult {
        let ctx = JobContext::new(run.job, run.attempt, Some(link.clone()));
        {
            let mut c = lock(cancels);
            if c.pending.remove(&run.job) {
                return JobResult::Cancelled;
            }
            c.current = Some((run.job, ctx.cancel_flag()));
        }
        let _span =
            tracing::debug_span!("job", id = run.job, kind = %run.kind, attempt = run.attempt)
                .entered();
        let result = self.run_job(&run.kind, &run.payload, &ctx);
        lock(cancels).current = None;
        result
    }
}

fn lock(c: &Mutex<Cancels>) -> MutexGuard<'_, Cancels> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

fn decode_or_exit(bytes: &[u8]) -> Vec<ToWorker> {
    match wire::decode_frame(bytes) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("procvisor worker: the supervisor sent an {e}; exiting");
            std::process::exit(3);
        }
    }
}

fn handshake(boot: &Bootstrap, kinds: Vec<crate::wire::KindInfo>) -> Result<Channels, String> {
    let server: IpcSender<Handshake> =
        IpcSender::connect(boot.server.clone()).map_err(|e| format!("connect: {e}"))?;
    // Connected: nobody needs the socket's path any more. Removing it (and
    // its private folder) now leaves nothing behind even if the supervisor
    // is killed before it would have.
    forget_server_path(&boot.server);
    let (to_worker, jobs) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    let (control_tx, control) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    server
        .send(Handshake::Hello(Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
            secret: boot.secret,
            kinds,
            to_worker,
            control: control_tx,
        }))
        .map_err(|e| format!("send hello: {e}"))?;
    Ok(Channels { jobs, control })
}

/// Remove the handshake socket at `path` and its folder, if the folder is
/// one the supervisor's server created (a private `.tmp…` folder holding
/// nothing else).
fn forget_server_path(path: &str) {
    let path = std::path::Path::new(path);
    let Some(dir) = path.parent() else { return };
    let ours = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(crate::wire::bootstrap::is_server_folder_name);
    if ours && std::fs::remove_file(path).is_ok() {
        let _ = std::fs::remove_dir(dir);
    }
}

fn control_loop(rx: IpcBytesReceiver, cancels: Arc<Mutex<Cancels>>) {
    loop {
        let bytes = match rx.recv() {
            Ok(b) => b,
            Err(_) => supervisor_gone(),
        };
        for msg in decode_or_exit(&bytes) {
            if let ToWorker::Cancel(job) = msg {
                let mut c = lock(&cancels);
                match &c.current {
                    Some((id, flag)) if *id == job => flag.store(true, Ordering::Relaxed),
                    _ => {
                        c.pending.insert(job);
                    }
                }
            }
        }
    }
}
