//! Time in the core: deadlines of running jobs, and retries waiting to come
//! due.

use std::cmp::Reverse;
use std::time::Instant;

use super::decision::KillReason;
use super::spec::Place;
use super::{Core, SlotId};
use crate::wire::JobId;

impl<J, O> Core<J, O> {
    /// The earliest time the core wants to be polled again: a deadline, a
    /// retry coming due, a rate limit letting a job start. (It may be one
    /// that no longer matters; polling then simply finds nothing to do.)
    pub fn next_deadline(&self) -> Option<Instant> {
        let d = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let r = self.delayed.peek().map(|Reverse((at, _))| *at);
        [d, r, self.rate_wake].into_iter().flatten().min()
    }

    /// Arm a deadline for `job`, which must be running (first in its slot).
    pub(super) fn set_deadline(&mut self, job: JobId, at: Instant) {
        if let Some(Place::Slot(slot)) = self.jobs.get(&job).map(|e| e.place) {
            let slot = slot as SlotId;
            self.slots[slot].head_deadline = Some(at);
            self.deadlines.push(Reverse((at, job)));
        }
    }

    /// Kill the workers whose running job passed its deadline.
    pub(super) fn expire(&mut self, now: Instant) {
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

    /// Queue the jobs whose retry is due.
    pub(super) fn release_due(&mut self, now: Instant) {
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
}
