//! Embedding procvisor in an application that is its own worker.
//!
//! The same executable plays both parts: started normally it runs a
//! supervisor; started by that supervisor it serves the handlers registered
//! below. Run it with `cargo run --example embed`.

use std::time::Duration;

use procvisor::{Config, Job, JobContext, Outcome, Supervisor, Task, Worker, WorkerCommand};
use serde::{Deserialize, Serialize};

/// A typed job: its kind and output type are known to both sides.
#[derive(Serialize, Deserialize)]
struct Fib {
    n: u32,
}

impl Task for Fib {
    const KIND: &'static str = "fib";
    type Output = u64;
}

fn fib(job: Fib, ctx: &JobContext) -> Result<u64, String> {
    let (mut a, mut b) = (0u64, 1u64);
    for i in 0..job.n {
        if ctx.is_cancelled() {
            return Err("cancelled".into());
        }
        (a, b) = (
            b,
            a.checked_add(b)
                .ok_or(format!("fib({}) overflows u64 at step {i}", job.n))?,
        );
    }
    Ok(a)
}

fn main() {
    // First thing: if a supervisor started us as a worker, serve and exit.
    Worker::new()
        .task(fib)
        .handler("shout", |s: String, _: &JobContext| {
            Ok::<_, String>(s.to_uppercase())
        })
        .run_if_worker();

    let config = Config::new(WorkerCommand::current_exe().expect("own path"))
        .workers(2)
        .default_timeout(Some(Duration::from_secs(5)));
    let sup = Supervisor::start(config).expect("workers start");

    // Typed: the result type comes from the Task.
    let h = sup.submit(Job::task(&Fib { n: 90 })).expect("valid job");
    println!("fib(90) = {:?}", h.wait().into_result());

    // Many at once, urgent ones first.
    let handles: Vec<_> = (0..5u8)
        .map(|p| {
            sup.submit(Job::<String>::new("shout", &format!("priority {p}")).priority(p))
                .unwrap()
        })
        .collect();
    for h in handles {
        let r = h.wait();
        println!(
            "job {} ran in pid {:?}: {}",
            r.id,
            r.worker_pid,
            match r.outcome {
                Outcome::Completed(s) => s,
                other => other.to_string(),
            }
        );
    }

    // A failure is an outcome, not a crash of the application.
    let r = sup.submit(Job::task(&Fib { n: 200 })).unwrap().wait();
    println!("fib(200): {}", r.outcome);

    sup.shutdown_blocking(Duration::from_secs(1));
}
