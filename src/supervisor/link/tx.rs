//! Sending frames to one worker: small frames straight from the actor (the
//! fast path), large ones through a writer thread so that a worker that
//! stops reading never blocks the actor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ipc_channel::ipc::{IpcBytesSender, IpcSender};

use crate::wire::Handshake;

/// Frames up to this size are written straight from the actor; a worker can
/// hold `prefetch` of them in its socket buffer without blocking the writer.
const DIRECT_MAX: usize = 16 << 10;

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

    /// Send a frame, in order with the frames sent before. Returns false if
    /// the frame certainly did not reach the worker (it is gone: its exit
    /// will be noticed on its own); true if it was written, or handed to
    /// the writer thread.
    pub(crate) fn send(&mut self, frame: &[u8]) -> bool {
        let queued = self
            .writer
            .as_ref()
            .map(|(_, n)| n.load(Ordering::Acquire))
            .unwrap_or(0);
        if frame.len() <= DIRECT_MAX && queued == 0 {
            return self.tx.send(frame).is_ok();
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
        true
    }
}

/// Unblock a reader thread still waiting for a handshake that will never
/// come (its worker died first): connect to its server and say so.
pub(crate) fn abandon_handshake(server: &str) {
    if let Ok(tx) = IpcSender::<Handshake>::connect(server.to_string()) {
        let _ = tx.send(Handshake::Abandon);
    }
}
