//! What the table does with the end of one attempt of a store job.
//!
//! The scheduling core decides how an attempt ended (completed, failed,
//! timed out, crashed, evicted, cancelled, never run), exactly as for an
//! embedded job. A store job is submitted to the core with no retries of
//! its own, because its retries must outlive this supervisor: they live in
//! the table. So this module only translates the core's decision into the
//! row's next state, using the same [`RetryPolicy`] rules as the core
//! (attempts, which endings retry, backoff with full jitter).

use rand::Rng;

use crate::sched::{RetryPolicy, Retryable};
use crate::store::engine::{Exit, Grant, Tries};
use crate::{Codec, Outcome, Payload, Report};

impl Claimed {
    /// The job as the claim granted it, not yet submitted.
    pub(crate) fn granted(g: &Grant) -> Claimed {
        Claimed {
            id: g.id,
            lease: g.lease,
            tries: g.tries,
            local: None,
            cancel_requested: false,
            fenced: None,
        }
    }
}

/// A job this supervisor holds, as claimed.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) lease: i64,
    pub(crate) tries: Tries,
    /// The job's id in this supervisor, once submitted.
    pub(crate) local: Option<crate::JobId>,
    /// The store asked for it to be cancelled.
    pub(crate) cancel_requested: bool,
    /// This supervisor stopped it because it may no longer hold it (its
    /// lease lapsed, or it was declared lost): why.
    pub(crate) fenced: Option<&'static str>,
}

/// The write for `report`, the end of an attempt of `job`. `stopping`: this
/// supervisor is shutting down, so a job cut short is given back.
pub(crate) fn decide<R: Rng + ?Sized>(
    job: &Claimed,
    report: &Report<Payload>,
    stopping: bool,
    rng: &mut R,
) -> Exit {
    let pid = report.worker_pid;
    let release = || {
        Exit::released(
            if let Some(why) = job.fenced {
                format!("its supervisor stopped it: {why}; it is queued again")
            } else if stopping {
                "its supervisor stopped before it finished; it is queued again".into()
            } else {
                "its supervisor could not run it; it is queued again".into()
            },
            pid,
        )
    };
    let (ending, error) = match &report.outcome {
        Outcome::Completed(p) => {
            return Exit::End {
                event: "completed",
                result: Some(result_json(p)),
                error: None,
                pid,
            }
        }
        Outcome::Failed(e) => (Retryable::Failed, e.to_string()),
        Outcome::TimedOut { after } => (
            Retryable::TimedOut,
            format!("it ran past its timeout of {after:?} and its worker was killed"),
        ),
        Outcome::Crashed(c) => (Retryable::Crashed, c.to_string()),
        Outcome::Evicted => {
            return Exit::Requeue {
                event: "preempted",
                state: "available",
                delay: None,
                uncount: true,
                evicted: true,
                reclaimed: false,
                error: Some("a more urgent job took its worker; it is queued again".into()),
                pid,
            }
        }
        Outcome::Cancelled if job.cancel_requested => {
            return Exit::End {
                event: "cancelled",
                result: None,
                error: Some("cancelled while it ran".into()),
                pid,
            }
        }
        Outcome::Cancelled | Outcome::Rejected(_) => return release(),
    };
    let tries = job.tries;
    let policy = RetryPolicy {
        max_attempts: tries.max_attempts,
        on_failed: true,
        on_timed_out: true,
        on_crashed: true,
        base: tries.backoff,
        cap: tries.backoff_cap,
    };
    let name = report.outcome.name();
    if policy.should_retry(tries.attempt, ending) {
        Exit::Requeue {
            event: "retrying",
            state: "retryable",
            delay: Some(policy.delay(tries.attempt, rng)),
            uncount: false,
            evicted: false,
            reclaimed: false,
            error: Some(format!("{name}: {error}")),
            pid,
        }
    } else {
        Exit::End {
            event: name,
            result: None,
            error: Some(error),
            pid,
        }
    }
}

/// A completed job's result as JSON text for the table. A result a worker
/// sent in postcard (a typed Rust handler answering a typed request) has no
/// JSON form; it is recorded as its bytes.
fn result_json(p: &Payload) -> String {
    match p.codec {
        Codec::Json => match std::str::from_utf8(&p.bytes) {
            Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                text.to_string()
            }
            _ => serde_json::json!({ "invalid_json_bytes": p.bytes.len() }).to_string(),
        },
        Codec::Postcard => serde_json::json!({ "postcard": p.bytes }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Crash, JobError};
    use rand::SeedableRng;
    use std::sync::Arc;
    use std::time::Duration;

    fn job(attempt: u32, max_attempts: u32) -> Claimed {
        Claimed {
            id: 7,
            lease: 3,
            tries: Tries {
                attempt,
                max_attempts,
                backoff: Duration::from_secs(1),
                backoff_cap: Duration::from_secs(8),
            },
            local: None,
            cancel_requested: false,
            fenced: None,
        }
    }

    fn report(outcome: Outcome<Payload>) -> Report<Payload> {
        Report {
            id: 1,
            kind: Arc::from("k"),
            outcome,
            attempts: 1,
            evictions: 0,
            worker_pid: Some(42),
            ran_for: None,
            history: Vec::new(),
        }
    }

    fn rng() -> rand::rngs::SmallRng {
        rand::rngs::SmallRng::seed_from_u64(1)
    }

    #[test]
    fn a_completed_job_ends_with_its_json_result() {
        let p = Payload::json(&serde_json::json!({"n": 1})).unwrap();
        let w = decide(
            &job(1, 1),
            &report(Outcome::Completed(p)),
            false,
            &mut rng(),
        );
        assert_eq!(
            w,
            Exit::End {
                event: "completed",
                result: Some(r#"{"n":1}"#.into()),
                error: None,
                pid: Some(42)
            }
        );
    }

    #[test]
    fn a_failure_retries_while_attempts_remain_then_ends_failed() {
        let failed = || report(Outcome::Failed(JobError::Handler("no".into())));
        match decide(&job(2, 3), &failed(), false, &mut rng()) {
            Exit::Requeue {
                event: "retrying",
                state: "retryable",
                delay: Some(d),
                uncount: false,
                ..
            } => assert!(d <= Duration::from_secs(2), "jitter within 1 s × 2: {d:?}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&job(3, 3), &failed(), false, &mut rng()),
            Exit::End {
                event: "failed",
                ..
            }
        ));
    }

    #[test]
    fn timeouts_and_crashes_end_under_their_own_names() {
        let t = report(Outcome::TimedOut {
            after: Duration::from_secs(1),
        });
        assert!(matches!(
            decide(&job(1, 1), &t, false, &mut rng()),
            Exit::End {
                event: "timed_out",
                ..
            }
        ));
        let c = report(Outcome::Crashed(Crash::Unresponsive(Duration::from_secs(
            1,
        ))));
        assert!(matches!(
            decide(&job(1, 1), &c, false, &mut rng()),
            Exit::End {
                event: "crashed",
                ..
            }
        ));
    }

    #[test]
    fn an_eviction_puts_the_job_back_in_its_place_without_counting_an_attempt() {
        assert!(matches!(
            decide(&job(1, 1), &report(Outcome::Evicted), false, &mut rng()),
            Exit::Requeue {
                event: "preempted",
                state: "available",
                delay: None,
                uncount: true,
                evicted: true,
                ..
            }
        ));
    }

    #[test]
    fn a_cancel_ends_the_job_only_when_the_store_asked_for_it() {
        let mut j = job(1, 1);
        assert!(matches!(
            decide(&j, &report(Outcome::Cancelled), true, &mut rng()),
            Exit::Requeue {
                event: "released",
                ..
            }
        ));
        j.cancel_requested = true;
        assert!(matches!(
            decide(&j, &report(Outcome::Cancelled), true, &mut rng()),
            Exit::End {
                event: "cancelled",
                ..
            }
        ));
        assert!(matches!(
            decide(
                &job(1, 1),
                &report(Outcome::Rejected("stopped".into())),
                false,
                &mut rng()
            ),
            Exit::Requeue {
                event: "released",
                ..
            }
        ));
    }
}
