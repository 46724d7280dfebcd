//! A worker program that never presents the secret it is given: it reads
//! where to connect from the pipe a supervisor hands it, connects, and
//! sends a hello with a wrong secret, as a broken or hostile program
//! would. The supervisor must refuse it, and, when it does so every time,
//! stop starting it and say why, instead of replacing it for ever. Used by
//! `tests/impostor.rs`.

use std::io::Read;
use std::os::fd::FromRawFd;

use ipc_channel::ipc::{self, IpcSender};
use serde::{Deserialize, Serialize};

/// What the supervisor's pipe holds, as this program reads it.
#[derive(Deserialize)]
struct Bootstrap {
    server: String,
    #[allow(dead_code)]
    secret: [u8; 16],
}

#[derive(Serialize)]
enum Handshake {
    Hello(Hello),
}

#[derive(Serialize)]
struct Hello {
    version: u32,
    pid: u32,
    secret: [u8; 16],
    kinds: Vec<KindInfo>,
    to_worker: ipc::IpcBytesSender,
    control: ipc::IpcBytesSender,
}

#[derive(Serialize)]
struct KindInfo {
    name: String,
    types: Option<(String, String)>,
}

fn main() {
    let marker = std::env::var("PROCVISOR_HANDSHAKE_FD").expect("started by a supervisor");
    let fd: i32 = marker.split(':').next().unwrap().parse().unwrap();
    // SAFETY: the descriptor the supervisor handed this process, read once.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut bytes = Vec::new();
    pipe.read_to_end(&mut bytes).unwrap();
    let boot: Bootstrap = postcard::from_bytes(&bytes).unwrap();
    let server = IpcSender::<Handshake>::connect(boot.server).unwrap();
    let (to_worker, _jobs) = ipc::bytes_channel().unwrap();
    let (control, _control) = ipc::bytes_channel().unwrap();
    let _ = server.send(Handshake::Hello(Hello {
        version: 3,
        pid: std::process::id(),
        secret: [0; 16],
        kinds: vec![KindInfo {
            name: "noop".into(),
            types: None,
        }],
        to_worker,
        control,
    }));
    std::thread::sleep(std::time::Duration::from_secs(30));
}
