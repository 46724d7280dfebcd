//! The worker's side of its memory limits.
//!
//! - The hard limit: the supervisor sets `RLIMIT_DATA` on the worker before
//!   it starts, so an allocation past it fails, and a Rust program aborts
//!   (SIGABRT) when an allocation fails. The worker installs a SIGABRT
//!   handler that, when the abort follows a refused allocation (`errno` is
//!   `ENOMEM`), writes a ready-made [`FromWorker::MemoryLimit`] frame on
//!   the results pipe before the process dies, so that the supervisor
//!   reports the job's crash as a memory-limit breach rather than an abort.
//!   Printing a backtrace between the refusal and the abort would change
//!   `errno`, so such a worker prints none (`RUST_BACKTRACE` is cleared from
//!   its environment before anything reads it).
//! - The soft limit: after each job the worker reads its resident memory
//!   and, past the limit, asks to be replaced ([`FromWorker::MemoryHigh`]).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use crate::wire::stream::frame_into;
use crate::wire::FromWorker;

/// The results pipe's descriptor, for the signal handler.
static RESULTS_FD: AtomicI32 = AtomicI32::new(-1);
/// The frame the signal handler writes, encoded before it can be needed.
static FRAME: OnceLock<Vec<u8>> = OnceLock::new();

/// Arrange for a breach of the hard limit to be reported on `results_fd`.
/// Runs before this process starts any thread.
pub(crate) fn report_breaches(results_fd: i32) {
    // SAFETY: no other thread exists yet to read the environment.
    unsafe { std::env::remove_var("RUST_BACKTRACE") };
    let frame = frame_into(&[FromWorker::MemoryLimit], Vec::new()).expect("a fixed frame encodes");
    if FRAME.set(frame).is_err() {
        return;
    }
    RESULTS_FD.store(results_fd, Ordering::Relaxed);
    // SAFETY: the handler only reads atomics and a frame set above, and
    // makes async-signal-safe calls (write, signal).
    unsafe {
        libc::signal(
            libc::SIGABRT,
            on_abort as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

extern "C" fn on_abort(_: libc::c_int) {
    // SAFETY: errno is this thread's; write and signal are async-signal-
    // safe; the frame is a few bytes, so one write to a pipe is atomic.
    unsafe {
        if *libc::__errno_location() == libc::ENOMEM {
            if let Some(frame) = FRAME.get() {
                let fd = RESULTS_FD.load(Ordering::Relaxed);
                libc::write(fd, frame.as_ptr().cast(), frame.len());
            }
        }
        // abort() raises again with the default action once we return.
        libc::signal(libc::SIGABRT, libc::SIG_DFL);
    }
}

/// This process's resident memory in bytes, from `/proc/self/statm`.
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.checked_mul(u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read_and_grows_with_touched_memory() {
        let before = super::resident_bytes().unwrap();
        let v = vec![1u8; 64 << 20];
        let after = super::resident_bytes().unwrap();
        std::hint::black_box(&v);
        assert!(after >= before + (32 << 20), "{before} -> {after}");
    }
}
