//! The wire: every message that crosses between a supervisor and a worker.
//!
//! The supervisor and a worker first meet through an `IpcOneShotServer`
//! whose name, with a secret, the worker reads from a pipe it inherited
//! ([`bootstrap`]): the worker connects and sends a [`Handshake::Hello`]
//! carrying that secret, the protocol version, the job kinds it serves, and
//! the two byte channels the supervisor sends on from then on: jobs, and
//! control. Results travel back over another pipe the worker inherited
//! ([`stream`]). Every exchange
//! is a *frame*: a postcard-encoded `Vec` of [`ToWorker`] or [`FromWorker`]
//! messages, so that several jobs can travel in one IPC message.
//!
//! Decoding never panics: bytes that do not decode into a frame give a
//! [`ProtocolError`], which the supervisor treats as a worker fault.

use ipc_channel::ipc::IpcBytesSender;
use serde::{Deserialize, Serialize};

pub(crate) mod bootstrap;
mod payload;
pub(crate) mod spin;
pub(crate) mod stream;

pub use payload::{Codec, Payload, PayloadError};

/// Version of the supervisor ↔ worker protocol. A worker announcing another
/// version is refused at the handshake.
pub(crate) const PROTOCOL_VERSION: u32 = 3;

/// Name of the environment variable through which a supervisor tells a worker
/// how often to send heartbeats, in milliseconds.
pub(crate) const HEARTBEAT_ENV: &str = "PROCVISOR_HEARTBEAT_MS";

/// Identifier of a job, unique within one supervisor, increasing in
/// submission order.
pub type JobId = u64;

/// The first message a worker sends, over the one-shot server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Handshake {
    /// A worker introduces itself.
    Hello(Hello),
    /// Sent by the supervisor to its own one-shot server to stop waiting for a
    /// worker that died (or hung) before it connected.
    Abandon,
}

/// What a worker says about itself when it connects.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The worker's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The worker's process id, as the worker sees it.
    pub pid: u32,
    /// The secret the worker read from its bootstrap pipe, which proves it
    /// is the process the supervisor started.
    pub secret: bootstrap::Secret,
    /// The job kinds this worker has handlers for, with their types.
    pub kinds: Vec<KindInfo>,
    /// Where the supervisor sends [`ToWorker::Run`] and
    /// [`ToWorker::Shutdown`] frames, read by the thread that runs jobs.
    pub to_worker: IpcBytesSender,
    /// Where the supervisor sends [`ToWorker::Cancel`] frames, read by a side
    /// thread so that a cancel reaches a handler while it runs.
    pub control: IpcBytesSender,
}

/// A job kind a worker serves, and the fingerprint of its handler's types:
/// their names (`std::any::type_name`), or `None` for a handler that takes
/// raw payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KindInfo {
    /// The kind's name.
    pub(crate) name: String,
    /// The handler's input and output type names.
    pub(crate) types: Option<(String, String)>,
}

/// One job handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Run {
    /// The job's id.
    pub job: JobId,
    /// Which handler runs it.
    pub kind: String,
    /// The handler's input.
    pub payload: Payload,
    /// 1 for the first attempt, 2 for the first retry, …
    pub attempt: u32,
}

/// A message from the supervisor to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run this job once the ones handed earlier are done.
    Run(Run),
    /// Stop this job: a running handler sees `JobContext::is_cancelled`, a job
    /// not yet started is skipped.
    Cancel(JobId),
    /// Finish the job in hand, then exit.
    Shutdown,
}

/// The borrowed twin of [`ToWorker`]: encodes to exactly the same bytes, so
/// the supervisor can send a job without copying its payload first.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) enum ToWorkerRef<'a> {
    /// See [`ToWorker::Run`].
    Run(RunRef<'a>),
    /// See [`ToWorker::Cancel`].
    Cancel(JobId),
    /// See [`ToWorker::Shutdown`].
    Shutdown,
}

/// The borrowed twin of [`Run`].
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RunRef<'a> {
    /// The job's id.
    pub job: JobId,
    /// Which handler runs it.
    pub kind: &'a str,
    /// The handler's input.
    pub payload: &'a Payload,
    /// The attempt number.
    pub attempt: u32,
}

/// How a handler's run ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JobResult {
    /// The handler returned a value, encoded with the request's codec.
    Ok(Payload),
    /// The handler returned an error.
    Err(String),
    /// The handler panicked; the panic message.
    Panic(String),
    /// The payload did not deserialize into the handler's input type.
    BadInput(String),
    /// The worker has no handler for the job's kind.
    UnknownKind(String),
    /// The job was cancelled before it started, or its handler stopped on a
    /// cancel request.
    Cancelled,
}

/// A message from a worker to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// A job handed to this worker has ended. Sent the moment it ends,
    /// before the worker starts its next job.
    Finished {
        /// The job's id.
        job: JobId,
        /// How it ended.
        result: JobResult,
        /// How long the handler ran, in microseconds, as the worker measured.
        run_us: u64,
    },
    /// A running handler reported progress.
    Progress {
        /// The job's id.
        job: JobId,
        /// Fraction done, 0.0 to 1.0.
        fraction: f32,
        /// Free text from the handler.
        note: String,
    },
    /// The worker is alive (sent periodically, even while a job runs).
    Heartbeat,
    /// The running job was refused memory over the worker's limit and the
    /// worker is aborting (sent from its SIGABRT handler).
    MemoryLimit,
    /// After a job, the worker's resident memory was over the limit past
    /// which it asks to be replaced: `rss` bytes.
    MemoryHigh {
        /// Resident bytes.
        rss: u64,
    },
}

/// Name of the environment variable that tells a worker its memory limit
/// in bytes (the supervisor sets the limit itself; the worker only needs
/// to know, to say so when it is hit).
pub(crate) const MEMORY_LIMIT_ENV: &str = "PROCVISOR_MEMORY_LIMIT";

/// Name of the environment variable that tells a worker the resident
/// memory, in bytes, past which it asks to be replaced after a job.
pub(crate) const RSS_LIMIT_ENV: &str = "PROCVISOR_RSS_LIMIT";

/// A frame that could not be decoded: the peer does not speak this protocol
/// (or is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("it sent {reason}")]
pub(crate) struct ProtocolError {
    /// Length of the frame.
    pub len: usize,
    /// What postcard said.
    pub reason: String,
}

/// Encode a frame of messages into `buf` (cleared first).
pub(crate) fn encode_frame<M: Serialize>(messages: &[M], buf: &mut Vec<u8>) {
    buf.clear();
    // Writing into a Vec cannot fail for these types: every field is a plain
    // value, so an error here would be a bug in this module.
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(messages, taken).expect("wire messages always encode");
}

/// Decode a frame of messages.
pub(crate) fn decode_frame<M: for<'de> Deserialize<'de>>(
    bytes: &[u8],
) -> Result<Vec<M>, ProtocolError> {
    match postcard::from_bytes::<Vec<M>>(bytes) {
        Ok(v) => Ok(v),
        Err(e) => Err(ProtocolError {
            len: bytes.len(),
            reason: format!(
                "an undecodable frame of {} bytes ({e}): it does not speak procvisor protocol v{PROTOCOL_VERSION}",
                bytes.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let msgs = vec![
            ToWorker::Run(Run {
                job: 7,
                kind: "echo".into(),
                payload: Payload::json(&serde_json::json!({"a": 1})).unwrap(),
                attempt: 1,
            }),
            ToWorker::Cancel(3),
            ToWorker::Shutdown,
        ];
        let mut buf = Vec::new();
        encode_frame(&msgs, &mut buf);
        let back: Vec<ToWorker> = decode_frame(&buf).unwrap();
        assert_eq!(back, msgs);

        let up = vec![
            FromWorker::Finished {
                job: 7,
                result: JobResult::Panic("boom".into()),
                run_us: 3,
            },
            FromWorker::Heartbeat,
        ];
        encode_frame(&up, &mut buf);
        assert_eq!(decode_frame::<FromWorker>(&buf).unwrap(), up);
    }

    #[test]
    fn borrowed_messages_encode_like_owned_ones() {
        let payload = Payload::postcard(&(1u32, "x")).unwrap();
        let owned = [
            ToWorker::Run(Run {
                job: 9,
                kind: "k".into(),
                payload: payload.clone(),
                attempt: 2,
            }),
            ToWorker::Cancel(4),
            ToWorker::Shutdown,
        ];
        let borrowed = [
            ToWorkerRef::Run(RunRef {
                job: 9,
                kind: "k",
                payload: &payload,
                attempt: 2,
            }),
            ToWorkerRef::Cancel(4),
            ToWorkerRef::Shutdown,
        ];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_frame(&owned, &mut a);
        encode_frame(&borrowed, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [&b""[..], b"\xff\xff\xff\xff\xff", b"\x01\x09", b"\x05\x00"] {
            let e = decode_frame::<FromWorker>(garbage).unwrap_err();
            assert_eq!(e.len, garbage.len());
            assert!(e.to_string().contains("undecodable"));
        }
        // A truncated valid frame is an error.
        let mut buf = Vec::new();
        encode_frame(
            &[FromWorker::Finished {
                job: 1,
                result: JobResult::Err("x".repeat(100)),
                run_us: 0,
            }],
            &mut buf,
        );
        assert!(decode_frame::<FromWorker>(&buf[..buf.len() - 10]).is_err());
    }
}
