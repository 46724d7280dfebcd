//! The spawner thread forks every worker. It lives as long as the
//! supervisor because a child's `PR_SET_PDEATHSIG` fires when the thread
//! that forked it ends.
//!
//! Each worker gets a one-shot server to connect to (for the channels the
//! supervisor sends on), whose name and a secret it reads from a pipe it
//! inherits as [`HANDSHAKE_FD`], and inherits the write end of another pipe
//! as [`RESULTS_FD`], on which it writes its results; the other end goes to
//! the worker's reader thread. The worker inherits no other descriptor but
//! stdin, stdout and stderr.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ipc_channel::ipc::IpcOneShotServer;

use super::reader::{reader_thread, Door};
use super::{EventSink, LinkEvent, Replies, Timing};
use crate::process::Process;
use crate::sched::SlotId;
use crate::supervisor::config::WorkerCommand;
use crate::wire::bootstrap::{Bootstrap, HANDSHAKE_FD, HANDSHAKE_FD_ENV};
use crate::wire::spin::SPIN_ENV;
use crate::wire::stream::{pipe, FrameReader, RESULTS_FD, RESULTS_FD_ENV};
use crate::wire::{Handshake, HEARTBEAT_ENV, MEMORY_LIMIT_ENV, RSS_LIMIT_ENV};

struct SpawnRequest {
    slot: SlotId,
    gen: u64,
    replies: Replies,
}

/// The spawner thread (see the module docs).
pub(crate) struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    /// Start the spawner thread.
    pub(crate) fn start(
        cmd: WorkerCommand,
        timing: Timing,
        sink: EventSink,
    ) -> io::Result<Spawner> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("procvisor-spawner".into())
            .spawn(move || {
                let swept =
                    super::leftovers::sweep(&std::env::temp_dir(), super::leftovers::MIN_AGE);
                if swept > 0 {
                    tracing::debug!(swept, "removed handshake folders of dead supervisors");
                }
                for req in rx {
                    spawn_one(&cmd, timing, &sink, req);
                }
            })?;
        Ok(Spawner {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Ask for a worker in `slot`; the answer comes as link events. Its
    /// reader thread reports the jobs whose targets the actor puts in
    /// `replies`.
    pub(crate) fn spawn(&self, slot: SlotId, gen: u64, replies: Replies) {
        if let Some(tx) = &self.requests {
            let _ = tx.send(SpawnRequest { slot, gen, replies });
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The handshake socket's folder and file take their modes from the
/// umask (under `umask 000`, any user could connect); make them this
/// user's alone (0700, 0600) before the worker is told where they are. A
/// process that connects in between is refused like any other without the
/// secret.
fn keep_private(socket: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = socket.parent() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
}

fn spawn_one(cmd: &WorkerCommand, timing: Timing, sink: &EventSink, req: SpawnRequest) {
    let SpawnRequest { slot, gen, replies } = req;
    let failed = |error: String| sink(LinkEvent::SpawnFailed { slot, gen, error });
    let (server, name) = match IpcOneShotServer::<Handshake>::new() {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot create the handshake server: {e}")),
    };
    if let Err(e) = keep_private(std::path::Path::new(&name)) {
        return failed(format!("cannot make the handshake socket private: {e}"));
    }
    let (ours, theirs) = match pipe() {
        Ok(p) => p,
        Err(e) => return failed(format!("cannot create the results pipe: {e}")),
    };
    let reader = match FrameReader::new(ours, timing.max_frame) {
        Ok(r) => r,
        Err(e) => return failed(format!("cannot set up the results pipe: {e}")),
    };
    let boot = Bootstrap::new(name.clone());
    let boot_fd = match boot.to_pipe() {
        Ok(fd) => fd,
        Err(e) => return failed(format!("cannot create the handshake pipe: {e}")),
    };
    let mut command = Command::new(&cmd.program);
    if let Some(keep) = &cmd.keep_env {
        command.env_clear();
        for key in keep {
            if let Some(v) = std::env::var_os(key) {
                command.env(key, v);
            }
        }
    }
    if cmd.stdout_to_stderr {
        if let Ok(err) = std::io::stderr().as_fd().try_clone_to_owned() {
            command.stdout(err);
        }
    }
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .env(HANDSHAKE_FD_ENV, crate::wire::bootstrap::marker())
        .env(RESULTS_FD_ENV, RESULTS_FD.to_string())
        .env(
            HEARTBEAT_ENV,
            timing.heartbeat.as_millis().max(1).to_string(),
        )
        .env(SPIN_ENV, timing.spin.as_micros().to_string())
        .stdin(Stdio::null());
    if let Some(limit) = timing.rss_limit {
        command.env(RSS_LIMIT_ENV, limit.to_string());
    }
    if let Some(limit) = timing.memory_limit {
        command.env(MEMORY_LIMIT_ENV, limit.to_string());
        cap_data_memory(&mut command, limit);
    }
    inherit_as(
        &mut command,
        [(theirs, RESULTS_FD), (boot_fd, HANDSHAKE_FD)],
    );
    let process = match Process::spawn(&mut command) {
        Ok(p) => p,
        Err(e) => {
            return failed(format!(
                "cannot start the worker program {}: {e}; check the path, or build it (cargo build -p procvisor-worker)",
                cmd.program.display()
            ))
        }
    };
    // The child has its copies of the pipes' ends; ours close with `command`.
    drop(command);
    sink(LinkEvent::Spawned {
        slot,
        gen,
        process,
        server: name,
    });
    let sink = sink.clone();
    let started = std::thread::Builder::new()
        .name(format!("procvisor-link-{slot}"))
        .spawn(move || {
            reader_thread(
                Door { server, boot },
                reader,
                slot,
                gen,
                sink,
                replies,
                timing.spin,
            )
        });
    if let Err(e) = started {
        tracing::error!(slot, "cannot start a link thread: {e}");
    }
}

/// Mark every descriptor from `first` up close-on-exec: the worker inherits
/// only stdin, stdout, stderr and its results pipe, not whatever the
/// application left open. (Marked rather than closed: the pipe on which the
/// standard library reports a failed `exec` must stay open until then.)
/// Async-signal-safe: only `close_range` or `fcntl`.
fn close_others_at_exec(first: i32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if done {
        return;
    }
    // Older kernels: one descriptor at a time, up to the limit.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 16) as i32
    } else {
        1024
    };
    for fd in first..max {
        // SAFETY: fcntl on a descriptor that may not be open fails harmlessly.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Cap the child's data memory at `bytes` (soft and hard `RLIMIT_DATA`, so
/// the worker cannot raise it).
fn cap_data_memory(command: &mut Command, bytes: u64) {
    let lim = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit is async-signal-safe and reads the struct it is given.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Make the child inherit each descriptor as the number paired with it
/// (and no other descriptor but stdin, stdout and stderr). The targets must
/// be consecutive numbers from 3 up, in order.
fn inherit_as<const N: usize>(command: &mut Command, fds: [(OwnedFd, i32); N]) {
    let raws: [(i32, i32); N] = std::array::from_fn(|i| (fds[i].0.as_raw_fd(), fds[i].1));
    let first_free = 3 + N as i32;
    debug_assert!(raws
        .iter()
        .enumerate()
        .all(|(i, &(_, t))| t == 3 + i as i32));
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (dup, dup2, fcntl, close_range); it
    // allocates nothing. The descriptors stay open in the parent until the
    // command is dropped, after the fork.
    unsafe {
        command.pre_exec(move || {
            let _keep = &fds;
            // First move every source out of the way of every target, so
            // that placing one cannot clobber another still to be placed.
            let mut moved = [0i32; N];
            for (i, &(raw, _)) in raws.iter().enumerate() {
                let fd = libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, first_free + N as i32);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                moved[i] = fd;
            }
            for (i, &(_, target)) in raws.iter().enumerate() {
                // dup2 onto another number clears close-on-exec on the copy.
                if libc::dup2(moved[i], target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            close_others_at_exec(first_free);
            Ok(())
        });
    }
}
