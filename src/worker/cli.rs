//! The command line of a worker binary run by hand (not by a supervisor).

use super::Worker;
use crate::wire::{Codec, JobResult, Payload};

const HELP: &str = "\
A procvisor worker. Started by a procvisor supervisor, it serves jobs; run by
hand, it runs one job in this process and prints its result.

Usage:
  WORKER --once KIND [JSON]   run one job of KIND with the JSON payload
                              (default {}), print its result as JSON
  WORKER --list               list the job kinds this worker serves
  WORKER --help               this text

Examples:
  procvisor-worker --list
  procvisor-worker --once sleep '{\"secs\": 1.5}'
  procvisor-worker --once echo '{\"hello\": \"world\"}'";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
enum Args {
    Once { kind: String, json: String },
    List,
    Help,
}

/// Parse the three forms; the error says what was wrong.
fn parse(args: &[String]) -> Result<Args, String> {
    match args {
        [flag] if flag == "--list" => Ok(Args::List),
        [flag] if flag == "--help" || flag == "-h" => Ok(Args::Help),
        [flag, kind] if flag == "--once" => Ok(Args::Once {
            kind: kind.clone(),
            json: "{}".into(),
        }),
        [flag, kind, json] if flag == "--once" => Ok(Args::Once {
            kind: kind.clone(),
            json: json.clone(),
        }),
        [flag, ..] if flag == "--once" => {
            Err("--once takes a KIND and at most one JSON payload".into())
        }
        [] => Err("no arguments".into()),
        [other, ..] => Err(format!("unexpected argument {other:?}")),
    }
}

/// Run the standalone command line; returns the exit code.
pub(crate) fn standalone(worker: &Worker) -> i32 {
    crate::init_tracing();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(why) => {
            eprintln!(
                "error: {why}. This is a procvisor worker: a supervisor starts it; by hand, try --once KIND JSON (kinds: {}) or --help",
                worker.kinds().join(", ")
            );
            return 2;
        }
    };
    let (kind, json) = match args {
        Args::Help => {
            println!("{HELP}");
            return 0;
        }
        Args::List => {
            for k in worker.kinds() {
                println!("{k}");
            }
            return 0;
        }
        Args::Once { kind, json } => (kind, json),
    };
    let kind = &kind;
    let payload = match Payload::json_text(&json) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, String> {
        parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_three_forms_parse_and_anything_else_says_why() {
        assert_eq!(args(&["--list"]), Ok(Args::List));
        assert_eq!(args(&["--help"]), Ok(Args::Help));
        assert_eq!(
            args(&["--once", "sleep"]),
            Ok(Args::Once {
                kind: "sleep".into(),
                json: "{}".into()
            })
        );
        assert_eq!(
            args(&["--once", "echo", "[1]"]),
            Ok(Args::Once {
                kind: "echo".into(),
                json: "[1]".into()
            })
        );
        assert!(args(&["--once"]).unwrap_err().contains("KIND"));
        assert!(args(&["--once", "a", "b", "c"])
            .unwrap_err()
            .contains("at most one"));
        assert!(args(&["--frobnicate"])
            .unwrap_err()
            .contains("--frobnicate"));
        assert!(args(&[]).is_err());
    }
}
