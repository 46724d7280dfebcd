//! The supervisor's reading of a worker's bytes, callable on any bytes: the
//! entry point of the fuzz target (`fuzz/`), which checks that nothing a
//! worker writes can make the supervisor panic, abort or reserve memory
//! beyond its limit. Only with the `internals` feature (and in tests, which
//! replay the fuzzer's corpus, `fuzz/corpus/worker_bytes`).
#![cfg_attr(not(feature = "internals"), allow(unreachable_pub, dead_code))]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::reader::read_frames;
use super::{EventSink, LinkEvent, Replies, Reply};
use crate::supervisor::outcome::Report;
use crate::supervisor::target::{JobSink, Target};
use crate::wire::stream::{pipe, FrameReader};
use crate::wire::Payload;

/// Most bytes one call reads (what a pipe can hold without a reader).
pub const MAX_INPUT: usize = 1 << 20;

/// What the supervisor made of a worker's bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerBytes {
    /// Messages handed to the supervisor actor.
    pub messages: usize,
    /// Reports delivered at once to their jobs' submitters.
    pub delivered: usize,
    /// The protocol fault that ended the reading, if any.
    pub fault: Option<String>,
}

struct Count(AtomicUsize);

impl JobSink for Count {
    fn ended(&self, _token: u64, _report: Report<Payload>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Feed `bytes` (at most [`MAX_INPUT`] of them) through a real pipe to the
/// code that reads a worker's results, with frames limited to `max_frame`
/// bytes and jobs 0 to 7 waiting for their results (the odd ones with a
/// retry left), and say what came of it.
pub fn read_worker_bytes(bytes: &[u8], max_frame: usize) -> WorkerBytes {
    let bytes = &bytes[..bytes.len().min(MAX_INPUT)];
    let (r, w) = pipe().expect("a pipe");
    rustix::pipe::fcntl_setpipe_size(&w, MAX_INPUT).expect("a pipe of 1 MiB (pipe-max-size)");
    std::fs::File::from(w)
        .write_all(bytes)
        .expect("the pipe holds the input");
    let reader = FrameReader::new(r, max_frame).expect("a reader");

    let delivered = Arc::new(Count(AtomicUsize::new(0)));
    let replies = Replies::default();
    for job in 0..8u64 {
        replies.lock().insert(
            job,
            Reply {
                target: Target::Sink {
                    sink: delivered.clone(),
                    token: job,
                },
                kind: "fuzz".into(),
                kind_id: 0,
                attempt: 1,
                evictions: 0,
                pid: None,
                history: Vec::new(),
                failure_is_final: job % 2 == 0,
                sent_at: std::time::Instant::now(),
            },
        );
    }
    let seen = Arc::new(std::sync::Mutex::new(WorkerBytes::default()));
    let sink: EventSink = {
        let seen = seen.clone();
        Arc::new(move |event| {
            let mut seen = seen.lock().unwrap();
            match event {
                LinkEvent::Frames { messages, .. } => seen.messages += messages.len(),
                LinkEvent::Fault { error, .. } => seen.fault = Some(error.reason),
                _ => {}
            }
        })
    };
    read_frames(reader, 0, 0, &sink, &replies, Duration::ZERO);
    let mut out = seen.lock().unwrap().clone();
    out.delivered = delivered.0.load(Ordering::Relaxed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FromWorker, JobResult};

    fn framed(messages: &[FromWorker]) -> Vec<u8> {
        crate::wire::stream::frame_into(messages, Vec::new()).unwrap()
    }

    #[test]
    fn good_frames_are_read_and_final_results_delivered() {
        let mut bytes = framed(&[FromWorker::Heartbeat]);
        bytes.extend(framed(&[
            FromWorker::Finished {
                job: 0,
                result: JobResult::Err("final".into()),
                run_us: 1,
            },
            FromWorker::Finished {
                job: 1,
                result: JobResult::Err("retried".into()),
                run_us: 1,
            },
        ]));
        let got = read_worker_bytes(&bytes, 1 << 20);
        assert_eq!(got.messages, 3);
        assert_eq!(got.delivered, 1);
        assert_eq!(got.fault, None);
    }

    /// Every input the fuzzer kept (it covers the reader's paths) still
    /// reads without a panic; the fuzz target's own limit applies.
    #[test]
    fn the_fuzz_corpus_replays_cleanly() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/worker_bytes");
        let inputs: Vec<_> = std::fs::read_dir(dir)
            .expect("the fuzz corpus is in the repository")
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(inputs.len() >= 10, "the corpus has {} inputs", inputs.len());
        let mut faults = 0;
        for input in &inputs {
            let got = read_worker_bytes(input, 4096);
            assert!(got.delivered <= 8);
            faults += usize::from(got.fault.is_some());
        }
        assert!(faults > 0 && faults < inputs.len(), "{faults} faults");
    }

    #[test]
    fn a_frame_over_the_limit_and_garbage_are_faults() {
        let got = read_worker_bytes(&u32::MAX.to_le_bytes(), 1 << 20);
        assert!(got.fault.unwrap().contains("over the limit"));
        let got = read_worker_bytes(&[3, 0, 0, 0, 0xff, 0xff, 0xff], 1 << 20);
        assert!(got.fault.is_some());
    }
}
