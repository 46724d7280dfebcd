//! A weighted-random supervisor: jobs of weights 1, 2 and 4 wait together;
//! one worker draws them; print the share each weight got against the
//! expected weight / total. `cargo run --release --example weighted`.

use std::collections::BTreeMap;
use std::time::Duration;

use procvisor::Policy;
use procvisor::{Config, Job, Outcome, Supervisor, WorkerCommand};
use serde_json::json;

fn main() -> Result<(), String> {
    procvisor::stock::worker().run_if_worker();

    let exe = WorkerCommand::current_exe().map_err(|e| e.to_string())?;
    let sup = Supervisor::start(
        Config::new(exe)
            .workers(1)
            .policy(Policy::WeightedRandom)
            .seed(42),
    )
    .map_err(|e| e.to_string())?;
    let weights = [1.0, 2.0, 4.0];
    // Hold the worker while the pool fills, so the draws see all of it.
    let gate = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})).priority(0))
        .map_err(|e| e.to_string())?;
    let handles: Vec<_> = (0..3000)
        .flat_map(|_| weights)
        .map(|w| sup.submit(Job::json("echo", &json!(w)).weight(w)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    gate.wait();
    // Let about 700 draws happen, then stop; the pool barely shrinks.
    while sup
        .snapshot_blocking()
        .is_some_and(|s| s.counts.completed < 700)
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    sup.shutdown_blocking(Duration::ZERO);
    let mut drawn: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        if let Outcome::Completed(v) = h.wait().outcome {
            *drawn.entry(v.to_string()).or_insert(0) += 1;
        }
    }
    let n: u64 = drawn.values().sum();
    let total: f64 = weights.iter().sum();
    println!("{n} draws from a pool of {} jobs", weights.len() * 3000);
    for w in weights {
        let got = drawn.get(&json!(w).to_string()).copied().unwrap_or(0);
        println!(
            "weight {w}: drawn {got:>4} times, share {:.3} (expected {:.3})",
            got as f64 / n as f64,
            w / total
        );
    }
    Ok(())
}
