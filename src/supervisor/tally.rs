//! The one place a supervisor counts and tells what happens to its jobs:
//! the totals a [`Snapshot`](super::Snapshot) shows, the metrics a recorder
//! sees and the events subscribers read are all moved here, by the same
//! calls, so they cannot disagree.

use std::sync::Arc;
use std::time::Duration;

use super::events::{EventBus, What};
use super::meters::Meters;
use super::outcome::Outcome;
use super::status::{Counts, Snapshot};
use crate::sched::KindId;
use crate::wire::JobId;

/// A supervisor's totals, metric handles and event stream.
pub(crate) struct Tally {
    counts: Counts,
    meters: Meters,
    events: Arc<EventBus>,
}

impl Tally {
    pub(crate) fn new(events: Arc<EventBus>) -> Tally {
        Tally {
            counts: Counts::default(),
            meters: Meters::new(),
            events,
        }
    }

    /// The totals so far.
    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }

    /// A job was accepted.
    pub(crate) fn submitted(&mut self, job: JobId, kind: KindId, name: &str, priority: u8) {
        self.counts.submitted += 1;
        self.meters.submitted(kind, name);
        self.events.emit(job, name, || What::Submitted { priority });
    }

    /// A job was handed to a worker after waiting this long.
    pub(crate) fn started(
        &mut self,
        job: JobId,
        kind: KindId,
        name: &str,
        waited: Duration,
        pid: Option<u32>,
        attempt: u32,
    ) {
        self.meters.started(kind, name, waited);
        self.events.emit(job, name, || What::Started {
            pid,
            attempt,
            waited,
        });
    }

    /// A running job's handler reported progress.
    pub(crate) fn progress(&self, job: JobId, kind: &str, fraction: f32, note: &str) {
        self.events.emit(job, kind, || What::Progress {
            fraction,
            note: note.into(),
        });
    }

    /// A job ended; its handler ran this long, if it ran.
    pub(crate) fn ended<R>(
        &mut self,
        job: JobId,
        kind: KindId,
        name: &str,
        outcome: &Outcome<R>,
        ran_for: Option<Duration>,
    ) {
        self.counts.record(outcome);
        self.meters.ended(kind, name, outcome, ran_for);
        self.events.emit(job, name, || What::Ended {
            outcome: outcome.without_result(),
            ran_for,
        });
    }

    /// An attempt ended in a way that is tried again, after this long.
    pub(crate) fn retried(
        &mut self,
        job: JobId,
        kind: &str,
        attempt: u32,
        ended: &Outcome<()>,
        after: Duration,
    ) {
        self.counts.retries += 1;
        self.meters.retried();
        self.events.emit(job, kind, || What::Retried {
            attempt,
            ended: ended.clone(),
            after,
        });
    }

    /// A running job was evicted (its worker is being killed).
    pub(crate) fn evicted(&mut self, job: Option<(JobId, &str)>) {
        self.counts.evictions += 1;
        self.meters.evicted();
        if let Some((job, kind)) = job {
            self.events.emit(job, kind, || What::Evicted);
        }
    }

    /// A job left its worker without ending and waits again.
    pub(crate) fn requeued(&self, job: JobId, kind: &str) {
        self.events.emit(job, kind, || What::Requeued);
    }

    /// A worker process was started after the first one of its slot.
    pub(crate) fn restarted(&mut self) {
        self.counts.restarts += 1;
        self.meters.restarted();
    }

    /// Bring the gauges to this picture.
    pub(crate) fn sample(&mut self, s: &Snapshot) {
        self.meters.sample(s);
    }

    /// Take this supervisor out of the gauges.
    pub(crate) fn withdraw(&mut self) {
        self.meters.withdraw();
    }
}
