//! How a supervisor tells a worker it just started, and nobody else, where
//! to connect and how to prove who it is.
//!
//! The supervisor writes a [`Bootstrap`] record (the name of its one-shot
//! handshake server and a random secret) into a fresh pipe, closes its end,
//! and the worker inherits the read end as [`HANDSHAKE_FD`]. Neither the
//! server's name nor the secret appears in the worker's environment or
//! command line, which other processes can read in `/proc`. The worker
//! sends the secret back in its hello; a process that connects to the
//! server without it is refused before any job reaches it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// Name of the environment variable that tells a worker which inherited
/// file descriptor carries its [`Bootstrap`] record, and which process
/// started it: `FD:PID` (see [`marker`] and [`marked`]).
pub(crate) const HANDSHAKE_FD_ENV: &str = "PROCVISOR_HANDSHAKE_FD";

/// The value of [`HANDSHAKE_FD_ENV`] for a worker this process starts.
pub(crate) fn marker() -> String {
    format!("{HANDSHAKE_FD}:{}", std::process::id())
}

/// The descriptor of the bootstrap pipe, if this process is a worker a
/// supervisor started: [`HANDSHAKE_FD_ENV`] is set *and* names this
/// process's parent. The variable alone proves nothing: anyone may have it
/// in their environment (exported by hand, or inherited by a program a job
/// started), and such a process is no worker, and runs as it would
/// without it.
pub(crate) fn marked() -> Option<i32> {
    let value = std::env::var(HANDSHAKE_FD_ENV).ok()?;
    let (fd, pid) = value.split_once(':')?;
    let parent = rustix::process::getppid()?.as_raw_nonzero().get();
    (pid.parse::<i32>().ok()? == parent)
        .then(|| fd.parse().ok())
        .flatten()
}

/// The descriptor number a worker inherits its bootstrap pipe as.
pub(crate) const HANDSHAKE_FD: i32 = 4;

/// The secret a worker proves itself with.
pub(crate) type Secret = [u8; 16];

/// Largest bootstrap record read (a server name is a short path).
const MAX_RECORD: u64 = 4096;

/// Whether `name` is the name of a folder a handshake server makes for its
/// socket: `.tmp` and six letters or digits (ipc-channel's temporary
/// folders).
pub(crate) fn is_server_folder_name(name: &str) -> bool {
    name.len() == 10
        && name.starts_with(".tmp")
        && name[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// What a worker learns privately at start.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    /// The one-shot server to connect to.
    pub(crate) server: String,
    /// What to send back in the hello.
    pub(crate) secret: Secret,
}

impl Bootstrap {
    /// A record for `server`, with a fresh secret from the thread's
    /// cryptographically secure generator.
    pub(crate) fn new(server: String) -> Bootstrap {
        Bootstrap {
            server,
            secret: rand::random(),
        }
    }

    /// Write the record into a new pipe and return its read end (close-on-
    /// exec) for the child to inherit. The record fits the pipe's buffer,
    /// so this never blocks; the write end is closed on return, so the
    /// worker reads the record and then the end of the stream.
    pub(crate) fn to_pipe(&self) -> io::Result<OwnedFd> {
        let bytes = postcard::to_stdvec(self).map_err(io::Error::other)?;
        if bytes.len() as u64 > MAX_RECORD {
            return Err(io::Error::other("the handshake server's name is too long"));
        }
        let (r, w) = super::stream::pipe()?;
        File::from(w).write_all(&bytes)?;
        Ok(r)
    }

    /// Read the record from the inherited descriptor `fd` and close it.
    pub(crate) fn read_inherited(fd: i32) -> Result<Bootstrap, String> {
        super::stream::check_pipe(fd).map_err(|e| format!("file descriptor {fd}: {e}"))?;
        // SAFETY: `fd` is an open pipe (checked above) that was handed to
        // this process to read once; nothing else in it uses it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut bytes = Vec::new();
        file.take(MAX_RECORD + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading file descriptor {fd}: {e}"))?;
        postcard::from_bytes(&bytes)
            .map_err(|e| format!("the record on file descriptor {fd} did not decode: {e}"))
    }

    /// Whether `secret` is this record's, compared in constant time.
    pub(crate) fn admits(&self, secret: &Secret) -> bool {
        self.secret
            .iter()
            .zip(secret)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn a_record_travels_through_its_pipe_and_only_its_secret_is_admitted() {
        let sent = Bootstrap::new("/tmp/.tmpabcdef/socket".into());
        let fd = sent.to_pipe().unwrap().into_raw_fd();
        let got = Bootstrap::read_inherited(fd).unwrap();
        assert_eq!(got.server, sent.server);
        assert!(sent.admits(&got.secret));
        let mut wrong = got.secret;
        wrong[15] ^= 1;
        assert!(!sent.admits(&wrong));
        assert_ne!(Bootstrap::new(String::new()).secret, sent.secret);
    }

    #[test]
    fn a_descriptor_that_is_not_a_pipe_is_refused() {
        let file = File::open("/dev/null").unwrap().into_raw_fd();
        let err = Bootstrap::read_inherited(file).unwrap_err();
        assert!(err.contains("not a pipe"), "{err}");
        // SAFETY: the descriptor was opened above and is not used after.
        drop(unsafe { OwnedFd::from_raw_fd(file) });
    }
}
