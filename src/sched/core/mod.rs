//! The scheduling core: queued jobs, worker slots, and every decision about
//! them, with no IO.
//!
//! A *slot* is a place for one worker. A ready slot holds up to `prefetch`
//! jobs in order; the first is running, the others wait in the worker. A
//! job's timeout runs from when it becomes the first of its slot.
//!
//! # The calling contract
//!
//! The core is the one place that decides what happens to a job and how it
//! ends. Its driver (the supervisor actor, or a test) tells it what happened
//! and carries out what it decided; it never reads a clock, touches a
//! process or holds global randomness (time is passed in, randomness is
//! seeded), so every decision replays in a test.
//!
//! **Inputs** — each takes the current time where it matters, and records
//! its consequences as decisions; none of them returns an ending:
//! - [`submit`](Core::submit): a job arrives (refused only when a bounded
//!   queue is full; a job it pushes out ends as
//!   `Rejected(PushedOut)`).
//! - [`worker_ready`](Core::worker_ready), [`worker_lost`](Core::worker_lost),
//!   [`slot_down`](Core::slot_down), [`slot_pending`](Core::slot_pending):
//!   the worker of a slot came, died on its own, or will not come back.
//! - [`finished`](Core::finished): a worker reported a job's end.
//! - [`cancel`](Core::cancel), [`stop`](Core::stop),
//!   [`kill_busy`](Core::kill_busy): requests from the outside.
//! - [`forget`](Core::forget): a job's end was delivered by a fast path the
//!   core allowed ([`failure_is_final`](Core::failure_is_final)) before a
//!   later decision about it reached its submitter; drop it.
//!
//! **Output** — [`poll`](Core::poll) first expires deadlines and releases
//! retries that are due, then hands out queued jobs and evicts for urgent
//! ones, and appends every decision made since the last poll, in the order
//! made, to the caller's vector: [`Decision::Dispatch`],
//! [`Decision::Started`], [`Decision::SendCancel`], [`Decision::Kill`], [`Decision::Requeued`],
//! [`Decision::Retrying`] and [`Decision::Ended`]. Each job leaves the core
//! through exactly one `Ended`. Call `poll` after every input, and again at
//! [`next_deadline`](Core::next_deadline).
//!
//! **Fast path** — a worker's report that a job completed (or failed, when
//! [`failure_is_final`](Core::failure_is_final) says so) is final whatever
//! else happens, so the driver may deliver it before it calls
//! [`finished`](Core::finished). If the core meanwhile decided something
//! else for that job (a timeout that raced the result), the driver finds the
//! delivery made, drops that decision and calls [`forget`](Core::forget)
//! for a job that was put back.
//!
//! The core is split by concern: [`config`] its settings, [`decision`] what
//! it emits, [`spec`] what it keeps per job, `slots` the worker slots,
//! `gate` which kinds may start (limits, rates, exclusion window), `evict`
//! eviction, `timers` deadlines and retries, `endings` how jobs end.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rustc_hash::FxHashMap;

use super::queue::{KindId, Policy, Queue, PRIORITY_LEVELS};
use super::rate::TokenBucket;
use super::retry::RetryPolicy;
use crate::wire::JobId;

pub mod config;
pub mod decision;
mod endings;
mod evict;
mod gate;
mod slots;
pub mod spec;
mod timers;

pub use config::{check_delay, CoreConfig, EvictionMode, MAX_DELAY, MAX_PREFETCH, MAX_SLOTS};
pub use decision::{Decision, End, Ended, Finish, JobMeta, KillReason, Rejection};
pub use slots::SlotState;
pub use spec::{weight_units, JobSpec, MAX_WEIGHT, WEIGHT_UNIT};

use slots::Slot;
use spec::{Entry, Place, Spec};

/// Index of a worker slot, `0..slots`.
pub type SlotId = usize;

/// Why a submit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is at capacity (and the job may not push another out).
    Full,
}

/// How much work the core wants from a job source now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Jobs that workers could take at once, beyond those already queued.
    pub free: usize,
    /// Of `free`, the jobs that would start at once: workers holding
    /// nothing, beyond the jobs already queued. The rest would wait behind
    /// a worker's running job (prefetch).
    pub idle: usize,
    /// When no worker has room: the priority of the least urgent running
    /// job, which an arriving job must be more urgent than (a lower number)
    /// to evict it. `None` when a worker has room or eviction is off.
    pub evict_above: Option<u8>,
    /// Jobs queued here that no worker holds yet.
    pub waiting: usize,
}

/// Counts for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Queued jobs per priority level.
    pub queued_per_level: [usize; PRIORITY_LEVELS],
    /// Queued jobs.
    pub queued: usize,
    /// Jobs waiting for a retry to come due.
    pub delayed: usize,
    /// Jobs held by workers (running or prefetched).
    pub assigned: usize,
    /// Slots with a ready worker.
    pub ready_slots: usize,
    /// Slots waiting for a worker.
    pub pending_slots: usize,
    /// Slots given up on.
    pub down_slots: usize,
}

/// The scheduling core (see the module docs). `J` is whatever the driver
/// keeps with each job, `O` the detail it passes with an ending; the core
/// only stores and returns them.
#[derive(Debug)]
pub struct Core<J, O = ()> {
    cfg: CoreConfig,
    jobs: FxHashMap<JobId, Entry<J>>,
    queue: Queue,
    slots: Vec<Slot>,
    deadlines: BinaryHeap<Reverse<(Instant, JobId)>>,
    /// Jobs waiting for their retry, by due time.
    delayed: BinaryHeap<Reverse<(Instant, JobId)>>,
    delayed_count: usize,
    out: Vec<Decision<J, O>>,
    dispatching: bool,
    rng: SmallRng,
    kind_names: Vec<String>,
    kind_ids: FxHashMap<String, KindId>,
    /// Per kind: jobs held by workers, concurrency limit, rate limit.
    held_per_kind: Vec<usize>,
    limit_per_kind: Vec<Option<usize>>,
    rate_per_kind: Vec<Option<TokenBucket>>,
    rate: Option<TokenBucket>,
    /// When a rate limit next lets a waiting job start.
    rate_wake: Option<Instant>,
    /// Kinds of the last jobs started (the exclusion window).
    recent: VecDeque<KindId>,
    /// Under the random policies: jobs submitted since the last poll (they
    /// may evict), and jobs an eviction was made for (they take the next
    /// free worker, whatever the draw).
    arrived: Vec<(u8, JobId)>,
    reserved: VecDeque<JobId>,
    /// Scratch: which kinds may start a job now.
    eligible: Vec<bool>,
    /// Scratch: the slots being filled by one dispatch.
    open: Vec<SlotId>,
    /// No job is handed out at or after this instant (a job source's lease
    /// is in doubt): see [`hold_starts_from`](Core::hold_starts_from).
    starts_until: Option<Instant>,
}

impl<J, O> Core<J, O> {
    /// A core with every slot pending (the driver is starting workers).
    /// Settings out of range are brought into range (check them first with
    /// [`CoreConfig::check`] to report them).
    pub fn new(cfg: CoreConfig) -> Core<J, O> {
        let slots = (0..cfg.slots.clamp(1, MAX_SLOTS))
            .map(|_| Slot::new())
            .collect();
        let mut core = Core {
            queue: Queue::new(cfg.policy),
            rng: SmallRng::seed_from_u64(cfg.seed),
            rate: cfg.rate.map(TokenBucket::new),
            cfg: CoreConfig {
                prefetch: cfg.prefetch.clamp(1, MAX_PREFETCH),
                cancel_grace: cfg.cancel_grace.min(MAX_DELAY),
                ..cfg
            },
            jobs: FxHashMap::default(),
            slots,
            deadlines: BinaryHeap::new(),
            delayed: BinaryHeap::new(),
            delayed_count: 0,
            out: Vec::new(),
            dispatching: true,
            kind_names: Vec::new(),
            kind_ids: FxHashMap::default(),
            held_per_kind: Vec::new(),
            limit_per_kind: Vec::new(),
            rate_per_kind: Vec::new(),
            rate_wake: None,
            recent: VecDeque::new(),
            arrived: Vec::new(),
            reserved: VecDeque::new(),
            eligible: Vec::new(),
            open: Vec::new(),
            starts_until: None,
        };
        for (name, limit) in std::mem::take(&mut core.cfg.kind_limits) {
            let k = core.kind(&name) as usize;
            core.limit_per_kind[k] = Some(limit);
        }
        for (name, rate) in std::mem::take(&mut core.cfg.kind_rates) {
            let k = core.kind(&name) as usize;
            core.rate_per_kind[k] = Some(TokenBucket::new(rate));
        }
        core
    }

    /// The id of a kind name (interned on first use).
    pub fn kind(&mut self, name: &str) -> KindId {
        if let Some(&k) = self.kind_ids.get(name) {
            return k;
        }
        let k = self.kind_names.len() as KindId;
        self.kind_names.push(name.to_string());
        self.kind_ids.insert(name.to_string(), k);
        self.held_per_kind.push(0);
        self.limit_per_kind.push(None);
        self.rate_per_kind.push(None);
        k
    }

    /// The name of a kind.
    pub fn kind_name(&self, kind: KindId) -> &str {
        self.kind_names
            .get(kind as usize)
            .map_or("", String::as_str)
    }

    /// Queue a job. Ids must be unique and increase with submission. A full
    /// queue refuses it (`Err`, with the data back), or, with push-out, takes
    /// it and ends the least urgent waiting job as `Rejected(PushedOut)`. A
    /// stopped core takes it and ends it at once as `Rejected(Stopped)`.
    pub fn submit(&mut self, job: JobId, spec: JobSpec, data: J) -> Result<(), (J, Refused)> {
        debug_assert!(!self.jobs.contains_key(&job), "job id {job} reused");
        if !self.dispatching {
            self.out.push(Decision::Ended {
                ended: Ended {
                    job,
                    data,
                    meta: JobMeta {
                        kind: spec.kind,
                        priority: spec.priority,
                        attempt: 1,
                        evictions: 0,
                        started: None,
                        slot: None,
                    },
                    spec,
                },
                end: End::Rejected(Rejection::Stopped),
                detail: None,
            });
            return Ok(());
        }
        let mut spec = spec;
        spec.priority = spec.priority.min((PRIORITY_LEVELS - 1) as u8);
        while self.kind_names.len() <= spec.kind as usize {
            // A kind id not interned here: give it a placeholder name.
            let k = self.kind_names.len();
            self.kind(&format!("#{k}"));
        }
        if let Some(cap) = self.cfg.capacity {
            if self.waiting() >= cap {
                let victim = self
                    .queue
                    .least_urgent()
                    .filter(|&(_, level)| self.cfg.push_out && spec.priority < level);
                match victim {
                    Some((victim, _)) => {
                        self.end_waiting(victim, End::Rejected(Rejection::PushedOut))
                    }
                    None => return Err((data, Refused::Full)),
                }
            }
        }
        let key = self.queue.push(job, spec.kind, spec.priority, spec.weight);
        if self.cfg.policy != Policy::Priority && self.cfg.eviction != EvictionMode::Off {
            self.arrived.push((spec.priority, job));
        }
        self.jobs.insert(
            job,
            Entry {
                spec: Spec::new(spec),
                data: Some(data),
                place: Place::Queued(key),
                attempt: 1,
                evictions: 0,
                undelivered: false,
            },
        );
        Ok(())
    }

    /// Jobs waiting: queued, or waiting to be retried.
    pub fn waiting(&self) -> usize {
        self.queue.len() + self.delayed_count
    }

    /// The data stored with a job that is still in the core.
    pub fn data(&self, job: JobId) -> Option<&J> {
        self.jobs.get(&job).and_then(|e| e.data.as_ref())
    }

    /// Mutable access to a job's data.
    pub fn data_mut(&mut self, job: JobId) -> Option<&mut J> {
        self.jobs.get_mut(&job).and_then(|e| e.data.as_mut())
    }

    /// Facts about a job still in the core, and whether it is running (first
    /// in a ready slot).
    pub fn job_meta(&self, job: JobId) -> Option<(JobMeta, bool)> {
        let e = self.jobs.get(&job)?;
        e.data.as_ref()?;
        let mut meta = Self::meta_of(e);
        let running = match e.place.slot() {
            Some(s) => {
                let head = self.slots[s].inflight.front() == Some(&job);
                if head {
                    meta.started = self.slots[s].head_started;
                }
                head
            }
            None => false,
        };
        Some((meta, running))
    }

    /// The timeout of a job still in the core.
    pub fn timeout_of(&self, job: JobId) -> Option<std::time::Duration> {
        self.jobs.get(&job)?.spec.timeout()
    }

    fn meta_of(e: &Entry<J>) -> JobMeta {
        JobMeta {
            kind: e.spec.kind,
            priority: e.spec.priority,
            attempt: e.attempt as u32,
            evictions: e.evictions as u32,
            started: None,
            slot: e.place.slot(),
        }
    }

    fn policy_of<'a>(&'a self, retry: &'a Option<Box<RetryPolicy>>) -> &'a RetryPolicy {
        retry.as_deref().unwrap_or(&self.cfg.retry)
    }

    /// Whether a failure of the job's current attempt would end it for good
    /// (no retry is left, or the core is stopping): then a worker's report
    /// of that failure is final, like a completion, and may be delivered on
    /// the fast path (see the module docs).
    pub fn failure_is_final(&self, job: JobId) -> bool {
        let Some(e) = self.jobs.get(&job) else {
            return true;
        };
        !(self.dispatching
            && self
                .policy_of(&e.spec.retry)
                .should_retry(e.attempt as u32, super::retry::Retryable::Failed))
    }

    /// How many jobs the worker in `slot` holds (running and prefetched).
    pub fn held(&self, slot: SlotId) -> usize {
        self.slots.get(slot).map_or(0, |s| s.inflight.len())
    }

    /// The job running in `slot`, if any (one whose end is not yet decided).
    pub fn running_in(&self, slot: SlotId) -> Option<JobId> {
        let job = *self.slots.get(slot)?.inflight.front()?;
        self.jobs.get(&job)?.data.as_ref()?;
        Some(job)
    }

    /// A worker in `slot` finished its handshake.
    pub fn worker_ready(&mut self, slot: SlotId) {
        let s = &mut self.slots[slot];
        debug_assert!(s.inflight.is_empty());
        s.state = SlotState::Ready;
    }

    /// The frame that carried `job` to its worker in `slot` could not be written: the
    /// worker was already gone, so the job never ran there. When the
    /// worker's loss is known, such a job goes back to the queue rather
    /// than ending `Crashed`.
    pub fn undelivered(&mut self, job: JobId, slot: SlotId) {
        if let Some(e) = self.jobs.get_mut(&job) {
            if e.place.slot() == Some(slot) {
                e.undelivered = true;
            }
        }
    }

    /// The worker in `slot` is to be replaced once it holds no job: it gets
    /// no new one (its jobs run on, under their timeouts).
    pub fn retire(&mut self, slot: SlotId) {
        if self.slots[slot].state == SlotState::Ready {
            self.slots[slot].state = SlotState::Retiring;
        }
    }

    /// The slot will get no worker (restart limit hit, or shutting down).
    /// Any job it still held ends as if its worker was lost.
    pub fn slot_down(&mut self, slot: SlotId, now: Instant) {
        self.settle_slot(slot, Settle::Lost(None), now);
        self.slots[slot].state = SlotState::Down;
    }

    /// A slot that was down gets a worker again.
    pub fn slot_pending(&mut self, slot: SlotId) {
        if self.slots[slot].state == SlotState::Down {
            self.slots[slot].state = SlotState::Pending;
        }
    }

    /// The state of every slot.
    pub fn slot_states(&self) -> Vec<SlotState> {
        self.slots.iter().map(|s| s.state).collect()
    }

    /// Whether the core still hands out jobs (it was not stopped).
    pub fn is_dispatching(&self) -> bool {
        self.dispatching
    }

    /// Kill every worker that holds a job (shutdown after the grace): their
    /// running jobs end as `Cancelled`.
    pub fn kill_busy(&mut self, reason: KillReason, now: Instant) {
        for slot in 0..self.slots.len() {
            if !self.slots[slot].inflight.is_empty() {
                self.kill_slot(slot, reason, now);
            }
        }
    }

    /// Whether any worker holds a job.
    pub fn any_assigned(&self) -> bool {
        self.slots.iter().any(|s| !s.inflight.is_empty())
    }

    /// How much work the core wants from a job source (see [`Demand`]).
    pub fn demand(&self) -> Demand {
        if !self.dispatching {
            return Demand {
                free: 0,
                idle: 0,
                evict_above: None,
                waiting: self.waiting(),
            };
        }
        let room: usize = self
            .slots
            .iter()
            .filter(|s| s.state != SlotState::Down)
            .map(|s| self.cfg.prefetch.saturating_sub(s.inflight.len()))
            .sum();
        let free = room.saturating_sub(self.waiting());
        let empty = self
            .slots
            .iter()
            .filter(|s| s.state != SlotState::Down && s.inflight.is_empty())
            .count();
        let idle = empty.saturating_sub(self.waiting()).min(free);
        let evict_above = if room > 0 || self.cfg.eviction == EvictionMode::Off {
            None
        } else {
            self.least_urgent_running().map(|(_, p)| p)
        };
        Demand {
            free,
            idle,
            evict_above,
            waiting: self.waiting(),
        }
    }

    /// Counts for status displays.
    pub fn stats(&self) -> CoreStats {
        let mut st = CoreStats {
            queued_per_level: self.queue.per_level(),
            queued: self.queue.len(),
            delayed: self.delayed_count,
            ..CoreStats::default()
        };
        for s in &self.slots {
            st.assigned += s.inflight.len();
            match s.state {
                SlotState::Ready | SlotState::Retiring => st.ready_slots += 1,
                SlotState::Pending => st.pending_slots += 1,
                SlotState::Down => st.down_slots += 1,
            }
        }
        st
    }

    /// Queued jobs of `kind`.
    pub fn queued_of(&self, kind: KindId) -> usize {
        self.queue.len_of(kind)
    }

    /// Jobs of `kind` held by workers now.
    pub fn held_of(&self, kind: KindId) -> usize {
        self.held_per_kind.get(kind as usize).copied().unwrap_or(0)
    }

    /// Hand out no job at or after `at` (`None`: no such bound). A driver
    /// fed by a source that holds its jobs under a lease (the job store)
    /// moves this forward each time the lease is confirmed, so that a
    /// driver that was paused, or cut off from the source, starts nothing
    /// it may no longer hold: once `at` has passed, queued jobs stay queued
    /// (and none is evicted for) until a later bound arrives. Jobs already
    /// running go on; a worker may still start the ones it was handed
    /// before (with prefetch).
    pub fn hold_starts_from(&mut self, at: Option<Instant>) {
        self.starts_until = at;
    }

    /// Whether jobs may be handed out at `now` (see
    /// [`hold_starts_from`](Core::hold_starts_from)).
    pub fn may_start(&self, now: Instant) -> bool {
        self.starts_until.is_none_or(|t| now < t)
    }

    /// Decide what to do now: expire deadlines, queue retries that are due,
    /// hand queued jobs to workers with room, evict for more urgent jobs.
    /// Appends the decisions (and any made by inputs since the last poll) to
    /// `out`, in the order they were made.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Decision<J, O>>) {
        self.expire(now);
        self.release_due(now);
        if self.dispatching && self.may_start(now) {
            self.dispatch(now);
            self.evict(now);
        }
        out.append(&mut self.out);
    }
}

/// Why a slot is being emptied.
#[derive(Debug)]
enum Settle<O> {
    /// Its worker died on its own; the running job crashed (with this
    /// detail).
    Lost(Option<O>),
    /// The core killed its worker for this reason.
    Killed(KillReason),
}
