#![doc = include_str!("../README.md")]
#![warn(missing_docs, unreachable_pub)]

mod api;
#[cfg(feature = "dashboard")]
pub mod dashboard;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod demo;
pub mod process;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod sched;
#[cfg(not(feature = "internals"))]
mod sched;
#[cfg(feature = "store")]
pub mod store;
mod supervisor;
mod wire;
mod worker;

pub use api::{Job, JobHandle, StartError, SubmitError, Supervisor, DEFAULT_PRIORITY};
pub use sched::{
    Demand, EvictionMode, Policy, RateLimit, RestartPolicy, RetryPolicy, LEAST_URGENT, MOST_URGENT,
};
pub use supervisor::events;
/// The supervisor's reading of worker bytes, for the fuzz target.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use supervisor::fuzzing;
pub use supervisor::{
    AttemptEnd, Config, ConfigError, Counts, Crash, JobError, JobSink, JobState, Outcome, Report,
    RunningJob, Snapshot, State, WorkerCommand, WorkerInfo, WorkerPhase, STOCK_WORKER,
};
pub use wire::{Codec, JobId, JobResult, Payload, PayloadError};
#[cfg(feature = "stock")]
pub use worker::stock;
pub use worker::{JobContext, ServeError, Task, Worker};

/// Install a `tracing` subscriber that logs to stderr, filtered by `RUST_LOG`
/// (default `error`), coloured only on a terminal without `NO_COLOR`. Does
/// nothing if one is installed already.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub fn init_tracing() {
    use std::io::IsTerminal;
    // The command reports every job's end itself: by default only errors
    // are logged, so nothing is said twice. Colour only on a terminal, and
    // never under NO_COLOR.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Without the command line, the application installs its own subscriber.
#[cfg(not(feature = "cli"))]
pub(crate) fn init_tracing() {}
