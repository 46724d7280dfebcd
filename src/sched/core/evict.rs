//! Eviction: when every worker is busy, a more urgent job takes the worker
//! of the least urgent running one.

use std::time::Instant;

use super::decision::KillReason;
use super::spec::Place;
use super::{Core, EvictionMode};
use crate::sched::queue::Policy;

impl<J, O> Core<J, O> {
    pub(super) fn evict(&mut self, now: Instant) {
        if self.cfg.eviction == EvictionMode::Off {
            return;
        }
        if self.cfg.policy == Policy::Priority {
            self.evict_for_queue(now);
        } else {
            self.evict_for_arrivals(now);
        }
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
}
