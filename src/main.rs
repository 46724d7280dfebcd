//! The `procvisor` command: run a job, benchmark the supervisor, and (when a
//! supervisor starts it as a worker) serve the stock handlers itself.

mod cli;

fn main() {
    // When a supervisor started this executable as its worker, serve and exit.
    procvisor::stock::worker_for_env().run_if_worker();
    procvisor::init_tracing();
    std::process::exit(cli::main());
}
