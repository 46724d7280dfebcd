//! The threads that connect the supervisor actor to its worker processes.
//!
//! - `spawner`: the thread that forks every worker, and lives as long as the
//!   supervisor (a child's death signal follows the thread that forked it).
//! - `leftovers`: removing handshake folders dead supervisors left behind.
//! - `reader`: one thread per worker that accepts its handshake, reads its
//!   result frames and hands them to the actor as [`LinkEvent`]s, delivering
//!   final results to their targets directly.
//! - `replies`: the targets of the jobs a worker holds, shared by the actor
//!   and the reader (whoever takes a target out reports with it).
//! - `tx`: sending job and control frames to a worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcBytesSender;

use super::outcome::Outcome;
use crate::process::Process;
use crate::sched::SlotId;
use crate::wire::{JobId, Payload, ProtocolError};

#[cfg(any(test, feature = "internals"))]
pub mod fuzzing;
mod leftovers;
mod reader;
mod replies;
mod spawner;
mod tx;

pub(crate) use replies::{Replies, Reply};
pub(crate) use spawner::Spawner;
pub(crate) use tx::{abandon_handshake, WorkerTx};

/// A message from a worker, after the reader thread has seen it.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A job ended.
    Finished {
        /// The job.
        job: JobId,
        /// How, as the worker said.
        how: crate::sched::Finish,
        /// Whether the reader delivered it.
        end: Finish,
        /// When the reader read it (the worker's next job started then).
        at: Instant,
        /// How long the handler ran, as the worker measured.
        run: Duration,
    },
    /// Progress from a running handler.
    Progress {
        job: JobId,
        fraction: f32,
        note: String,
    },
    /// The worker is alive.
    Heartbeat,
    /// The running job was refused memory past the worker's cap; the
    /// worker is dying.
    MemoryLimit,
    /// The worker's resident memory is past the recycling limit.
    MemoryHigh { rss: u64 },
}

/// What the reader thread did with a job's end.
#[derive(Debug)]
pub(crate) enum Finish {
    /// Delivered to its target (a final result); the outcome without its
    /// result, and the job's kind, for the actor's tally.
    Delivered(Outcome<()>, crate::sched::KindId),
    /// Not delivered: the outcome, for the core to decide what it means.
    Pending(Outcome<Payload>),
}

/// Something that happened on a worker's link; `gen` tells workers that
/// reused a slot apart.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// The process was started.
    Spawned {
        slot: SlotId,
        gen: u64,
        process: Process,
        server: String,
    },
    /// The process could not be started.
    SpawnFailed {
        slot: SlotId,
        gen: u64,
        error: String,
    },
    /// The handshake completed.
    Ready {
        slot: SlotId,
        gen: u64,
        pid: u32,
        kinds: Vec<crate::wire::KindInfo>,
        tx: IpcBytesSender,
        control: IpcBytesSender,
    },
    /// The handshake failed (bad version, broken connection).
    HandshakeFailed {
        slot: SlotId,
        gen: u64,
        error: String,
    },
    /// Another process connected to the handshake socket first, without
    /// the secret; it was refused.
    HandshakeTaken { slot: SlotId, gen: u64 },
    /// Messages from the worker.
    Frames {
        slot: SlotId,
        gen: u64,
        messages: Vec<Incoming>,
    },
    /// The worker sent bytes that are not a frame (or too many of them).
    Fault {
        slot: SlotId,
        gen: u64,
        error: ProtocolError,
    },
    /// The worker's end of the results socket closed: every frame it sent
    /// has been handed over.
    Closed { slot: SlotId, gen: u64 },
}

impl actix::Message for LinkEvent {
    type Result = ();
}

/// Where link events go.
pub(crate) type EventSink = Arc<dyn Fn(LinkEvent) + Send + Sync>;

/// Settings passed to every worker and its reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Spin before blocking on a receive.
    pub(crate) spin: Duration,
    /// Largest frame accepted from a worker, in bytes.
    pub(crate) max_frame: usize,
    /// The worker's hard memory cap, in bytes.
    pub(crate) memory_limit: Option<u64>,
    /// The resident memory past which the worker asks to be replaced.
    pub(crate) rss_limit: Option<u64>,
}
