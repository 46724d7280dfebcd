//! One reader thread per worker: it accepts the worker's handshake, then
//! reads the worker's result frames, several at a time, and hands them to
//! the actor as link events. A final result (see `replies`) is delivered
//! to its target at once, before the actor hears of it.

use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcOneShotServer;

use super::super::outcome::Outcome;
use super::{EventSink, Finish, Incoming, LinkEvent, Replies};
use crate::sched::SlotId;
use crate::wire::bootstrap::Bootstrap;
use crate::wire::stream::FrameReader;
use crate::wire::{self, FromWorker, Handshake, PROTOCOL_VERSION};

/// Most frames gathered into one event.
const READ_BATCH: usize = 256;

/// A worker's chatter (heartbeats, progress) reaches the actor at most this
/// often when nothing else comes with it: a worker that floods either
/// costs the supervisor one event per interval, not one per frame, so its
/// mailbox cannot grow without bound and its other workers' news is not
/// queued behind the flood. Only the newest progress of each job, and one
/// heartbeat, are kept meanwhile.
const CHATTER_EVERY: Duration = Duration::from_millis(50);

/// Where a new worker knocks: its one-shot handshake server, and the
/// record that tells the worker from anyone else.
pub(super) struct Door {
    pub(super) server: IpcOneShotServer<Handshake>,
    pub(super) boot: Bootstrap,
}

pub(super) fn reader_thread(
    door: Door,
    reader: FrameReader,
    slot: SlotId,
    gen: u64,
    sink: EventSink,
    replies: Replies,
    spin: Duration,
) {
    let Door { server, boot } = door;
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
    if !boot.admits(&hello.secret) {
        return sink(LinkEvent::HandshakeTaken { slot, gen });
    }
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
    read_frames(reader, slot, gen, &sink, &replies, spin);
}

pub(super) fn read_frames(
    mut rx: FrameReader,
    slot: SlotId,
    gen: u64,
    sink: &EventSink,
    replies: &Replies,
    spin: Duration,
) {
    let mut reports = Vec::new();
    // Chatter held back (see CHATTER_EVERY): a heartbeat, and the newest
    // progress of each job, in the order jobs first reported.
    let mut beat = false;
    let mut progress: Vec<(u64, f32, String)> = Vec::new();
    let mut chatter_sent: Option<Instant> = None;
    // Wait for more only once every whole frame read so far is taken, and
    // read ahead of the frames already in by a chunk at most: more would
    // let a flooding worker grow the buffer without bound, and leave its
    // last frames unread until it writes again.
    let mut drained = false;
    loop {
        if drained {
            if rx.fill(spin).is_err() {
                return sink(LinkEvent::Closed { slot, gen });
            }
        } else {
            // Frames are left: take them, with whatever else came (for
            // batches as large as before), but never read far ahead.
            rx.top_up();
        }
        let at = Instant::now();
        let mut messages = Vec::new();
        let mut fault = None;
        let mut count = 0;
        while count < READ_BATCH {
            let frame = match rx.next_frame() {
                None => break,
                Some(Err(error)) => {
                    fault = Some(error);
                    break;
                }
                Some(Ok(bytes)) => wire::decode_frame::<FromWorker>(bytes),
            };
            let frame = match frame {
                Ok(f) => f,
                Err(error) => {
                    fault = Some(error);
                    break;
                }
            };
            count += 1;
            for m in frame {
                match m {
                    FromWorker::Heartbeat => {
                        beat = true;
                        continue;
                    }
                    FromWorker::Progress {
                        job,
                        fraction,
                        note,
                    } => {
                        match progress.iter_mut().find(|p| p.0 == job) {
                            Some(p) => *p = (job, fraction, note),
                            None => progress.push((job, fraction, note)),
                        }
                        continue;
                    }
                    _ => {}
                }
                messages.push(match m {
                    FromWorker::Finished {
                        job,
                        result,
                        run_us,
                    } => {
                        let outcome = Outcome::from_result(result);
                        let mut run = Duration::from_micros(run_us);
                        let how = outcome.finish();
                        let end = match replies.take_if_final(job, &outcome) {
                            Some(reply) => {
                                // Believed only up to the time since the
                                // job was sent.
                                run = run.min(at.saturating_duration_since(reply.sent_at));
                                let summary = outcome.without_result();
                                let kind = reply.kind_id;
                                reports.push((reply, job, outcome, run));
                                Finish::Delivered(summary, kind)
                            }
                            None => Finish::Pending(outcome),
                        };
                        Incoming::Finished {
                            job,
                            how,
                            end,
                            at,
                            run,
                        }
                    }
                    FromWorker::Progress { .. } | FromWorker::Heartbeat => continue,
                    FromWorker::MemoryLimit => Incoming::MemoryLimit,
                    FromWorker::MemoryHigh { rss } => Incoming::MemoryHigh { rss },
                });
            }
        }
        // Chatter goes with any other news, or alone once an interval.
        let chatter = beat || !progress.is_empty();
        let due = chatter_sent.is_none_or(|t| at.saturating_duration_since(t) >= CHATTER_EVERY);
        if chatter && (due || !messages.is_empty() || fault.is_some()) {
            messages.extend(
                progress
                    .drain(..)
                    .map(|(job, fraction, note)| Incoming::Progress {
                        job,
                        fraction,
                        note,
                    }),
            );
            if std::mem::take(&mut beat) {
                messages.push(Incoming::Heartbeat);
            }
            chatter_sent = Some(at);
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
        for (reply, job, outcome, run) in reports.drain(..) {
            reply.send(job, outcome, Some(run));
        }
        if let Some(error) = fault {
            return sink(LinkEvent::Fault { slot, gen, error });
        }
        // A full batch may have left whole frames behind: take them first.
        drained = count < READ_BATCH;
    }
}
