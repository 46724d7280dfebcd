//! Every way a job can end, through real worker processes; after each, the
//! pool keeps serving.

mod common;

use std::time::Duration;

use common::*;
use procvisor::process::Exit;
use procvisor::Crash;
use procvisor::{Job, JobError, Outcome, SubmitError};
use serde_json::{json, Value};

fn echo_works(sup: &procvisor::Supervisor) {
    let r = wait(
        sup.submit(Job::json("echo", &json!({"still": "alive"})))
            .unwrap(),
        20,
    );
    assert_eq!(r.outcome, Outcome::Completed(json!({"still": "alive"})));
}

#[test]
fn completed_results_in_both_codecs() {
    let sup = start(config(1));
    let r = wait(
        sup.submit(Job::json("sleep", &json!({"secs": 0.05})))
            .unwrap(),
        20,
    );
    assert_eq!(r.outcome, Outcome::Completed(json!({"slept": 0.05})));
    assert_eq!(r.attempts, 1);
    assert!(r.worker_pid.is_some());
    assert!(r.ran_for.unwrap() >= Duration::from_millis(50));

    // The typed API: postcard in, postcard out, decoded into the caller's type.
    let typed = sup
        .submit(Job::<procvisor::stock::Slept>::new(
            "sleep",
            &procvisor::stock::SleepArgs { secs: 0.0 },
        ))
        .unwrap();
    assert_eq!(
        wait(typed, 20).outcome,
        Outcome::Completed(procvisor::stock::Slept { slept: 0.0 })
    );

    // A big payload (sent through the writer thread) comes back intact.
    let big = "x".repeat(1 << 20);
    let r = wait(
        sup.submit(Job::json("echo", &json!({ "big": big })))
            .unwrap(),
        20,
    );
    assert_eq!(r.outcome, Outcome::Completed(json!({ "big": big })));
}

#[test]
fn every_stock_failure_gives_its_outcome_and_the_pool_keeps_serving() {
    let sup = start(config(1));

    let r = wait(
        sup.submit(Job::json("fail", &json!({"message": "no luck"})))
            .unwrap(),
        20,
    );
    assert_eq!(
        r.outcome,
        Outcome::Failed(JobError::Handler("no luck".into()))
    );
    echo_works(&sup);

    let r = wait(sup.submit(Job::json("panic", &json!({}))).unwrap(), 20);
    match r.outcome {
        Outcome::Failed(JobError::Panic(m)) => assert!(m.contains("panicked on purpose"), "{m}"),
        other => panic!("panic gave {other:?}"),
    }
    echo_works(&sup);

    let r = wait(sup.submit(Job::json("abort", &json!({}))).unwrap(), 20);
    assert_eq!(r.outcome, Outcome::Crashed(Crash::Exited(Exit::Signal(6))));
    let aborted = r.worker_pid.unwrap();
    echo_works(&sup);
    assert!(gone(aborted), "the aborted worker {aborted} was not reaped");

    let r = wait(sup.submit(Job::json("segfault", &json!({}))).unwrap(), 20);
    assert_eq!(r.outcome, Outcome::Crashed(Crash::Exited(Exit::Signal(11))));
    echo_works(&sup);

    let r = wait(
        sup.submit(Job::json("hang", &json!({})).timeout(Duration::from_millis(300)))
            .unwrap(),
        20,
    );
    assert_eq!(
        r.outcome,
        Outcome::TimedOut {
            after: Duration::from_millis(300)
        }
    );
    echo_works(&sup);

    let r = wait(
        sup.submit(Job::json("alloc", &json!({"mib": 64}))).unwrap(),
        20,
    );
    assert_eq!(
        r.outcome,
        Outcome::Completed(json!({"mib": 64, "keep": false, "plain": false}))
    );

    let snap = sup.snapshot_blocking().unwrap();
    assert_eq!(snap.counts.crashed, 2);
    assert_eq!(snap.counts.timed_out, 1);
    assert_eq!(snap.counts.failed, 2);
}

#[test]
fn a_worker_that_writes_garbage_crashes_alone() {
    let sup = start(config(2));
    let bystander = sup
        .submit(Job::json("sleep", &json!({"secs": 0.5})))
        .unwrap();
    let r = wait(sup.submit(Job::json("garbage", &json!({}))).unwrap(), 20);
    match &r.outcome {
        // Its bytes start with a length prefix of 2^32 - 1: over the limit.
        Outcome::Crashed(Crash::ProtocolFault(m)) => assert!(m.contains("over the limit"), "{m}"),
        other => panic!("garbage gave {other:?}"),
    }
    let pid = r.worker_pid.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || gone(pid)),
        "garbage worker {pid} lives"
    );
    // The job on the other worker was not disturbed.
    assert_eq!(
        wait(bystander, 20).outcome,
        Outcome::Completed(json!({"slept": 0.5}))
    );
    echo_works(&sup);
}

#[test]
fn bad_input_gets_a_clear_error_and_harms_nothing() {
    let sup = start(config(1).max_payload(1024));
    let running = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})))
        .unwrap();

    match sup.submit(Job::json("nope", &json!({}))).unwrap_err() {
        e @ SubmitError::UnknownKind { .. } => {
            let m = e.to_string();
            assert!(m.contains("\"nope\"") && m.contains("sleep"), "{m}");
        }
        e => panic!("{e:?}"),
    }
    let e = sup
        .submit(Job::json("echo", &json!({})).priority(11))
        .unwrap_err();
    assert_eq!(e, SubmitError::Priority(11));
    assert!(e.to_string().contains("0 (most urgent) to 10"));
    let e = sup
        .submit(Job::json("echo", &json!({})).timeout(Duration::ZERO))
        .unwrap_err();
    assert_eq!(e, SubmitError::ZeroTimeout);
    let e = sup
        .submit(Job::json("echo", &json!({"x": "y".repeat(2000)})))
        .unwrap_err();
    assert!(
        matches!(e, SubmitError::PayloadTooLarge { limit: 1024, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("max_payload"));
    let e = sup.submit(Job::json_text("echo", "{not json")).unwrap_err();
    assert!(matches!(e, SubmitError::BadPayload(_)), "{e:?}");

    // Accepted, but the worker cannot read it: Failed with serde's message.
    let r = wait(
        sup.submit(Job::json("sleep", &json!({"secs": "long"})))
            .unwrap(),
        20,
    );
    match r.outcome {
        Outcome::Failed(JobError::BadInput(m)) => assert!(m.contains("invalid type"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A result that does not fit the caller's type: Failed, clearly.
    let r = wait(
        sup.submit(Job::<u64>::new_json("echo", "text")).unwrap(),
        20,
    );
    assert!(
        matches!(r.outcome, Outcome::Failed(JobError::BadResult(_))),
        "{:?}",
        r.outcome
    );

    assert_eq!(
        wait(running, 20).outcome,
        Outcome::Completed(json!({"slept": 0.3}))
    );
    sup.shutdown_blocking(Duration::from_secs(1));
    assert_eq!(
        sup.submit(Job::json("echo", &Value::Null)).unwrap_err(),
        SubmitError::ShuttingDown
    );
}
