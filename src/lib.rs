#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod api;
pub mod demo;
pub mod process;
pub mod sched;
pub mod supervisor;
pub mod wire;
pub mod worker;

pub use api::{Job, JobHandle, StartError, SubmitError, Supervisor};
pub use sched::EvictionMode;
pub use supervisor::{Config, Crash, JobError, Outcome, Report, WorkerCommand};
pub use wire::{JobId, Payload};
pub use worker::{JobContext, Task, Worker};

/// Install a `tracing` subscriber that logs to stderr, filtered by `RUST_LOG`
/// (default `warn`). Does nothing if one is installed already.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
