//! `Supervisor::events()`: the live stream of job events, through real
//! worker processes: what each job goes through, in order, with the real
//! worker's pid; and a slow subscriber told what it lost.

mod common;

use std::time::Duration;

use common::{config, eventually, start, wait};
use procvisor::events::{Events, JobEvent, Received, What};
use procvisor::{Job, JobId, Outcome, RetryPolicy};
use serde_json::json;

/// Read events until `done` says so, failing the test after 20 s.
fn read_until(events: &mut Events, mut done: impl FnMut(&[JobEvent]) -> bool) -> Vec<JobEvent> {
    let mut seen = Vec::new();
    let ok = eventually(Duration::from_secs(20), || {
        while let Some(r) = events.try_next() {
            match r {
                Received::Event(e) => seen.push(e),
                Received::Lagged(n) => panic!("lost {n} events with a buffer of 4096"),
            }
        }
        done(&seen)
    });
    assert!(ok, "events so far: {seen:#?}");
    seen
}

fn of(events: &[JobEvent], job: JobId) -> Vec<&What> {
    events
        .iter()
        .filter(|e| e.job == job)
        .map(|e| &e.what)
        .collect()
}

fn ended(w: &What) -> bool {
    matches!(w, What::Ended { .. })
}

#[test]
fn a_job_is_submitted_started_on_a_real_worker_shows_progress_and_ends_once() {
    let sup = start(config(1));
    let mut events = sup.events();
    let h = sup
        .submit(Job::json("sleep", &json!({"secs": 0.6})).priority(3))
        .unwrap();
    let id = h.id();
    let report = wait(h, 20);
    let seen = read_until(&mut events, |s| s.iter().any(|e| ended(&e.what)));
    let mine = of(&seen, id);

    assert_eq!(mine[0], &What::Submitted { priority: 3 });
    let What::Started { pid, attempt, .. } = mine[1] else {
        panic!("second event is not Started: {mine:#?}");
    };
    assert_eq!(*attempt, 1);
    assert_eq!(*pid, report.worker_pid, "the pid the report names");
    let pid = pid.expect("a started job names its worker");
    // The pid is a real process: the worker, a child of this test.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("worker in /proc");
    let ppid: u32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, std::process::id());
    // Progress in between, rising, below 1.
    let progress: Vec<f32> = mine
        .iter()
        .filter_map(|w| match w {
            What::Progress { fraction, note } => {
                assert!(note.contains("slept"), "{note}");
                Some(*fraction)
            }
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty(), "no progress in {mine:#?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(
        progress.iter().all(|f| (0.0..1.0).contains(f)),
        "{progress:?}"
    );
    // One ending, last, with the outcome and the run time.
    assert_eq!(mine.iter().filter(|w| ended(w)).count(), 1, "{mine:#?}");
    let What::Ended { outcome, ran_for } = mine.last().unwrap() else {
        panic!("last event is not Ended: {mine:#?}");
    };
    assert_eq!(outcome, &Outcome::Completed(()));
    assert!(
        ran_for.unwrap() >= Duration::from_millis(600),
        "{ran_for:?}"
    );
    assert!(seen.iter().all(|e| &*e.kind == "sleep"));
}

#[test]
fn retries_evictions_and_failures_are_told_in_order() {
    let sup = start(config(1));
    let mut events = sup.events();
    // Fails twice, each failure retried, then ends failed.
    let failing = sup
        .submit(
            Job::json("fail", &json!({"message": "no luck"})).retry(RetryPolicy::attempts(
                3,
                Duration::from_millis(1),
                Duration::from_millis(5),
            )),
        )
        .unwrap();
    let failing_id = failing.id();
    wait(failing, 20);
    // A long, unurgent job evicted by an urgent one, then run again.
    let low = sup
        .submit(Job::json("sleep", &json!({"secs": 0.3})).priority(9))
        .unwrap();
    let low_id = low.id();
    common::running_pid(&low);
    let urgent = sup
        .submit(Job::json("echo", &json!("urgent")).priority(0))
        .unwrap();
    let urgent_id = urgent.id();
    wait(urgent, 20);
    wait(low, 20);
    let seen = read_until(&mut events, |s| {
        s.iter().any(|e| e.job == low_id && ended(&e.what))
    });

    let f = of(&seen, failing_id);
    let names: Vec<&str> = f
        .iter()
        .map(|w| match w {
            What::Submitted { .. } => "submitted",
            What::Started { .. } => "started",
            What::Retried { .. } => "retried",
            What::Ended { .. } => "ended",
            _ => "other",
        })
        .collect();
    assert_eq!(
        names,
        [
            "submitted",
            "started",
            "retried",
            "started",
            "retried",
            "started",
            "ended"
        ]
    );
    let attempts: Vec<u32> = f
        .iter()
        .filter_map(|w| match w {
            What::Started { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(matches!(
        f[2],
        What::Retried {
            attempt: 1,
            ended: Outcome::Failed(_),
            ..
        }
    ));
    let What::Ended { outcome, .. } = f[6] else {
        unreachable!()
    };
    assert!(outcome.to_string().contains("no luck"), "{outcome}");

    // The evicted job: evicted, requeued, started again, completed; the
    // urgent job ran in between.
    let l = of(&seen, low_id);
    let started = l
        .iter()
        .filter(|w| matches!(w, What::Started { .. }))
        .count();
    assert_eq!(started, 2, "{l:#?}");
    let evicted_at = l
        .iter()
        .position(|w| **w == What::Evicted)
        .expect("evicted");
    let requeued_at = l
        .iter()
        .position(|w| **w == What::Requeued)
        .expect("requeued");
    assert!(evicted_at < requeued_at, "{l:#?}");
    assert!(matches!(
        l.last(),
        Some(What::Ended {
            outcome: Outcome::Completed(()),
            ..
        })
    ));
    let pos = |job: JobId, pred: &dyn Fn(&What) -> bool| {
        seen.iter()
            .position(|e| e.job == job && pred(&e.what))
            .unwrap()
    };
    assert!(pos(low_id, &|w| *w == What::Evicted) < pos(urgent_id, &ended));
    assert!(pos(urgent_id, &ended) < pos(low_id, &ended));
}

#[test]
fn a_slow_subscriber_is_told_how_many_events_it_lost_and_memory_stays_bounded() {
    let sup = start(config(2).event_buffer(8));
    let mut slow = sup.events();
    let mut handles = Vec::new();
    for i in 0..40 {
        handles.push(sup.submit(Job::json("echo", &json!(i))).unwrap());
    }
    for h in handles {
        assert!(wait(h, 20).outcome.is_completed());
    }
    // The actor hears of an ending before its handle does: once it has
    // answered a snapshot, it has told every event.
    assert_eq!(sup.snapshot_blocking().unwrap().counts.ended(), 40);
    // Each job: submitted, started, ended: 120 events, 8 kept.
    let first = slow.try_next().expect("something to read");
    let Received::Lagged(lost) = first else {
        panic!("expected notice of lost events first, got {first:?}");
    };
    let mut kept = 0;
    while let Some(r) = slow.try_next() {
        assert!(matches!(r, Received::Event(_)), "{r:?}");
        kept += 1;
    }
    assert_eq!(kept, 8);
    assert_eq!(lost + kept, 120);
    // A subscriber that keeps up is not affected by the slow one.
    let mut fresh = sup.events();
    let h = sup.submit(Job::json("echo", &json!("after"))).unwrap();
    wait(h, 20);
    let seen = read_until(&mut fresh, |s| s.iter().any(|e| ended(&e.what)));
    assert_eq!(seen.len(), 3, "{seen:#?}");
}

#[test]
fn the_event_buffer_is_checked() {
    for bad in [0, 1_000_001] {
        let err = procvisor::Supervisor::start(config(1).event_buffer(bad)).unwrap_err();
        assert!(err.to_string().contains("event buffer"), "{err}");
    }
}

#[test]
fn a_blocking_reader_ends_when_the_supervisor_is_gone() {
    let sup = start(config(1));
    let mut events = sup.events();
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        while let Some(r) = events.next_blocking() {
            if let Received::Event(_) = r {
                n += 1;
            }
        }
        n
    });
    let h = sup.submit(Job::json("noop", &json!({}))).unwrap();
    wait(h, 20);
    sup.shutdown_blocking(Duration::from_secs(5));
    drop(sup);
    assert_eq!(reader.join().unwrap(), 3);
}
