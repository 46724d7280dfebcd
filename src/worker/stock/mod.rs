//! The stock handlers: what `procvisor-worker` (and the `procvisor` CLI as its
//! own worker) serves, for demos, benchmarks and tests of every way a job can
//! end.
//!
//! Only the first four are *safe* to serve from a job queue that others
//! can write to ([`safe_worker`]); the rest crash, hang, exhaust memory, or
//! read and write files a job names. `procvisor supervise` serves the safe
//! ones unless told `--test-handlers`: it starts the stock worker with
//! [`HANDLERS_ENV`]`=safe`, which [`worker_for_env`] obeys.
//!
//! | kind | payload | does |
//! |---|---|---|
//! | `noop` | `{}` | nothing; returns `null` |
//! | `echo` | anything | returns its payload unchanged |
//! | `sleep` | `{"secs": 1.5}` | sleeps (stops early when cancelled), reporting progress every 250 ms; returns `{"slept": secs}` |
//! | `fail` | `{}` or `{"message": "…"}` | returns an error |
//! | `panic` | `{}` | panics |
//! | `abort` | `{}` | aborts the process (`SIGABRT`) |
//! | `segfault` | `{}` | writes to an unmapped address (`SIGSEGV`) |
//! | `hang` | `{}` | ignores `SIGTERM` and spins forever |
//! | `alloc` | `{"mib": 100}` | allocates and touches N MiB, holds it 50 ms; returns `{"mib": n}` |
//! | `garbage` | `{}` | writes bytes that are not a frame to the supervisor channel, then waits |
//! | `flood_progress` | `{"secs": 2}` | reports progress as fast as it can for that long; returns how many reports it sent |
//! | `lying_finish` | `{}` | reports its own end with a run time of 31 years, then stays busy |
//! | `flood_heartbeats` | `{"secs": 2}` | writes heartbeat frames as fast as the pipe takes them for that long; returns how many |
//! | `spawn_then` | `{"pid_file": "...", "then": "segfault"}` | starts a `sleep` child, writes its pid, then segfaults, exits, or returns |
//! | `chatty` | `"text"` | prints the text to its standard output, returns it |
//! | `hunt` | `{"dir": "...", "first": 0, "count": 100}` | searches files of a treasure-hunt data set (see [`hunt`]) |

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{JobContext, Worker};
use crate::wire::JobResult;

pub mod hunt;

/// An empty payload: `{}` in JSON, nothing in postcard.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Empty {}

/// Input of `sleep`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SleepArgs {
    /// How long to sleep, in seconds.
    pub secs: f64,
}

/// Output of `sleep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slept {
    /// How long it slept, in seconds.
    pub slept: f64,
}

/// Input of `fail`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct FailArgs {
    /// The error message (a default one if absent).
    #[serde(default)]
    pub message: Option<String>,
}

/// Input and output of `alloc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocArgs {
    /// How many MiB to allocate.
    pub mib: u64,
    /// Keep the memory after the job (leak it), as a leaky handler would.
    #[serde(default)]
    pub keep: bool,
    /// Allocate as most code does, where a refused allocation aborts the
    /// process (by default the handler asks first and fails cleanly).
    #[serde(default)]
    pub plain: bool,
}

/// The environment variable that, set to `safe`, makes the stock worker
/// programs serve only [`safe_worker`]'s handlers.
pub const HANDLERS_ENV: &str = "PROCVISOR_STOCK_HANDLERS";

/// The stock worker as its environment asks: only the safe handlers when
/// [`HANDLERS_ENV`] is `safe`, every stock handler otherwise. What the
/// stock binaries run.
pub fn worker_for_env() -> Worker {
    match std::env::var_os(HANDLERS_ENV) {
        Some(v) if v == "safe" => safe_worker(),
        _ => worker(),
    }
}

/// A worker with the handlers that are safe to serve from a job queue
/// others can write to: `noop`, `echo`, `sleep` and `fail`.
pub fn safe_worker() -> Worker {
    safe(Worker::new())
}

fn safe(w: Worker) -> Worker {
    w.handler("noop", |_: Empty, _| Ok::<_, String>(()))
        .raw_handler("echo", |payload, _| JobResult::Ok(payload.clone()))
        .handler("sleep", sleep)
        .handler("fail", |a: FailArgs, _| {
            Err::<(), _>(
                a.message
                    .unwrap_or_else(|| "the fail handler always fails".into()),
            )
        })
}

/// A worker with every stock handler registered, the test handlers too.
pub fn worker() -> Worker {
    safe(Worker::new())
        .handler("panic", |_: Empty, _| -> Result<(), String> {
            panic!("the panic handler panicked on purpose")
        })
        .handler("abort", |_: Empty, _| -> Result<(), String> {
            std::process::abort()
        })
        .handler("segfault", |_: Empty, _| -> Result<(), String> {
            // Page 0 is never mapped on Linux: this store faults.
            let p = std::ptr::without_provenance_mut::<u8>(16);
            // SAFETY: not safe at all, on purpose: the process dies of SIGSEGV.
            unsafe { p.write_volatile(1) };
            Err("the segfault handler survived its own fault".into())
        })
        .handler("hang", |_: Empty, _| -> Result<(), String> {
            // SAFETY: setting a signal's disposition to SIG_IGN is always sound.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            loop {
                std::hint::spin_loop();
            }
        })
        .handler("alloc", |a: AllocArgs, _| -> Result<AllocArgs, String> {
            let bytes = usize::try_from(a.mib)
                .ok()
                .and_then(|m| m.checked_mul(1 << 20))
                .ok_or_else(|| format!("{} MiB does not fit in memory here", a.mib))?;
            let mut v: Vec<u8> = Vec::new();
            if a.plain {
                v = vec![1; bytes];
            } else {
                v.try_reserve_exact(bytes)
                    .map_err(|e| format!("cannot allocate {} MiB: {e}", a.mib))?;
                v.resize(bytes, 1);
            }
            std::thread::sleep(Duration::from_millis(50));
            std::hint::black_box(&v);
            if a.keep {
                v.leak();
            }
            Ok(a)
        })
        .handler("hunt", hunt::hunt)
        .handler("spawn_then", spawn_then)
        .handler("chatty", |text: String, _| -> Result<String, String> {
            // A handler that prints, as many do.
            println!("{text}");
            Ok(text)
        })
        .handler(
            "flood_progress",
            |a: SleepArgs, ctx| -> Result<u64, String> {
                // Reports progress as fast as it can, as a careless loop would.
                let until = Instant::now() + Duration::from_secs_f64(a.secs.clamp(0.0, 60.0));
                let mut sent = 0u64;
                while Instant::now() < until {
                    ctx.progress((sent % 100) as f32 / 100.0, "flooding");
                    sent += 1;
                }
                Ok(sent)
            },
        )
        .handler(
            "flood_heartbeats",
            |a: SleepArgs, ctx| -> Result<u64, String> {
                // Writes heartbeat frames, one per write, as fast as the pipe
                // takes them: what a hostile worker program could send.
                let frame = crate::wire::stream::frame_into(
                    &[crate::wire::FromWorker::Heartbeat],
                    Vec::new(),
                )
                .map_err(|e| e.to_string())?;
                let burst = frame.repeat(64);
                let until = Instant::now() + Duration::from_secs_f64(a.secs.clamp(0.0, 60.0));
                let mut sent = 0u64;
                while Instant::now() < until {
                    ctx.send_raw_bytes_for_tests(&burst);
                    sent += 64;
                }
                Ok(sent)
            },
        )
        .handler("lying_finish", |_: Empty, ctx| -> Result<(), String> {
            // Reports its own end with a run time of 31 years, as a hostile
            // worker could, then stays busy.
            let frame = crate::wire::stream::frame_into(
                &[crate::wire::FromWorker::Finished {
                    job: ctx.job_id(),
                    result: JobResult::Ok(crate::Payload::json(&()).map_err(|e| e.to_string())?),
                    run_us: 1_000_000_000_000_000,
                }],
                Vec::new(),
            )
            .map_err(|e| e.to_string())?;
            ctx.send_raw_bytes_for_tests(&frame);
            std::thread::sleep(Duration::from_secs(60));
            Err("the supervisor did not take the forged ending".into())
        })
        .handler("garbage", |_: Empty, ctx| -> Result<(), String> {
            ctx.send_raw_bytes_for_tests(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xffnot a frame");
            std::thread::sleep(Duration::from_secs(30));
            Err("the supervisor did not notice the garbage".into())
        })
}

/// Input of `spawn_then`: where to write the child's pid, and how the
/// worker ends afterwards (`segfault`, `exit`, `return`, or `hang`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpawnThen {
    /// A file to write the started child's pid to.
    pub pid_file: String,
    /// `segfault`, `exit` (the worker process exits), `return`, or `hang`
    /// (the job runs until it is stopped).
    pub then: String,
}

/// Start a long-lived child process (as a careless handler might), then end
/// as asked: for tests that nothing a worker starts outlives it.
fn spawn_then(a: SpawnThen, _: &JobContext) -> Result<u32, String> {
    let child = std::process::Command::new("sleep")
        .arg("1000")
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start sleep: {e}"))?;
    let pid = child.id();
    std::fs::write(&a.pid_file, pid.to_string()).map_err(|e| e.to_string())?;
    match a.then.as_str() {
        "segfault" => {
            let p = std::ptr::without_provenance_mut::<u8>(16);
            // SAFETY: not safe at all, on purpose: the process dies of SIGSEGV.
            unsafe { p.write_volatile(1) };
            Err("survived".into())
        }
        "exit" => std::process::exit(7),
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        _ => Ok(pid),
    }
}

/// How often `sleep` reports its progress.
const SLEEP_PROGRESS_EVERY: Duration = Duration::from_millis(250);

fn sleep(a: SleepArgs, ctx: &JobContext) -> Result<Slept, String> {
    if !a.secs.is_finite() || a.secs < 0.0 {
        return Err(format!(
            "secs must be a non-negative number, got {}",
            a.secs
        ));
    }
    let total = Duration::try_from_secs_f64(a.secs)
        .map_err(|_| format!("secs {} is too large to sleep", a.secs))?;
    let start = Instant::now();
    let mut told = start;
    while start.elapsed() < total {
        if ctx.is_cancelled() {
            return Err("cancelled".into());
        }
        if told.elapsed() >= SLEEP_PROGRESS_EVERY {
            told = Instant::now();
            let slept = start.elapsed().as_secs_f64();
            ctx.progress(
                (slept / a.secs) as f32,
                format!("slept {slept:.1} of {} s", a.secs),
            );
        }
        std::thread::sleep((total - start.elapsed()).min(Duration::from_millis(10)));
    }
    Ok(Slept { slept: a.secs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Payload;

    fn run(kind: &str, json: &str) -> JobResult {
        worker().run_once(kind, &Payload::json_text(json).unwrap())
    }

    #[test]
    fn in_process_results() {
        assert_eq!(
            run("noop", "{}"),
            JobResult::Ok(Payload::json(&()).unwrap())
        );
        let echo = Payload::json_text(r#"{"x":[1,2]}"#).unwrap();
        assert_eq!(worker().run_once("echo", &echo), JobResult::Ok(echo));
        assert_eq!(
            run("sleep", r#"{"secs":0.01}"#),
            JobResult::Ok(Payload::json(&Slept { slept: 0.01 }).unwrap())
        );
        assert_eq!(
            run("fail", "{}"),
            JobResult::Err("the fail handler always fails".into())
        );
        match run("panic", "{}") {
            JobResult::Panic(m) => {
                assert!(m.contains("panicked on purpose"), "{m}");
                assert!(m.contains("stock/mod.rs"), "no location in {m}");
            }
            other => panic!("{other:?}"),
        }
        match run("sleep", r#"{"secs":"long"}"#) {
            JobResult::BadInput(m) => assert!(m.contains("invalid type"), "{m}"),
            other => panic!("{other:?}"),
        }
        match run("nope", "{}") {
            JobResult::UnknownKind(m) => {
                assert!(m.contains("\"nope\"") && m.contains("sleep"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(run("alloc", r#"{"mib": 4}"#), JobResult::Ok(_)));
        assert!(matches!(run("sleep", r#"{"secs": -1}"#), JobResult::Err(_)));
    }

    #[test]
    fn postcard_payloads_too() {
        let p = Payload::postcard(&SleepArgs { secs: 0.0 }).unwrap();
        match worker().run_once("sleep", &p) {
            JobResult::Ok(out) => assert_eq!(out.decode::<Slept>().unwrap(), Slept { slept: 0.0 }),
            other => panic!("{other:?}"),
        }
    }
}
