//! The supervisor actor: owns the scheduling core and the worker slots, and
//! is only the driver between them and the world.
//!
//! Events come from the API (`admission`, and the queries here), from the
//! reader threads and exit monitors of the worker processes (`pool`), and
//! from timers. The actor turns each into an input of the core, then
//! [`pump`](SupervisorActor::pump)s: polls the core and hands every
//! decision to `jobs::route`, the one function that carries decisions out.
//! `shutdown` holds the life cycle's end. One timer is armed for the core's
//! next deadline.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::config::Config;
use super::jobs::{Detail, Dispatches};
use super::link::{EventSink, Replies, Spawner, Timing, WorkerTx};
use super::protocol::{Cancel, GetDemand, GetJob, GetSnapshot, HoldStarts, JobRecord};
use super::status::{JobState, RunningJob, Snapshot, State, WorkerInfo, WorkerPhase};
use super::Shared;
use crate::process::{Exit, Process};
use crate::sched::pool::{Phase, Pool};
use crate::sched::{Core, Decision, SlotId};

/// One worker slot's process and channels: the IO side of a slot, whose
/// life cycle is in the pool state machine (`sched::pool`) and whose jobs
/// are in the core (`sched::SlotState`).
pub(super) struct WorkerSlot {
    /// A worker was started in this slot before (the next is a restart).
    pub(super) started: bool,
    pub(super) process: Option<Process>,
    pub(super) server: Option<String>,
    pub(super) tx: Option<WorkerTx>,
    /// Targets of the jobs this worker holds, shared with its reader.
    pub(super) replies: Replies,
    pub(super) pid: Option<u32>,
    /// Why it is being killed, when it broke (reported instead of its exit).
    pub(super) crash: Option<super::Crash>,
    /// How its process ended, once it has.
    pub(super) exit: Option<Exit>,
}

impl WorkerSlot {
    pub(super) fn new() -> WorkerSlot {
        WorkerSlot {
            started: false,
            process: None,
            server: None,
            tx: None,
            replies: Replies::default(),
            pid: None,
            crash: None,
            exit: None,
        }
    }
}

/// Where the supervisor is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Running jobs (possibly after giving up: see `failed`).
    Running,
    /// Shutting down: running jobs get their grace.
    Draining,
    /// Workers asked to exit.
    Stopping,
    /// No worker remains.
    Stopped,
}

/// The supervisor actor (see the module docs).
pub(crate) struct SupervisorActor {
    pub(super) cfg: Config,
    pub(super) core: Core<JobRecord, Detail>,
    pub(super) slots: Vec<WorkerSlot>,
    /// The worker pool's life cycle (restarts, timers, who broke).
    pub(super) pool: Pool,
    pub(super) spawner: Option<Spawner>,
    pub(super) lifecycle: Lifecycle,
    /// The last worker death's cause, for the give-up message.
    pub(super) last_crash: Option<String>,
    /// Why the supervisor gave up, if it did.
    pub(super) failed: Option<String>,
    pub(super) shared: Arc<Shared>,
    pub(super) on_ready:
        Option<std::sync::mpsc::Sender<Result<Vec<crate::wire::KindInfo>, String>>>,
    /// Initial workers not ready yet (start-up waits for them all).
    pub(super) initial_pending: usize,
    wake: Option<(Instant, SpawnHandle)>,
    decisions: Vec<Decision<JobRecord, Detail>>,
    pub(super) dispatches: Dispatches,
    pub(super) frame: Vec<u8>,
    pub(super) tally: super::tally::Tally,
    pub(super) stop_waiters: Vec<oneshot::Sender<()>>,
    /// Until when the actor's thread stays awake after activity (see
    /// [`SupervisorActor::keep_hot`]).
    hot_until: Rc<Cell<Instant>>,
    /// Whether a keep-hot task is running.
    hot: Rc<Cell<bool>>,
    /// Submits waiting for room in a full queue, in arrival order.
    pub(super) room: VecDeque<super::admission::Waiting>,
}

impl SupervisorActor {
    pub(crate) fn new(
        cfg: Config,
        shared: Arc<Shared>,
        on_ready: std::sync::mpsc::Sender<Result<Vec<crate::wire::KindInfo>, String>>,
    ) -> SupervisorActor {
        let core = Core::new(cfg.core.clone());
        let pool = Pool::new(cfg.pool(), Instant::now());
        let tally = super::tally::Tally::new(shared.events.clone());
        SupervisorActor {
            initial_pending: cfg.core.slots,
            slots: (0..cfg.core.slots).map(|_| WorkerSlot::new()).collect(),
            pool,
            cfg,
            core,
            spawner: None,
            lifecycle: Lifecycle::Running,
            last_crash: None,
            failed: None,
            shared,
            on_ready: Some(on_ready),
            wake: None,
            decisions: Vec::new(),
            dispatches: Dispatches::default(),
            frame: Vec::new(),
            tally,
            stop_waiters: Vec::new(),
            hot_until: Rc::new(Cell::new(Instant::now())),
            hot: Rc::new(Cell::new(false)),
            room: VecDeque::new(),
        }
    }

    /// Whether new jobs are accepted.
    pub(super) fn accepting(&self) -> bool {
        self.lifecycle == Lifecycle::Running && self.failed.is_none()
    }

    /// Whether shutdown has begun.
    pub(super) fn shutting_down(&self) -> bool {
        self.lifecycle != Lifecycle::Running
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

    /// Poll the core and carry out its decisions, in the order made; send
    /// the dispatched jobs; re-arm the deadline timer.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        loop {
            let now = Instant::now();
            self.keep_hot(now);
            self.pool_actions(now, ctx);
            self.route_core(now, ctx);
            self.send_runs();
            if !self.admit_waiting() {
                break;
            }
        }
        self.arm_timer(ctx);
        self.check_drained(ctx);
    }

    /// Poll the core and carry out its decisions, in the order made (and
    /// nothing else: no pool action runs in between, so a worker slot's
    /// report targets are all routed before the slot can be reused).
    pub(super) fn route_core(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let mut decisions = std::mem::take(&mut self.decisions);
        self.core.poll(now, &mut decisions);
        for d in decisions.drain(..) {
            self.route(d, now, ctx);
        }
        self.decisions = decisions;
    }

    /// One timer, for the earliest of the core's and the pool's deadlines.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let next = [self.core.next_deadline(), self.pool.next_timer()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
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
                phase: match self.pool.phase(i) {
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
        let state = match (&self.lifecycle, &self.failed) {
            (Lifecycle::Stopped, _) => State::Stopped,
            (_, Some(why)) => State::Failed(why.clone()),
            (Lifecycle::Running, None) => State::Running,
            (Lifecycle::Draining | Lifecycle::Stopping, None) => State::ShuttingDown,
        };
        Snapshot {
            state,
            workers,
            queued_per_priority: stats.queued_per_level,
            counts: self.tally.counts().clone(),
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
            progress: rec.progress.clone(),
        })
    }
}

/// How often the gauges (jobs waiting, workers by phase) are brought up
/// to date.
const GAUGES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        let sink: EventSink = Arc::new(move |ev| addr.do_send(ev));
        let timing = Timing {
            heartbeat: self.cfg.heartbeat,
            spin: self.cfg.spin,
            max_frame: self.cfg.max_frame(),
            memory_limit: self.cfg.limits.memory,
            rss_limit: self.cfg.limits.recycle_above_rss,
        };
        match Spawner::start(self.cfg.worker.clone(), timing, sink) {
            Ok(s) => self.spawner = Some(s),
            Err(e) => {
                self.fail(format!("cannot start the spawner thread: {e}"), ctx);
                return;
            }
        }
        self.pool.start(Instant::now());
        ctx.run_interval(GAUGES_EVERY, |act, _| {
            let s = act.snapshot();
            act.tally.sample(&s);
        });
        self.pump(ctx);
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
        self.tally.withdraw();
        self.shared.accepting.store(false, Ordering::SeqCst);
        System::current().stop();
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

impl Handler<HoldStarts> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: HoldStarts, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let was = self.core.may_start(now);
        self.core.hold_starts_from(msg.0);
        if !was && self.core.may_start(now) {
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

impl Handler<GetDemand> for SupervisorActor {
    type Result = MessageResult<GetDemand>;

    fn handle(&mut self, _: GetDemand, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.demand())
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
