//! Each job's true ending: prefetched jobs are timed from their own start,
//! the outcome of a job whose supervisor gave up is its real one, results
//! over the size limit are a protocol fault, and bad settings are refused.

mod common;

use std::time::{Duration, Instant};

use common::{config, start, wait};
use procvisor::Crash;
use procvisor::{Job, Outcome, StartError, SubmitError, Supervisor};
use procvisor::{RateLimit, RestartPolicy, RetryPolicy};
use serde_json::json;

#[test]
fn a_prefetched_job_is_timed_from_its_own_start() {
    // One worker holding three jobs: a 0.3 s job, then a 0.5 s job with a
    // 0.1 s timeout, then a 20 ms job with a 0.2 s timeout.
    let sup = start(config(1).prefetch(4));
    let first = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})))
        .unwrap();
    let overrun = sup
        .submit(Job::json("sleep", &json!({"secs": 0.5})).timeout(Duration::from_millis(100)))
        .unwrap();
    let quick = sup
        .submit(Job::json("sleep", &json!({"secs": 0.02})).timeout(Duration::from_millis(200)))
        .unwrap();
    let first = wait(first, 20);
    assert!(first.outcome.is_completed());
    // The run time is the worker's own measure of the handler.
    let ran = first.ran_for.unwrap();
    assert!(
        ran >= Duration::from_millis(300) && ran < Duration::from_millis(400),
        "{ran:?}"
    );
    // Its clock started when it started, not when it was handed over.
    assert_eq!(
        wait(overrun, 20).outcome,
        Outcome::TimedOut {
            after: Duration::from_millis(100)
        }
    );
    // It never ran twice, and the job after it kept its own clock.
    let quick = wait(quick, 20);
    assert!(quick.outcome.is_completed(), "{:?}", quick.outcome);
    assert_eq!(quick.attempts, 1);
    let c = sup.snapshot_blocking().unwrap().counts;
    assert_eq!((c.completed, c.timed_out, c.ended()), (2, 1, 3));
}

#[test]
fn after_the_restart_limit_trips_shutdown_honours_its_grace_and_the_real_outcome_is_reported() {
    let sup = start(config(2).restart(RestartPolicy {
        max_restarts: 0,
        ..RestartPolicy::default()
    }));
    let long = sup
        .submit(Job::json("sleep", &json!({"secs": 10})))
        .unwrap();
    common::running_pid(&long);
    let crash = sup.submit(Job::json("segfault", &json!({}))).unwrap();
    assert!(matches!(wait(crash, 20).outcome, Outcome::Crashed(_)));
    assert!(common::eventually(Duration::from_secs(5), || matches!(
        sup.snapshot_blocking().unwrap().state,
        procvisor::State::Failed(_)
    )));
    let t = Instant::now();
    sup.shutdown_blocking(Duration::from_millis(100));
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "shutdown took {took:?}: the grace was not honoured"
    );
    // The running job was cut short by the shutdown: cancelled, as it
    // really ended, not an invented "supervisor stopped".
    assert_eq!(wait(long, 20).outcome, Outcome::Cancelled);
}

#[test]
fn a_result_over_the_limit_is_a_protocol_fault_and_harms_no_other_job() {
    let sup = start(config(2).max_result(1000));
    let big = "x".repeat(200_000);
    let bystander = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})))
        .unwrap();
    let r = wait(sup.submit(Job::json("echo", &json!(big))).unwrap(), 20);
    match r.outcome {
        Outcome::Crashed(Crash::ProtocolFault(why)) => {
            assert!(why.contains("over the limit"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(wait(bystander, 20).outcome.is_completed());
    // The pool serves on.
    let ok = wait(sup.submit(Job::json("echo", &json!("small"))).unwrap(), 20);
    assert_eq!(ok.outcome, Outcome::Completed(json!("small")));
}

fn refused(cfg: procvisor::Config, names: &str) {
    match Supervisor::start(cfg) {
        Err(StartError::Config(e)) => {
            let msg = e.to_string();
            assert!(msg.contains(names), "{msg:?} does not name {names:?}");
        }
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("a configuration with bad {names} was accepted"),
    }
}

#[test]
fn settings_out_of_range_are_refused_with_errors_that_name_them() {
    refused(config(0), "number of workers");
    refused(config(1).prefetch(0), "prefetch");
    refused(config(1).rate_limit(RateLimit::new(0.0, 1)), "rate");
    refused(config(1).rate_limit(RateLimit::new(1e-300, 1)), "rate");
    refused(
        config(1).kind_rate_limit("echo", RateLimit::new(5.0, 0)),
        "burst",
    );
    refused(config(1).cancel_grace(Duration::MAX), "cancel_grace");
    refused(config(1).heartbeat(Duration::MAX, 5), "heartbeat");
    refused(config(1).heartbeat(Duration::from_secs(1), 0), "heartbeat");
    refused(config(1).spin(Duration::MAX), "spin");
    refused(config(1).kill_grace(Duration::MAX), "kill_grace");
    refused(
        config(1).retry(RetryPolicy::attempts(
            65_535,
            Duration::ZERO,
            Duration::ZERO,
        )),
        "attempts",
    );
    refused(config(1).max_result(0), "max_result");
    refused(config(1).kind_limit("echo", 0), "limit of kind");
}

#[test]
fn job_values_out_of_range_are_refused_at_submit_and_huge_waits_do_not_panic() {
    let sup = start(config(1).capacity(Some(10)));
    let e = sup
        .submit(Job::json("echo", &json!(1)).timeout(Duration::MAX))
        .unwrap_err();
    assert!(matches!(e, SubmitError::Timeout(_)), "{e}");
    let e = sup
        .submit(Job::json("echo", &json!(1)).retry(RetryPolicy::attempts(
            1_000_000,
            Duration::ZERO,
            Duration::ZERO,
        )))
        .unwrap_err();
    assert!(matches!(e, SubmitError::Retry(_)), "{e}");
    // A wait too long to represent is a wait without end, not a panic.
    let h = sup
        .submit_timeout(Job::json("echo", &json!(2)), Duration::MAX)
        .unwrap();
    assert_eq!(wait(h, 20).outcome, Outcome::Completed(json!(2)));
}

#[test]
fn retries_near_the_limit_end() {
    // Many allowed attempts, each failing at once: the job ends failed after
    // exactly that many attempts.
    let sup = start(config(1));
    let h = sup
        .submit(Job::json("fail", &json!({})).retry(RetryPolicy::attempts(
            300,
            Duration::ZERO,
            Duration::ZERO,
        )))
        .unwrap();
    let r = wait(h, 60);
    assert!(matches!(r.outcome, Outcome::Failed(_)));
    assert_eq!(r.attempts, 300);
    assert_eq!(r.history.len(), 299);
    assert_eq!(sup.snapshot_blocking().unwrap().counts.retries, 299);
}

#[test]
fn a_typed_job_whose_types_are_not_the_handlers_is_refused_naming_both() {
    let sup = start(config(1));
    // The stock `noop` takes `Empty` and returns `()`.
    let e = sup
        .submit(Job::<String>::new("noop", &procvisor::stock::Empty {}))
        .unwrap_err();
    match &e {
        SubmitError::TypeMismatch { kind, job, handler } => {
            assert_eq!(kind, "noop");
            assert_eq!(job.1, "alloc::string::String");
            assert_eq!(handler.1, "()");
            assert!(handler.0.ends_with("Empty"), "{handler:?}");
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("alloc::string::String") && msg.contains("returns ()"),
        "{msg}"
    );
    // Right types: accepted and run.
    let r = wait(
        sup.submit(Job::<()>::new("noop", &procvisor::stock::Empty {}))
            .unwrap(),
        20,
    );
    assert_eq!(r.outcome, Outcome::Completed(()));
    // Untyped JSON jobs are not checked: the handler decodes them, and a
    // payload that does not fit says which type it expected.
    let r = wait(
        sup.submit(Job::json("sleep", &json!({"secs": "soon"})))
            .unwrap(),
        20,
    );
    match r.outcome {
        Outcome::Failed(procvisor::JobError::BadInput(why)) => {
            assert!(why.contains("SleepArgs"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}
