//! The worker's serving loop: handshake, then run jobs one at a time.
//!
//! The main thread reads the jobs channel itself and runs handlers, so a job
//! costs no hand-off between threads. A control thread reads the control
//! channel and flags cancels at once, even while a handler runs. A heartbeat
//! thread says "alive" every interval. When the supervisor goes away the
//! worker exits.
//!
//! Results are sent as soon as a job ends, except that when more jobs are
//! already waiting in this worker the results of quick jobs are gathered into
//! one frame (at most [`BATCH_MAX`] results or [`BATCH_WINDOW`] of time).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcSender};
use ipc_channel::TryRecvError;

use super::{JobContext, Worker};
use crate::wire::spin::{recv_spinning, SPIN_ENV};
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

/// Cancel bookkeeping shared by the control and the main thread.
#[derive(Default)]
struct Cancels {
    current: Option<(JobId, Arc<AtomicBool>)>,
    pending: HashSet<JobId>,
}

/// The channels a worker holds after its handshake.
struct Channels {
    link: Link,
    jobs: IpcBytesReceiver,
    control: IpcBytesReceiver,
}

impl Worker {
    /// Serve the supervisor named in the environment until it says shut down
    /// (or goes away).
    pub fn serve(self) -> Result<(), ServeError> {
        let name = std::env::var(SERVER_ENV).map_err(|_| ServeError::NotAWorker)?;
        crate::wire::spin::tune_allocator();
        let env_u64 = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
        let heartbeat = env_u64(HEARTBEAT_ENV)
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(1));
        let spin = Duration::from_micros(env_u64(SPIN_ENV).unwrap_or(0));
        let handshake_error = |reason: String| ServeError::Handshake {
            name: name.clone(),
            reason,
        };
        let Channels {
            link,
            jobs,
            control,
        } = handshake(&name, self.kinds()).map_err(handshake_error)?;
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
        self.job_loop(&link, &jobs, &cancels, spin);
        Ok(())
    }

    fn job_loop(
        &self,
        link: &Arc<Link>,
        jobs: &IpcBytesReceiver,
        cancels: &Mutex<Cancels>,
        spin: Duration,
    ) {
        let mut queue: VecDeque<ToWorker> = VecDeque::new();
        let mut pending: Vec<FromWorker> = Vec::new();
        let mut first_pending = Instant::now();
        loop {
            if queue.is_empty() {
                let bytes = if pending.is_empty() {
                    match recv_spinning(jobs, spin) {
                        Ok(b) => b,
                        Err(_) => supervisor_gone(),
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(b) => b,
                        Err(TryRecvError::Empty) => {
                            link.send(&pending);
                            pending.clear();
                            continue;
                        }
                        Err(TryRecvError::IpcError(_)) => supervisor_gone(),
                    }
                };
                queue.extend(decode_or_exit(&bytes));
                continue;
            }
            let run = match queue.pop_front() {
                Some(ToWorker::Run(run)) => run,
                Some(ToWorker::Cancel(job)) => {
                    lock(cancels).pending.insert(job);
                    continue;
                }
                Some(ToWorker::Shutdown) | None => break,
            };
            let result = self.run_one(&run, link, cancels);
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

fn handshake(name: &str, kinds: Vec<String>) -> Result<Channels, String> {
    let server: IpcSender<Handshake> =
        IpcSender::connect(name.to_string()).map_err(|e| format!("connect: {e}"))?;
    let (to_worker, jobs) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    let (control_tx, control) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    let (to_supervisor, from_worker) = ipc::bytes_channel().map_err(|e| e.to_string())?;
    server
        .send(Handshake::Hello(Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
            kinds,
            to_worker,
            control: control_tx,
            from_worker,
        }))
        .map_err(|e| format!("send hello: {e}"))?;
    Ok(Channels {
        link: Link {
            tx: Mutex::new((to_supervisor, Vec::with_capacity(256))),
        },
        jobs,
        control,
    })
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
