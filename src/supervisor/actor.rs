//! The supervisor actor: owns the scheduling core and the worker slots, turns
//! events into calls on the core and the core's decisions into actions.
//!
//! Events come from the API (submit, cancel, status, shutdown), from the link
//! threads (a worker spawned, said hello, sent results, broke the protocol,
//! closed its channel), from exit monitors (a process ended) and from timers
//! (a deadline, a heartbeat check, a restart backoff). After each event the
//! actor polls the core and carries out what it decided: send jobs, kill
//! workers, report outcomes. One timer is armed for the core's next deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::config::Config;
use super::link::{
    abandon_handshake, EventSink, Finish, Incoming, LinkEvent, Replies, Reply, Spawner, Timing,
    WorkerTx,
};
use super::outcome::{AttemptEnd, Crash, Outcome, Report};
use super::status::{Counts, JobState, RunningJob, Snapshot, State, WorkerInfo, WorkerPhase};
use super::Shared;
use crate::process::{Exit, Process, ProcessOutcome};
use crate::sched::{
    Core, Decision, End, Ended, JobSpec, KillReason, Refused, RestartDecision, RestartTracker,
    RetryPolicy, Retryable, SlotId,
};
use crate::wire::{self, JobId, Payload, RunRef, ToWorkerRef};

/// After a worker closes its channel, how long it has to exit before it is
/// killed.
const CLOSED_GRACE: Duration = Duration::from_secs(1);

/// After asking workers to exit at shutdown, how long before they are killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What the supervisor keeps with each job.
#[derive(Debug)]
pub(crate) struct JobRecord {
    pub(crate) kind: Arc<str>,
    pub(crate) payload: Payload,
    pub(crate) timeout: Option<Duration>,
    pub(crate) reply: Option<oneshot::Sender<Report<Payload>>>,
    pub(crate) progress: Option<(f32, String)>,
    /// How earlier attempts ended.
    pub(crate) history: Vec<AttemptEnd>,
}

/// Why a job was not admitted to a bounded queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdmitError {
    /// Full, and the submitter would not wait.
    Full(usize),
    /// Still full when the submitter's wait ran out.
    StillFull(usize, Duration),
    /// The supervisor stopped accepting jobs (the reason).
    Closed(String),
}

/// How a submit meets a full queue.
pub(crate) enum Admission {
    /// No capacity is set: always admitted, no answer needed.
    Unbounded,
    /// Fail at once when full.
    Try(oneshot::Sender<Result<(), AdmitError>>),
    /// Wait for room, until a deadline if any.
    Wait {
        until: Option<Instant>,
        ack: oneshot::Sender<Result<(), AdmitError>>,
    },
}

impl Admission {
    fn answer(self, r: Result<(), AdmitError>) {
        match self {
            Admission::Unbounded => {}
            Admission::Try(ack) | Admission::Wait { ack, .. } => {
                let _ = ack.send(r);
            }
        }
    }
}

/// Submit a job (the API has validated it).
pub(crate) struct Submit {
    pub(crate) id: JobId,
    pub(crate) priority: u8,
    pub(crate) timeout: Option<Duration>,
    pub(crate) weight: u64,
    pub(crate) retry: Option<Box<RetryPolicy>>,
    pub(crate) record: JobRecord,
    pub(crate) admission: Admission,
}

/// A submit waiting for room in a full queue.
struct Waiting {
    id: JobId,
    spec: JobSpec,
    record: JobRecord,
    admission: Admission,
}

impl Message for Submit {
    type Result = ();
}

/// Cancel a job.
pub(crate) struct Cancel(pub(crate) JobId);

impl Message for Cancel {
    type Result = ();
}

/// Ask for a [`Snapshot`].
pub(crate) struct GetSnapshot;

impl Message for GetSnapshot {
    type Result = Snapshot;
}

/// Ask where a job is.
pub(crate) struct GetJob(pub(crate) JobId);

impl Message for GetJob {
    type Result = JobState;
}

/// Shut down: running jobs get `grace`; answered when no worker remains.
pub(crate) struct Shutdown {
    pub(crate) grace: Duration,
    pub(crate) done: oneshot::Sender<()>,
}

impl Message for Shutdown {
    type Result = ();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spawning,
    Handshaking,
    Ready,
    Stopping,
    Backoff,
    Down,
}

struct Slot {
    gen: u64,
    phase: Phase,
    process: Option<Process>,
    server: Option<String>,
    tx: Option<WorkerTx>,
    /// Reply senders of the jobs this worker holds, shared with its link.
    replies: Replies,
    pid: Option<u32>,
    last_seen: Instant,
    /// We killed it (or asked it to exit): its end is no crash.
    expected_exit: bool,
    /// Why it is being killed, when it broke (reported instead of its exit).
    crash: Option<Crash>,
    /// Deaths in a row without a completed job.
    consecutive_deaths: u32,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            gen: 0,
            phase: Phase::Down,
            process: None,
            server: None,
            tx: None,
            replies: Replies::default(),
            pid: None,
            last_seen: Instant::now(),
            expected_exit: false,
            crash: None,
            consecutive_deaths: 0,
        }
    }
}

enum Lifecycle {
    Running,
    Draining,
    Stopping,
    Stopped,
    Failed(String),
}

/// The supervisor actor (see the module docs).
pub struct SupervisorActor {
    cfg: Config,
    core: Core<JobRecord>,
    slots: Vec<Slot>,
    spawner: Option<Spawner>,
    restarts: RestartTracker,
    lifecycle: Lifecycle,
    shared: Arc<Shared>,
    on_ready: Option<std::sync::mpsc::Sender<Result<Vec<String>, String>>>,
    /// Initial workers not ready yet (start-up waits for them all).
    initial_pending: usize,
    ever_ready: bool,
    next_gen: u64,
    wake: Option<(Instant, SpawnHandle)>,
    decisions: Vec<Decision<JobRecord>>,
    frame: Vec<u8>,
    counts: Counts,
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// Until when the actor's thread stays awake after activity (see
    /// [`SupervisorActor::keep_hot`]).
    hot_until: std::rc::Rc<std::cell::Cell<Instant>>,
    /// Whether a keep-hot task is running.
    hot: std::rc::Rc<std::cell::Cell<bool>>,
    /// Submits waiting for room in a full queue, in arrival order.
    room: std::collections::VecDeque<Waiting>,
}

impl SupervisorActor {
    pub(crate) fn new(
        cfg: Config,
        shared: Arc<Shared>,
        on_ready: std::sync::mpsc::Sender<Result<Vec<String>, String>>,
    ) -> SupervisorActor {
        let core = Core::new(cfg.core.clone());
        SupervisorActor {
            initial_pending: cfg.core.slots,
            slots: (0..cfg.core.slots).map(|_| Slot::new()).collect(),
            restarts: RestartTracker::new(cfg.restart),
            cfg,
            core,
            spawner: None,
            lifecycle: Lifecycle::Running,
            shared,
            on_ready: Some(on_ready),
            ever_ready: false,
            next_gen: 1,
            wake: None,
            decisions: Vec::new(),
            frame: Vec::new(),
            counts: Counts::default(),
            stop_waiters: Vec::new(),
            hot_until: std::rc::Rc::new(std::cell::Cell::new(Instant::now())),
            hot: std::rc::Rc::new(std::cell::Cell::new(false)),
            room: std::collections::VecDeque::new(),
        }
    }

    fn spawn_worker(&mut self, slot: SlotId) {
        let gen = self.next_gen;
        self.next_gen += 1;
        let s = &mut self.slots[slot];
        *s = Slot {
            gen,
            phase: Phase::Spawning,
            consecutive_deaths: s.consecutive_deaths,
            ..Slot::new()
        };
        self.core.slot_pending(slot);
        if let Some(sp) = &self.spawner {
            sp.spawn(slot, gen, self.slots[slot].replies.clone());
        }
    }

    fn accepting(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Running)
    }

    /// Keep this thread awake for the spin time after activity: a task that
    /// yields (to tokio and to the OS) until then, so that the next message
    /// does not have to wake a sleeping thread on an idle CPU (see
    /// `wire::spin`).
    fn keep_hot(&mut self, now: Instant) {
        let spin = self.cfg.spin;
        if spin.is_zero() {
            return;
        }
        self.hot_until.set(now + spin);
        if self.hot.replace(true) {
            return;
        }
        let (until, hot) = (self.hot_until.clone(), self.hot.clone());
        actix_rt::spawn(async move {
            while Instant::now() < until.get() {
                std::thread::yield_now();
                tokio::task::yield_now().await;
            }
            hot.set(false);
        });
    }

    /// Poll the core and carry out its decisions; re-arm the deadline timer.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.keep_hot(now);
        let mut decisions = std::mem::take(&mut self.decisions);
        self.core.poll(now, &mut decisions);
        let mut dispatched: Vec<(SlotId, JobId)> = Vec::new();
        for d in decisions.drain(..) {
            match d {
                Decision::Dispatch { slot, job } => dispatched.push((slot, job)),
                Decision::SendCancel { slot, job } => {
                    wire::encode_frame(&[ToWorkerRef::Cancel(job)], &mut self.frame);
                    if let Some(tx) = &self.slots[slot].tx {
                        tx.send_control(&self.frame);
                    }
                }
                Decision::Requeued { job, slot } => self.reclaim_requeued(job, slot, now),
                Decision::Kill { slot, reason, job } => self.kill(slot, reason, job, ctx),
                Decision::Done { ended, end } => {
                    let (outcome, retryable) = match end {
                        End::TimedOut => (
                            Outcome::TimedOut {
                                after: ended.data.timeout.unwrap_or_default(),
                            },
                            Some(Retryable::TimedOut),
                        ),
                        End::Evicted => (Outcome::Evicted, None),
                        End::Cancelled => (Outcome::Cancelled, None),
                    };
                    self.end_job(ended, outcome, retryable, now);
                }
            }
        }
        self.decisions = decisions;
        self.send_runs(&mut dispatched);
        if self.admit_waiting() {
            return self.pump(ctx);
        }
        self.arm_timer(ctx);
        self.check_drained(ctx);
    }

    /// Admit submits waiting for room, in arrival order, while there is room.
    /// Returns whether any was admitted.
    fn admit_waiting(&mut self) -> bool {
        let Some(cap) = self.cfg.core.capacity else {
            return false;
        };
        let mut admitted = false;
        while self.core.waiting() < cap {
            let Some(w) = self.room.pop_front() else {
                break;
            };
            if self.core.submit(w.id, w.spec, w.record).is_ok() {
                self.counts.submitted += 1;
                w.admission.answer(Ok(()));
                admitted = true;
            }
        }
        admitted
    }

    /// Send the dispatched jobs, one frame per worker.
    fn send_runs(&mut self, dispatched: &mut [(SlotId, JobId)]) {
        if dispatched.is_empty() {
            return;
        }
        dispatched.sort_by_key(|&(slot, _)| slot);
        for group in dispatched.chunk_by(|a, b| a.0 == b.0) {
            let slot = group[0].0;
            let now = Instant::now();
            let pid = self.slots[slot].pid;
            {
                let mut replies = self.slots[slot].replies.lock();
                for &(_, job) in group {
                    let Some((meta, _)) = self.core.job_meta(job) else {
                        continue;
                    };
                    let retry_failed = self
                        .core
                        .retry_policy(job)
                        .is_some_and(|p| p.should_retry(meta.attempt, Retryable::Failed));
                    let Some(rec) = self.core.data_mut(job) else {
                        continue;
                    };
                    tracing::trace!(job, kind = %rec.kind, priority = meta.priority, attempt = meta.attempt, slot, "dispatch");
                    if let Some(tx) = rec.reply.take() {
                        replies.insert(
                            job,
                            Reply {
                                tx,
                                kind: rec.kind.clone(),
                                attempt: meta.attempt,
                                evictions: meta.evictions,
                                pid,
                                since: now,
                                history: std::mem::take(&mut rec.history),
                                retry_failed,
                            },
                        );
                    }
                }
            }
            let messages: Vec<ToWorkerRef<'_>> = group
                .iter()
                .filter_map(|&(_, job)| {
                    let rec = self.core.data(job)?;
                    let (meta, _) = self.core.job_meta(job)?;
                    Some(ToWorkerRef::Run(RunRef {
                        job,
                        kind: &rec.kind,
                        payload: &rec.payload,
                        attempt: meta.attempt,
                    }))
                })
                .collect();
            wire::encode_frame(&messages, &mut self.frame);
            if let Some(tx) = self.slots[slot].tx.as_mut() {
                tx.send(&self.frame);
            }
        }
    }

    fn send(&mut self, slot: SlotId, messages: &[ToWorkerRef<'_>]) {
        wire::encode_frame(messages, &mut self.frame);
        if let Some(tx) = self.slots[slot].tx.as_mut() {
            tx.send(&self.frame);
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.core.next_deadline() else {
            return;
        };
        if let Some((at, _)) = self.wake {
            if at <= next {
                return;
            }
        }
        if let Some((_, handle)) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        let delay = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.pump(ctx);
        });
        self.wake = Some((next, handle));
    }

    /// Kill a worker on the core's decision.
    fn kill(
        &mut self,
        slot: SlotId,
        reason: KillReason,
        job: Option<JobId>,
        ctx: &mut Context<Self>,
    ) {
        if reason == KillReason::Evicted {
            self.counts.evictions += 1;
        }
        let s = &mut self.slots[slot];
        tracing::debug!(slot, pid = s.pid, ?reason, job, "killing worker");
        s.expected_exit = true;
        s.phase = Phase::Stopping;
        s.tx = None;
        let Some(p) = s.process.clone() else { return };
        if reason == KillReason::Timeout && !self.cfg.kill_grace.is_zero() {
            let grace = self.cfg.kill_grace;
            ctx.spawn(
                async move {
                    let _ = p.terminate(grace).await;
                }
                .into_actor(self),
            );
        } else {
            p.kill();
        }
    }

    /// Kill a worker that broke; its running job will end as `crash`.
    fn kill_broken(&mut self, slot: SlotId, crash: Crash) {
        let s = &mut self.slots[slot];
        tracing::warn!(slot, pid = s.pid, "{crash}");
        s.crash.get_or_insert(crash);
        s.tx = None;
        if let Some(p) = &s.process {
            p.kill();
        }
    }

    /// A job ended (as the core decided, or as its worker reported when the
    /// link left it to the actor): retry it if it may be, else report it —
    /// unless its worker's link already reported it (then the job really
    /// ended as the worker said, just before this decision).
    fn end_job(
        &mut self,
        ended: Ended<JobRecord>,
        outcome: Outcome<Payload>,
        retryable: Option<Retryable>,
        now: Instant,
    ) {
        let retry =
            retryable.filter(|&ending| self.accepting() && self.core.will_retry(&ended, ending));
        let Ended {
            job,
            mut data,
            meta,
            spec,
        } = ended;
        let mut reply = match data.reply.take() {
            Some(tx) => Reply {
                tx,
                kind: data.kind.clone(),
                attempt: meta.attempt,
                evictions: meta.evictions,
                pid: meta.slot.and_then(|s| self.slots[s].pid),
                since: now,
                history: std::mem::take(&mut data.history),
                retry_failed: false,
            },
            None => match meta.slot.and_then(|s| self.slots[s].replies.take(job)) {
                Some(r) => r,
                None => return,
            },
        };
        if let Some(ending) = retry {
            reply.history.push(AttemptEnd {
                attempt: meta.attempt,
                outcome: outcome.without_result(),
            });
            data.reply = Some(reply.tx);
            data.history = reply.history;
            data.progress = None;
            match self.core.retry(
                Ended {
                    job,
                    data,
                    meta,
                    spec,
                },
                ending,
                now,
            ) {
                Ok(due) => {
                    self.counts.retries += 1;
                    tracing::debug!(job, attempt = meta.attempt, ?ending, in_ = ?due.saturating_duration_since(now), "retry");
                }
                Err(mut back) => {
                    back.data.history.pop();
                    self.end_job(back, outcome, None, now);
                }
            }
            return;
        }
        let ran_for = meta.started.map(|t| now.saturating_duration_since(t));
        self.counts.record(&outcome);
        reply.send(job, outcome, ran_for);
    }

    /// A job went back to the queue from a worker: take its reply sender
    /// back, or, if the worker's link already reported it, drop it from the
    /// queue (it ended).
    fn reclaim_requeued(&mut self, job: JobId, slot: SlotId, _now: Instant) {
        match self.slots[slot].replies.take(job) {
            Some(reply) => {
                if let Some(rec) = self.core.data_mut(job) {
                    rec.reply = Some(reply.tx);
                    rec.history = reply.history;
                }
            }
            None => {
                self.core.remove_queued(job);
            }
        }
    }

    fn on_frames(&mut self, slot: SlotId, messages: Vec<Incoming>, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.slots[slot].last_seen = now;
        for m in messages {
            match m {
                Incoming::Finished { job, end } => {
                    self.slots[slot].consecutive_deaths = 0;
                    let ended = self.core.finished(slot, job, now);
                    match end {
                        Finish::Reported(outcome) => self.counts.record(&outcome),
                        Finish::NotReported(outcome) => {
                            if let Some(ended) = ended {
                                let retryable = matches!(outcome, Outcome::Failed(_))
                                    .then_some(Retryable::Failed);
                                self.end_job(ended, outcome, retryable, now);
                            }
                        }
                    }
                }
                Incoming::Progress {
                    job,
                    fraction,
                    note,
                } => {
                    if let Some(rec) = self.core.data_mut(job) {
                        rec.progress = Some((fraction, note));
                    }
                }
                Incoming::Heartbeat => {}
            }
        }
        self.pump(ctx);
    }

    fn on_exit(
        &mut self,
        slot: SlotId,
        gen: u64,
        result: std::io::Result<ProcessOutcome>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let s = &mut self.slots[slot];
        if s.gen != gen {
            return;
        }
        let exit = match result {
            Ok(ProcessOutcome::Success) => Exit::Code(0),
            Ok(
                ProcessOutcome::Error(e)
                | ProcessOutcome::TimedOut(e)
                | ProcessOutcome::Terminated(e),
            ) => e,
            Err(e) => {
                tracing::error!(slot, "lost track of a worker process: {e}");
                Exit::Code(-1)
            }
        };
        if let Some(server) = s.server.take() {
            if matches!(s.phase, Phase::Spawning | Phase::Handshaking) {
                abandon_handshake(&server);
            }
        }
        let was = s.phase;
        let pid = s.pid.or(s.process.as_ref().map(Process::pid));
        s.process = None;
        s.tx = None;
        tracing::debug!(slot, ?pid, %exit, expected = s.expected_exit, "worker exited");
        if s.expected_exit {
            self.after_exit(slot, ctx);
            return;
        }
        let crash = s.crash.take().unwrap_or(Crash::Exited(exit));
        s.consecutive_deaths += 1;
        let consecutive = s.consecutive_deaths;
        if was == Phase::Ready {
            if let Some(head) = self.core.worker_lost(slot, now) {
                self.end_job(
                    head,
                    Outcome::Crashed(crash.clone()),
                    Some(Retryable::Crashed),
                    now,
                );
            }
        } else {
            self.core.worker_lost(slot, now);
        }
        if !self.ever_ready && was != Phase::Ready {
            let why = format!(
                "the worker program {} did not start: {crash}, before its handshake; is it a procvisor worker (does its main call Worker::main or run_if_worker)?",
                self.cfg.worker.program.display()
            );
            self.fail(why, ctx);
        } else if self.accepting() {
            match self.restarts.on_death(now, consecutive) {
                RestartDecision::After(delay) => {
                    self.slots[slot].phase = Phase::Backoff;
                    let gen = self.slots[slot].gen;
                    ctx.run_later(delay, move |act, ctx| {
                        if act.slots[slot].gen == gen
                            && act.slots[slot].phase == Phase::Backoff
                            && act.accepting()
                        {
                            act.counts.restarts += 1;
                            act.spawn_worker(slot);
                        }
                        act.pump(ctx);
                    });
                    self.pump(ctx);
                    return;
                }
                RestartDecision::GiveUp { deaths, within } => {
                    let why = format!(
                        "worker processes died {deaths} times within {within:?} (last: {crash}); the restart intensity limit is exceeded, so the supervisor gave up; fix the crashing jobs or raise Config::restart"
                    );
                    self.fail(why, ctx);
                }
            }
        }
        // Not restarting: the slot is down for good.
        self.after_exit(slot, ctx);
        self.pump(ctx);
    }

    /// A worker we meant to end has exited: replace it, or record that it is
    /// gone if we are stopping.
    fn after_exit(&mut self, slot: SlotId, ctx: &mut Context<Self>) {
        if self.accepting() {
            self.counts.restarts += 1;
            self.spawn_worker(slot);
            self.pump(ctx);
        } else {
            self.slots[slot].phase = Phase::Down;
            self.core.slot_down(slot, Instant::now());
            self.check_stopped(ctx);
        }
    }

    /// Give up: reject the queue and new jobs, start no more workers.
    fn fail(&mut self, why: String, ctx: &mut Context<Self>) {
        if matches!(self.lifecycle, Lifecycle::Failed(_) | Lifecycle::Stopped) {
            return;
        }
        tracing::error!("supervisor failed: {why}");
        self.lifecycle = Lifecycle::Failed(why.clone());
        self.shared.set_failed(&why);
        if let Some(tx) = self.on_ready.take() {
            let _ = tx.send(Err(why.clone()));
        }
        self.core.stop_dispatching();
        let now = Instant::now();
        for ended in self.core.take_queued() {
            self.end_job(ended, Outcome::Rejected(why.clone()), None, now);
        }
        for w in self.room.drain(..) {
            w.admission.answer(Err(AdmitError::Closed(why.clone())));
        }
        for slot in 0..self.slots.len() {
            if matches!(self.slots[slot].phase, Phase::Backoff | Phase::Down) {
                self.slots[slot].phase = Phase::Down;
                self.core.slot_down(slot, now);
            }
        }
        self.check_stopped(ctx);
    }

    /// When draining for shutdown and no job is left in a worker: ask the
    /// workers to exit.
    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.lifecycle, Lifecycle::Draining) && !self.core.any_assigned() {
            self.stop_workers(ctx);
        }
    }

    fn stop_workers(&mut self, ctx: &mut Context<Self>) {
        self.lifecycle = Lifecycle::Stopping;
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            match self.slots[slot].phase {
                Phase::Ready => {
                    self.send(slot, &[ToWorkerRef::Shutdown]);
                    let s = &mut self.slots[slot];
                    s.expected_exit = true;
                    s.phase = Phase::Stopping;
                }
                Phase::Handshaking => {
                    let s = &mut self.slots[slot];
                    s.expected_exit = true;
                    if let Some(p) = &s.process {
                        p.kill();
                    }
                }
                Phase::Backoff | Phase::Down => {
                    self.slots[slot].phase = Phase::Down;
                    self.core.slot_down(slot, now);
                }
                Phase::Spawning | Phase::Stopping => self.slots[slot].expected_exit = true,
            }
        }
        ctx.run_later(EXIT_GRACE, |act, ctx| {
            for s in &act.slots {
                if let Some(p) = &s.process {
                    p.kill();
                }
            }
            act.check_stopped(ctx);
        });
        self.check_stopped(ctx);
    }

    /// Stop the actor once shutting down and no worker process remains.
    fn check_stopped(&mut self, ctx: &mut Context<Self>) {
        let stopping = matches!(self.lifecycle, Lifecycle::Stopping);
        let failed_and_asked =
            matches!(self.lifecycle, Lifecycle::Failed(_)) && !self.stop_waiters.is_empty();
        if !(stopping || failed_and_asked) {
            return;
        }
        if failed_and_asked && self.slots.iter().any(|s| s.phase == Phase::Ready) {
            return self.stop_workers(ctx);
        }
        if self
            .slots
            .iter()
            .all(|s| s.process.is_none() && s.phase != Phase::Spawning)
        {
            self.lifecycle = Lifecycle::Stopped;
            for w in self.stop_waiters.drain(..) {
                let _ = w.send(());
            }
            ctx.stop();
        }
    }

    fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let stats = self.core.stats();
        let workers = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| WorkerInfo {
                slot: i,
                pid: s.process.as_ref().map(Process::pid),
                phase: match s.phase {
                    Phase::Spawning | Phase::Handshaking => WorkerPhase::Starting,
                    Phase::Ready => WorkerPhase::Ready,
                    Phase::Stopping => WorkerPhase::Stopping,
                    Phase::Backoff => WorkerPhase::Backoff,
                    Phase::Down => WorkerPhase::Down,
                },
                running: self.running_job(i, now),
                held: self.core.held(i),
            })
            .collect();
        Snapshot {
            state: match &self.lifecycle {
                Lifecycle::Running => State::Running,
                Lifecycle::Draining | Lifecycle::Stopping => State::ShuttingDown,
                Lifecycle::Stopped => State::Stopped,
                Lifecycle::Failed(why) => State::Failed(why.clone()),
            },
            workers,
            queued_per_priority: stats.queued_per_level,
            counts: self.counts.clone(),
        }
    }

    fn running_job(&self, slot: SlotId, now: Instant) -> Option<RunningJob> {
        let job = self.core.running_in(slot)?;
        let rec = self.core.data(job)?;
        let (meta, _) = self.core.job_meta(job)?;
        Some(RunningJob {
            id: job,
            kind: rec.kind.to_string(),
            priority: meta.priority,
            elapsed: meta
                .started
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or_default(),
        })
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        let sink: EventSink = Arc::new(move |ev| addr.do_send(ev));
        let timing = Timing {
            heartbeat: self.cfg.heartbeat,
            spin: self.cfg.spin,
        };
        match Spawner::start(self.cfg.worker.clone(), timing, sink) {
            Ok(s) => self.spawner = Some(s),
            Err(e) => {
                self.fail(format!("cannot start the spawner thread: {e}"), ctx);
                return;
            }
        }
        for slot in 0..self.slots.len() {
            self.spawn_worker(slot);
        }
        let every = self.cfg.heartbeat;
        let limit = every * self.cfg.heartbeat_misses;
        ctx.run_interval(every, move |act, _| {
            let now = Instant::now();
            for slot in 0..act.slots.len() {
                let s = &act.slots[slot];
                let silent = now.saturating_duration_since(s.last_seen);
                if s.phase == Phase::Ready && silent > limit {
                    act.kill_broken(slot, Crash::Unresponsive(silent));
                }
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Every worker has exited; ending the spawner thread now cannot kill
        // anybody by PDEATHSIG.
        for s in &self.slots {
            if let Some(p) = &s.process {
                p.kill();
            }
        }
        self.spawner.take();
        self.shared.accepting.store(false, Ordering::SeqCst);
        System::current().stop();
    }
}

impl Handler<LinkEvent> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, ev: LinkEvent, ctx: &mut Context<Self>) {
        match ev {
            LinkEvent::Spawned {
                slot,
                gen,
                process,
                server,
            } => {
                if self.slots[slot].gen != gen {
                    process.kill();
                    return;
                }
                let accepting = self.accepting();
                let s = &mut self.slots[slot];
                s.phase = Phase::Handshaking;
                s.pid = Some(process.pid());
                s.server = Some(server);
                s.process = Some(process.clone());
                if !accepting {
                    s.expected_exit = true;
                    process.kill();
                }
                ctx.spawn(
                    async move { process.wait().await }
                        .into_actor(self)
                        .map(move |res, act, ctx| act.on_exit(slot, gen, res, ctx)),
                );
                let timeout = self.cfg.start_timeout;
                ctx.run_later(timeout, move |act, _| {
                    let s = &mut act.slots[slot];
                    if s.gen == gen && s.phase == Phase::Handshaking {
                        let crash = Crash::ProtocolFault(format!(
                            "the worker did not connect within {timeout:?}"
                        ));
                        act.kill_broken(slot, crash);
                    }
                });
            }
            LinkEvent::SpawnFailed { slot, gen, error } => {
                if self.slots[slot].gen != gen {
                    return;
                }
                tracing::error!(slot, "{error}");
                if !self.ever_ready || !self.accepting() {
                    // No process came of it, and none will.
                    self.slots[slot].phase = Phase::Down;
                    self.core.slot_down(slot, Instant::now());
                    self.fail(error, ctx);
                    self.check_stopped(ctx);
                } else {
                    // Count it like a worker that died at once.
                    self.slots[slot].phase = Phase::Handshaking;
                    self.slots[slot].crash = Some(Crash::ProtocolFault(error));
                    self.on_exit(slot, gen, Ok(ProcessOutcome::Error(Exit::Code(-1))), ctx);
                }
            }
            LinkEvent::Ready {
                slot,
                gen,
                pid,
                kinds,
                tx,
                control,
            } => {
                let s = &mut self.slots[slot];
                if s.gen != gen || s.phase != Phase::Handshaking {
                    return;
                }
                s.phase = Phase::Ready;
                s.pid = Some(pid);
                s.server = None;
                s.tx = Some(WorkerTx::new(tx, control));
                s.last_seen = Instant::now();
                self.ever_ready = true;
                self.initial_pending = self.initial_pending.saturating_sub(1);
                if self.initial_pending == 0 {
                    if let Some(tx) = self.on_ready.take() {
                        let _ = tx.send(Ok(kinds));
                    }
                }
                if matches!(self.lifecycle, Lifecycle::Stopping) {
                    self.send(slot, &[ToWorkerRef::Shutdown]);
                    self.slots[slot].expected_exit = true;
                    self.slots[slot].phase = Phase::Stopping;
                    return;
                }
                self.core.worker_ready(slot);
                self.pump(ctx);
            }
            LinkEvent::HandshakeFailed { slot, gen, error } => {
                if self.slots[slot].gen == gen {
                    self.kill_broken(slot, Crash::ProtocolFault(error));
                }
            }
            LinkEvent::Frames {
                slot,
                gen,
                messages,
            } => {
                let s = &self.slots[slot];
                if s.gen == gen && s.phase == Phase::Ready {
                    self.on_frames(slot, messages, ctx);
                }
            }
            LinkEvent::Fault { slot, gen, error } => {
                if self.slots[slot].gen == gen {
                    self.kill_broken(slot, Crash::ProtocolFault(error.to_string()));
                }
            }
            LinkEvent::Closed { slot, gen } => {
                if self.slots[slot].gen == gen && self.slots[slot].process.is_some() {
                    ctx.run_later(CLOSED_GRACE, move |act, _| {
                        let s = &act.slots[slot];
                        if s.gen == gen && s.process.is_some() && !s.expected_exit {
                            let crash = Crash::ProtocolFault(
                                "the worker closed its channel but kept running".into(),
                            );
                            act.kill_broken(slot, crash);
                        }
                    });
                }
            }
        }
    }
}

impl Handler<Submit> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        let Submit {
            id,
            priority,
            timeout,
            weight,
            retry,
            record,
            admission,
        } = msg;
        if !self.accepting() {
            let why = match &self.lifecycle {
                Lifecycle::Failed(why) => why.clone(),
                _ => "the supervisor is shutting down".to_string(),
            };
            if let Some(reply) = record.reply {
                let _ = reply.send(Report {
                    id,
                    kind: record.kind,
                    outcome: Outcome::Rejected(why.clone()),
                    attempts: 0,
                    evictions: 0,
                    worker_pid: None,
                    ran_for: None,
                    history: Vec::new(),
                });
            }
            self.counts.rejected += 1;
            admission.answer(Err(AdmitError::Closed(why)));
            return;
        }
        let spec = JobSpec {
            priority,
            timeout,
            kind: self.core.kind(&record.kind),
            weight,
            retry,
        };
        // Submits already waiting for room keep their turn.
        let behind_others = !self.room.is_empty() && matches!(admission, Admission::Wait { .. });
        let (spec, record) = if behind_others {
            (spec, record)
        } else {
            let keep = self.cfg.core.capacity.map(|_| spec.clone());
            match self.core.submit(id, spec, record) {
                Ok(pushed_out) => {
                    self.counts.submitted += 1;
                    admission.answer(Ok(()));
                    if let Some(victim) = pushed_out {
                        let why = "pushed out of the full queue by a more urgent job".to_string();
                        self.end_job(victim, Outcome::Rejected(why), None, Instant::now());
                    }
                    return self.pump(ctx);
                }
                Err((record, Refused::Full)) => {
                    if !matches!(admission, Admission::Wait { .. }) {
                        admission
                            .answer(Err(AdmitError::Full(self.cfg.core.capacity.unwrap_or(0))));
                        return self.pump(ctx);
                    }
                    (keep.expect("a full queue has a capacity"), record)
                }
            }
        };
        self.wait_for_room(
            Waiting {
                id,
                spec,
                record,
                admission,
            },
            ctx,
        );
    }
}

impl SupervisorActor {
    /// Park a submit until there is room (or its wait runs out).
    fn wait_for_room(&mut self, w: Waiting, ctx: &mut Context<Self>) {
        if let Admission::Wait {
            until: Some(until), ..
        } = &w.admission
        {
            let id = w.id;
            let started = Instant::now();
            ctx.run_later(until.saturating_duration_since(started), move |act, _| {
                if let Some(pos) = act.room.iter().position(|w| w.id == id) {
                    let cap = act.cfg.core.capacity.unwrap_or(0);
                    if let Some(w) = act.room.remove(pos) {
                        w.admission
                            .answer(Err(AdmitError::StillFull(cap, started.elapsed())));
                    }
                }
            });
        }
        self.room.push_back(w);
    }
}

impl Handler<Cancel> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) {
        if self.core.cancel(msg.0, Instant::now()) {
            self.pump(ctx);
        }
    }
}

impl Handler<GetSnapshot> for SupervisorActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

impl Handler<GetJob> for SupervisorActor {
    type Result = MessageResult<GetJob>;

    fn handle(&mut self, msg: GetJob, _: &mut Context<Self>) -> Self::Result {
        let state = match self.core.job_meta(msg.0) {
            None => JobState::Ended,
            Some((meta, running)) => {
                let pid = meta.slot.and_then(|s| self.slots[s].pid);
                match (meta.slot, running) {
                    (None, _) => JobState::Queued,
                    (Some(_), false) => JobState::Prefetched { pid },
                    (Some(_), true) => JobState::Running {
                        pid,
                        elapsed: meta.started.map(|t| t.elapsed()).unwrap_or_default(),
                        progress: self.core.data(msg.0).and_then(|r| r.progress.clone()),
                    },
                }
            }
        };
        MessageResult(state)
    }
}

impl Handler<Shutdown> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.shared.accepting.store(false, Ordering::SeqCst);
        self.stop_waiters.push(msg.done);
        match self.lifecycle {
            Lifecycle::Running => {}
            Lifecycle::Failed(_) => return self.check_stopped(ctx),
            Lifecycle::Draining | Lifecycle::Stopping => return,
            Lifecycle::Stopped => {
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
        }
        self.lifecycle = Lifecycle::Draining;
        self.core.stop_dispatching();
        let now = Instant::now();
        for ended in self.core.take_queued() {
            self.end_job(ended, Outcome::Cancelled, None, now);
        }
        for w in self.room.drain(..) {
            w.admission.answer(Err(AdmitError::Closed(
                "the supervisor is shutting down".into(),
            )));
        }
        ctx.run_later(msg.grace, |act, ctx| {
            if matches!(act.lifecycle, Lifecycle::Draining) {
                act.core.kill_busy(KillReason::Shutdown, Instant::now());
                act.pump(ctx);
            }
        });
        self.pump(ctx);
    }
}
