//! What an application holds: a cloneable, `Send + Sync` [`Supervisor`]
//! handle. [`Supervisor::submit`] validates a [`Job`] and returns a
//! [`JobHandle`] to await (or block on) its outcome, ask its state, or cancel
//! it.
//!
//! The supervisor actor runs on an actix system of its own, on a thread of
//! its own, so the handle works the same from a plain `fn main`, a tokio
//! application and an actix one (actix's systems are per thread).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::sched::core::MAX_DELAY;
use crate::sched::{weight_units, Demand, LEAST_URGENT};
use crate::supervisor::actor::SupervisorActor;
use crate::supervisor::config::ConfigError;
use crate::supervisor::protocol::{
    Admission, AdmitError, GetDemand, GetJob, GetSnapshot, JobRecord, Shutdown, Submit,
};
use crate::supervisor::target::{JobSink, Target};
use crate::supervisor::{Config, JobState, Shared, Snapshot};
use crate::wire::{JobId, PayloadError};

mod job;

pub use job::{Job, JobHandle, DEFAULT_PRIORITY};

/// Why a supervisor did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The supervisor thread could not be created.
    #[error("cannot start the supervisor thread: {0}")]
    Thread(std::io::Error),
    /// The workers could not be started; the message says why and what to do.
    #[error("{0}")]
    Workers(String),
    /// The supervisor thread ended during start-up.
    #[error("the supervisor thread ended during start-up (see the log above)")]
    Died,
    /// A setting is out of its range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// This process is a worker: starting a supervisor here would start
    /// workers that start supervisors, without end.
    #[error("this process was started as a procvisor worker, so it may not start a supervisor (its workers would do the same, without end): call Worker::run_if_worker() first thing in main, before Supervisor::start; in a #[test], point Config at a worker binary instead of the test executable (WorkerCommand::new(env!(\"CARGO_BIN_EXE_your-worker\")))")]
    InsideWorker,
}

/// Why a job was refused at submit. Nothing was queued; other jobs are
/// unaffected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// No worker serves this kind.
    #[error("unknown job kind {kind:?}: the workers serve {known:?}; register a handler for it in the worker, or fix the name")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The kinds the workers serve.
        known: Vec<String>,
    },
    /// Priority outside 0..=10.
    #[error("priority {0} is out of range: use 0 (most urgent) to 10 (least urgent)")]
    Priority(u8),
    /// A timeout of zero.
    #[error(
        "a timeout of zero would kill the job before it starts: give a positive timeout, or none"
    )]
    ZeroTimeout,
    /// The payload is over the configured limit.
    #[error("the payload is {size} bytes, over the limit of {limit} bytes: send a reference (a path, a key) instead, or raise Config::max_payload")]
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload could not be encoded.
    #[error("the payload could not be encoded: {0}")]
    BadPayload(PayloadError),
    /// The supervisor is shutting down or stopped.
    #[error("the supervisor is shutting down and accepts no new jobs")]
    ShuttingDown,
    /// The supervisor gave up.
    #[error("the supervisor has failed and accepts no new jobs: {0}")]
    Failed(String),
    /// A weight that is not a positive number up to 1,000,000.
    #[error("weight {0} is out of range: use a positive number up to 1000000 (default 1)")]
    Weight(f64),
    /// The queue is full (`try_submit`).
    #[error("the queue is full ({capacity} jobs waiting): retry later, use submit to wait for room, or raise Config::capacity")]
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// A typed job whose input or result type is not the handler's.
    #[error("the job of kind {kind:?} takes {} and returns {}, but the workers' handler takes {} and returns {}: submit the handler's types (share them through a common crate), or send JSON with Job::json", job.0, job.1, handler.0, handler.1)]
    TypeMismatch {
        /// The kind.
        kind: String,
        /// The job's input and result type names.
        job: (String, String),
        /// The handler's input and output type names.
        handler: (String, String),
    },
    /// A timeout over the longest accepted (a day).
    #[error("a timeout of {0:?} is too long: use at most a day, or no timeout")]
    Timeout(Duration),
    /// A retry policy out of range.
    #[error("the job's retry policy is out of range: {0}")]
    Retry(String),
    /// The queue stayed full for as long as `submit_timeout` would wait.
    #[error("the queue stayed full ({capacity} jobs waiting) for {waited:?}: the job was dropped; retry later or raise Config::capacity")]
    QueueFullFor {
        /// The configured capacity.
        capacity: usize,
        /// How long the submit waited.
        waited: Duration,
    },
}

/// How a submit meets a full bounded queue.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Try,
    Wait(Option<Duration>),
}

struct Inner {
    bounded: bool,
    addr: Addr<SupervisorActor>,
    shared: Arc<Shared>,
    /// The kinds the workers serve, with their handlers' type names.
    kinds: BTreeMap<String, Option<(String, String)>>,
    next_id: AtomicU64,
    max_payload: usize,
    default_timeout: Option<Duration>,
    spin: Duration,
    policy: crate::Policy,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A handle to a running supervisor: cheap to clone, `Send + Sync`. When the
/// last clone is dropped the supervisor shuts down (running jobs are
/// cancelled) and no worker process remains.
///
/// ```no_run
/// use std::time::Duration;
/// use procvisor::{Config, Job, Supervisor, WorkerCommand};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two worker processes running the program `my-worker`.
/// let sup = Supervisor::start(Config::new(WorkerCommand::new("my-worker")).workers(2))?;
/// let job = sup.submit(Job::json("resize", &serde_json::json!({"path": "a.png"})))?;
/// let result = job.wait().into_result()?; // the handler's JSON result
/// println!("{result}");
/// sup.shutdown_blocking(Duration::from_secs(5));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("kinds", &self.inner.kinds)
            .finish()
    }
}

impl Supervisor {
    /// Start a supervisor and its workers; returns once every worker has
    /// connected (or with an error saying why they could not).
    pub fn start(config: Config) -> Result<Supervisor, StartError> {
        if crate::worker::is_worker() {
            return Err(StartError::InsideWorker);
        }
        config.check()?;
        if config.tune_allocator {
            crate::wire::spin::tune_allocator();
        }
        let shared = Arc::new(Shared::new(config.event_buffer));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let max_payload = config.max_payload;
        let default_timeout = config.default_timeout;
        let spin = config.spin;
        let policy = config.core.policy;
        let bounded = config.core.capacity.is_some();
        let actor_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("procvisor-supervisor".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    let addr = SupervisorActor::new(config, actor_shared, ready_tx).start();
                    let _ = addr_tx.send(addr);
                });
                if let Err(e) = system.run() {
                    tracing::error!("the supervisor's actix system ended with {e}");
                }
            })
            .map_err(StartError::Thread)?;
        let addr = addr_rx.recv().map_err(|_| StartError::Died)?;
        let mut inner = Inner {
            bounded,
            addr,
            shared,
            kinds: BTreeMap::new(),
            next_id: AtomicU64::new(1),
            max_payload,
            default_timeout,
            spin,
            policy,
            thread: Mutex::new(Some(thread)),
        };
        match ready_rx.recv() {
            Ok(Ok(kinds)) => {
                inner.kinds = kinds.into_iter().map(|k| (k.name, k.types)).collect();
                Ok(Supervisor {
                    inner: Arc::new(inner),
                })
            }
            // Dropping `inner` stops the actor and joins its thread.
            Ok(Err(why)) => Err(StartError::Workers(why)),
            Err(_) => Err(StartError::Died),
        }
    }

    /// How this supervisor picks the next job to run (see
    /// [`Config::policy`]).
    pub fn policy(&self) -> crate::Policy {
        self.inner.policy
    }

    /// The job kinds the workers serve.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.inner.kinds.keys().map(String::as_str)
    }

    /// Validate and queue a job. Errors say what was wrong; a refused job
    /// harms nothing. With a bounded queue (`Config::capacity`) that is full,
    /// this waits for room (use [`try_submit`](Self::try_submit) or
    /// [`submit_timeout`](Self::submit_timeout) not to).
    pub fn submit<R: DeserializeOwned>(&self, job: Job<R>) -> Result<JobHandle<R>, SubmitError> {
        self.submit_with(job, Mode::Wait(None))
    }

    /// Like [`submit`](Self::submit), but fail at once with
    /// [`SubmitError::QueueFull`] when a bounded queue is full.
    pub fn try_submit<R: DeserializeOwned>(
        &self,
        job: Job<R>,
    ) -> Result<JobHandle<R>, SubmitError> {
        self.submit_with(job, Mode::Try)
    }

    /// Like [`submit`](Self::submit), but wait at most `wait` for room, then
    /// fail with [`SubmitError::QueueFullFor`].
    pub fn submit_timeout<R: DeserializeOwned>(
        &self,
        job: Job<R>,
        wait: Duration,
    ) -> Result<JobHandle<R>, SubmitError> {
        self.submit_with(job, Mode::Wait(Some(wait)))
    }

    /// [`submit`](Self::submit) for async code: waits for room without
    /// blocking the thread.
    pub async fn submit_async<R: DeserializeOwned>(
        &self,
        job: Job<R>,
    ) -> Result<JobHandle<R>, SubmitError> {
        let (handle, ack) = self.enqueue(job, Mode::Wait(None))?;
        match ack {
            Some(ack) => self.admitted(ack.await).map(|()| handle),
            None => Ok(handle),
        }
    }

    /// Submit a job for a job source other than this handle: its one
    /// report goes to `sink` with `token` (see [`JobSink`]), decided and
    /// routed exactly as for [`submit`](Self::submit). With a bounded queue
    /// that is full, this fails at once ([`SubmitError::QueueFull`]): a
    /// source asks [`demand`](Self::demand) how much to feed.
    pub fn submit_for<R: DeserializeOwned>(
        &self,
        job: Job<R>,
        sink: Arc<dyn JobSink>,
        token: u64,
    ) -> Result<JobId, SubmitError> {
        let target = Target::Sink { sink, token };
        let (id, _, ack) = self.enqueue_to(job, Mode::Try, target)?;
        if let Some(ack) = ack {
            self.admitted(futures_executor::block_on(ack))?;
        }
        Ok(id)
    }

    /// How much work the supervisor wants from a job source now: jobs its
    /// workers could take at once beyond those queued, and the priority an
    /// arriving job must beat to evict a running one.
    pub async fn demand(&self) -> Demand {
        self.inner.addr.send(GetDemand).await.unwrap_or(Demand {
            free: 0,
            idle: 0,
            evict_above: None,
            waiting: 0,
        })
    }

    fn submit_with<R: DeserializeOwned>(
        &self,
        job: Job<R>,
        mode: Mode,
    ) -> Result<JobHandle<R>, SubmitError> {
        let (handle, ack) = self.enqueue(job, mode)?;
        match ack {
            Some(ack) => self
                .admitted(futures_executor::block_on(ack))
                .map(|()| handle),
            None => Ok(handle),
        }
    }

    fn admitted(
        &self,
        ack: Result<Result<(), AdmitError>, oneshot::error::RecvError>,
    ) -> Result<(), SubmitError> {
        match ack {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AdmitError::Full(capacity))) => Err(SubmitError::QueueFull { capacity }),
            Ok(Err(AdmitError::StillFull(capacity, waited))) => {
                Err(SubmitError::QueueFullFor { capacity, waited })
            }
            Ok(Err(AdmitError::Closed(_))) | Err(_) => Err(match self.inner.shared.failed() {
                Some(why) => SubmitError::Failed(why),
                None => SubmitError::ShuttingDown,
            }),
        }
    }

    #[allow(clippy::type_complexity)]
    fn enqueue<R: DeserializeOwned>(
        &self,
        job: Job<R>,
        mode: Mode,
    ) -> Result<
        (
            JobHandle<R>,
            Option<oneshot::Receiver<Result<(), AdmitError>>>,
        ),
        SubmitError,
    > {
        let (tx, rx) = oneshot::channel();
        let (id, kind, ack) = self.enqueue_to(job, mode, Target::Local(tx))?;
        let handle = JobHandle {
            id,
            kind,
            rx,
            addr: self.inner.addr.clone(),
            spin: self.inner.spin,
            _result: PhantomData,
        };
        Ok((handle, ack))
    }

    /// Validate a job and send it to the actor, reporting to `target`;
    /// returns its id and kind and, with a bounded queue, the receiver of
    /// the admission answer.
    #[allow(clippy::type_complexity)]
    fn enqueue_to<R: DeserializeOwned>(
        &self,
        job: Job<R>,
        mode: Mode,
        target: Target,
    ) -> Result<
        (
            JobId,
            String,
            Option<oneshot::Receiver<Result<(), AdmitError>>>,
        ),
        SubmitError,
    > {
        let inner = &self.inner;
        if let Some(why) = inner.shared.failed() {
            return Err(SubmitError::Failed(why));
        }
        if !inner.shared.accepting.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let Some(served) = inner.kinds.get(&job.kind) else {
            return Err(SubmitError::UnknownKind {
                kind: job.kind,
                known: inner.kinds.keys().cloned().collect(),
            });
        };
        if let (Some((input, output)), Some((w_in, w_out))) = (&job.types, served) {
            if input != w_in || output != w_out {
                return Err(SubmitError::TypeMismatch {
                    kind: job.kind.clone(),
                    job: (input.to_string(), output.to_string()),
                    handler: (w_in.clone(), w_out.clone()),
                });
            }
        }
        if job.priority > LEAST_URGENT {
            return Err(SubmitError::Priority(job.priority));
        }
        let weight = weight_units(job.weight).ok_or(SubmitError::Weight(job.weight))?;
        let timeout = job.timeout.or(inner.default_timeout);
        if timeout == Some(Duration::ZERO) {
            return Err(SubmitError::ZeroTimeout);
        }
        if let Some(t) = timeout.filter(|&t| t > MAX_DELAY) {
            return Err(SubmitError::Timeout(t));
        }
        if let Some(retry) = &job.retry {
            retry.check().map_err(SubmitError::Retry)?;
        }
        let payload = job.payload.map_err(SubmitError::BadPayload)?;
        if payload.len() > inner.max_payload {
            return Err(SubmitError::PayloadTooLarge {
                size: payload.len(),
                limit: inner.max_payload,
            });
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (admission, ack) = match (inner.bounded, mode) {
            (false, _) => (Admission::Unbounded, None),
            (true, Mode::Try) => {
                let (a, r) = oneshot::channel();
                (Admission::Try(a), Some(r))
            }
            (true, Mode::Wait(wait)) => {
                let (a, r) = oneshot::channel();
                // A wait too long to represent is a wait without end.
                let until = wait.and_then(|w| Instant::now().checked_add(w));
                (Admission::Wait { until, ack: a }, Some(r))
            }
        };
        inner.addr.do_send(Submit {
            id,
            priority: job.priority,
            timeout,
            weight,
            retry: job.retry.map(Box::new),
            record: JobRecord {
                kind: job.kind.as_str().into(),
                payload,
                target: Some(target),
                progress: None,
                history: Vec::new(),
                queued_at: std::time::Instant::now(),
            },
            admission,
        });
        Ok((id, job.kind, ack))
    }

    /// Where a job is now.
    pub async fn job_state(&self, id: JobId) -> JobState {
        self.inner
            .addr
            .send(GetJob(id))
            .await
            .unwrap_or(JobState::Ended)
    }

    /// Ask for a job to be cancelled (see [`JobHandle::cancel`]).
    pub fn cancel(&self, id: JobId) {
        self.inner
            .addr
            .do_send(crate::supervisor::protocol::Cancel(id));
    }

    /// Start no job at or after `at` (`None` lifts the bound). A job
    /// source that holds its jobs under a lease (the job store's feed does
    /// this) moves the bound forward each time its lease is confirmed, so
    /// that a supervisor that was paused or cut off starts nothing it may
    /// no longer hold. While the bound is passed, queued jobs wait (every
    /// job of this supervisor, whatever its source); running jobs go on.
    pub fn hold_starts_from(&self, at: Option<std::time::Instant>) {
        self.inner
            .addr
            .do_send(crate::supervisor::protocol::HoldStarts(at));
    }

    /// Subscribe to the supervisor's job events from now on: submitted,
    /// started (with the worker's pid), progress, retried, evicted,
    /// requeued, ended (with the outcome). The stream is bounded (see
    /// [`Config::event_buffer`]): a subscriber that falls behind loses the
    /// oldest events and is told how many.
    pub fn events(&self) -> crate::events::Events {
        self.inner.shared.events.subscribe()
    }

    /// A picture of the supervisor: workers, queue, totals.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        self.inner.addr.send(GetSnapshot).await.ok()
    }

    /// [`snapshot`](Self::snapshot), blocking the calling thread. `None` once
    /// the supervisor has stopped.
    pub fn snapshot_blocking(&self) -> Option<Snapshot> {
        futures_executor::block_on(self.snapshot())
    }

    /// Shut down: accept nothing more, cancel queued jobs, give running jobs
    /// `grace` to finish, then kill them; returns when no worker process
    /// remains.
    pub async fn shutdown(&self, grace: Duration) {
        let (done, wait) = oneshot::channel();
        self.inner.shared.accepting.store(false, Ordering::Release);
        self.inner.addr.do_send(Shutdown { grace, done });
        let _ = wait.await;
    }

    /// [`shutdown`](Self::shutdown), blocking the calling thread.
    pub fn shutdown_blocking(&self, grace: Duration) {
        futures_executor::block_on(self.shutdown(grace));
        self.inner.join();
    }
}

impl Inner {
    fn join(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let (done, wait) = oneshot::channel();
        self.shared.accepting.store(false, Ordering::Release);
        self.addr.do_send(Shutdown {
            grace: Duration::ZERO,
            done,
        });
        let _ = futures_executor::block_on(wait);
        self.join();
    }
}
