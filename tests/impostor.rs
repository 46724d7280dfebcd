//! Only the process a supervisor started can become its worker: another
//! process of the same user that finds the handshake socket and connects
//! first, pretending to be the worker, is refused before any job reaches
//! it, and the worker's environment names neither the socket nor the
//! secret. (Its own file: it points TMPDIR at a private folder for the
//! whole process.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use ipc_channel::ipc::{self, IpcSender};
use procvisor::{Job, WorkerCommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The worker's hello, as an impostor that read procvisor's source would
/// forge it.
#[derive(Serialize, Deserialize)]
enum Handshake {
    Hello(Hello),
    Abandon,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    version: u32,
    pid: u32,
    secret: [u8; 16],
    kinds: Vec<KindInfo>,
    to_worker: ipc::IpcBytesSender,
    control: ipc::IpcBytesSender,
}

#[derive(Serialize, Deserialize)]
struct KindInfo {
    name: String,
    types: Option<(String, String)>,
}

/// The first handshake socket that appears under `dir`.
fn find_socket(dir: &Path, limit: Duration) -> Option<PathBuf> {
    let t = Instant::now();
    while t.elapsed() < limit {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let socket = e.path().join("socket");
            if socket.exists() {
                return Some(socket);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

#[test]
fn a_process_that_connects_first_without_the_secret_gets_no_job() {
    let tmp = std::env::temp_dir().join(format!("pv-impostor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).unwrap();
    // SAFETY: set before any thread of this test process starts.
    unsafe { std::env::set_var("TMPDIR", &tmp) };

    // The real worker waits 1 s before it connects, so the impostor wins
    // (even on a loaded machine).
    let worker = WorkerCommand::new("/bin/sh")
        .arg("-c")
        .arg("sleep 1; exec \"$0\"")
        .arg(env!("CARGO_BIN_EXE_procvisor"));
    let impostor = std::thread::spawn({
        let tmp = tmp.clone();
        move || {
            let socket = find_socket(&tmp, Duration::from_secs(10)).expect("a handshake socket");
            // The socket's file appears when it is bound, a moment before
            // it listens: an attacker keeps trying, and so does this one.
            let t = Instant::now();
            let server = loop {
                match IpcSender::<Handshake>::connect(socket.to_string_lossy().into_owned()) {
                    Ok(server) => break server,
                    Err(e) if t.elapsed() > Duration::from_secs(5) => {
                        panic!("the impostor cannot connect: {e}")
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            };
            let (to_worker, jobs) = ipc::bytes_channel().unwrap();
            let (control, _control_rx) = ipc::bytes_channel().unwrap();
            server
                .send(Handshake::Hello(Hello {
                    version: 3,
                    pid: std::process::id(),
                    secret: [0; 16],
                    kinds: vec![KindInfo {
                        name: "echo".into(),
                        types: None,
                    }],
                    to_worker,
                    control,
                }))
                .unwrap();
            // Whatever the supervisor sends now would be a job's payload.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(3) {
                if let Ok(bytes) = jobs.try_recv() {
                    return Some(bytes);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        }
    });

    let sup = start(
        config(1)
            .worker(worker)
            .start_timeout(Duration::from_secs(10)),
    );
    let report = wait(
        sup.submit(Job::json("echo", &json!("private"))).unwrap(),
        30,
    );
    assert!(report.outcome.is_completed(), "{report:?}");
    let stolen = impostor.join().unwrap();
    assert!(
        stolen.is_none(),
        "the impostor received {} bytes",
        stolen.map_or(0, |b| b.len())
    );
    let snap = sup.snapshot_blocking().unwrap();
    assert!(
        snap.counts.restarts >= 1,
        "the worker whose handshake was taken is replaced: {:?}",
        snap.counts
    );

    // What another process can read of the serving worker names neither
    // the socket nor any secret: only descriptor numbers (and the
    // supervisor's pid, its parent, which /proc shows anyway).
    let pid = worker_pids(&sup)[0];
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("socket"), "{environ}");
    for var in environ.split('\0').filter(|v| v.starts_with("PROCVISOR_")) {
        let value = var.split_once('=').map_or("", |(_, v)| v);
        assert!(
            value.bytes().all(|b| b.is_ascii_digit() || b == b':'),
            "{var} is visible to other processes"
        );
    }
    sup.shutdown_blocking(Duration::from_secs(5));
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_worker_program_that_never_presents_its_secret_is_not_restarted_for_ever() {
    let exe = std::env::current_exe().unwrap();
    let program = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("secretless_worker");
    assert!(
        program.exists(),
        "{} is missing: cargo test builds it",
        program.display()
    );
    let t = Instant::now();
    // Its sockets in a folder of its own, away from the impostor's.
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procvisor"))
        .args(["run", "noop", "{}", "--worker"])
        .arg(&program)
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("never became a worker") && err.contains("three times"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "gave up within the restart backoff: {:?}",
        t.elapsed()
    );
}

#[test]
fn the_handshake_socket_is_this_users_alone_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // `procvisor run` under umask 000, its worker slow to connect, so the
    // socket can be looked at while it waits.
    let slow = tmp.path().join("slow-worker");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 1\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_procvisor")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut run = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" run noop '{}' --worker \"$1\"")
        .arg(env!("CARGO_BIN_EXE_procvisor"))
        .arg(&slow)
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let socket = find_socket(tmp.path(), Duration::from_secs(10));
    // By the time the worker is told where it is (it was told at once;
    // it waits 1 s before it connects).
    std::thread::sleep(Duration::from_millis(300));
    let modes = socket.as_ref().map(|s| {
        let dir = std::fs::metadata(s.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let file = std::fs::metadata(s)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        (dir, file)
    });
    let _ = run.kill();
    let out = run.wait_with_output().unwrap();
    let (dir, file) = modes.unwrap_or_else(|| {
        panic!(
            "no handshake socket appeared: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(dir & 0o077, 0, "the socket's folder is {dir:o}");
    assert_eq!(file & 0o077, 0, "the socket is {file:o}");
}
