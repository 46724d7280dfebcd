//! Receive with a short spin before blocking.
//!
//! On virtual machines, waking a thread whose CPU has gone idle costs tens of
//! microseconds (measured here: a bare socket ping-pong between two
//! processes takes ~100 µs when each side blocks, ~4 µs when each side polls
//! for 20 µs first). A receiver that expects a message soon therefore polls
//! for a bounded time before it blocks; an idle receiver pays the spin once,
//! then sleeps.

use std::time::{Duration, Instant};

use ipc_channel::ipc::IpcBytesReceiver;
use ipc_channel::{IpcError, TryRecvError};

/// Name of the environment variable through which a supervisor tells a worker
/// how long to spin before blocking, in microseconds.
pub(crate) const SPIN_ENV: &str = "PROCVISOR_SPIN_US";

/// Receive from `rx`, polling for up to `spin` before blocking.
pub(crate) fn recv_spinning(rx: &IpcBytesReceiver, spin: Duration) -> Result<Vec<u8>, IpcError> {
    if !spin.is_zero() {
        let start = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(bytes) => return Ok(bytes),
                Err(TryRecvError::IpcError(e)) => return Err(e),
                Err(TryRecvError::Empty) => {}
            }
            if start.elapsed() >= spin {
                break;
            }
            std::thread::yield_now();
        }
    }
    rx.recv()
}

/// Poll `f` until it yields a value or `spin` has passed.
pub(crate) fn spin_for<T>(spin: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= spin {
            return None;
        }
        std::thread::yield_now();
    }
}

/// Keep glibc's allocator from returning memory to the OS after every
/// message.
///
/// ipc-channel receives each message into a fresh buffer as large as the
/// socket's send buffer (about 200 KiB). Freeing it makes glibc trim the
/// thread's arena with `madvise(MADV_DONTNEED)` — once per message — and in a
/// multi-threaded process each of those interrupts the other CPUs to flush
/// their TLBs. Raising the trim and mmap thresholds (process-wide) stops
/// that. On other C libraries this does nothing.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; both values
            // are in range. Setting either disables glibc's dynamic
            // adjustment, so both are set.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
            }
        });
    }
}
