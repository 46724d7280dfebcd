//! The worker slots as the core sees them: which jobs each holds, when its
//! running job started, and emptying a slot whose worker is gone.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::time::Instant;

use super::decision::{Decision, End, KillReason};
use super::spec::Place;
use super::{Core, EvictionMode, Settle, SlotId, MAX_DELAY};
use crate::sched::queue::Policy;
use crate::wire::JobId;

/// The state of a worker slot, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No usable worker yet, but one is coming (starting, or restarting).
    Pending,
    /// A worker is ready for jobs.
    Ready,
    /// Its worker runs the jobs it holds but takes no new one: it is to be
    /// replaced.
    Retiring,
    /// No worker and none coming.
    Down,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) state: SlotState,
    pub(super) inflight: VecDeque<JobId>,
    /// When the first job in `inflight` started, and its deadline.
    pub(super) head_started: Option<Instant>,
    pub(super) head_deadline: Option<Instant>,
}

impl Slot {
    pub(super) fn new() -> Slot {
        Slot {
            state: SlotState::Pending,
            inflight: VecDeque::new(),
            head_started: None,
            head_deadline: None,
        }
    }
}

impl<J, O> Core<J, O> {
    /// The ready slot holding the fewest jobs, if it has room.
    pub(super) fn slot_with_room(&self) -> Option<SlotId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Ready && s.inflight.len() < self.cfg.prefetch)
            .min_by_key(|(_, s)| s.inflight.len())
            .map(|(i, _)| i)
    }

    /// Workers on their way (they will take urgent jobs without killing
    /// anyone).
    pub(super) fn coming(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state == SlotState::Pending)
            .count()
    }

    /// The slot whose running job is the least urgent: among equals, under
    /// the priority policy the latest started (it loses the least work),
    /// under the random policies the lightest.
    pub(super) fn least_urgent_running(&self) -> Option<(SlotId, u8)> {
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

    /// The first job of `slot` starts now: note when, and arm its deadline.
    pub(super) fn start_head(&mut self, slot: SlotId, now: Instant) {
        let s = &mut self.slots[slot];
        s.head_started = None;
        s.head_deadline = None;
        let Some(&job) = s.inflight.front() else {
            return;
        };
        s.head_started = Some(now);
        let Some(e) = self.jobs.get(&job) else { return };
        let limit = match (&e.data, e.spec.timeout()) {
            (None, _) => Some(self.cfg.cancel_grace),
            (Some(_), Some(t)) => {
                self.out.push(Decision::Started { slot, job });
                Some(t.min(MAX_DELAY))
            }
            (Some(_), None) => None,
        };
        if let Some(limit) = limit {
            self.set_deadline(job, crate::sched::later(now, limit));
        }
    }

    /// Kill the slot's worker: its running job ends for `reason`, the others
    /// go back to the queue.
    pub(super) fn kill_slot(&mut self, slot: SlotId, reason: KillReason, now: Instant) {
        let running = self.slots[slot].inflight.front().copied();
        self.out.push(Decision::Kill {
            slot,
            reason,
            job: running,
        });
        self.settle_slot(slot, Settle::Killed(reason), now);
        self.slots[slot].state = SlotState::Pending;
    }

    /// Empty a slot whose worker is gone. The running job ends (as the cause
    /// says, or is retried) unless eviction puts it back; jobs not started
    /// go back to the queue (or, once the core is stopping, end as
    /// cancelled); jobs whose end was already decided are forgotten.
    pub(super) fn settle_slot(&mut self, slot: SlotId, cause: Settle<O>, now: Instant) {
        let s = &mut self.slots[slot];
        let jobs = std::mem::take(&mut s.inflight);
        let head_started = s.head_started.take();
        s.head_deadline = None;
        let (killed, mut detail) = match cause {
            Settle::Lost(d) => (None, d),
            Settle::Killed(reason) => (Some(reason), None),
        };
        for (i, job) in jobs.into_iter().enumerate() {
            let Some(mut e) = self.jobs.remove(&job) else {
                continue;
            };
            self.held_per_kind[e.spec.kind as usize] -= 1;
            if e.data.is_none() {
                continue;
            }
            // A lost worker's first job ran there, unless its frame never
            // reached the worker.
            let never_ran = killed.is_none() && std::mem::take(&mut e.undelivered);
            if i == 0 && !never_ran {
                let end = match killed {
                    None => End::Crashed,
                    Some(KillReason::Timeout) => End::TimedOut,
                    Some(KillReason::Cancelled | KillReason::Shutdown) => End::Cancelled,
                    Some(KillReason::Evicted) => {
                        if self.cfg.eviction == EvictionMode::Requeue {
                            e.evictions = e.evictions.saturating_add(1);
                            self.requeue(job, e, slot);
                            continue;
                        }
                        End::Evicted
                    }
                };
                self.end_attempt(job, e, end, detail.take(), head_started, now);
            } else if self.dispatching {
                self.requeue(job, e, slot);
            } else {
                // Stopping: a job that never started ends here.
                self.push_ended(job, e, End::Cancelled, None, None);
            }
        }
    }

    /// Put a job that left `slot` back in the queue, in its old place.
    fn requeue(&mut self, job: JobId, mut e: super::spec::Entry<J>, slot: SlotId) {
        self.out.push(Decision::Requeued { job, slot });
        e.place = Place::Queued(
            self.queue
                .push(job, e.spec.kind, e.spec.priority, e.spec.weight),
        );
        self.jobs.insert(job, e);
    }
}
