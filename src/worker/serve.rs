//! The worker's serving loop: handshake, then run jobs one at a time.
//!
//! Three threads: the main thread runs handlers; a reader thread receives
//! frames from the supervisor (queuing runs for the main thread, flagging
//! cancels at once); a heartbeat thread says "alive" every interval, even
//! while a handler runs. When the supervisor goes away the worker exits.
//!
//! Results are sent as soon as a job ends, except that when more jobs are
//! already waiting in this worker the results of quick jobs are gathered into
//! one frame (at most [`BATCH_MAX`] results or [`BATCH_WINDOW`] of time).

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcSender};

use super::{JobContext, Worker};
use crate::wire::{
    self, FromWorker, Handshake, Hello, JobId, JobResult, Run, ToWorker, HEARTBEAT_ENV,
    PROTOCOL_VERSION, SERVER_ENV,
};

/// Most results gathered into one frame.
const BATCH_MAX: usize = 64;
/// Longest a finished job's result waits for company.
const BATCH_WINDOW: Duration = Duration::from_micros(200);

/// Why a worker could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Not started by a supervisor.
    #[error("{SERVER_ENV} is not set: this process was not started by a procvisor supervisor (run it with --once KIND JSON to try a job by hand)")]
    NotAWorker,
    /// The handshake failed.
    #[error("could not reach the supervisor at {name:?}: {reason}")]
    Handshake {
        /// The server name from the environment.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

/// The worker's end of the channel to the supervisor, shared by the threads.
pub(crate) struct Link {
    tx: Mutex<(IpcBytesSender, Vec<u8>)>,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, (IpcBytesSender, Vec<u8>)> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send a frame; if the supervisor is gone, there is nobody to work for:
    /// exit.
    pub(crate) fn send(&self, messages: &[FromWorker]) {
        let mut guard = self.lock();
        let (tx, buf) = &mut *guard;
        wire::encode_frame(messages, buf);
        if tx.send(buf).is_err() {
            supervisor_gone();
        }
    }

    pub(crate) fn send_raw(&self, bytes: &[u8]) {
        if self.lock().0.send(bytes).is_err() {
            supervisor_gone();
        }
    }
}

fn supervisor_gone() -> ! {
    tracing::debug!("the supervisor went away; exiting");
    std::process::exit(0)
}

/// What the reader thread hands the main thread.
enum Local {
    Run(Run),
    Shutdown,
}

/// Cancel bookkeeping shared by the reader and the main thread.
#[derive(Default)]
struct Cancels {
    current: Option<(JobId, Arc<AtomicBool>)>,
    pending: HashSet<JobId>,
}

impl Worker {
    /// Serve the supervisor named in the environment until it says shut down
    /// (or goes away).
    pub fn serve(self) -> Result<(), ServeError> {
        let name = std::env::var(SERVER_ENV).map_err(|_| ServeError::NotAWorker)?;
        let heartbeat = std::env::var(HEARTBEAT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(1));
        let (link, rx) = handshake(&name, self.kinds()).map_err(|reason| ServeError::Handshake {
            name: name.clone(),
            reason,
        })?;
        let link = Arc::new(link);
        let cancels = Arc::new(Mutex::new(Cancels::default()));
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        {
            let cancels = cancels.clone();
            std::thread::Builder::new()
                .name("procvisor-reader".into())
                .spawn(move || read_loop(rx, jobs_tx, cancels))
                .map_err(|e| ServeError::Handshake {
                    name: name.clone(),
                    reason: format!("cannot start the reader thread: {e}"),
                })?;
        }
        {
            let link = link.clone();
            let _ = std::thread::Builder::new()
                .name("procvisor-heartbeat".into())
                .spawn(move || loop {
                    std::thread::sleep(heartbeat);
                    link.send(&[FromWorker::Heartbeat]);
                });
        }
        self.job_loop(&link, &jobs_rx, &cancels);
        Ok(())
    }

    fn job_loop(&self, link: &Arc<Link>, jobs: &Receiver<Local>, cancels: &Mutex<Cancels>) {
        let mut pending: Vec<FromWorker> = Vec::new();
        let mut first_pending = Instant::now();
        loop {
            let next = if pending.is_empty() {
                jobs.recv().ok()
            } else {
                match jobs.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => {
                        link.send(&pending);
                        pending.clear();
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            let run = match next {
                Some(Local::Run(run)) => run,
                Some(Local::Shutdown) | None => break,
            };
            let ctx = JobContext::new(run.job, run.attempt, Some(link.clone()));
            let skip = {
                let mut c = cancels.lock().unwrap_or_else(|p| p.into_inner());
                let skip = c.pending.remove(&run.job);
                if !skip {
                    c.current = Some((run.job, ctx.cancel_flag()));
                }
                skip
            };
            let result = if skip {
                JobResult::Cancelled
            } else {
                let _span = tracing::debug_span!("job", id = run.job, kind = %run.kind, attempt = run.attempt).entered();
                let r = self.run_job(&run.kind, &run.payload, &ctx);
                cancels.lock().unwrap_or_else(|p| p.into_inner()).current = None;
                r
            };
            if pending.is_empty() {
                first_pending = Instant::now();
            }
            pending.push(FromWorker::Finished {
                job: run.job,
                result,
            });
            if pending.len() >= BATCH_MAX || first_pending.elapsed() >= BATCH_WINDOW {
                link.send(&pending);
                pending.clear();
            }
        }
        if !pending.is_empty() {
            link.send(&pending);
        }
    }
}

fn handshake(name: &str, kinds: Vec<String>) -> Result<(Link, IpcBytesReceiver), String> {
    let server: IpcSender<Handshake> =
        IpcSender::connect(name.to_string()).map_err(|e| format!("connect: {e}"))?;
    let (to_worker, from_supervisor) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    let (to_supervisor, from_worker) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    server
        .send(Handshake::Hello(Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
            kinds,
            to_worker,
            from_worker,
        }))
        .map_err(|e| format!("send hello: {e}"))?;
    Ok((
        Link {
            tx: Mutex::new((to_supervisor, Vec::with_capacity(256))),
        },
        from_supervisor,
    ))
}

fn read_loop(rx: IpcBytesReceiver, jobs: Sender<Local>, cancels: Arc<Mutex<Cancels>>) {
    loop {
        let bytes = match rx.recv() {
            Ok(b) => b,
            Err(_) => supervisor_gone(),
        };
        let frame: Vec<ToWorker> = match wire::decode_frame(&bytes) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("procvisor worker: the supervisor sent an {e}; exiting");
                std::process::exit(3);
            }
        };
        for msg in frame {
            match msg {
                ToWorker::Run(run) => {
                    let _ = jobs.send(Local::Run(run));
                }
                ToWorker::Cancel(job) => {
                    let mut c = cancels.lock().unwrap_or_else(|p| p.into_inner());
                    match &c.current {
                        Some((id, flag)) if *id == job => {
                            flag.store(true, std::sync::atomic::Ordering::Relaxed)
                        }
                        _ => {
                            c.pending.insert(job);
                        }
                    }
                }
                ToWorker::Shutdown => {
                    let _ = jobs.send(Local::Shutdown);
                }
            }
        }
    }
}
