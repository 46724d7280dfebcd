//! `procvisor-worker`: the stock procvisor worker.
//!
//! Started by a supervisor it serves the stock handlers (`noop`, `echo`,
//! `sleep`, `fail`, `panic`, `abort`, `segfault`, `hang`, `alloc`, …) over
//! IPC. Run by hand: `procvisor-worker --once sleep '{"secs": 1}'`.
//!
//! This is also the model of a worker binary of your own: build a
//! [`procvisor::Worker`] with your handlers and call `main()`.

fn main() {
    procvisor::stock::worker_for_env().main()
}
