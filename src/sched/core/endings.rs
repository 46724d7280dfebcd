//! How jobs end: the inputs that report or request an ending (a worker's
//! result, a worker lost, a cancel, a stop), and the one place that turns
//! an attempt's end into a retry or the job's end.

use std::cmp::Reverse;
use std::time::Instant;

use super::decision::{Decision, End, Ended, Finish, KillReason};
use super::spec::{Entry, Place};
use super::{Core, Settle, SlotId, SlotState, MAX_DELAY};
use crate::wire::JobId;

impl<J, O> Core<J, O> {
    /// The worker in `slot` reported, at `at`, that `job` ended so (with
    /// `detail`, handed back in the decision). The next job it holds starts
    /// at `at`. If its end was decided before the report came (it is no
    /// longer in that slot, or was cancelled while in it), the report
    /// changes nothing and the detail is handed back.
    pub fn finished(
        &mut self,
        slot: SlotId,
        job: JobId,
        how: Finish,
        detail: Option<O>,
        at: Instant,
    ) -> Result<(), Option<O>> {
        let Some(s) = self.slots.get_mut(slot) else {
            return Err(detail);
        };
        let Some(pos) = s.inflight.iter().position(|&j| j == job) else {
            return Err(detail);
        };
        s.inflight.remove(pos);
        let started = if pos == 0 { s.head_started } else { None };
        if pos == 0 {
            self.start_head(slot, at);
        }
        let Some(mut entry) = self.jobs.remove(&job) else {
            return Err(detail);
        };
        self.held_per_kind[entry.spec.kind as usize] -= 1;
        if entry.data.is_none() {
            // Its end was decided already (cancelled while in the worker):
            // the report changes nothing.
            return Err(detail);
        }
        entry.place = Place::Slot(slot as u32);
        let end = match how {
            Finish::Completed => End::Completed,
            Finish::Failed => End::Failed,
            Finish::Cancelled => End::Cancelled,
        };
        self.end_attempt(job, entry, end, detail, started, at);
        Ok(())
    }

    /// The worker in `slot` died or broke on its own (not killed by a
    /// decision of the core). Its running job ends as `Crashed` (with
    /// `detail`), or is retried; the jobs it held but had not started go back
    /// to the queue.
    pub fn worker_lost(&mut self, slot: SlotId, detail: Option<O>, now: Instant) {
        self.settle_slot(slot, Settle::Lost(detail), now);
        self.slots[slot].state = SlotState::Pending;
    }

    /// Ask for `job` to be cancelled. A waiting job ends at once; a job in a
    /// worker ends at once too (its submitter learns `Cancelled`), and its
    /// worker is told, or killed if it is running and there is no grace.
    /// Returns false if the job is not (or no longer) in the core.
    pub fn cancel(&mut self, job: JobId, now: Instant) -> bool {
        let Some(entry) = self.jobs.get(&job) else {
            return false;
        };
        if entry.data.is_none() {
            return false;
        }
        let Place::Slot(slot) = entry.place else {
            self.end_waiting(job, End::Cancelled);
            return true;
        };
        let slot = slot as SlotId;
        let running = self.slots[slot].inflight.front() == Some(&job);
        if running && self.cfg.cancel_grace.is_zero() {
            self.kill_slot(slot, KillReason::Cancelled, now);
            return true;
        }
        let entry = self.jobs.get_mut(&job).expect("checked above");
        let data = entry.data.take().expect("checked above");
        let mut meta = Self::meta_of(entry);
        if running {
            meta.started = self.slots[slot].head_started;
        }
        let spec = entry.spec.to_job_spec();
        self.out.push(Decision::SendCancel { slot, job });
        if running {
            self.set_deadline(job, crate::sched::later(now, self.cfg.cancel_grace));
        }
        self.out.push(Decision::Ended {
            ended: Ended {
                job,
                data,
                meta,
                spec,
            },
            end: End::Cancelled,
            detail: None,
        });
        true
    }

    /// A job's end was delivered on the fast path although the core had put
    /// it back to wait (see the module docs): drop it without a decision.
    pub fn forget(&mut self, job: JobId) {
        self.take_waiting(job);
    }

    /// Stop handing out jobs: every waiting job (queued or waiting for a
    /// retry) ends with `end` (`Cancelled` at shutdown,
    /// `Rejected(Stopped)` when giving up). Jobs in workers go on; attempts
    /// that end from now on are not retried.
    pub fn stop(&mut self, end: End) {
        self.dispatching = false;
        let mut ids = self.queue.drain();
        ids.extend(self.delayed.drain().map(|Reverse((_, j))| j));
        self.delayed_count = 0;
        for job in ids {
            let Some(e) = self.jobs.get(&job) else {
                continue;
            };
            if matches!(e.place, Place::Slot(_)) {
                continue;
            }
            let e = self.jobs.remove(&job).expect("checked above");
            self.push_ended(job, e, end, None, None);
        }
    }

    /// End a waiting (queued or delayed) job with `end`.
    pub(super) fn end_waiting(&mut self, job: JobId, end: End) {
        if let Some(e) = self.take_waiting(job) {
            self.push_ended(job, e, end, None, None);
        }
    }

    /// Take a waiting (queued or delayed) job out of the core; `None` if it
    /// is unknown or in a worker.
    fn take_waiting(&mut self, job: JobId) -> Option<Entry<J>> {
        match self.jobs.get(&job)?.place {
            Place::Queued(key) => {
                self.queue.remove(key, job);
            }
            Place::Delayed => self.delayed_count -= 1,
            Place::Slot(_) => return None,
        }
        self.jobs.remove(&job)
    }

    /// An attempt of a job that left its slot ended so: retry it if its
    /// policy allows and the core is not stopping, else end it.
    pub(super) fn end_attempt(
        &mut self,
        job: JobId,
        mut entry: Entry<J>,
        end: End,
        detail: Option<O>,
        started: Option<Instant>,
        now: Instant,
    ) {
        let retryable = match end {
            End::Failed => Some(crate::sched::retry::Retryable::Failed),
            End::TimedOut => Some(crate::sched::retry::Retryable::TimedOut),
            End::Crashed => Some(crate::sched::retry::Retryable::Crashed),
            _ => None,
        };
        let attempt = entry.attempt as u32;
        let policy = *self.policy_of(&entry.spec.retry);
        let retry = self.dispatching && retryable.is_some_and(|r| policy.should_retry(attempt, r));
        if !retry {
            return self.push_ended(job, entry, end, detail, started);
        }
        let slot = entry.place.slot().unwrap_or(0);
        let delay = policy.delay(attempt, &mut self.rng).min(MAX_DELAY);
        let due = crate::sched::later(now, delay);
        entry.place = Place::Delayed;
        entry.attempt = entry.attempt.saturating_add(1);
        self.jobs.insert(job, entry);
        self.delayed.push(Reverse((due, job)));
        self.delayed_count += 1;
        self.out.push(Decision::Retrying {
            job,
            slot,
            attempt,
            end,
            detail,
            due,
        });
    }

    /// Emit the end of a job that has left the core (unless its end was
    /// decided before).
    pub(super) fn push_ended(
        &mut self,
        job: JobId,
        mut entry: Entry<J>,
        end: End,
        detail: Option<O>,
        started: Option<Instant>,
    ) {
        let Some(data) = entry.data.take() else {
            return;
        };
        let mut meta = Self::meta_of(&entry);
        meta.started = started;
        self.out.push(Decision::Ended {
            ended: Ended {
                job,
                data,
                meta,
                spec: entry.spec.to_job_spec(),
            },
            end,
            detail,
        });
    }
}
