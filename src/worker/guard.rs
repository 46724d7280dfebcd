//! The guard: a small process that takes a worker's whole process group
//! down when the worker dies, however it dies.
//!
//! The supervisor starts each worker in a process group of its own and kills
//! that group whenever it sees the worker exit. If the supervisor itself is
//! killed (SIGKILL), the kernel kills the worker (its parent-death signal),
//! but the processes the worker's jobs started would live on. So a worker,
//! as it starts serving, forks a guard into its group: the guard blocks
//! every signal, asks the kernel for a signal when the worker dies
//! (`PR_SET_PDEATHSIG`), waits for it, and then kills the group, itself
//! included. A process that leaves the group (`setsid`, `setpgid`) is out
//! of its reach.

use std::io;

/// Fork the guard. Call from the thread that serves jobs: the parent-death
/// signal follows the thread that forked, and that thread lives as long as
/// the worker.
pub(crate) fn start() -> io::Result<()> {
    // SAFETY: getpgrp and getpid have no preconditions.
    let (group, me) = unsafe { (libc::getpgrp(), libc::getpid()) };
    if group != me {
        // Not the group the supervisor made for this worker (a wrapper
        // started it, or someone ran it by hand): leave the group alone
        // rather than kill processes that are not the worker's.
        return Ok(());
    }
    // SAFETY: the child runs only async-signal-safe system calls (see
    // `guard`) and never returns into Rust code that could allocate.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => guard(me),
        _ => Ok(()),
    }
}

/// The guard's life, in the forked child: system calls only.
fn guard(worker: libc::pid_t) -> ! {
    // SAFETY: every call is async-signal-safe and takes valid arguments.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        // Hold nothing of the worker's: no pipe of its may stay open
        // because of the guard.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_NAME, c"procvisor-guard".as_ptr());
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1);
        // The worker may have died before the request took effect.
        if libc::getppid() == worker {
            let mut wait: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut wait);
            libc::sigaddset(&mut wait, libc::SIGUSR1);
            while libc::sigwaitinfo(&wait, std::ptr::null_mut()) != libc::SIGUSR1 {}
        }
        libc::kill(-worker, libc::SIGKILL);
        libc::_exit(0)
    }
}
