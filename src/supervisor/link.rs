//! The threads that connect the supervisor actor to its worker processes.
//!
//! - The *spawner* thread forks every worker. It lives as long as the
//!   supervisor because a child's `PR_SET_PDEATHSIG` fires when the thread
//!   that forked it ends.
//! - One *link* thread per worker accepts the worker's handshake on a
//!   one-shot server, then reads and decodes its frames, several at a time,
//!   and hands them to the actor as [`LinkEvent`]s. When a job ends, the link
//!   thread sends its report to the submitter itself, without waiting for
//!   the actor: the actor puts each dispatched job's reply sender in the
//!   worker's [`Replies`] map, and whoever takes it out (the link thread on a
//!   result, or the actor on a timeout, cancel, crash or requeue) is the one
//!   who reports, so every job is reported exactly once.
//! - [`WorkerTx`] sends frames to a worker: small frames straight from the
//!   actor (the fast path), large ones through a writer thread so that a
//!   worker that stops reading never blocks the actor.

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::config::WorkerCommand;
use super::outcome::{AttemptEnd, Outcome, Report};
use crate::process::Process;
use crate::sched::SlotId;
use crate::wire::spin::{recv_spinning, SPIN_ENV};
use crate::wire::{
    self, FromWorker, Handshake, JobId, Payload, ProtocolError, HEARTBEAT_ENV, PROTOCOL_VERSION,
    SERVER_ENV,
};

/// Where a dispatched job's report goes, and what the report says besides
/// the outcome.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) tx: oneshot::Sender<Report<Payload>>,
    pub(crate) kind: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) evictions: u32,
    pub(crate) pid: Option<u32>,
    pub(crate) since: Instant,
    /// How earlier attempts ended.
    pub(crate) history: Vec<AttemptEnd>,
    /// A failure of this attempt is retried: leave it to the actor.
    pub(crate) retry_failed: bool,
}

impl Reply {
    /// Send the report.
    pub(crate) fn send(self, id: JobId, outcome: Outcome<Payload>, ran_for: Option<Duration>) {
        tracing::debug!(job = id, kind = %self.kind, attempt = self.attempt, pid = self.pid, outcome = outcome.name(), ?ran_for, "job ended");
        let _ = self.tx.send(Report {
            id,
            kind: self.kind,
            outcome,
            attempts: self.attempt,
            evictions: self.evictions,
            worker_pid: self.pid,
            ran_for,
            history: self.history,
        });
    }
}

/// The reply senders of the jobs a worker holds (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Replies(Arc<Mutex<FxHashMap<JobId, Reply>>>);

impl Replies {
    pub(crate) fn lock(&self) -> MutexGuard<'_, FxHashMap<JobId, Reply>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a job's reply sender out, if nobody has yet.
    pub(crate) fn take(&self, job: JobId) -> Option<Reply> {
        self.lock().remove(&job)
    }

    /// Take it out to report `outcome`, unless the outcome is a failure that
    /// will be retried (then the actor handles it).
    fn take_to_report(&self, job: JobId, outcome: &Outcome<Payload>) -> Option<Reply> {
        let mut map = self.lock();
        if matches!(outcome, Outcome::Failed(_)) && map.get(&job).is_some_and(|r| r.retry_failed) {
            return None;
        }
        map.remove(&job)
    }
}

/// A message from a worker, after the link thread has seen it.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A job ended.
    Finished {
        /// The job.
        job: JobId,
        /// Whether the link thread reported it.
        end: Finish,
    },
    /// Progress from a running handler.
    Progress {
        job: JobId,
        fraction: f32,
        note: String,
    },
    /// The worker is alive.
    Heartbeat,
}

/// What the link thread did with a job's end.
#[derive(Debug)]
pub(crate) enum Finish {
    /// Reported to the submitter; the outcome, without its result, for the
    /// actor's counts.
    Reported(Outcome<()>),
    /// Not reported (the actor had already taken the reply, or the failure
    /// will be retried): the outcome, for the actor.
    NotReported(Outcome<Payload>),
}

/// Most frames gathered into one event.
const READ_BATCH: usize = 64;

/// Frames up to this size are written straight from the actor; a worker can
/// hold `prefetch` of them in its socket buffer without blocking the writer.
const DIRECT_MAX: usize = 16 << 10;

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
        kinds: Vec<String>,
        tx: IpcBytesSender,
        control: IpcBytesSender,
    },
    /// The handshake failed (bad version, broken connection).
    HandshakeFailed {
        slot: SlotId,
        gen: u64,
        error: String,
    },
    /// Messages from the worker.
    Frames {
        slot: SlotId,
        gen: u64,
        messages: Vec<Incoming>,
    },
    /// The worker sent bytes that are not a frame.
    Fault {
        slot: SlotId,
        gen: u64,
        error: ProtocolError,
    },
    /// The worker's end of the channel closed.
    Closed { slot: SlotId, gen: u64 },
}

impl actix::Message for LinkEvent {
    type Result = ();
}

/// Where link events go.
pub(crate) type EventSink = Arc<dyn Fn(LinkEvent) + Send + Sync>;

/// Timing settings passed to every worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Heartbeat interval.
    pub(crate) heartbeat: Duration,
    /// Spin before blocking on a receive.
    pub(crate) spin: Duration,
}

struct SpawnRequest {
    slot: SlotId,
    gen: u64,
    replies: Replies,
}

/// The spawner thread (see the module docs).
pub(crate) struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    /// Start the spawner thread.
    pub(crate) fn start(
        cmd: WorkerCommand,
        timing: Timing,
        sink: EventSink,
    ) -> io::Result<Spawner> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("procvisor-spawner".into())
            .spawn(move || {
                for req in rx {
                    spawn_one(&cmd, timing, &sink, req);
                }
            })?;
        Ok(Spawner {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Ask for a worker in `slot`; the answer comes as link events. Its link
    /// thread reports the jobs whose replies the actor puts in `replies`.
    pub(crate) fn spawn(&self, slot: SlotId, gen: u64, replies: Replies) {
        if let Some(tx) = &self.requests {
            let _ = tx.send(SpawnRequest { slot, gen, replies });
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn_one(cmd: &WorkerCommand, timing: Timing, sink: &EventSink, req: SpawnRequest) {
    let Timing { heartbeat, spin } = timing;
    let SpawnRequest { slot, gen, replies } = req;
    let (server, name) = match IpcOneShotServer::<Handshake>::new() {
        Ok(s) => s,
        Err(e) => {
            sink(LinkEvent::SpawnFailed {
                slot,
                gen,
                error: format!("cannot create the handshake server: {e}"),
            });
            return;
        }
    };
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .env(SERVER_ENV, &name)
        .env(HEARTBEAT_ENV, heartbeat.as_millis().max(1).to_string())
        .env(SPIN_ENV, spin.as_micros().to_string())
        .stdin(Stdio::null());
    let process = match Process::spawn(&mut command) {
        Ok(p) => p,
        Err(e) => {
            sink(LinkEvent::SpawnFailed {
                slot,
                gen,
                error: format!(
                    "cannot start the worker program {}: {e}; check the path, or build it (cargo build -p procvisor-worker)",
                    cmd.program.display()
                ),
            });
            return;
        }
    };
    sink(LinkEvent::Spawned {
        slot,
        gen,
        process,
        server: name,
    });
    let sink = sink.clone();
    let started = std::thread::Builder::new()
        .name(format!("procvisor-link-{slot}"))
        .spawn(move || link_thread(server, slot, gen, sink, replies, spin));
    if let Err(e) = started {
        tracing::error!(slot, "cannot start a link thread: {e}");
    }
}

fn link_thread(
    server: IpcOneShotServer<Handshake>,
    slot: SlotId,
    gen: u64,
    sink: EventSink,
    replies: Replies,
    spin: Duration,
) {
    let hello = match server.accept() {
        Ok((_, Handshake::Hello(hello))) => hello,
        Ok((_, Handshake::Abandon)) => return,
        Err(e) => {
            sink(LinkEvent::HandshakeFailed {
                slot,
                gen,
                error: format!("the worker's handshake did not decode: {e}"),
            });
            return;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        sink(LinkEvent::HandshakeFailed {
            slot,
            gen,
            error: format!(
                "the worker speaks protocol v{}, this supervisor v{PROTOCOL_VERSION}; rebuild the worker against this procvisor",
                hello.version
            ),
        });
        return;
    }
    sink(LinkEvent::Ready {
        slot,
        gen,
        pid: hello.pid,
        kinds: hello.kinds,
        tx: hello.to_worker,
        control: hello.control,
    });
    read_frames(hello.from_worker, slot, gen, &sink, &replies, spin);
}

fn read_frames(
    rx: IpcBytesReceiver,
    slot: SlotId,
    gen: u64,
    sink: &EventSink,
    replies: &Replies,
    spin: Duration,
) {
    // When the last job ended: the next one started then at the earliest.
    let mut last_end = Instant::now();
    let mut reports = Vec::new();
    loop {
        let first = match recv_spinning(&rx, spin) {
            Ok(bytes) => bytes,
            Err(_) => return sink(LinkEvent::Closed { slot, gen }),
        };
        let mut messages = Vec::new();
        let mut next = Some(first);
        let mut count = 0;
        let mut fault = None;
        while let Some(bytes) = next.take() {
            let frame = match wire::decode_frame::<FromWorker>(&bytes) {
                Ok(frame) => frame,
                Err(error) => {
                    fault = Some(error);
                    break;
                }
            };
            let now = Instant::now();
            for m in frame {
                messages.push(match m {
                    FromWorker::Finished { job, result } => {
                        let outcome = Outcome::from_result(result);
                        let end = match replies.take_to_report(job, &outcome) {
                            Some(reply) => {
                                let ran_for =
                                    now.saturating_duration_since(reply.since.max(last_end));
                                let summary = outcome.without_result();
                                reports.push((reply, job, outcome, ran_for));
                                Finish::Reported(summary)
                            }
                            None => Finish::NotReported(outcome),
                        };
                        last_end = now;
                        Incoming::Finished { job, end }
                    }
                    FromWorker::Progress {
                        job,
                        fraction,
                        note,
                    } => Incoming::Progress {
                        job,
                        fraction,
                        note,
                    },
                    FromWorker::Heartbeat => Incoming::Heartbeat,
                });
            }
            count += 1;
            if count < READ_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // The actor hears first, so that anything a submitter asks after
        // seeing its report already counts the job.
        if !messages.is_empty() {
            sink(LinkEvent::Frames {
                slot,
                gen,
                messages,
            });
        }
        for (reply, job, outcome, ran_for) in reports.drain(..) {
            reply.send(job, outcome, Some(ran_for));
        }
        if let Some(error) = fault {
            return sink(LinkEvent::Fault { slot, gen, error });
        }
    }
}

/// Unblock a link thread still waiting for a handshake that will never come
/// (its worker died first): connect to its server and say so.
pub(crate) fn abandon_handshake(server: &str) {
    if let Ok(tx) = IpcSender::<Handshake>::connect(server.to_string()) {
        let _ = tx.send(Handshake::Abandon);
    }
}

/// Sends frames to one worker (see the module docs).
pub(crate) struct WorkerTx {
    tx: IpcBytesSender,
    control: IpcBytesSender,
    writer: Option<(crossbeam_channel::Sender<Vec<u8>>, Arc<AtomicUsize>)>,
}

impl WorkerTx {
    pub(crate) fn new(tx: IpcBytesSender, control: IpcBytesSender) -> WorkerTx {
        WorkerTx {
            tx,
            control,
            writer: None,
        }
    }

    /// Send a control frame (cancels): always small, read by the worker's
    /// control thread even while a handler runs.
    pub(crate) fn send_control(&self, frame: &[u8]) {
        let _ = self.control.send(frame);
    }

    /// Send a frame, in order with the frames sent before. Errors (a dead
    /// worker) are ignored: the worker's exit is noticed on its own.
    pub(crate) fn send(&mut self, frame: &[u8]) {
        let queued = self
            .writer
            .as_ref()
            .map(|(_, n)| n.load(Ordering::Acquire))
            .unwrap_or(0);
        if frame.len() <= DIRECT_MAX && queued == 0 {
            let _ = self.tx.send(frame);
            return;
        }
        let (tx, n) = self.writer.get_or_insert_with(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
            let n = Arc::new(AtomicUsize::new(0));
            let out = self.tx.clone();
            let count = n.clone();
            let _ = std::thread::Builder::new()
                .name("procvisor-writer".into())
                .spawn(move || {
                    for frame in rx {
                        let _ = out.send(&frame);
                        count.fetch_sub(1, Ordering::Release);
                    }
                });
            (tx, n)
        });
        n.fetch_add(1, Ordering::AcqRel);
        if tx.send(frame.to_vec()).is_err() {
            n.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
