//! The command line of a worker binary run by hand (not by a supervisor).

use clap::Parser;

use super::Worker;
use crate::wire::{Codec, JobResult, Payload};

/// A procvisor worker. Started by a procvisor supervisor, it serves jobs over
/// IPC; run by hand, it runs one job in this process and prints its result.
#[derive(Parser, Debug)]
#[command(
    after_help = "Examples:\n  procvisor-worker --list\n  procvisor-worker --once sleep '{\"secs\": 1.5}'\n  procvisor-worker --once echo '{\"hello\": \"world\"}'"
)]
struct Args {
    /// Run one job of KIND with the JSON payload, print its result as JSON.
    #[arg(long, value_names = ["KIND", "JSON"], num_args = 1..=2)]
    once: Option<Vec<String>>,
    /// List the job kinds this worker serves.
    #[arg(long)]
    list: bool,
}

/// Run the standalone command line; returns the exit code.
pub(crate) fn standalone(worker: &Worker) -> i32 {
    let args = Args::parse();
    crate::init_tracing();
    if args.list {
        for k in worker.kinds() {
            println!("{k}");
        }
        return 0;
    }
    let Some(once) = args.once else {
        eprintln!(
            "this is a procvisor worker: a supervisor starts it; by hand, try --once KIND JSON (kinds: {}) or --help",
            worker.kinds().join(", ")
        );
        return 2;
    };
    let kind = &once[0];
    let json = once.get(1).map(String::as_str).unwrap_or("{}");
    let payload = match Payload::json_text(json) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "error: the payload for {kind:?} is {e}; pass a JSON value, e.g. '{{\"secs\": 1}}'"
            );
            return 2;
        }
    };
    match worker.run_once(kind, &payload) {
        JobResult::Ok(out) => {
            debug_assert_eq!(out.codec, Codec::Json);
            println!("{}", String::from_utf8_lossy(&out.bytes));
            0
        }
        JobResult::Err(e) => fail("failed", &e),
        JobResult::Panic(e) => fail("panicked", &e),
        JobResult::BadInput(e) => fail("bad input", &format!("{e}; check the payload's fields")),
        JobResult::UnknownKind(e) => fail("unknown kind", &e),
        JobResult::Cancelled => fail("cancelled", "the job was cancelled"),
    }
}

fn fail(what: &str, detail: &str) -> i32 {
    eprintln!("error: {what}: {detail}");
    1
}
