//! Frames from a worker to its supervisor, over a pipe the worker inherits.
//!
//! Each frame is a 4-byte little-endian length followed by that many bytes
//! (a postcard-encoded `Vec<FromWorker>`). The supervisor creates a pipe per
//! worker and the worker inherits its write end as the file descriptor
//! named in [`RESULTS_FD_ENV`], so no other process can take the channel (a
//! pipe write is also cheaper than a socket send: no buffer is allocated
//! per message). The reader keeps one buffer and reads whatever has arrived in
//! one system call, so a burst of results costs one read, not one per
//! result; a length over the reader's limit is a protocol fault reported
//! before any memory is reserved for it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ProtocolError;

/// Name of the environment variable that tells a worker which inherited
/// file descriptor carries its frames to the supervisor.
pub(crate) const RESULTS_FD_ENV: &str = "PROCVISOR_RESULTS_FD";

/// The descriptor number a worker inherits its results socket as.
pub(crate) const RESULTS_FD: i32 = 3;

/// Bytes of a frame's length prefix.
const HEADER: usize = 4;

/// A pipe for frames: its read end and its write end (both close-on-exec).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((r, w))
}

/// Check that `fd` is an open pipe (what a worker inherits from its
/// supervisor), before taking ownership of it.
pub(crate) fn check_pipe(fd: i32) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::other(format!("{fd} is not a file descriptor")));
    }
    // SAFETY: fstat only reads the descriptor's metadata; an invalid
    // descriptor gives EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::other(format!(
            "file descriptor {fd} is not a pipe"
        )));
    }
    Ok(())
}

/// `messages` as one frame (length prefix, then the postcard body), in
/// `buf`'s allocation (its old contents are dropped).
pub(crate) fn frame_into<M: Serialize>(messages: &[M], mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER]);
    let mut buf = postcard::to_extend(messages, buf).map_err(io::Error::other)?;
    let len = u32::try_from(buf.len() - HEADER)
        .map_err(|_| io::Error::other("a frame over 4 GiB cannot be sent"))?;
    buf[..HEADER].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

/// Writes frames (the worker's side).
#[derive(Debug)]
pub(crate) struct FrameWriter {
    stream: File,
    buf: Vec<u8>,
}

impl FrameWriter {
    /// A writer over the write end of a pipe (blocking).
    pub(crate) fn new(fd: OwnedFd) -> FrameWriter {
        FrameWriter {
            stream: File::from(fd),
            buf: Vec::with_capacity(256),
        }
    }

    /// The results socket this process inherited, as named by
    /// [`RESULTS_FD_ENV`]; it is made close-on-exec so that programs a job
    /// starts do not inherit it.
    pub(crate) fn inherited(fd: i32) -> io::Result<FrameWriter> {
        check_pipe(fd)?;
        // SAFETY: the descriptor is open (fstat succeeded), is a pipe, and
        // was handed to this process to own; nothing else in it uses it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
        Ok(FrameWriter::new(owned))
    }

    /// Encode `messages` as one frame and write it.
    pub(crate) fn send<M: Serialize>(&mut self, messages: &[M]) -> io::Result<()> {
        self.buf = frame_into(messages, std::mem::take(&mut self.buf))?;
        self.stream.write_all(&self.buf)
    }

    /// Write bytes as they are, with no framing (for tests of the reader).
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

/// Reading stopped: the writer's end closed (it exited, or closed the
/// pipe), and every byte it wrote has been read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed;

/// Reads frames (the supervisor's side), never holding more than the limit
/// plus one read's worth of bytes.
#[derive(Debug)]
pub(crate) struct FrameReader {
    stream: File,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_frame: usize,
}

/// Bytes asked for in one read (the buffer grows only for larger frames).
const CHUNK: usize = 64 << 10;

impl FrameReader {
    /// A reader over the read end of a pipe that refuses frames over
    /// `max_frame` bytes.
    pub(crate) fn new(fd: OwnedFd, max_frame: usize) -> io::Result<FrameReader> {
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(FrameReader {
            stream: File::from(fd),
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            max_frame,
        })
    }

    /// The next whole frame already read, if any (without reading more).
    /// A length over the limit is a fault.
    pub(crate) fn next_frame(&mut self) -> Option<Result<&[u8], ProtocolError>> {
        let have = self.end - self.start;
        if have < HEADER {
            return None;
        }
        let mut len = [0u8; HEADER];
        len.copy_from_slice(&self.buf[self.start..self.start + HEADER]);
        let len = u32::from_le_bytes(len) as usize;
        if len > self.max_frame {
            return Some(Err(ProtocolError {
                len,
                reason: format!(
                    "a frame of {len} bytes, over the limit of {} bytes (Config::max_result)",
                    self.max_frame
                ),
            }));
        }
        if have < HEADER + len {
            return None;
        }
        let at = self.start + HEADER;
        self.start = at + len;
        Some(Ok(&self.buf[at..at + len]))
    }

    /// Read what has arrived, waiting for it: poll for up to `spin` while
    /// yielding the CPU, then block. Returns once some bytes came.
    pub(crate) fn fill(&mut self, spin: Duration) -> Result<(), Closed> {
        self.make_room();
        let started = Instant::now();
        loop {
            match (&self.stream).read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(Closed),
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() < spin {
                        std::thread::yield_now();
                    } else {
                        self.block();
                    }
                }
                Err(_) => return Err(Closed),
            }
        }
    }

    /// Read what has arrived without waiting, if less than a chunk is
    /// still unread (so the buffer stays bounded however fast the writer
    /// is). An end of stream is left for [`fill`](Self::fill) to report.
    pub(crate) fn top_up(&mut self) {
        if self.end - self.start >= CHUNK {
            return;
        }
        self.make_room();
        loop {
            match (&self.stream).read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Wait until the socket is readable (or closed).
    fn block(&self) {
        let fd = self.stream.as_fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut fds, None);
    }

    /// Move the unread bytes to the front and make sure the buffer has room
    /// for a chunk, or for the whole of a frame whose header is in.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut want = self.end + CHUNK;
        if self.end >= HEADER {
            let mut len = [0u8; HEADER];
            len.copy_from_slice(&self.buf[..HEADER]);
            // next_frame refused a length over the limit before we got here.
            let frame = (u32::from_le_bytes(len) as usize).min(self.max_frame);
            want = want.max(HEADER + frame);
        }
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        } else if self.buf.len() > 4 * CHUNK && want <= CHUNK {
            // A large frame has passed: give its memory back.
            self.buf.truncate(CHUNK);
            self.buf.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode_frame, FromWorker, JobResult};

    fn pair(max: usize) -> (FrameWriter, FrameReader) {
        let (r, w) = pipe().unwrap();
        (FrameWriter::new(w), FrameReader::new(r, max).unwrap())
    }

    #[test]
    fn frames_arrive_whole_and_in_order() {
        let (mut w, mut r) = pair(1 << 20);
        // More than a socket buffer holds: the writer blocks until we read.
        let writer = std::thread::spawn(move || {
            for job in 0..100u64 {
                w.send(&[FromWorker::Finished {
                    job,
                    result: JobResult::Err("x".repeat(job as usize * 100)),
                    run_us: job,
                }])
                .unwrap();
            }
        });
        let mut seen = 0;
        loop {
            while let Some(frame) = r.next_frame() {
                let msgs: Vec<FromWorker> = decode_frame(frame.unwrap()).unwrap();
                let FromWorker::Finished { job, .. } = msgs[0] else {
                    panic!()
                };
                assert_eq!(job, seen);
                seen += 1;
            }
            if r.fill(Duration::ZERO).is_err() {
                break;
            }
        }
        writer.join().unwrap();
        assert_eq!(seen, 100);
    }

    #[test]
    fn a_length_over_the_limit_is_a_fault_before_any_allocation() {
        let (mut w, mut r) = pair(1000);
        // Claims 1 TiB (the prefix saturates at 4 GiB - 1).
        w.send_raw(&u32::MAX.to_le_bytes()).unwrap();
        r.fill(Duration::ZERO).unwrap();
        let e = r.next_frame().unwrap().unwrap_err();
        assert_eq!(e.len, u32::MAX as usize);
        assert!(e.reason.contains("over the limit of 1000 bytes"), "{e}");
        assert!(r.buf.len() <= CHUNK);
    }

    #[test]
    fn a_large_frame_within_the_limit_is_read_across_many_reads() {
        let (mut w, mut r) = pair(8 << 20);
        let big = "y".repeat(3 << 20);
        let t = std::thread::spawn(move || {
            w.send(&[FromWorker::Finished {
                job: 1,
                result: JobResult::Err(big),
                run_us: 0,
            }])
            .unwrap();
        });
        let frame = loop {
            if let Some(f) = r.next_frame() {
                break f.unwrap().to_vec();
            }
            r.fill(Duration::ZERO).unwrap();
        };
        t.join().unwrap();
        let msgs: Vec<FromWorker> = decode_frame(&frame).unwrap();
        assert!(
            matches!(&msgs[0], FromWorker::Finished { result: JobResult::Err(e), .. } if e.len() == 3 << 20)
        );
    }
}
