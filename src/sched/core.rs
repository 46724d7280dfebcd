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

use rustc_hash::FxHashMap;

use super::queue::{PriorityQueue, PRIORITY_LEVELS};
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
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            slots: 1,
            prefetch: 1,
            eviction: EvictionMode::Requeue,
            cancel_grace: Duration::ZERO,
        }
    }
}

/// What the core needs to know about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    /// 0 (most urgent) to 10.
    pub priority: u8,
    /// Longest run before the worker is killed; `None`: no limit.
    pub timeout: Option<Duration>,
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
    Queued,
    Slot(SlotId),
}

#[derive(Debug)]
struct Entry<J> {
    spec: JobSpec,
    /// `None` once the job's end was reported while its worker still holds it
    /// (cancelled in a worker): the entry only keeps the slot's order right.
    data: Option<J>,
    place: Place,
    attempt: u32,
    evictions: u32,
    started: Option<Instant>,
    deadline: Option<Instant>,
}

impl<J> Entry<J> {
    fn meta(&self) -> JobMeta {
        JobMeta {
            priority: self.spec.priority,
            attempt: self.attempt,
            evictions: self.evictions,
            started: self.started,
            slot: match self.place {
                Place::Slot(s) => Some(s),
                Place::Queued => None,
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
}

/// Counts for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Queued jobs per priority level.
    pub queued_per_level: [usize; PRIORITY_LEVELS],
    /// Queued jobs.
    pub queued: usize,
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
    queue: PriorityQueue,
    slots: Vec<Slot>,
    deadlines: BinaryHeap<Reverse<(Instant, JobId)>>,
    out: Vec<Decision<J>>,
    dispatching: bool,
}

impl<J> Core<J> {
    /// A core with every slot pending (the supervisor is starting workers).
    pub fn new(cfg: CoreConfig) -> Core<J> {
        let slots = (0..cfg.slots)
            .map(|_| Slot {
                state: SlotState::Pending,
                inflight: VecDeque::new(),
            })
            .collect();
        Core {
            cfg: CoreConfig {
                prefetch: cfg.prefetch.max(1),
                ..cfg
            },
            jobs: FxHashMap::default(),
            queue: PriorityQueue::new(),
            slots,
            deadlines: BinaryHeap::new(),
            out: Vec::new(),
            dispatching: true,
        }
    }

    /// Queue a job. Ids must be unique; the supervisor hands them out in
    /// submission order.
    pub fn submit(&mut self, job: JobId, spec: JobSpec, data: J) {
        debug_assert!(!self.jobs.contains_key(&job), "job id {job} reused");
        let spec = JobSpec {
            priority: spec.priority.min((PRIORITY_LEVELS - 1) as u8),
            ..spec
        };
        self.jobs.insert(
            job,
            Entry {
                spec,
                data: Some(data),
                place: Place::Queued,
                attempt: 1,
                evictions: 0,
                started: None,
                deadline: None,
            },
        );
        self.queue.push(spec.priority, job);
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
        let running = match e.place {
            Place::Slot(s) => self.slots[s].inflight.front() == Some(&job),
            Place::Queued => false,
        };
        Some((e.meta(), running))
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
        if pos == 0 {
            self.start_head(slot, now);
        }
        let entry = self.jobs.remove(&job)?;
        let meta = entry.meta();
        entry.data.map(|data| Ended { job, data, meta })
    }

    /// The worker in `slot` died or broke on its own (not killed by a
    /// decision of the core). Returns its running job, whose end is a crash;
    /// the jobs it held but had not started go back to the queue.
    pub fn worker_lost(&mut self, slot: SlotId, now: Instant) -> Option<Ended<J>> {
        let head = self.settle_slot(slot, None, now);
        self.slots[slot].state = SlotState::Pending;
        head
    }

    /// Ask for `job` to be cancelled. A queued job ends at once; a job in a
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
        let meta = entry.meta();
        match entry.place {
            Place::Queued => {
                self.queue.remove(entry.spec.priority, job);
                self.jobs.remove(&job);
            }
            Place::Slot(slot) => {
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
            ended: Ended { job, data, meta },
            end: End::Cancelled,
        });
        true
    }

    /// Remove a queued job (it turned out to have ended elsewhere) and hand
    /// it back.
    pub fn remove_queued(&mut self, job: JobId) -> Option<Ended<J>> {
        let e = self.jobs.get(&job)?;
        if e.place != Place::Queued {
            return None;
        }
        self.queue.remove(e.spec.priority, job);
        let e = self.jobs.remove(&job)?;
        let meta = e.meta();
        e.data.map(|data| Ended { job, data, meta })
    }

    /// Stop handing out jobs (shutdown). Running jobs go on.
    pub fn stop_dispatching(&mut self) {
        self.dispatching = false;
    }

    /// Remove every queued job and hand it back.
    pub fn take_queued(&mut self) -> Vec<Ended<J>> {
        self.queue
            .drain()
            .into_iter()
            .filter_map(|(_, job)| {
                let e = self.jobs.remove(&job)?;
                let meta = e.meta();
                e.data.map(|data| Ended { job, data, meta })
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

    /// The earliest deadline the core is waiting for (may be one that no
    /// longer matters; polling then simply finds nothing to do).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Counts for status displays.
    pub fn stats(&self) -> CoreStats {
        let mut st = CoreStats {
            queued_per_level: self.queue.per_level(),
            queued: self.queue.len(),
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

    /// Decide what to do now: expire deadlines, hand queued jobs to workers
    /// with room, evict for more urgent jobs. Appends the decisions (and any
    /// pending from earlier calls) to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Decision<J>>) {
        self.expire(now);
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
            if e.deadline != Some(at) || self.slots[slot].inflight.front() != Some(&job) {
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

    fn dispatch(&mut self, now: Instant) {
        while !self.queue.is_empty() {
            let Some(slot) = self.slot_with_room() else {
                break;
            };
            let Some((_, job)) = self.queue.pop() else {
                break;
            };
            let entry = self.jobs.get_mut(&job).expect("queued job has an entry");
            entry.place = Place::Slot(slot);
            let s = &mut self.slots[slot];
            s.inflight.push_back(job);
            self.out.push(Decision::Dispatch { slot, job });
            if s.inflight.len() == 1 {
                self.start_head(slot, now);
            }
        }
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
        loop {
            let Some((best, _)) = self.queue.peek() else {
                return;
            };
            if self.slot_with_room().is_some() {
                return;
            }
            let Some((slot, victim_priority)) = self.least_urgent_running() else {
                return;
            };
            if best >= victim_priority {
                return;
            }
            // Workers on their way will take urgent jobs without killing anyone.
            let coming = self
                .slots
                .iter()
                .filter(|s| s.state == SlotState::Pending)
                .count();
            if self.queue.count_more_urgent_than(victim_priority) <= coming {
                return;
            }
            self.kill_slot(slot, KillReason::Evicted, now);
        }
    }

    /// The slot whose running job is the least urgent (the latest started
    /// among equals: it loses the least work).
    fn least_urgent_running(&self) -> Option<(SlotId, u8)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Ready)
            .filter_map(|(i, s)| {
                let e = self.jobs.get(s.inflight.front()?)?;
                e.data.as_ref()?;
                Some((i, e.spec.priority, e.started))
            })
            .max_by_key(|&(_, p, started)| (p, started))
            .map(|(i, p, _)| (i, p))
    }

    fn start_head(&mut self, slot: SlotId, now: Instant) {
        let Some(&job) = self.slots[slot].inflight.front() else {
            return;
        };
        let grace = self.cfg.cancel_grace;
        let Some(e) = self.jobs.get_mut(&job) else {
            return;
        };
        e.started = Some(now);
        let deadline = match (&e.data, e.spec.timeout) {
            (None, _) => Some(now + grace),
            (Some(_), Some(t)) => Some(now + t),
            (Some(_), None) => None,
        };
        e.deadline = None;
        if let Some(at) = deadline {
            self.set_deadline(job, at);
        }
    }

    fn set_deadline(&mut self, job: JobId, at: Instant) {
        if let Some(e) = self.jobs.get_mut(&job) {
            e.deadline = Some(at);
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
    /// back to the queue; jobs whose end was already reported are forgotten.
    fn settle_slot(
        &mut self,
        slot: SlotId,
        reason: Option<KillReason>,
        _now: Instant,
    ) -> Option<Ended<J>> {
        let jobs = std::mem::take(&mut self.slots[slot].inflight);
        let mut head = None;
        for (i, job) in jobs.into_iter().enumerate() {
            let Some(mut e) = self.jobs.remove(&job) else {
                continue;
            };
            if e.data.is_none() {
                continue;
            }
            e.deadline = None;
            let requeue = if i == 0 {
                if reason == Some(KillReason::Evicted) && self.cfg.eviction == EvictionMode::Requeue
                {
                    e.evictions += 1;
                    true
                } else {
                    false
                }
            } else {
                true
            };
            if requeue {
                self.out.push(Decision::Requeued { job, slot });
                e.place = Place::Queued;
                e.started = None;
                self.queue.push(e.spec.priority, job);
                self.jobs.insert(job, e);
            } else {
                let meta = e.meta();
                head = e.data.map(|data| Ended { job, data, meta });
            }
        }
        head
    }
}
