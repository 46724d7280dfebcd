//! An async handle over one child OS process: start it, await its exit, time
//! it out, terminate it, and learn which of these ended it.
//!
//! [`Process::spawn`] starts a child in its own process group, with
//! `PR_SET_PDEATHSIG = SIGKILL` so that it dies with its parent. The death
//! signal follows the *thread* that forked the child, so spawn from a thread
//! that lives as long as the children should; the child also checks
//! `getppid()` after `prctl` and gives up if its parent is already gone.
//!
//! Exit is awaited through a pidfd registered with the tokio reactor: no
//! `SIGCHLD` handler, no polling loop, and the exit is seen the moment it
//! happens. [`Process::terminate`] sends `SIGTERM` to the group, then
//! `SIGKILL` after a grace; [`Process::kill`] sends `SIGKILL` at once;
//! [`Process::wait_until`] kills at a deadline. The [`ProcessOutcome`] says
//! which of these ended the process.
//!
//! When the child's exit is seen, whatever is left of its process group (the
//! processes it started, unless they moved to a group of their own) is
//! killed before the child is reaped, so nothing it started outlives it.
//!
//! The handle is cheap to clone: one clone can await the exit while another
//! sends signals. Signals are never sent once the child has been reaped, so a
//! recycled PID is never hit.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;

mod exit;

pub use exit::{signal_name, Exit, ProcessOutcome};

/// A child process (see the module docs). Clones share the same child.
#[derive(Clone)]
pub struct Process {
    inner: Arc<Inner>,
}

struct Inner {
    pid: Pid,
    pidfd: OwnedFd,
    /// The child, until it is reaped; then its status.
    state: Mutex<State>,
    /// Set when we sent SIGTERM or SIGKILL ourselves.
    signalled_by_us: AtomicBool,
}

enum State {
    Running(Child),
    Reaped(ExitStatus),
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Process({})", self.pid())
    }
}

impl Process {
    /// Spawn `cmd` as a child in its own process group that dies when the
    /// calling thread dies (Linux `PR_SET_PDEATHSIG`).
    pub fn spawn(cmd: &mut Command) -> io::Result<Process> {
        let parent = rustix::process::getpid();
        cmd.process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes two
        // async-signal-safe system calls (prctl, getppid); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // The parent may have died between fork and prctl: then we were
                // re-parented and the death signal will never come.
                if rustix::process::getppid() != Some(parent) {
                    return Err(io::Error::other("parent exited during spawn"));
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("pid 0"))?;
        let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "pidfd_open failed ({e}); procvisor needs Linux 5.3 or newer"
                )));
            }
        };
        Ok(Process {
            inner: Arc::new(Inner {
                pid,
                pidfd,
                state: Mutex::new(State::Running(child)),
                signalled_by_us: AtomicBool::new(false),
            }),
        })
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.inner.pid.as_raw_nonzero().get() as u32
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere while holding it; the
        // state itself is always consistent.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send `signal` to the child's whole process group, unless the child has
    /// already been reaped. Returns whether it was sent.
    pub fn signal(&self, signal: Signal) -> bool {
        let state = self.state();
        match &*state {
            State::Reaped(_) => false,
            State::Running(_) => {
                if signal == Signal::KILL || signal == Signal::TERM {
                    self.inner.signalled_by_us.store(true, Ordering::Relaxed);
                }
                // The group may be gone while the leader is a zombie; then the
                // pidfd still reaches nobody, which is fine.
                let sent = rustix::process::kill_process_group(self.inner.pid, signal).is_ok();
                sent || rustix::process::pidfd_send_signal(&self.inner.pidfd, signal).is_ok()
            }
        }
    }

    /// `SIGKILL` the process group now. The exit is still to be awaited.
    pub fn kill(&self) -> bool {
        self.signal(Signal::KILL)
    }

    /// The exit status, if the child has already been reaped (never blocks).
    pub fn try_status(&self) -> io::Result<Option<ExitStatus>> {
        let mut state = self.state();
        match &mut *state {
            State::Reaped(s) => Ok(Some(*s)),
            State::Running(child) => {
                self.kill_group_if_exited();
                match child.try_wait()? {
                    Some(s) => {
                        *state = State::Reaped(s);
                        Ok(Some(s))
                    }
                    None => Ok(None),
                }
            }
        }
    }

    /// If the child has exited but is not reaped yet, kill what is left of
    /// its process group (the processes it started): while the unreaped
    /// child holds the group's id, that id cannot name anyone else.
    fn kill_group_if_exited(&self) {
        let mut fds = [rustix::event::PollFd::new(
            &self.inner.pidfd,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut fds, Some(&zero)).is_ok_and(|n| n > 0) {
            let _ = rustix::process::kill_process_group(self.inner.pid, Signal::KILL);
        }
    }

    /// Await the child's exit (reaping it) and say what ended it.
    pub async fn wait(&self) -> io::Result<ProcessOutcome> {
        let status = self.wait_status().await?;
        Ok(self.outcome(status, false))
    }

    async fn wait_status(&self) -> io::Result<ExitStatus> {
        if let Some(s) = self.try_status()? {
            return Ok(s);
        }
        // SAFETY: the AsyncFd owns its own duplicate of the pidfd, which
        // nothing else closes or replaces while it is registered.
        let fd = unsafe {
            AsyncFd::register_with_interest(
                self.inner.pidfd.try_clone()?,
                tokio::io::Interest::READABLE,
            )?
        };
        loop {
            let mut ready = fd.readable().await?;
            if let Some(s) = self.try_status()? {
                return Ok(s);
            }
            ready.clear_ready();
        }
    }

    fn outcome(&self, status: ExitStatus, timed_out: bool) -> ProcessOutcome {
        let exit = Exit::from_status(status);
        if timed_out {
            ProcessOutcome::TimedOut(exit)
        } else if status.success() {
            ProcessOutcome::Success
        } else if self.inner.signalled_by_us.load(Ordering::Relaxed) {
            ProcessOutcome::Terminated(exit)
        } else {
            ProcessOutcome::Error(exit)
        }
    }

    /// Await the exit, but `SIGKILL` the process group at `deadline` if it is
    /// still running then (outcome [`ProcessOutcome::TimedOut`]).
    pub async fn wait_until(&self, deadline: Option<Instant>) -> io::Result<ProcessOutcome> {
        let Some(deadline) = deadline else {
            return self.wait().await;
        };
        match tokio::time::timeout_at(deadline.into(), self.wait_status()).await {
            Ok(status) => Ok(self.outcome(status?, false)),
            Err(_) => {
                self.kill();
                let status = self.wait_status().await?;
                Ok(self.outcome(status, true))
            }
        }
    }

    /// `SIGTERM` the process group, wait up to `grace`, then `SIGKILL` it.
    pub async fn terminate(&self, grace: Duration) -> io::Result<ProcessOutcome> {
        if self.signal(Signal::TERM) {
            if let Ok(status) = tokio::time::timeout(grace, self.wait_status()).await {
                return Ok(self.outcome(status?, false));
            }
            self.kill();
        }
        let status = self.wait_status().await?;
        Ok(self.outcome(status, false))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: make sure no child outlives it, and reap it
        // so that no zombie stays behind.
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let State::Running(child) = state {
            let _ = rustix::process::kill_process_group(self.pid, Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn sh(script: &str) -> Process {
        Process::spawn(Command::new("sh").args(["-c", script])).unwrap()
    }

    fn gone(pid: u32) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn success_and_exit_codes() {
        rt().block_on(async {
            assert_eq!(sh("exit 0").wait().await.unwrap(), ProcessOutcome::Success);
            assert_eq!(
                sh("exit 3").wait().await.unwrap(),
                ProcessOutcome::Error(Exit::Code(3))
            );
            assert_eq!(
                sh("kill -SEGV $$").wait().await.unwrap(),
                ProcessOutcome::Error(Exit::Signal(11))
            );
        });
    }

    #[test]
    fn deadline_kills_and_says_timed_out() {
        rt().block_on(async {
            let p = sh("sleep 30");
            let pid = p.pid();
            let t = Instant::now();
            let out = p
                .wait_until(Some(Instant::now() + Duration::from_millis(100)))
                .await
                .unwrap();
            assert_eq!(out, ProcessOutcome::TimedOut(Exit::Signal(9)));
            assert!(t.elapsed() < Duration::from_secs(5));
            assert!(gone(pid), "pid {pid} still in /proc after the timeout");
        });
    }

    #[test]
    fn terminate_escalates_to_kill() {
        rt().block_on(async {
            // Ignores SIGTERM: only SIGKILL ends it.
            let p = sh("trap '' TERM; echo ready; while :; do sleep 0.05; done");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let out = p.terminate(Duration::from_millis(200)).await.unwrap();
            assert_eq!(out, ProcessOutcome::Terminated(Exit::Signal(9)));
            // A polite one ends on SIGTERM.
            let p = sh("sleep 30");
            let out = p.terminate(Duration::from_secs(5)).await.unwrap();
            assert_eq!(out, ProcessOutcome::Terminated(Exit::Signal(15)));
        });
    }

    #[test]
    fn own_group_and_whole_group_is_killed() {
        rt().block_on(async {
            let p = sh("sleep 30 & echo $! > /dev/null; wait");
            let pid = p.pid();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            // Field 5 of /proc/PID/stat is the process group.
            let pgrp: u32 = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .nth(2)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(pgrp, pid);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
            let grandchild: u32 = kids.split_whitespace().next().unwrap().parse().unwrap();
            p.kill();
            p.wait().await.unwrap();
            for _ in 0..100 {
                if gone(grandchild) || zombie(grandchild) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("grandchild {grandchild} survived the group kill");
        });
    }

    fn zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
            .unwrap_or(true)
    }

    #[test]
    fn no_signal_after_reap() {
        rt().block_on(async {
            let p = sh("exit 0");
            p.wait().await.unwrap();
            assert!(!p.kill(), "signalled a reaped child");
        });
    }
}
