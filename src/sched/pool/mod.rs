//! The worker pool's life cycle as a state machine with no IO, beside the
//! scheduling core: which slot's worker to start, when one has taken too
//! long to connect, gone silent, closed its channel but kept running, or
//! died, when to restart it (backoff, and the intensity limit), and when
//! the workers asked to exit at shutdown are to be killed.
//!
//! Like the core it never reads a clock and never touches a process: its
//! driver (the supervisor actor) tells it what happened to each worker,
//! with the time, and carries out the [`PoolAction`]s that [`Pool::poll`]
//! returns; [`Pool::next_timer`] says when to poll again. A worker is known
//! by its slot and a generation number, so that news of a worker that has
//! since been replaced is ignored.
//!
//! A worker's death is acted on once both its exit and the end of its
//! results channel have been seen (or a short grace after the exit, if a
//! process it started still holds the channel), so that every result it
//! sent reaches the core before its jobs are declared crashed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::core::SlotId;
use super::restart::{RestartDecision, RestartPolicy, RestartTracker};

/// The pool's fixed settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of worker slots.
    pub slots: usize,
    /// How long a new worker may take to connect.
    pub start_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Heartbeats a worker may miss before it is killed.
    pub heartbeat_misses: u32,
    /// After a worker closes its channel, how long it has to exit.
    pub closed_grace: Duration,
    /// After a worker exits, how long its results may take to be drained.
    pub drain_grace: Duration,
    /// After workers are asked to exit at shutdown, how long before they
    /// are killed.
    pub exit_grace: Duration,
    /// Restart backoff and intensity limit.
    pub restart: RestartPolicy,
    /// Jobs after which a worker is replaced.
    pub recycle_after: Option<u32>,
}

/// Where a slot's worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Being started.
    Spawning,
    /// Started, not yet connected.
    Handshaking,
    /// Serving jobs.
    Ready,
    /// Being killed, or asked to exit.
    Stopping,
    /// Dead, waiting out a restart backoff.
    Backoff,
    /// Not running and not coming back.
    Down,
}

/// Why the pool wants a worker killed although nobody asked for it: the
/// worker broke. Its running job ends as crashed for this cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broke {
    /// It did not connect within the start timeout.
    NoHandshake(Duration),
    /// It sent nothing (not even a heartbeat) for this long.
    Unresponsive(Duration),
    /// It closed its results channel but kept running.
    ClosedButRunning,
}

/// How a worker's life ended, once everything it sent has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Killed or asked to exit by its driver: no crash.
    Expected,
    /// Died on its own (or was killed because it broke) after it connected:
    /// its jobs crashed.
    Lost,
    /// Died before it ever connected. `not_a_worker`: no worker of the
    /// program has ever connected and nothing else explains this death
    /// (another process did not take its handshake), so the program is
    /// probably no procvisor worker; the slot is not restarted.
    BeforeReady {
        /// See the variant's docs.
        not_a_worker: bool,
    },
}

/// Handshakes refused in a row, before any worker was ever ready, after
/// which the worker program is taken for one that cannot become a worker.
const MAX_REFUSALS: u32 = 3;

/// What the pool asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolAction {
    /// Start a worker in this slot, as generation `gen`.
    Spawn {
        /// The slot.
        slot: SlotId,
        /// Its new generation.
        gen: u64,
    },
    /// Kill this worker: it broke.
    Kill {
        /// The slot.
        slot: SlotId,
        /// Why.
        why: Broke,
    },
    /// This worker is gone and all it sent has been read: end or put back
    /// its jobs (when `Lost`), forget its channels.
    Dead {
        /// The slot.
        slot: SlotId,
        /// How it ended.
        death: Death,
    },
    /// Too many workers died too fast (the restart intensity limit): give
    /// up. No slot restarts from now on.
    GiveUp {
        /// Deaths counted in the window.
        deaths: u32,
        /// The window.
        within: Duration,
    },
    /// The exit grace is over: kill every worker process still running.
    KillAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    StartTimeout,
    ClosedGrace,
    DrainGrace,
    Restart,
    Heartbeats,
    ExitGrace,
}

#[derive(Debug)]
struct Life {
    gen: u64,
    phase: Phase,
    last_seen: Instant,
    /// The driver killed it or asked it to exit: its end is no crash.
    expected: bool,
    /// It broke and is being killed for it.
    broke: bool,
    /// Another process took its handshake: the program itself may be fine.
    intruded: bool,
    /// Handshakes of this slot in a row that were refused (another process
    /// took the handshake, or what came did not decode), while no worker
    /// of the pool was ever ready.
    refusals: u32,
    /// Jobs it finished.
    jobs: u32,
    /// It asked to be replaced (its memory grew past the limit).
    asked_out: bool,
    /// Deaths in a row without a completed job.
    consecutive_deaths: u32,
    /// Its results channel ended.
    drained: bool,
    /// It exited and waits for its results to be drained.
    exited: bool,
}

/// The pool state machine (see the module docs).
#[derive(Debug)]
pub struct Pool {
    cfg: PoolConfig,
    slots: Vec<Life>,
    restarts: RestartTracker,
    timers: BinaryHeap<Reverse<(Instant, Timer, SlotId, u64)>>,
    out: Vec<PoolAction>,
    next_gen: u64,
    ever_ready: bool,
    /// No more restarts: shutting down, or gave up.
    closed: bool,
    /// When the heartbeats were last checked.
    last_check: Option<Instant>,
}

impl Pool {
    /// A pool whose every slot is down; [`start`](Self::start) starts them.
    pub fn new(cfg: PoolConfig, now: Instant) -> Pool {
        Pool {
            slots: (0..cfg.slots)
                .map(|_| Life {
                    gen: 0,
                    phase: Phase::Down,
                    last_seen: now,
                    expected: false,
                    broke: false,
                    intruded: false,
                    refusals: 0,
                    jobs: 0,
                    asked_out: false,
                    consecutive_deaths: 0,
                    drained: false,
                    exited: false,
                })
                .collect(),
            restarts: RestartTracker::new(cfg.restart),
            cfg,
            timers: BinaryHeap::new(),
            out: Vec::new(),
            next_gen: 1,
            ever_ready: false,
            closed: false,
            last_check: None,
        }
    }

    /// Start a worker in every slot, and the heartbeat watch.
    pub fn start(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            self.spawn(slot, now);
        }
        self.arm(now + self.cfg.heartbeat, Timer::Heartbeats, 0, 0);
    }

    /// The phase of a slot's worker.
    pub fn phase(&self, slot: SlotId) -> Phase {
        self.slots[slot].phase
    }

    /// The current generation of a slot's worker.
    pub fn gen(&self, slot: SlotId) -> u64 {
        self.slots[slot].gen
    }

    /// Whether `gen` is the slot's current worker.
    pub fn is_current(&self, slot: SlotId, gen: u64) -> bool {
        self.slots.get(slot).is_some_and(|s| s.gen == gen)
    }

    fn spawn(&mut self, slot: SlotId, now: Instant) {
        let gen = self.next_gen;
        self.next_gen += 1;
        let consecutive_deaths = self.slots[slot].consecutive_deaths;
        self.slots[slot] = Life {
            gen,
            phase: Phase::Spawning,
            last_seen: now,
            expected: false,
            broke: false,
            intruded: false,
            jobs: 0,
            asked_out: false,
            consecutive_deaths,
            refusals: self.slots[slot].refusals,
            drained: false,
            exited: false,
        };
        self.out.push(PoolAction::Spawn { slot, gen });
    }

    fn arm(&mut self, at: Instant, timer: Timer, slot: SlotId, gen: u64) {
        self.timers.push(Reverse((at, timer, slot, gen)));
    }

    /// The worker's process started.
    pub fn spawned(&mut self, slot: SlotId, gen: u64, now: Instant) {
        if !self.is_current(slot, gen) {
            return;
        }
        let s = &mut self.slots[slot];
        s.phase = Phase::Handshaking;
        if self.closed {
            s.expected = true;
        }
        let at = crate::sched::later(now, self.cfg.start_timeout);
        self.arm(at, Timer::StartTimeout, slot, gen);
    }

    /// The worker connected. Returns false if it is not wanted (stale, or
    /// the pool is closing): the driver then asks it to exit.
    pub fn ready(&mut self, slot: SlotId, gen: u64, now: Instant) -> bool {
        if !self.is_current(slot, gen) || self.slots[slot].phase != Phase::Handshaking {
            return false;
        }
        self.ever_ready = true;
        let s = &mut self.slots[slot];
        s.last_seen = now;
        if self.closed {
            s.phase = Phase::Stopping;
            s.expected = true;
            return false;
        }
        s.phase = Phase::Ready;
        true
    }

    /// The worker sent something (a result, progress, a heartbeat).
    pub fn heard(&mut self, slot: SlotId, gen: u64, now: Instant) {
        if self.is_current(slot, gen) {
            self.slots[slot].last_seen = now;
        }
    }

    /// The worker finished a job (whatever the job's outcome): it is
    /// healthy, and its slot's run of deaths ends.
    pub fn job_done(&mut self, slot: SlotId, gen: u64, jobs: u32) {
        if self.is_current(slot, gen) {
            let s = &mut self.slots[slot];
            s.consecutive_deaths = 0;
            s.jobs = s.jobs.saturating_add(jobs);
        }
    }

    /// The worker's memory grew past the limit: it asks to be replaced.
    pub fn asks_out(&mut self, slot: SlotId, gen: u64) {
        if self.is_current(slot, gen) {
            self.slots[slot].asked_out = true;
        }
    }

    /// Whether the ready worker in `slot` is due to be replaced (it ran its
    /// share of jobs, or asked out): it should take no new job, and exit
    /// once it holds none.
    pub fn due_for_recycling(&self, slot: SlotId) -> bool {
        let s = &self.slots[slot];
        s.phase == Phase::Ready
            && (s.asked_out || self.cfg.recycle_after.is_some_and(|n| s.jobs >= n))
    }

    /// The driver is killing this worker (a decision of the core), or asked
    /// it to exit: its end is expected.
    pub fn stopping(&mut self, slot: SlotId) {
        let s = &mut self.slots[slot];
        if matches!(s.phase, Phase::Down | Phase::Backoff) {
            return;
        }
        s.expected = true;
        s.phase = Phase::Stopping;
    }

    /// The worker broke in a way its driver saw (a protocol fault, a failed
    /// handshake): kill it; its running job crashed.
    pub fn broke(&mut self, slot: SlotId, gen: u64) {
        if self.is_current(slot, gen) {
            self.slots[slot].broke = true;
        }
    }

    /// Another process connected to the worker's handshake first (and was
    /// refused): the worker is killed as a broken one ([`Pool::broke`]),
    /// but its death says nothing about the program, so it is restarted
    /// even if no worker was ever ready.
    pub fn intruded(&mut self, slot: SlotId, gen: u64) {
        if self.is_current(slot, gen) {
            self.slots[slot].intruded = true;
        }
    }

    /// The worker's results channel ended: everything it sent has been read.
    pub fn closed(&mut self, slot: SlotId, gen: u64, now: Instant) {
        if !self.is_current(slot, gen) {
            return;
        }
        let s = &mut self.slots[slot];
        s.drained = true;
        if s.exited {
            self.dead(slot, now);
        } else {
            let at = crate::sched::later(now, self.cfg.closed_grace);
            self.arm(at, Timer::ClosedGrace, slot, gen);
        }
    }

    /// The worker's process exited.
    pub fn exited(&mut self, slot: SlotId, gen: u64, now: Instant) {
        if !self.is_current(slot, gen) {
            return;
        }
        let s = &mut self.slots[slot];
        s.exited = true;
        if s.drained || s.phase != Phase::Ready {
            self.dead(slot, now);
        } else {
            let at = crate::sched::later(now, self.cfg.drain_grace);
            self.arm(at, Timer::DrainGrace, slot, gen);
        }
    }

    /// The worker could not even be started (its program is missing, the
    /// process limit is reached): like a worker that died at once.
    pub fn spawn_failed(&mut self, slot: SlotId, gen: u64, now: Instant) {
        if !self.is_current(slot, gen) {
            return;
        }
        let s = &mut self.slots[slot];
        s.phase = Phase::Handshaking;
        s.exited = true;
        self.dead(slot, now);
    }

    /// Stop restarting workers (shutdown, or the driver gave up): slots
    /// waiting to restart go down.
    pub fn close(&mut self) {
        self.closed = true;
        for s in &mut self.slots {
            if s.phase == Phase::Backoff {
                s.phase = Phase::Down;
            }
        }
    }

    /// Shutdown after the jobs drained: returns the slots whose workers to
    /// ask to exit (ready ones); others starting are killed. The exit grace
    /// starts now.
    pub fn ask_all_to_exit(&mut self, now: Instant) -> Vec<SlotId> {
        self.close();
        let mut ask = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            match s.phase {
                Phase::Ready => {
                    s.phase = Phase::Stopping;
                    s.expected = true;
                    ask.push(i);
                }
                Phase::Spawning | Phase::Handshaking | Phase::Stopping => s.expected = true,
                Phase::Backoff | Phase::Down => s.phase = Phase::Down,
            }
        }
        let at = crate::sched::later(now, self.cfg.exit_grace);
        self.arm(at, Timer::ExitGrace, 0, 0);
        ask
    }

    /// Whether no worker process remains (every slot down).
    pub fn all_down(&self) -> bool {
        self.slots.iter().all(|s| s.phase == Phase::Down)
    }

    /// The earliest time the pool wants to be polled.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, ..))| *at)
    }

    /// Fire the timers that are due and return what to do, in order.
    pub fn poll(&mut self, now: Instant) -> Vec<PoolAction> {
        while let Some(&Reverse((at, timer, slot, gen))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.fire(timer, slot, gen, at, now);
        }
        std::mem::take(&mut self.out)
    }

    /// Fire `timer`, due at `at`, at `now`.
    fn fire(&mut self, timer: Timer, slot: SlotId, gen: u64, at: Instant, now: Instant) {
        if timer == Timer::Heartbeats {
            return self.check_heartbeats(at, now);
        }
        if timer == Timer::ExitGrace {
            return self.out.push(PoolAction::KillAll);
        }
        if !self.is_current(slot, gen) {
            return;
        }
        let s = &mut self.slots[slot];
        match timer {
            Timer::StartTimeout if s.phase == Phase::Handshaking && !s.broke => {
                s.broke = true;
                self.out.push(PoolAction::Kill {
                    slot,
                    why: Broke::NoHandshake(self.cfg.start_timeout),
                });
            }
            Timer::ClosedGrace
                if s.phase == Phase::Ready && !s.exited && !s.expected && !s.broke =>
            {
                s.broke = true;
                self.out.push(PoolAction::Kill {
                    slot,
                    why: Broke::ClosedButRunning,
                });
            }
            Timer::DrainGrace if s.exited => self.dead(slot, now),
            Timer::Restart if s.phase == Phase::Backoff && !self.closed => self.spawn(slot, now),
            _ => {}
        }
    }

    /// Kill workers that went silent. A supervisor that was itself stopped
    /// (this check, due at `due`, came more than an interval late, or long
    /// after the last one) gives every worker a fresh start instead of
    /// blaming it for the supervisor's own silence. The lateness is what
    /// tells, since the first check of all has no last one to compare with.
    fn check_heartbeats(&mut self, due: Instant, now: Instant) {
        let every = self.cfg.heartbeat;
        let limit = every.saturating_mul(self.cfg.heartbeat_misses);
        let late = now.saturating_duration_since(due) > every;
        let apart = self
            .last_check
            .is_some_and(|t| now.saturating_duration_since(t) > every.saturating_mul(2));
        let stalled = late || apart;
        self.last_check = Some(now);
        for slot in 0..self.slots.len() {
            let s = &mut self.slots[slot];
            if stalled {
                s.last_seen = now;
                continue;
            }
            let silent = now.saturating_duration_since(s.last_seen);
            if s.phase == Phase::Ready && silent > limit && !s.broke {
                s.broke = true;
                self.out.push(PoolAction::Kill {
                    slot,
                    why: Broke::Unresponsive(silent),
                });
            }
        }
        let at = crate::sched::later(now, every);
        self.arm(at, Timer::Heartbeats, 0, 0);
    }

    /// A worker is gone and all it sent was read: say so, then restart it
    /// (after its backoff), or give up, or leave the slot down.
    fn dead(&mut self, slot: SlotId, now: Instant) {
        let s = &mut self.slots[slot];
        let was = s.phase;
        // A worker its driver was already killing (or asking to exit) ends
        // as expected even if it also broke on the way out.
        let death = if s.expected {
            Death::Expected
        } else if was == Phase::Ready {
            Death::Lost
        } else {
            if s.intruded {
                s.refusals += 1;
            }
            // A handshake taken once may be another process's doing; taken
            // every time, before any worker was ever ready, it is the
            // program's own (it never presents its secret): starting it
            // again would loop.
            let refused = s.refusals >= MAX_REFUSALS;
            Death::BeforeReady {
                not_a_worker: !self.ever_ready && (!s.intruded || refused),
            }
        };
        s.phase = Phase::Down;
        s.drained = true;
        s.exited = false;
        self.out.push(PoolAction::Dead { slot, death });
        if self.closed {
            return;
        }
        if death == Death::Expected {
            // Killed on the core's decision (a timeout, an eviction): a new
            // worker comes at once.
            return self.spawn(slot, now);
        }
        if death == (Death::BeforeReady { not_a_worker: true }) {
            // The program never connected: restarting it would loop.
            return;
        }
        let s = &mut self.slots[slot];
        s.consecutive_deaths = s.consecutive_deaths.saturating_add(1);
        let consecutive = s.consecutive_deaths;
        match self.restarts.on_death(now, consecutive) {
            RestartDecision::After(delay) => {
                self.slots[slot].phase = Phase::Backoff;
                let gen = self.slots[slot].gen;
                let at = crate::sched::later(now, delay);
                self.arm(at, Timer::Restart, slot, gen);
            }
            RestartDecision::GiveUp { deaths, within } => {
                self.close();
                self.out.push(PoolAction::GiveUp { deaths, within });
            }
        }
    }
}

#[cfg(test)]
mod tests;
