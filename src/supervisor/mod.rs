//! The supervisor: an actix actor that owns one scheduling core and the
//! worker processes, and the threads and types around it.
//!
//! - [`config`]: how a supervisor is set up.
//! - [`outcome`]: how jobs end, and the reports submitters receive.
//! - [`status`]: snapshots of the supervisor and of one job.
//! - [`target`]: where a job's report goes (a handle, or a job source).
//! - [`events`]: the live stream of job events.
//! - `tally`: the one place jobs are counted, metered (`meters`, through
//!   the `metrics` facade) and told as events.
//! - `protocol`: the messages the API sends to the actor.
//! - `actor`: the actor, a thin driver of the scheduling core; `jobs`
//!   routes every decision of the core; `admission` admits jobs; `pool`
//!   runs the worker processes; `shutdown` ends it all.
//! - `link`: spawner and reader threads, frame sending.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

pub(crate) mod actor;
mod admission;
pub(crate) mod config;
pub mod events;
mod jobs;
mod link;
mod meters;
pub(crate) mod outcome;
mod pool;
pub(crate) mod protocol;
mod shutdown;
pub(crate) mod status;
mod tally;
pub(crate) mod target;

pub use config::ConfigError;
pub use config::{Config, WorkerCommand, STOCK_WORKER};
#[cfg(feature = "internals")]
pub use link::fuzzing;
pub use outcome::{AttemptEnd, Crash, JobError, Outcome, Report};
pub use status::{Counts, JobState, RunningJob, Snapshot, State, WorkerInfo, WorkerPhase};
pub use target::JobSink;

/// State the actor shares with the API handles, read without a round trip.
#[derive(Debug)]
pub(crate) struct Shared {
    /// False once shutdown began.
    pub(crate) accepting: AtomicBool,
    /// Why the supervisor gave up, if it did.
    failed: Mutex<Option<String>>,
    /// Its job events, for subscribers.
    pub(crate) events: Arc<events::EventBus>,
}

impl Shared {
    pub(crate) fn new(event_buffer: usize) -> Shared {
        Shared {
            accepting: AtomicBool::new(true),
            failed: Mutex::new(None),
            events: Arc::new(events::EventBus::new(event_buffer)),
        }
    }

    pub(crate) fn set_failed(&self, why: &str) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    pub(crate) fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
