//! Which kinds may start a job now (per-kind concurrency limits, rate
//! limits, the exclusion window), and handing queued jobs to workers.

use std::time::Instant;

use super::decision::Decision;
use super::spec::Place;
use super::Core;
use crate::sched::queue::KindId;
use crate::wire::JobId;

impl<J, O> Core<J, O> {
    /// Which waiting kinds may start a job now: under their concurrency and
    /// rate limits, and outside the exclusion window unless no other kind is
    /// waiting. Also notes when a rate limit will next allow a start.
    pub(super) fn eligible_kinds(&mut self, now: Instant) -> Vec<bool> {
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

    /// Hand queued jobs to ready workers with room, as the policy and the
    /// gate allow. A worker is topped up to `prefetch` once it holds half
    /// of that or less, so that jobs go to it several to a frame rather than
    /// one per result (with prefetch 1 or 2 this is every free place).
    pub(super) fn dispatch(&mut self, now: Instant) {
        self.rate_wake = None;
        let low = self.cfg.prefetch / 2;
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        open.extend(
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.state == super::SlotState::Ready && s.inflight.len() <= low)
                .map(|(i, _)| i),
        );
        while !self.queue.is_empty() {
            let prefetch = self.cfg.prefetch;
            let Some(slot) = open
                .iter()
                .copied()
                .filter(|&i| self.slots[i].inflight.len() < prefetch)
                .min_by_key(|&i| self.slots[i].inflight.len())
            else {
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
            self.note_start(kind, now);
            let entry = self.jobs.get_mut(&job).expect("queued job has an entry");
            entry.place = Place::Slot(slot as u32);
            let s = &mut self.slots[slot];
            s.inflight.push_back(job);
            self.out.push(Decision::Dispatch { slot, job });
            if s.inflight.len() == 1 {
                self.start_head(slot, now);
            }
        }
        self.open = open;
    }

    /// A job of `kind` starts: take its tokens, note it in the exclusion
    /// window, count it as held.
    fn note_start(&mut self, kind: KindId, now: Instant) {
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
}
