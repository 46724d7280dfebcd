//! The scheduling core: queued jobs, worker slots, and every decision about
//! them, with no IO.
//!
//! The supervisor tells the core what happened (a job was submitted, a worker
//! became ready, a job finished, a worker was lost, a cancel was asked for)
//! and asks it, with the current time, what to do: [`Core::poll`] returns
//! [`Decision`]s — dispatch this job to that slot, kill that slot's worker,
//! this job is done with this end. The core never reads a clock, never
//! touches a process and holds no randomness, so every decision can be
//! replayed in a test.
//!
//! A *slot* is a place for one worker. A ready slot holds up to `prefetch`
//! jobs in order; the first is running, the others wait in the worker. A
//! job's timeout runs from when it becomes the first of its slot.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rustc_hash::FxHashMap;

use super::queue::{KindId, Policy, Queue, QueueKey, PRIORITY_LEVELS};
use super::rate::{RateLimit, TokenBucket};
use super::retry::{RetryPolicy, Retryable};
use crate::wire::JobId;

/// Index of a worker slot, `0..slots`.
pub type SlotId = usize;

/// What happens to the job whose worker is killed to make room for a more
/// urgent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionMode {
    /// Never evict: urgent jobs wait for a free worker.
    Off,
    /// Put the evicted job back in the queue, in its old place (default).
    #[default]
    Requeue,
    /// End the evicted job with the outcome `Evicted`.
    Drop,
}

/// The core's fixed settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Number of worker slots.
    pub slots: usize,
    /// Jobs a worker may hold at once (1 = no prefetch).
    pub prefetch: usize,
    /// What eviction does.
    pub eviction: EvictionMode,
    /// How long a cancelled running job may take to stop by itself before
    /// its worker is killed (zero: kill at once).
    pub cancel_grace: Duration,
    /// How the next job is chosen.
    pub policy: Policy,
    /// Avoid starting a job of the same kind as one of the last this many
    /// started, when a job of another kind is waiting (0: off).
    pub exclusion_window: usize,
    /// At most this many jobs of a kind held by workers at once.
    pub kind_limits: Vec<(String, usize)>,
    /// Rate limit on starts, over all kinds.
    pub rate: Option<RateLimit>,
    /// Rate limits on starts, per kind.
    pub kind_rates: Vec<(String, RateLimit)>,
    /// Most jobs waiting (queued or waiting to retry); `None`: unbounded.
    pub capacity: Option<usize>,
    /// When full, a more urgent job pushes out the least urgent waiting one.
    pub push_out: bool,
    /// Retries for jobs that do not set their own.
    pub retry: RetryPolicy,
    /// Seed of the core's random choices (draws, jitter).
    pub seed: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            slots: 1,
            prefetch: 1,
            eviction: EvictionMode::Requeue,
            cancel_grace: Duration::ZERO,
            policy: Policy::Priority,
            exclusion_window: 0,
            kind_limits: Vec::new(),
            rate: None,
            kind_rates: Vec::new(),
            capacity: None,
            push_out: false,
            retry: RetryPolicy::default(),
            seed: 0,
        }
    }
}

/// Weights are stored in fixed point with this many units per 1.0.
pub const WEIGHT_UNIT: f64 = 1_000_000.0;

/// Largest accepted weight.
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// A weight in fixed point (None if not finite, not positive or too large).
pub fn weight_units(weight: f64) -> Option<u64> {
    (weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT)
        .then(|| ((weight * WEIGHT_UNIT).round() as u64).max(1))
}

/// What the core needs to know about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// 0 (most urgent) to 10.
    pub priority: u8,
    /// Longest run before the worker is killed; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Its kind ([`Core::kind`]).
    pub kind: KindId,
    /// Its weight for the random policies, in fixed point ([`weight_units`]).
    pub weight: u64,
    /// Its own retry policy, if not the core's default.
    pub retry: Option<Box<RetryPolicy>>,
}

impl JobSpec {
    /// A job of `kind` with `priority`, weight 1, no timeout, default retries.
    pub fn new(kind: KindId, priority: u8) -> JobSpec {
        JobSpec {
            priority,
            timeout: None,
            kind,
            weight: WEIGHT_UNIT as u64,
            retry: None,
        }
    }
}

/// Why a submit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is at capacity (and the job may not push another out).
    Full,
}

/// Why the core wants a worker killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Its running job passed its deadline.
    Timeout,
    /// Its running job is evicted for a more urgent one.
    Evicted,
    /// Its running job was cancelled (and did not stop within the grace).
    Cancelled,
    /// The supervisor is shutting down and the grace is over.
    Shutdown,
}

/// A terminal end that the core decides by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Passed its deadline; its worker was killed.
    TimedOut,
    /// Evicted and dropped ([`EvictionMode::Drop`]).
    Evicted,
    /// Cancelled (or cut short by shutdown).
    Cancelled,
}

/// Facts about a job when it leaves the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobMeta {
    /// Its priority.
    pub priority: u8,
    /// Which attempt this was (1 = first).
    pub attempt: u32,
    /// How many times it was evicted and put back.
    pub evictions: u32,
    /// When its last run started, if it ever ran.
    pub started: Option<Instant>,
    /// The slot it last ran on.
    pub slot: Option<SlotId>,
}

/// A job that left the core, with its data.
#[derive(Debug)]
pub struct Ended<J> {
    /// The job's id.
    pub job: JobId,
    /// What the supervisor stored with it.
    pub data: J,
    /// Facts about its life.
    pub meta: JobMeta,
    /// What it was submitted with.
    pub spec: JobSpec,
}

/// What the core asks the supervisor to do.
#[derive(Debug)]
pub enum Decision<J> {
    /// Send this job to the worker in this slot.
    Dispatch {
        /// The slot.
        slot: SlotId,
        /// The job (its data is still in the core: [`Core::data`]).
        job: JobId,
    },
    /// Tell this slot's worker to cancel this job.
    SendCancel {
        /// The slot.
        slot: SlotId,
        /// The job.
        job: JobId,
    },
    /// Kill the worker in this slot; the slot waits for a new one.
    Kill {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: KillReason,
        /// The running job it was killed for, if any.
        job: Option<JobId>,
    },
    /// This job left a worker and went back to the queue (its worker died or
    /// was killed before it ran, or it was evicted).
    Requeued {
        /// The job.
        job: JobId,
        /// The slot it left.
        slot: SlotId,
    },
    /// This job has ended (its data handed back).
    Done {
        /// The job and its data.
        ended: Ended<J>,
        /// How it ended.
        end: End,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Queued(QueueKey),
    /// Waiting for its retry to be due.
    Delayed,
    /// In a worker slot (u32 keeps the entry small).
    Slot(u32),
}

/// A job's spec as the core stores it: the same facts as [`JobSpec`] in
/// fewer bytes, so that a map slot (id + entry) fits one 64-byte cache line.
#[derive(Debug)]
struct Spec {
    weight: u64,
    /// Timeout in nanoseconds; 0: none.
    timeout_ns: u64,
    retry: Option<Box<RetryPolicy>>,
    kind: KindId,
    priority: u8,
}

impl Spec {
    fn new(spec: JobSpec) -> Spec {
        Spec {
            weight: spec.weight,
            timeout_ns: spec
                .timeout
                .map_or(0, |t| t.as_nanos().clamp(1, u64::MAX as u128) as u64),
            retry: spec.retry,
            kind: spec.kind,
            priority: spec.priority,
        }
    }

    fn timeout(&self) -> Option<Duration> {
        (self.timeout_ns > 0).then(|| Duration::from_nanos(self.timeout_ns))
    }

    fn to_job_spec(&self) -> JobSpec {
        JobSpec {
            priority: self.priority,
            timeout: self.timeout(),
            kind: self.kind,
            weight: self.weight,
            retry: self.retry.clone(),
        }
    }
}

#[derive(Debug)]
struct Entry<J> {
    spec: Spec,
    /// `None` once the job's end was reported while its worker still holds it
    /// (cancelled in a worker): the entry only keeps the slot's order right.
    data: Option<J>,
    place: Place,
    attempt: u16,
    evictions: u16,
}

impl<J> Entry<J> {
    /// Take the job out as ended (None if its end was already reported).
    fn into_ended(self, job: JobId) -> Option<Ended<J>> {
        let meta = self.meta();
        let spec = self.spec.to_job_spec();
        self.data.map(|data| Ended {
            job,
            data,
            meta,
            spec,
        })
    }

    fn meta(&self) -> JobMeta {
        JobMeta {
            priority: self.spec.priority,
            attempt: self.attempt as u32,
            evictions: self.evictions as u32,
            started: None,
            slot: match self.place {
                Place::Slot(s) => Some(s as SlotId),
                Place::Queued(_) | Place::Delayed => None,
            },
        }
    }
}

/// The state of a worker slot, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No usable worker yet, but one is coming (starting, or restarting).
    Pending,
    /// A worker is ready for jobs.
    Ready,
    /// No worker and none coming.
    Down,
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    inflight: VecDeque<JobId>,
    /// When the first job in `inflight` started, and its deadline.
    head_started: Option<Instant>,
    head_deadline: Option<Instant>,
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

/// The scheduling core (see the module docs). `J` is whatever the supervisor
/// keeps with each job; the core only stores and returns it.
#[derive(Debug)]
pub struct Core<J> {
    cfg: CoreConfig,
    jobs: FxHashMap<JobId, Entry<J>>,
    queue: Queue,
    slots: Vec<Slot>,
    deadlines: BinaryHeap<Reverse<(Instant, JobId)>>,
    /// Jobs waiting for their retry, by due time.
    delayed: BinaryHeap<Reverse<(Instant, JobId)>>,
    delayed_count: usize,
    out: Vec<Decision<J>>,
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
}

impl<J> Core<J> {
    /// A core with every slot pending (the supervisor is starting workers).
    pub fn new(cfg: CoreConfig) -> Core<J> {
        let slots = (0..cfg.slots)
            .map(|_| Slot {
                state: SlotState::Pending,
                inflight: VecDeque::new(),
                head_started: None,
                head_deadline: None,
            })
            .collect();
        let mut core = Core {
            queue: Queue::new(cfg.policy),
            rng: SmallRng::seed_from_u64(cfg.seed),
            rate: cfg.rate.map(TokenBucket::new),
            cfg: CoreConfig {
                prefetch: cfg.prefetch.max(1),
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
    /// it and hands back the least urgent waiting job it pushed out.
    #[allow(clippy::type_complexity)]
    pub fn submit(
        &mut self,
        job: JobId,
        spec: JobSpec,
        data: J,
    ) -> Result<Option<Ended<J>>, (J, Refused)> {
        debug_assert!(!self.jobs.contains_key(&job), "job id {job} reused");
        let mut spec = spec;
        spec.priority = spec.priority.min((PRIORITY_LEVELS - 1) as u8);
        while self.kind_names.len() <= spec.kind as usize {
            // A kind id not interned here: give it a placeholder name.
            let k = self.kind_names.len();
            self.kind(&format!("#{k}"));
        }
        let mut pushed_out = None;
        if let Some(cap) = self.cfg.capacity {
            if self.waiting() >= cap {
                let victim = self
                    .queue
                    .least_urgent()
                    .filter(|&(_, level)| self.cfg.push_out && spec.priority < level);
                match victim {
                    Some((victim, _)) => pushed_out = self.remove_queued(victim),
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
            },
        );
        Ok(pushed_out)
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
        let mut meta = e.meta();
        let running = match e.place {
            Place::Slot(s) => {
                let s = s as SlotId;
                let head = self.slots[s].inflight.front() == Some(&job);
                if head {
                    meta.started = self.slots[s].head_started;
                }
                head
            }
            _ => false,
        };
        Some((meta, running))
    }

    /// The retry policy that applies to a job.
    pub fn retry_policy(&self, job: JobId) -> Option<&RetryPolicy> {
        let e = self.jobs.get(&job)?;
        Some(e.spec.retry.as_deref().unwrap_or(&self.cfg.retry))
    }

    fn policy_of<'a>(&'a self, spec: &'a JobSpec) -> &'a RetryPolicy {
        spec.retry.as_deref().unwrap_or(&self.cfg.retry)
    }

    /// Whether [`retry`](Self::retry) would keep this job for another
    /// attempt (its retry policy allows one, and the core is not shutting
    /// down).
    pub fn will_retry(&self, ended: &Ended<J>, ending: Retryable) -> bool {
        self.dispatching
            && self
                .policy_of(&ended.spec)
                .should_retry(ended.meta.attempt, ending)
    }

    /// How many jobs the worker in `slot` holds (running and prefetched).
    pub fn held(&self, slot: SlotId) -> usize {
        self.slots.get(slot).map_or(0, |s| s.inflight.len())
    }

    /// The job running in `slot`, if any (one whose end is not yet reported).
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

    /// The slot will get no worker (restart limit hit, or shutting down).
    pub fn slot_down(&mut self, slot: SlotId, now: Instant) {
        self.settle_slot(slot, None, now);
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

    /// The worker in `slot` reported that `job` ended. Returns the job, unless
    /// its end was already reported (it was cancelled) or it is unknown here.
    pub fn finished(&mut self, slot: SlotId, job: JobId, now: Instant) -> Option<Ended<J>> {
        let s = self.slots.get_mut(slot)?;
        let pos = s.inflight.iter().position(|&j| j == job)?;
        s.inflight.remove(pos);
        let started = if pos == 0 {
            s.head_started.take()
        } else {
            None
        };
        if pos == 0 {
            self.start_head(slot, now);
        }
        let entry = self.jobs.remove(&job)?;
        self.held_per_kind[entry.spec.kind as usize] -= 1;
        let mut ended = entry.into_ended(job)?;
        ended.meta.started = started;
        Some(ended)
    }

    /// The worker in `slot` died or broke on its own (not killed by a
    /// decision of the core). Returns its running job, whose end is a crash;
    /// the jobs it held but had not started go back to the queue.
    pub fn worker_lost(&mut self, slot: SlotId, now: Instant) -> Option<Ended<J>> {
        let head = self.settle_slot(slot, None, now);
        self.slots[slot].state = SlotState::Pending;
        head
    }

    /// A job ended in a way that may be retried. If its retry policy allows
    /// another attempt, the core keeps it and queues it again once its
    /// backoff (with full jitter) has passed: returns `None` and the due
    /// time is in the core's deadlines. Otherwise hands it back.
    pub fn retry(
        &mut self,
        ended: Ended<J>,
        ending: Retryable,
        now: Instant,
    ) -> Result<Instant, Ended<J>> {
        if !self.will_retry(&ended, ending) {
            return Err(ended);
        }
        let policy = *self.policy_of(&ended.spec);
        let attempt = ended.meta.attempt;
        let due = now + policy.delay(attempt, &mut self.rng);
        let Ended {
            job,
            data,
            meta,
            spec,
        } = ended;
        self.jobs.insert(
            job,
            Entry {
                spec: Spec::new(spec),
                data: Some(data),
                place: Place::Delayed,
                attempt: attempt.saturating_add(1).min(u16::MAX as u32) as u16,
                evictions: meta.evictions.min(u16::MAX as u32) as u16,
            },
        );
        self.delayed.push(Reverse((due, job)));
        self.delayed_count += 1;
        Ok(due)
    }

    /// Ask for `job` to be cancelled. A waiting job ends at once; a job in a
    /// worker ends at once too (its submitter learns `Cancelled`), and its
    /// worker is told, or killed if it is running and there is no grace.
    /// Returns false if the job is not (or no longer) in the core.
    pub fn cancel(&mut self, job: JobId, now: Instant) -> bool {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return false;
        };
        let Some(data) = entry.data.take() else {
            return false;
        };
        let mut meta = entry.meta();
        if let Place::Slot(s) = entry.place {
            let s = s as SlotId;
            if self.slots[s].inflight.front() == Some(&job) {
                meta.started = self.slots[s].head_started;
            }
        }
        let spec = entry.spec.to_job_spec();
        match entry.place {
            Place::Queued(key) => {
                self.queue.remove(key, job);
                self.jobs.remove(&job);
            }
            Place::Delayed => {
                self.delayed_count -= 1;
                self.jobs.remove(&job);
            }
            Place::Slot(slot) => {
                let slot = slot as SlotId;
                let running = self.slots[slot].inflight.front() == Some(&job);
                if running && self.cfg.cancel_grace.is_zero() {
                    self.kill_slot(slot, KillReason::Cancelled, now);
                } else {
                    self.out.push(Decision::SendCancel { slot, job });
                    if running {
                        self.set_deadline(job, now + self.cfg.cancel_grace);
                    }
                }
            }
        }
        self.out.push(Decision::Done {
            ended: Ended {
                job,
                data,
                meta,
                spec,
            },
            end: End::Cancelled,
        });
        true
    }

    /// Remove a waiting job (queued or delayed) and hand it back.
    pub fn remove_queued(&mut self, job: JobId) -> Option<Ended<J>> {
        match self.jobs.get(&job)?.place {
            Place::Queued(key) => {
                self.queue.remove(key, job);
            }
            Place::Delayed => self.delayed_count -= 1,
            Place::Slot(_) => return None,
        }
        self.jobs.remove(&job)?.into_ended(job)
    }

    /// Stop handing out jobs (shutdown). Running jobs go on.
    pub fn stop_dispatching(&mut self) {
        self.dispatching = false;
    }

    /// Remove every waiting job (queued or delayed) and hand it back.
    pub fn take_queued(&mut self) -> Vec<Ended<J>> {
        let mut ids = self.queue.drain();
        ids.extend(self.delayed.drain().map(|Reverse((_, j))| j));
        self.delayed_count = 0;
        ids.into_iter()
            .filter_map(|job| {
                let e = self.jobs.get(&job)?;
                if matches!(e.place, Place::Slot(_)) {
                    return None;
                }
                self.jobs.remove(&job)?.into_ended(job)
            })
            .collect()
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

    /// The earliest time the core wants to be polled again: a deadline, a
    /// retry coming due, a rate limit letting a job start. (It may be one
    /// that no longer matters; polling then simply finds nothing to do.)
    pub fn next_deadline(&self) -> Option<Instant> {
        let d = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let r = self.delayed.peek().map(|Reverse((at, _))| *at);
        [d, r, self.rate_wake].into_iter().flatten().min()
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
                SlotState::Ready => st.ready_slots += 1,
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

    /// Decide what to do now: expire deadlines, queue retries that are due,
    /// hand queued jobs to workers with room, evict for more urgent jobs.
    /// Appends the decisions (and any pending from earlier calls) to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Decision<J>>) {
        self.expire(now);
        self.release_due(now);
        if self.dispatching {
            self.dispatch(now);
            self.evict(now);
        }
        out.append(&mut self.out);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, job))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(e) = self.jobs.get(&job) else {
                continue;
            };
            let Place::Slot(slot) = e.place else { continue };
            let slot = slot as SlotId;
            let s = &self.slots[slot];
            if s.head_deadline != Some(at) || s.inflight.front() != Some(&job) {
                continue;
            }
            let reason = if e.data.is_none() {
                KillReason::Cancelled
            } else {
                KillReason::Timeout
            };
            self.kill_slot(slot, reason, now);
        }
    }

    fn release_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, job))) = self.delayed.peek() {
            if at > now {
                break;
            }
            self.delayed.pop();
            let Some(e) = self.jobs.get_mut(&job) else {
                continue;
            };
            if e.place != Place::Delayed {
                continue;
            }
            self.delayed_count -= 1;
            e.place =
                Place::Queued(
                    self.queue
                        .push(job, e.spec.kind, e.spec.priority, e.spec.weight),
                );
        }
    }

    /// Which waiting kinds may start a job now: under their concurrency and
    /// rate limits, and outside the exclusion window unless no other kind is
    /// waiting. Also notes when a rate limit will next allow a start.
    fn eligible_kinds(&mut self, now: Instant) -> Vec<bool> {
        // Reuse one buffer: this runs for every job handed out.
        let mut ok = std::mem::take(&mut self.eligible);
        ok.clear();
        ok.resize(self.kind_names.len(), false);
        let mut wake: Option<Instant> = None;
        for k in self.queue.waiting_kinds() {
            let k = k as usize;
            if self.limit_per_kind[k].is_some_and(|l| self.held_per_kind[k] >= l) {
                continue;
            }
            if let Some(bucket) = self.rate_per_kind[k].as_mut() {
                if !bucket.ready(now) {
                    let at = bucket.next_token(now);
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                    continue;
                }
            }
            ok[k] = true;
        }
        if self.cfg.exclusion_window > 0 {
            let recent = |k: usize| self.recent.contains(&(k as KindId));
            if (0..ok.len()).any(|k| ok[k] && !recent(k)) {
                for (k, o) in ok.iter_mut().enumerate() {
                    *o &= !recent(k);
                }
            }
        }
        if !ok.iter().any(|&o| o) {
            self.rate_wake = wake;
        }
        ok
    }

    fn dispatch(&mut self, now: Instant) {
        self.rate_wake = None;
        while !self.queue.is_empty() {
            let Some(slot) = self.slot_with_room() else {
                break;
            };
            if let Some(bucket) = self.rate.as_mut() {
                if !bucket.ready(now) {
                    self.rate_wake = Some(bucket.next_token(now));
                    break;
                }
            }
            let eligible = self.eligible_kinds(now);
            let picked = self
                .take_reserved(&eligible)
                .or_else(|| self.queue.pop(&|k| eligible[k as usize], &mut self.rng));
            self.eligible = eligible;
            let Some((job, kind)) = picked else {
                break;
            };
            if let Some(bucket) = self.rate.as_mut() {
                bucket.try_take(now);
            }
            if let Some(bucket) = self.rate_per_kind[kind as usize].as_mut() {
                bucket.try_take(now);
            }
            if self.cfg.exclusion_window > 0 {
                if self.recent.len() == self.cfg.exclusion_window {
                    self.recent.pop_front();
                }
                self.recent.push_back(kind);
            }
            self.held_per_kind[kind as usize] += 1;
            let entry = self.jobs.get_mut(&job).expect("queued job has an entry");
            entry.place = Place::Slot(slot as u32);
            let s = &mut self.slots[slot];
            s.inflight.push_back(job);
            self.out.push(Decision::Dispatch { slot, job });
            if s.inflight.len() == 1 {
                self.start_head(slot, now);
            }
        }
    }

    /// The first job an eviction was made for that is still queued and may
    /// start, taken out of the queue.
    fn take_reserved(&mut self, eligible: &[bool]) -> Option<(JobId, KindId)> {
        while let Some(&job) = self.reserved.front() {
            let Some(e) = self.jobs.get(&job) else {
                self.reserved.pop_front();
                continue;
            };
            let Place::Queued(key) = e.place else {
                self.reserved.pop_front();
                continue;
            };
            if !eligible[e.spec.kind as usize] {
                return None;
            }
            self.reserved.pop_front();
            self.queue.remove(key, job);
            return Some((job, e.spec.kind));
        }
        None
    }

    /// The ready slot holding the fewest jobs, if it has room.
    fn slot_with_room(&self) -> Option<SlotId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Ready && s.inflight.len() < self.cfg.prefetch)
            .min_by_key(|(_, s)| s.inflight.len())
            .map(|(i, _)| i)
    }

    fn evict(&mut self, now: Instant) {
        if self.cfg.eviction == EvictionMode::Off {
            return;
        }
        if self.cfg.policy == Policy::Priority {
            self.evict_for_queue(now);
        } else {
            self.evict_for_arrivals(now);
        }
    }

    /// Workers on their way (they will take urgent jobs without killing
    /// anyone).
    fn coming(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state == SlotState::Pending)
            .count()
    }

    /// Priority policy: while a queued job is more urgent than the least
    /// urgent running one and no worker is free or coming for it, evict.
    fn evict_for_queue(&mut self, now: Instant) {
        loop {
            if self.queue.is_empty() || self.slot_with_room().is_some() {
                return;
            }
            let eligible = self.eligible_kinds(now);
            let best = self.queue.best_level(&|k| eligible[k as usize]);
            self.eligible = eligible;
            let Some(best) = best else {
                return;
            };
            let Some((slot, victim_priority)) = self.least_urgent_running() else {
                return;
            };
            if best >= victim_priority
                || self.queue.count_more_urgent_than(victim_priority) <= self.coming()
            {
                return;
            }
            self.kill_slot(slot, KillReason::Evicted, now);
        }
    }

    /// Random policies: the draw may rightly pass over urgent jobs, so only
    /// a job that *arrives* more urgent than a running one evicts it, and the
    /// freed worker is reserved for that job.
    fn evict_for_arrivals(&mut self, now: Instant) {
        let mut arrived = std::mem::take(&mut self.arrived);
        arrived.sort_unstable();
        for (priority, job) in arrived {
            if !matches!(self.jobs.get(&job).map(|e| e.place), Some(Place::Queued(_))) {
                continue;
            }
            if self.slot_with_room().is_some() {
                return;
            }
            let Some((slot, victim_priority)) = self.least_urgent_running() else {
                return;
            };
            if priority >= victim_priority {
                continue;
            }
            if self.coming() <= self.reserved.len() {
                self.kill_slot(slot, KillReason::Evicted, now);
            }
            self.reserved.push_back(job);
        }
    }

    /// The slot whose running job is the least urgent: among equals, under
    /// the priority policy the latest started (it loses the least work),
    /// under the random policies the lightest.
    fn least_urgent_running(&self) -> Option<(SlotId, u8)> {
        let random = self.cfg.policy != Policy::Priority;
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Ready)
            .filter_map(|(i, s)| {
                let e = self.jobs.get(s.inflight.front()?)?;
                e.data.as_ref()?;
                let tie = if random {
                    Reverse(e.spec.weight)
                } else {
                    Reverse(0)
                };
                Some((i, e.spec.priority, tie, s.head_started))
            })
            .max_by_key(|&(_, p, tie, started)| (p, tie, started))
            .map(|(i, p, _, _)| (i, p))
    }

    fn start_head(&mut self, slot: SlotId, now: Instant) {
        let s = &mut self.slots[slot];
        s.head_started = None;
        s.head_deadline = None;
        let Some(&job) = s.inflight.front() else {
            return;
        };
        s.head_started = Some(now);
        let Some(e) = self.jobs.get(&job) else { return };
        let deadline = match (&e.data, e.spec.timeout()) {
            (None, _) => Some(now + self.cfg.cancel_grace),
            (Some(_), Some(t)) => Some(now + t),
            (Some(_), None) => None,
        };
        if let Some(at) = deadline {
            self.set_deadline(job, at);
        }
    }

    /// Arm a deadline for `job`, which must be running (first in its slot).
    fn set_deadline(&mut self, job: JobId, at: Instant) {
        if let Some(Place::Slot(slot)) = self.jobs.get(&job).map(|e| e.place) {
            let slot = slot as SlotId;
            self.slots[slot].head_deadline = Some(at);
            self.deadlines.push(Reverse((at, job)));
        }
    }

    /// Kill the slot's worker: its running job ends for `reason`, the others
    /// go back to the queue.
    fn kill_slot(&mut self, slot: SlotId, reason: KillReason, now: Instant) {
        let running = self.slots[slot].inflight.front().copied();
        self.out.push(Decision::Kill {
            slot,
            reason,
            job: running,
        });
        if let Some(head) = self.settle_slot(slot, Some(reason), now) {
            let end = match reason {
                KillReason::Timeout => End::TimedOut,
                KillReason::Cancelled | KillReason::Shutdown => End::Cancelled,
                KillReason::Evicted => End::Evicted,
            };
            self.out.push(Decision::Done { ended: head, end });
        }
        self.slots[slot].state = SlotState::Pending;
    }

    /// Empty a slot whose worker is gone. The running job is returned (for
    /// the caller to end) unless eviction puts it back; jobs not started go
    /// back to the queue (or, once dispatching has stopped, end as
    /// cancelled); jobs whose end was already reported are forgotten.
    fn settle_slot(
        &mut self,
        slot: SlotId,
        reason: Option<KillReason>,
        _now: Instant,
    ) -> Option<Ended<J>> {
        let s = &mut self.slots[slot];
        let jobs = std::mem::take(&mut s.inflight);
        let head_started = s.head_started.take();
        s.head_deadline = None;
        let mut head = None;
        for (i, job) in jobs.into_iter().enumerate() {
            let Some(mut e) = self.jobs.remove(&job) else {
                continue;
            };
            self.held_per_kind[e.spec.kind as usize] -= 1;
            if e.data.is_none() {
                continue;
            }
            let requeue = if i == 0 {
                if reason == Some(KillReason::Evicted) && self.cfg.eviction == EvictionMode::Requeue
                {
                    e.evictions = e.evictions.saturating_add(1);
                    true
                } else {
                    false
                }
            } else if !self.dispatching {
                // Shutting down: a job that never started ends here.
                if let Some(ended) = e.into_ended(job) {
                    self.out.push(Decision::Done {
                        ended,
                        end: End::Cancelled,
                    });
                }
                continue;
            } else {
                true
            };
            if requeue {
                self.out.push(Decision::Requeued { job, slot });
                e.place = Place::Queued(self.queue.push(
                    job,
                    e.spec.kind,
                    e.spec.priority,
                    e.spec.weight,
                ));
                self.jobs.insert(job, e);
            } else {
                head = e.into_ended(job).map(|mut ended| {
                    ended.meta.started = head_started;
                    ended
                });
            }
        }
        head
    }
}

#[cfg(test)]
mod size {
    /// A map slot (id + entry, no payload) fits one 64-byte cache line.
    #[test]
    fn an_entry_and_its_id_fit_a_cache_line() {
        assert!(8 + std::mem::size_of::<super::Entry<()>>() <= 64);
    }
}
