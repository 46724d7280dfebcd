//! The threads that connect the supervisor actor to its worker processes.
//!
//! - The *spawner* thread forks every worker. It lives as long as the
//!   supervisor because a child's `PR_SET_PDEATHSIG` fires when the thread
//!   that forked it ends.
//! - One *link* thread per worker accepts the worker's handshake on a
//!   one-shot server, then reads and decodes its frames, several at a time,
//!   and hands them to the actor as [`LinkEvent`]s.
//! - [`WorkerTx`] sends frames to a worker: small frames straight from the
//!   actor (the fast path), large ones through a writer thread so that a
//!   worker that stops reading never blocks the actor.

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender, IpcOneShotServer, IpcSender};

use super::config::WorkerCommand;
use crate::process::Process;
use crate::sched::SlotId;
use crate::wire::{self, FromWorker, Handshake, ProtocolError, HEARTBEAT_ENV, PROTOCOL_VERSION, SERVER_ENV};

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
    SpawnFailed { slot: SlotId, gen: u64, error: String },
    /// The handshake completed.
    Ready {
        slot: SlotId,
        gen: u64,
        pid: u32,
        kinds: Vec<String>,
        tx: IpcBytesSender,
    },
    /// The handshake failed (bad version, broken connection).
    HandshakeFailed { slot: SlotId, gen: u64, error: String },
    /// Messages from the worker.
    Frames {
        slot: SlotId,
        gen: u64,
        messages: Vec<FromWorker>,
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

struct SpawnRequest {
    slot: SlotId,
    gen: u64,
}

/// The spawner thread (see the module docs).
pub(crate) struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    /// Start the spawner thread.
    pub(crate) fn start(cmd: WorkerCommand, heartbeat: Duration, sink: EventSink) -> io::Result<Spawner> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("procvisor-spawner".into())
            .spawn(move || {
                for req in rx {
                    spawn_one(&cmd, heartbeat, &sink, req);
                }
            })?;
        Ok(Spawner {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Ask for a worker in `slot`; the answer comes as link events.
    pub(crate) fn spawn(&self, slot: SlotId, gen: u64) {
        if let Some(tx) = &self.requests {
            let _ = tx.send(SpawnRequest { slot, gen });
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

fn spawn_one(cmd: &WorkerCommand, heartbeat: Duration, sink: &EventSink, req: SpawnRequest) {
    let SpawnRequest { slot, gen } = req;
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
        .spawn(move || link_thread(server, slot, gen, sink));
    if let Err(e) = started {
        tracing::error!(slot, "cannot start a link thread: {e}");
    }
}

fn link_thread(server: IpcOneShotServer<Handshake>, slot: SlotId, gen: u64, sink: EventSink) {
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
    });
    read_frames(hello.from_worker, slot, gen, &sink);
}

fn read_frames(rx: IpcBytesReceiver, slot: SlotId, gen: u64, sink: &EventSink) {
    loop {
        let first = match rx.recv() {
            Ok(bytes) => bytes,
            Err(_) => return sink(LinkEvent::Closed { slot, gen }),
        };
        let mut messages = Vec::new();
        let mut next = Some(first);
        let mut count = 0;
        while let Some(bytes) = next.take() {
            match wire::decode_frame::<FromWorker>(&bytes) {
                Ok(mut m) => messages.append(&mut m),
                Err(error) => {
                    if !messages.is_empty() {
                        sink(LinkEvent::Frames { slot, gen, messages });
                    }
                    return sink(LinkEvent::Fault { slot, gen, error });
                }
            }
            count += 1;
            if count < READ_BATCH {
                next = rx.try_recv().ok();
            }
        }
        sink(LinkEvent::Frames { slot, gen, messages });
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
    writer: Option<(crossbeam_channel::Sender<Vec<u8>>, Arc<AtomicUsize>)>,
}

impl WorkerTx {
    pub(crate) fn new(tx: IpcBytesSender) -> WorkerTx {
        WorkerTx { tx, writer: None }
    }

    /// Send a frame, in order with the frames sent before. Errors (a dead
    /// worker) are ignored: the worker's exit is noticed on its own.
    pub(crate) fn send(&mut self, frame: &[u8]) {
        let queued = self.writer.as_ref().map(|(_, n)| n.load(Ordering::Acquire)).unwrap_or(0);
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
