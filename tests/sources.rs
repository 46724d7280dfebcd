//! A job source other than `Supervisor::submit` feeds the same scheduling
//! core and receives every ending of its jobs through the same path: an
//! in-process source that feeds a few hundred jobs (with timeouts,
//! evictions and crashes) and records each ending it is given.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, eventually, start};
use procvisor::{AttemptEnd, JobSink};
use procvisor::{Job, Outcome, Payload, Report};
use serde_json::json;

/// Records what it is told, by token.
#[derive(Default)]
struct Recorder {
    ended: Mutex<HashMap<u64, Vec<Report<Payload>>>>,
    retried: Mutex<Vec<(u64, u32)>>,
}

impl JobSink for Recorder {
    fn ended(&self, token: u64, report: Report<Payload>) {
        self.ended
            .lock()
            .unwrap()
            .entry(token)
            .or_default()
            .push(report);
    }

    fn retrying(&self, token: u64, attempt: &AttemptEnd) {
        self.retried.lock().unwrap().push((token, attempt.attempt));
    }
}

#[test]
fn a_source_receives_exactly_one_ending_per_job() {
    // Fifty jobs crash their worker on purpose: allow the restarts.
    let sup = start(config(2).restart(procvisor::RestartPolicy {
        max_restarts: 1000,
        ..procvisor::RestartPolicy::default()
    }));
    let sink = Arc::new(Recorder::default());
    // Tokens are the source's own names for its jobs (a store row, say).
    let mut expect = HashMap::new();
    // The low priority jobs first, so that the urgent ones arrive while
    // they run and evict them.
    let mut tokens: Vec<u64> = (1000..1300).collect();
    tokens.sort_by_key(|t| t % 6 != 3);
    for token in tokens {
        let (job, want): (Job, &str) = match token % 6 {
            0 => (
                Job::json("sleep", &json!({"secs": 0.5})).timeout(Duration::from_millis(5)),
                "timed_out",
            ),
            1 => (Job::json("segfault", &json!({})), "crashed"),
            2 => (Job::json("fail", &json!({})), "failed"),
            // Low priority jobs that urgent ones evict and put back.
            3 => (
                Job::json("sleep", &json!({"secs": 0.02})).priority(10),
                "completed",
            ),
            4 => (Job::json("echo", &json!(token)).priority(0), "completed"),
            _ => (
                Job::json("fail", &json!({})).retry(procvisor::RetryPolicy::attempts(
                    2,
                    Duration::ZERO,
                    Duration::ZERO,
                )),
                "failed",
            ),
        };
        sup.submit_for(job, sink.clone(), token).unwrap();
        expect.insert(token, want);
    }
    let all_ended = eventually(Duration::from_secs(60), || {
        sink.ended.lock().unwrap().len() == expect.len()
    });
    assert!(
        all_ended,
        "{} of {} ended",
        sink.ended.lock().unwrap().len(),
        expect.len()
    );
    // A moment more: a second ending of any job would show up now.
    std::thread::sleep(Duration::from_millis(200));
    let ended = sink.ended.lock().unwrap();
    for (token, want) in &expect {
        let reports = &ended[token];
        assert_eq!(
            reports.len(),
            1,
            "job {token} ended {} times",
            reports.len()
        );
        let outcome = &reports[0].outcome;
        assert_eq!(outcome.name(), *want, "job {token}: {outcome:?}");
        if *token % 6 == 4 {
            assert_eq!(
                reports[0].clone().decode::<u64>().outcome,
                Outcome::Completed(*token)
            );
        }
    }
    // The retried jobs were told of their first attempt, once each.
    let retried = sink.retried.lock().unwrap();
    assert_eq!(retried.len(), expect.keys().filter(|t| *t % 6 == 5).count());
    assert!(retried
        .iter()
        .all(|&(t, attempt)| t % 6 == 5 && attempt == 1));
    let counts = sup.snapshot_blocking().unwrap().counts;
    assert_eq!(counts.ended(), expect.len() as u64);
    assert_eq!(counts.submitted, expect.len() as u64);
    assert!(counts.evictions > 0, "no job was evicted: {counts:?}");
    let evicted_and_back = ended.values().filter(|r| r[0].evictions > 0).count();
    assert!(evicted_and_back > 0);
}

#[test]
fn demand_tells_a_source_how_much_to_feed() {
    let sup = start(config(2));
    let demand = futures_executor::block_on(sup.demand());
    assert_eq!(demand.free, 2);
    assert_eq!(demand.evict_above, None);
    let sink = Arc::new(Recorder::default());
    for token in 0..2 {
        sup.submit_for(
            Job::json("sleep", &json!({"secs": 0.5})).priority(7),
            sink.clone(),
            token,
        )
        .unwrap();
    }
    assert!(eventually(Duration::from_secs(5), || {
        let d = futures_executor::block_on(sup.demand());
        d.free == 0 && d.evict_above == Some(7)
    }));
}
