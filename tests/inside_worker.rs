//! A process that was started as a worker may not start a supervisor (the
//! fork storm of an application that forgot `run_if_worker()`). In its own
//! test binary: it sets the worker's marker in this process's environment.

mod common;

use procvisor::{StartError, Supervisor};

#[test]
fn a_worker_that_forgot_run_if_worker_cannot_start_a_supervisor() {
    // What a supervisor sets in the environment of the workers it starts:
    // the descriptor, and the supervisor's pid (this process's parent).
    std::env::set_var(
        "PROCVISOR_HANDSHAKE_FD",
        format!("4:{}", std::os::unix::process::parent_id()),
    );
    match Supervisor::start(common::config(2)) {
        Err(e @ StartError::InsideWorker) => {
            let msg = e.to_string();
            assert!(msg.contains("run_if_worker"), "{msg}");
            assert!(msg.contains("CARGO_BIN_EXE"), "{msg}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a worker started a supervisor"),
    }
}
