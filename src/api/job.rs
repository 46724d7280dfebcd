//! A job to submit, and the handle to its outcome.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use actix::Addr;
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::oneshot;

use crate::sched::RetryPolicy;
use crate::supervisor::actor::SupervisorActor;
use crate::supervisor::protocol::{Cancel, GetJob};
use crate::supervisor::{JobState, Report};
use crate::wire::spin::spin_for;
use crate::wire::{JobId, Payload, PayloadError};
use crate::worker::Task;

/// A job to submit: a kind, a payload, a priority, an optional timeout. `R`
/// is the type its result is decoded into.
///
/// ```
/// use std::time::Duration;
/// use procvisor::{Job, RetryPolicy};
///
/// // Untyped: JSON in, JSON out (what the command line sends).
/// let a = Job::json("resize", &serde_json::json!({"path": "a.png", "width": 100}))
///     .priority(0) // 0 is the most urgent, 10 the least
///     .timeout(Duration::from_secs(30))
///     .retry(RetryPolicy::attempts(3, Duration::from_millis(100), Duration::from_secs(5)));
/// // Typed: the input and result types must be the handler's own.
/// let b = Job::<u64>::new("fib", &90u32);
/// assert_eq!((a.kind(), b.kind()), ("resize", "fib"));
/// ```
#[derive(Debug, Clone)]
pub struct Job<R = serde_json::Value> {
    pub(crate) kind: String,
    pub(crate) payload: Result<Payload, PayloadError>,
    pub(crate) priority: u8,
    pub(crate) timeout: Option<Duration>,
    pub(crate) weight: f64,
    pub(crate) retry: Option<RetryPolicy>,
    /// Input and result type names of a typed (postcard) job, checked
    /// against the handler's at submit.
    pub(crate) types: Option<(&'static str, &'static str)>,
    _result: PhantomData<fn() -> R>,
}

/// The default priority: the middle of 0 (most urgent) ..= 10.
pub const DEFAULT_PRIORITY: u8 = 5;

impl<R> Job<R> {
    fn with_payload(kind: &str, payload: Result<Payload, PayloadError>) -> Job<R> {
        Job {
            kind: kind.to_string(),
            payload,
            priority: DEFAULT_PRIORITY,
            timeout: None,
            weight: 1.0,
            retry: None,
            types: None,
            _result: PhantomData,
        }
    }

    /// A job of `kind` whose input is `input`, encoded with postcard. The
    /// input type and `R` must be the handler's own input and output types
    /// (checked by name at submit: postcard is not self-describing).
    pub fn new<I: Serialize + ?Sized>(kind: &str, input: &I) -> Job<R> {
        let mut job = Self::with_payload(kind, Payload::postcard(input));
        job.types = Some((std::any::type_name::<I>(), std::any::type_name::<R>()));
        job
    }

    /// A job of `kind` whose input is `input`, encoded as JSON (the result
    /// comes back as JSON and is decoded into `R`).
    pub fn new_json<I: Serialize + ?Sized>(kind: &str, input: &I) -> Job<R> {
        Self::with_payload(kind, Payload::json(input))
    }

    /// A job with a payload already encoded.
    pub fn with_encoded(kind: &str, payload: Payload) -> Job<R> {
        Self::with_payload(kind, Ok(payload))
    }

    /// Priority 0 (most urgent) to 10 (least); default 5.
    pub fn priority(mut self, priority: u8) -> Job<R> {
        self.priority = priority;
        self
    }

    /// Kill the job's worker if the job runs longer than this (overrides the
    /// supervisor's default timeout).
    pub fn timeout(mut self, timeout: Duration) -> Job<R> {
        self.timeout = Some(timeout);
        self
    }

    /// Weight for the random policies (default 1.0; up to 1,000,000): the job
    /// is drawn with probability weight / total weight.
    pub fn weight(mut self, weight: f64) -> Job<R> {
        self.weight = weight;
        self
    }

    /// Retry this job per `policy` (overrides the supervisor's default).
    pub fn retry(mut self, policy: RetryPolicy) -> Job<R> {
        self.retry = Some(policy);
        self
    }

    /// The job's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

impl<R> Job<R> {
    /// A job for the [`Task`] `task`, under its kind, with its output type.
    pub fn task<T: Task<Output = R>>(task: &T) -> Job<R> {
        Job::new(T::KIND, task)
    }
}

impl Job<serde_json::Value> {
    /// A job whose input is JSON (its result comes back as JSON too).
    pub fn json(kind: &str, input: &serde_json::Value) -> Job<serde_json::Value> {
        Self::with_payload(kind, Payload::json(input))
    }

    /// A job whose input is JSON text (checked to be valid JSON at submit).
    pub fn json_text(kind: &str, input: &str) -> Job<serde_json::Value> {
        Self::with_payload(kind, Payload::json_text(input))
    }
}

/// The handle to a submitted job: await it (or [`wait`](Self::wait) from
/// sync code) for its [`Report`], ask where it is, or cancel it.
///
/// ```no_run
/// # async fn demo(sup: procvisor::Supervisor) -> Result<(), Box<dyn std::error::Error>> {
/// use procvisor::{Job, JobState};
///
/// let job = sup.submit(Job::json("sleep", &serde_json::json!({"secs": 60})))?;
/// if let JobState::Running { pid, elapsed, .. } = job.state().await {
///     println!("running in worker {pid:?} for {elapsed:?}");
/// }
/// job.cancel();
/// let report = job.await; // exactly one report: here, Cancelled
/// println!("{}", report.outcome);
/// # Ok(())
/// # }
/// ```
pub struct JobHandle<R> {
    pub(crate) id: JobId,
    pub(crate) kind: String,
    pub(crate) rx: oneshot::Receiver<Report<Payload>>,
    pub(crate) addr: Addr<SupervisorActor>,
    pub(crate) spin: Duration,
    pub(crate) _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for JobHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobHandle({}, {:?})", self.id, self.kind)
    }
}

impl<R: DeserializeOwned> JobHandle<R> {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Ask for the job to be cancelled. A queued job is removed; a running
    /// one's worker is killed (or told, if the supervisor has a cancel
    /// grace). The outcome is `Cancelled` unless the job ended first.
    pub fn cancel(&self) {
        self.addr.do_send(Cancel(self.id));
    }

    /// Where the job is now.
    pub async fn state(&self) -> JobState {
        self.addr
            .send(GetJob(self.id))
            .await
            .unwrap_or(JobState::Ended)
    }

    /// Where the job is now, blocking the calling thread.
    pub fn state_blocking(&self) -> JobState {
        futures_executor::block_on(self.state())
    }

    /// Block the calling thread until the job ends.
    pub fn wait(mut self) -> Report<R> {
        if let Some(report) = spin_for(self.spin, || self.rx.try_recv().ok()) {
            return report.decode();
        }
        futures_executor::block_on(self.into_future())
    }
}

impl<R: DeserializeOwned> IntoFuture for JobHandle<R> {
    type Output = Report<R>;
    type IntoFuture = Pin<Box<dyn Future<Output = Report<R>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let JobHandle { id, kind, rx, .. } = self;
        Box::pin(async move {
            match rx.await {
                Ok(report) => report.decode(),
                Err(_) => Report::supervisor_lost(id, kind.into()),
            }
        })
    }
}
