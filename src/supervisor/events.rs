//! The supervisor's live stream of job events, for dashboards, logs and
//! tests: [`Supervisor::events`](crate::Supervisor::events) subscribes.
//!
//! The stream is bounded. Each subscriber has a window of the most recent
//! events (the supervisor's `event_buffer`); one that reads too slowly
//! loses the oldest and is told how many with [`Received::Lagged`] before
//! it gets the next. Memory never grows with a slow reader, and nobody's
//! slowness holds up the supervisor. With no subscriber, no event is built.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use super::outcome::Outcome;
use crate::wire::JobId;

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    /// The job's id.
    pub job: JobId,
    /// The job's kind.
    pub kind: Arc<str>,
    /// When it happened.
    pub at: SystemTime,
    /// What happened.
    pub what: What,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum What {
    /// It was accepted into the queue.
    Submitted {
        /// Its priority (0 is the most urgent).
        priority: u8,
    },
    /// It was handed to a worker process.
    Started {
        /// The worker's process id.
        pid: Option<u32>,
        /// Which attempt (1 = the first).
        attempt: u32,
        /// How long it waited in the queue.
        waited: Duration,
    },
    /// Its handler reported progress.
    Progress {
        /// How far along, 0 to 1.
        fraction: f32,
        /// The handler's note.
        note: Arc<str>,
    },
    /// An attempt ended in a way that is tried again.
    Retried {
        /// The attempt that ended.
        attempt: u32,
        /// How it ended (failed, timed out or crashed).
        ended: Outcome<()>,
        /// When the next attempt is due.
        after: Duration,
    },
    /// It was evicted: its worker is killed to make room for a more
    /// urgent job, and it is put back in the queue (`Requeued` follows).
    /// When the supervisor drops evicted jobs instead, an evicted job ends
    /// (`Ended` with [`Outcome::Evicted`]) and this event is not sent.
    Evicted,
    /// It left its worker without ending and waits in the queue again,
    /// keeping its place: it was evicted, or its worker went away before
    /// starting it.
    Requeued,
    /// It ended, once and for all.
    Ended {
        /// The outcome, without the result (the job's handle has that):
        /// its [`name`](Outcome::name) and, for any but `completed`, the
        /// error or reason.
        outcome: Outcome<()>,
        /// How long its handler ran, if it ran.
        ran_for: Option<Duration>,
    },
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// The next event.
    Event(JobEvent),
    /// This subscriber read too slowly: this many events, the oldest it had
    /// not read, are lost. The next event follows.
    Lagged(u64),
}

/// The sending side, shared by the supervisor's actor and its handles.
#[derive(Debug)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<JobEvent>,
    /// Live subscribers (the supervisor builds no event without one).
    subscribers: Arc<AtomicUsize>,
}

impl EventBus {
    /// A bus whose subscribers each keep up to `buffer` unread events.
    pub(crate) fn new(buffer: usize) -> EventBus {
        EventBus {
            tx: broadcast::channel(buffer.max(1)).0,
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether anybody listens.
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Send an event, built only if anybody listens.
    #[inline]
    pub(crate) fn emit(&self, job: JobId, kind: &str, what: impl FnOnce() -> What) {
        if self.wanted() {
            let _ = self.tx.send(JobEvent {
                job,
                kind: kind.into(),
                at: SystemTime::now(),
                what: what(),
            });
        }
    }

    /// A new subscriber, which sees the events from now on.
    pub(crate) fn subscribe(&self) -> Events {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Events {
            rx: self.tx.subscribe(),
            subscribers: self.subscribers.clone(),
        }
    }
}

/// A subscription to a supervisor's job events, from
/// [`Supervisor::events`](crate::Supervisor::events). Read it with
/// [`next`](Events::next) from async code or
/// [`next_blocking`](Events::next_blocking) from a plain thread; drop it to
/// unsubscribe.
///
/// ```no_run
/// # async fn demo(sup: procvisor::Supervisor) {
/// use procvisor::events::{Received, What};
///
/// let mut events = sup.events();
/// while let Some(received) = events.next().await {
///     match received {
///         Received::Event(e) => {
///             if let What::Ended { outcome, .. } = e.what {
///                 println!("job {} ({}): {outcome}", e.job, e.kind);
///             }
///         }
///         Received::Lagged(n) => eprintln!("too slow: {n} events lost"),
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<JobEvent>,
    subscribers: Arc<AtomicUsize>,
}

impl Events {
    /// The next event, or notice of events lost; `None` once the
    /// supervisor is gone and every event has been read.
    pub async fn next(&mut self) -> Option<Received> {
        match self.rx.recv().await {
            Ok(e) => Some(Received::Event(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Received::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// [`next`](Self::next), blocking the calling thread. Do not call it
    /// from async code (it would block that runtime's thread).
    pub fn next_blocking(&mut self) -> Option<Received> {
        futures_executor::block_on(self.next())
    }

    /// The next event if one is waiting, without waiting: `None` if none
    /// is (or the supervisor is gone).
    pub fn try_next(&mut self) -> Option<Received> {
        match self.rx.try_recv() {
            Ok(e) => Some(Received::Event(e)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Received::Lagged(n)),
            Err(_) => None,
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
