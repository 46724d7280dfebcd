//! The child side: what runs inside a worker process.
//!
//! A [`Worker`] is a registry of handlers by job kind. A handler is a plain
//! function from a serde input to a serde output (or an error); it is written
//! once and accepts payloads in either codec (postcard from the typed API,
//! JSON from the CLI). The worker runs one job at a time, catches panics and
//! reports them with their message and location, sends heartbeats from a
//! thread of its own, and lets a handler see a cancel request through
//! [`JobContext::is_cancelled`].
//!
//! Entry points:
//! - [`Worker::main`]: the whole `main` of a worker binary (serves a
//!   supervisor when started by one; otherwise a small CLI with `--once`).
//! - [`Worker::run_if_worker`]: for an application that re-executes itself
//!   as its own worker; call it first thing in `main`.
//! - [`Worker::run_once`]: run one job in this process, no supervisor.

use std::collections::HashMap;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::wire::{JobId, JobResult, Payload};

mod cli;
mod guard;
mod memory;
mod panics;
mod serve;
#[cfg(feature = "stock")]
pub mod stock;

pub use serve::ServeError;

/// Set once this process serves a supervisor.
static SERVING: AtomicBool = AtomicBool::new(false);

/// Whether this process is a procvisor worker: it serves a supervisor, or a
/// supervisor started it to (it has the worker's marker, naming its
/// parent, in its environment, whether or not it called `run_if_worker`).
pub(crate) fn is_worker() -> bool {
    SERVING.load(Ordering::Relaxed) || crate::wire::bootstrap::marked().is_some()
}

pub(crate) fn mark_serving() {
    SERVING.store(true, Ordering::Relaxed);
}

/// A job type known at compile time: its kind name and its output type. Used
/// by [`Worker::task`] on the worker side and `Job::task` on the submitting
/// side, so both agree on the kind and the types.
pub trait Task: Serialize + DeserializeOwned {
    /// The kind name the job is registered and submitted under.
    const KIND: &'static str;
    /// What the handler returns.
    type Output: Serialize + DeserializeOwned;
}

/// What a handler sees of the job it runs, besides its input.
pub struct JobContext {
    job: JobId,
    attempt: u32,
    cancelled: Arc<AtomicBool>,
    link: Option<Arc<serve::Link>>,
}

impl JobContext {
    pub(crate) fn new(job: JobId, attempt: u32, link: Option<Arc<serve::Link>>) -> JobContext {
        JobContext {
            job,
            attempt,
            cancelled: Arc::new(AtomicBool::new(false)),
            link,
        }
    }

    /// The job's id.
    pub fn job_id(&self) -> JobId {
        self.job
    }

    /// 1 for the first attempt, 2 for the first retry, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the supervisor asked to cancel this job. A long handler should
    /// check it now and then and return early (with any error) when it is set:
    /// the job then ends as `Cancelled`.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }

    /// Report progress (`fraction` from 0.0 to 1.0, and a note) to the
    /// supervisor. Outside a supervisor it goes to the log.
    pub fn progress(&self, fraction: f32, note: impl Into<String>) {
        let note = note.into();
        match &self.link {
            Some(link) => link.send(&[crate::wire::FromWorker::Progress {
                job: self.job,
                fraction,
                note,
            }]),
            None => tracing::info!(job = self.job, fraction, %note, "progress"),
        }
    }

    /// Write raw bytes to the supervisor channel, bypassing the protocol.
    /// Exists only so the stock `garbage` handler can prove that a corrupt
    /// worker is handled; never use it.
    #[doc(hidden)]
    pub fn send_raw_bytes_for_tests(&self, bytes: &[u8]) {
        if let Some(link) = &self.link {
            link.send_raw(bytes);
        }
    }
}

type RawHandler = dyn Fn(&Payload, &JobContext) -> JobResult + Send + Sync;

/// A registry of handlers by job kind, and the loop that serves them.
///
/// ```no_run
/// use procvisor::{JobContext, Worker};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Resize { path: String, width: u32 }
///
/// fn resize(job: Resize, ctx: &JobContext) -> Result<String, String> {
///     ctx.progress(0.5, "halfway");
///     if ctx.is_cancelled() {
///         return Err("cancelled".into());
///     }
///     Ok(format!("{} resized to {}", job.path, job.width))
/// }
///
/// fn main() {
///     // Serves a supervisor when one started this program; otherwise a
///     // small command line (--once KIND JSON, --list, --help).
///     Worker::new().handler("resize", resize).main()
/// }
/// ```
#[derive(Default, Clone)]
pub struct Worker {
    handlers: HashMap<String, Arc<RawHandler>>,
    /// Input and output type names of the typed handlers.
    types: HashMap<String, (String, String)>,
}

impl Worker {
    /// An empty registry.
    pub fn new() -> Worker {
        Worker::default()
    }

    /// Register `f` for jobs of `kind`: its input is decoded from the job's
    /// payload (postcard or JSON, whichever it came in), its output encoded
    /// back with the same codec. An `Err` ends the job as `Failed` with the
    /// error's text. A kind registered twice keeps the last handler.
    pub fn handler<I, O, E, F>(self, kind: &str, f: F) -> Worker
    where
        I: DeserializeOwned,
        O: Serialize,
        E: Display,
        F: Fn(I, &JobContext) -> Result<O, E> + Send + Sync + 'static,
    {
        let types = (
            std::any::type_name::<I>().to_string(),
            std::any::type_name::<O>().to_string(),
        );
        let worker = self.raw_handler(kind, move |payload, ctx| {
            let input: I = match payload.decode() {
                Ok(i) => i,
                Err(e) => {
                    return JobResult::BadInput(format!(
                        "expected {}: {e}",
                        std::any::type_name::<I>()
                    ))
                }
            };
            match f(input, ctx) {
                Ok(out) => match Payload::encode(payload.codec, &out) {
                    Ok(p) => JobResult::Ok(p),
                    Err(e) => JobResult::Err(format!("the handler's result did not encode: {e}")),
                },
                Err(e) => JobResult::Err(e.to_string()),
            }
        });
        worker.with_types(kind, types)
    }

    fn with_types(mut self, kind: &str, types: (String, String)) -> Worker {
        self.types.insert(kind.to_string(), types);
        self
    }

    /// The kinds with their handlers' type names, for the handshake.
    pub(crate) fn kind_infos(&self) -> Vec<crate::wire::KindInfo> {
        self.kinds()
            .into_iter()
            .map(|name| crate::wire::KindInfo {
                types: self.types.get(&name).cloned(),
                name,
            })
            .collect()
    }

    /// Register a handler for the [`Task`] type `T` under `T::KIND`.
    pub fn task<T, E, F>(self, f: F) -> Worker
    where
        T: Task,
        E: Display,
        F: Fn(T, &JobContext) -> Result<T::Output, E> + Send + Sync + 'static,
    {
        self.handler(T::KIND, f)
    }

    /// Register a handler that sees the payload as it came (bytes and codec)
    /// and produces the job's result itself.
    pub fn raw_handler<F>(mut self, kind: &str, f: F) -> Worker
    where
        F: Fn(&Payload, &JobContext) -> JobResult + Send + Sync + 'static,
    {
        self.handlers.insert(kind.to_string(), Arc::new(f));
        self.types.remove(kind);
        self
    }

    /// The kinds this worker serves, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.handlers.keys().cloned().collect();
        k.sort();
        k
    }

    /// Run one job in this process, without a supervisor. A panic in the
    /// handler is caught and returned as [`JobResult::Panic`].
    pub fn run_once(&self, kind: &str, payload: &Payload) -> JobResult {
        self.run_job(kind, payload, &JobContext::new(0, 1, None))
    }

    pub(crate) fn run_job(&self, kind: &str, payload: &Payload, ctx: &JobContext) -> JobResult {
        let Some(handler) = self.handlers.get(kind) else {
            return JobResult::UnknownKind(format!(
                "this worker has no handler for kind {kind:?}; it serves {:?}",
                self.kinds()
            ));
        };
        panics::install_hook();
        let result = match catch_unwind(AssertUnwindSafe(|| handler(payload, ctx))) {
            Ok(r) => r,
            Err(panic) => JobResult::Panic(panics::describe(panic)),
        };
        match result {
            JobResult::Ok(_) | JobResult::Cancelled => result,
            _ if ctx.is_cancelled() => JobResult::Cancelled,
            _ => result,
        }
    }

    /// If this process was started by a supervisor as a worker, serve it and
    /// exit the process when done; otherwise return at once. Call it first
    /// thing in the `main` of an application that is its own worker.
    pub fn run_if_worker(self) {
        if crate::wire::bootstrap::marked().is_some() {
            crate::init_tracing();
            let code = match self.serve() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("procvisor worker: {e}");
                    2
                }
            };
            std::process::exit(code);
        }
    }

    /// The whole `main` of a worker binary: serves a supervisor when started
    /// by one; otherwise parses the command line (`--once KIND JSON`,
    /// `--list`, `--help`). Never returns.
    pub fn main(self) -> ! {
        self.clone().run_if_worker();
        std::process::exit(cli::standalone(&self))
    }
}
