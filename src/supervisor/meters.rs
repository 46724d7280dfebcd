//! What a supervisor reports through the [`metrics`] facade, so that any
//! recorder an application installs (Prometheus, StatsD, OpenTelemetry…)
//! sees it. Without a recorder each report is a no-op.
//!
//! The names follow Prometheus conventions: counters end in `_total`,
//! durations are in seconds. Several supervisors in one process add up:
//! their counters increment the same series, and the gauges move by
//! differences, so each series is the sum over the supervisors.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `procvisor_jobs_submitted_total` | counter | `kind` | jobs accepted |
//! | `procvisor_jobs_started_total` | counter | `kind` | jobs handed to a worker (each attempt) |
//! | `procvisor_jobs_ended_total` | counter | `kind`, `outcome` | jobs ended, by outcome |
//! | `procvisor_job_queue_wait_seconds` | histogram | `kind` | accepted (or put back) → handed to a worker |
//! | `procvisor_job_run_seconds` | histogram | `kind` | how long the handler ran, as the worker measured |
//! | `procvisor_jobs_waiting` | gauge | `priority` | jobs waiting for a worker |
//! | `procvisor_workers` | gauge | `phase` | worker processes by phase |
//! | `procvisor_worker_restarts_total` | counter | | worker processes started after the first ones |
//! | `procvisor_job_evictions_total` | counter | | running jobs evicted for more urgent ones |
//! | `procvisor_job_retries_total` | counter | | attempts that failed and were tried again |
//!
//! Handles are made once per kind, the first time a job of that kind is
//! seen, so a recorder must be installed before the supervisor starts.

use std::sync::Once;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use super::outcome::Outcome;
use super::status::{Snapshot, WorkerPhase};
use crate::sched::{KindId, PRIORITY_LEVELS};

/// The outcome label values, in [`outcome_index`] order.
const OUTCOMES: [&str; 7] = [
    "completed",
    "failed",
    "timed_out",
    "crashed",
    "evicted",
    "cancelled",
    "rejected",
];

/// The worker phase label values, in [`phase_index`] order.
const PHASES: [&str; 5] = ["starting", "ready", "stopping", "backoff", "down"];

fn outcome_index<R>(o: &Outcome<R>) -> usize {
    match o {
        Outcome::Completed(_) => 0,
        Outcome::Failed(_) => 1,
        Outcome::TimedOut { .. } => 2,
        Outcome::Crashed(_) => 3,
        Outcome::Evicted => 4,
        Outcome::Cancelled => 5,
        Outcome::Rejected(_) => 6,
    }
}

fn phase_index(p: WorkerPhase) -> usize {
    match p {
        WorkerPhase::Starting => 0,
        WorkerPhase::Ready => 1,
        WorkerPhase::Stopping => 2,
        WorkerPhase::Backoff => 3,
        WorkerPhase::Down => 4,
    }
}

/// One kind's handles.
struct KindMeters {
    submitted: Counter,
    started: Counter,
    ended: [Counter; OUTCOMES.len()],
    wait: Histogram,
    run: Histogram,
}

impl KindMeters {
    fn new(kind: &str) -> KindMeters {
        let k = kind.to_string();
        KindMeters {
            submitted: metrics::counter!("procvisor_jobs_submitted_total", "kind" => k.clone()),
            started: metrics::counter!("procvisor_jobs_started_total", "kind" => k.clone()),
            ended: OUTCOMES.map(|o| {
                metrics::counter!("procvisor_jobs_ended_total", "kind" => k.clone(), "outcome" => o)
            }),
            wait: metrics::histogram!("procvisor_job_queue_wait_seconds", "kind" => k.clone()),
            run: metrics::histogram!("procvisor_job_run_seconds", "kind" => k),
        }
    }
}

/// A supervisor's metric handles, and what its gauges last reported.
pub(crate) struct Meters {
    /// Each kind's handles, by the core's kind id, made on first use.
    kinds: Vec<Option<KindMeters>>,
    restarts: Counter,
    evictions: Counter,
    retries: Counter,
    waiting: [Gauge; PRIORITY_LEVELS],
    workers: [Gauge; PHASES.len()],
    /// What this supervisor last added to each gauge.
    waiting_sent: [f64; PRIORITY_LEVELS],
    workers_sent: [f64; PHASES.len()],
}

impl Meters {
    pub(crate) fn new() -> Meters {
        describe();
        Meters {
            kinds: Vec::new(),
            restarts: metrics::counter!("procvisor_worker_restarts_total"),
            evictions: metrics::counter!("procvisor_job_evictions_total"),
            retries: metrics::counter!("procvisor_job_retries_total"),
            waiting: std::array::from_fn(
                |p| metrics::gauge!("procvisor_jobs_waiting", "priority" => p.to_string()),
            ),
            workers: PHASES.map(|p| metrics::gauge!("procvisor_workers", "phase" => p)),
            waiting_sent: [0.0; PRIORITY_LEVELS],
            workers_sent: [0.0; PHASES.len()],
        }
    }

    fn kind(&mut self, kind: KindId, name: &str) -> &KindMeters {
        let i = kind as usize;
        if i >= self.kinds.len() {
            self.kinds.resize_with(i + 1, || None);
        }
        self.kinds[i].get_or_insert_with(|| KindMeters::new(name))
    }

    pub(crate) fn submitted(&mut self, kind: KindId, name: &str) {
        self.kind(kind, name).submitted.increment(1);
    }

    pub(crate) fn started(&mut self, kind: KindId, name: &str, waited: Duration) {
        let k = self.kind(kind, name);
        k.started.increment(1);
        k.wait.record(waited.as_secs_f64());
    }

    pub(crate) fn ended<R>(
        &mut self,
        kind: KindId,
        name: &str,
        outcome: &Outcome<R>,
        ran: Option<Duration>,
    ) {
        let k = self.kind(kind, name);
        k.ended[outcome_index(outcome)].increment(1);
        if let Some(ran) = ran {
            k.run.record(ran.as_secs_f64());
        }
    }

    pub(crate) fn restarted(&self) {
        self.restarts.increment(1);
    }

    pub(crate) fn evicted(&self) {
        self.evictions.increment(1);
    }

    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }

    /// Bring the gauges to this picture of the supervisor.
    pub(crate) fn sample(&mut self, s: &Snapshot) {
        for (p, &n) in s.queued_per_priority.iter().enumerate() {
            move_gauge(&self.waiting[p], &mut self.waiting_sent[p], n as f64);
        }
        let mut phases = [0.0; PHASES.len()];
        for w in &s.workers {
            phases[phase_index(w.phase)] += 1.0;
        }
        for (i, n) in phases.into_iter().enumerate() {
            move_gauge(&self.workers[i], &mut self.workers_sent[i], n);
        }
    }

    /// Take this supervisor's share out of the gauges (it stopped).
    pub(crate) fn withdraw(&mut self) {
        for p in 0..PRIORITY_LEVELS {
            move_gauge(&self.waiting[p], &mut self.waiting_sent[p], 0.0);
        }
        for i in 0..PHASES.len() {
            move_gauge(&self.workers[i], &mut self.workers_sent[i], 0.0);
        }
    }
}

/// Move a gauge shared with other supervisors by the difference between
/// this one's new value and what it last added.
fn move_gauge(g: &Gauge, sent: &mut f64, now: f64) {
    let delta = now - *sent;
    if delta != 0.0 {
        g.increment(delta);
        *sent = now;
    }
}

/// Tell the recorder what each metric means (once per process).
fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!(
            "procvisor_jobs_submitted_total",
            "Jobs accepted by a supervisor."
        );
        describe_counter!(
            "procvisor_jobs_started_total",
            "Jobs handed to a worker process (each attempt counts)."
        );
        describe_counter!(
            "procvisor_jobs_ended_total",
            "Jobs ended, by outcome: completed, failed, timed_out, crashed, evicted, cancelled, rejected."
        );
        describe_histogram!(
            "procvisor_job_queue_wait_seconds",
            Unit::Seconds,
            "Time from a job's acceptance (or its return to the queue) to its hand-over to a worker."
        );
        describe_histogram!(
            "procvisor_job_run_seconds",
            Unit::Seconds,
            "How long a job's handler ran, as the worker measured."
        );
        describe_gauge!(
            "procvisor_jobs_waiting",
            "Jobs waiting for a worker, by priority (0 is the most urgent)."
        );
        describe_gauge!(
            "procvisor_workers",
            "Worker processes by phase: starting, ready, stopping, backoff (waiting to restart), down."
        );
        describe_counter!(
            "procvisor_worker_restarts_total",
            "Worker processes started after the first ones (after a crash, a kill, or recycling)."
        );
        describe_counter!(
            "procvisor_job_evictions_total",
            "Running jobs evicted to make room for more urgent ones."
        );
        describe_counter!(
            "procvisor_job_retries_total",
            "Attempts that ended in a way that was retried."
        );
    });
}
