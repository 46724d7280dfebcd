//! Carrying out the core's decisions about jobs: [`route`] is the one
//! function every decision passes through, and the one place a job's report
//! is built and counted. Also the dispatch of jobs to workers and the
//! intake of workers' results.
//!
//! [`route`]: SupervisorActor::route

use std::time::{Duration, Instant};

use actix::Context;

use super::actor::SupervisorActor;
use super::link::{Finish, Incoming, Reply};
use super::outcome::{AttemptEnd, Crash, Outcome};
use super::protocol::JobRecord;
use super::target::Target;
use crate::sched::{Decision, End, Ended, JobMeta, KindId, Rejection, SlotId};
use crate::wire::{self, JobId, Payload, RunRef, ToWorkerRef};

/// What the actor passes to the core with an ending, and gets back with the
/// decision it led to.
#[derive(Debug)]
pub(crate) enum Detail {
    /// The worker's result (not yet delivered), and the run time it measured.
    Result(Outcome<Payload>, Duration),
    /// The reader delivered this final outcome already (with the job's
    /// kind and the run time the worker measured, for the tally).
    Delivered(Outcome<()>, KindId, Duration),
    /// How the worker died or broke.
    Crash(Crash),
}

/// Jobs dispatched during one pump, sent at its end as one frame per worker.
#[derive(Debug, Default)]
pub(crate) struct Dispatches(Vec<(SlotId, JobId)>);

impl SupervisorActor {
    /// Carry out one decision of the core.
    pub(super) fn route(
        &mut self,
        d: Decision<JobRecord, Detail>,
        now: Instant,
        ctx: &mut Context<Self>,
    ) {
        match d {
            Decision::Dispatch { slot, job } => self.dispatch(slot, job, now),
            Decision::Started { slot, job } => {
                if let Some(r) = self.slots[slot].replies.lock().get(&job) {
                    r.target.started();
                }
            }
            Decision::SendCancel { slot, job } => {
                wire::encode_frame(&[ToWorkerRef::Cancel(job)], &mut self.frame);
                if let Some(tx) = &self.slots[slot].tx {
                    tx.send_control(&self.frame);
                }
            }
            Decision::Kill { slot, reason, job } => self.kill(slot, reason, job, ctx),
            Decision::Requeued { job, slot } => match self.take_back(job, slot) {
                Some(rec) => {
                    rec.queued_at = now;
                    let kind = rec.kind.clone();
                    self.tally.requeued(job, &kind);
                }
                // Its worker delivered its result before it was put back:
                // it has ended.
                None => self.core.forget(job),
            },
            Decision::Retrying {
                job,
                slot,
                attempt,
                end,
                detail,
                due,
            } => {
                let timeout = self.core.timeout_of(job);
                let (outcome, _) = outcome_of(end, detail, timeout, || self.stop_reason_text());
                let Some(rec) = self.take_back(job, slot) else {
                    self.core.forget(job);
                    return;
                };
                let ended = AttemptEnd {
                    attempt,
                    outcome: outcome.without_result(),
                };
                if let Some(t) = &rec.target {
                    t.retrying(&ended);
                }
                let (kind, how) = (rec.kind.clone(), ended.outcome.clone());
                rec.history.push(ended);
                rec.progress = None;
                rec.queued_at = due;
                let after = due.saturating_duration_since(now);
                self.tally.retried(job, &kind, attempt, &how, after);
                tracing::debug!(job, attempt, ?end, in_ = ?due.saturating_duration_since(now), "retry");
            }
            Decision::Ended { ended, end, detail } => self.report(ended, end, detail, now),
        }
    }

    /// A job's data back in its record, with its target taken back from its
    /// worker's reader; `None` if the reader delivered it already.
    fn take_back(&mut self, job: JobId, slot: SlotId) -> Option<&mut JobRecord> {
        let reply = if self.core.data(job)?.target.is_none() {
            Some(self.slots[slot].replies.take(job)?)
        } else {
            None
        };
        let rec = self.core.data_mut(job)?;
        if let Some(reply) = reply {
            rec.target = Some(reply.target);
            rec.history = reply.history;
        }
        Some(rec)
    }

    /// Report a job's end to its target, and count it, once.
    fn report(&mut self, ended: Ended<JobRecord>, end: End, detail: Option<Detail>, now: Instant) {
        let Ended {
            job,
            mut data,
            meta,
            spec,
        } = ended;
        let from_slot = meta.slot.map(|s| &self.slots[s]);
        let reply = match data.target.take() {
            Some(target) => Some(reply_for(
                target,
                &mut data,
                &meta,
                from_slot.and_then(|s| s.pid),
                true,
                now,
            )),
            None => from_slot.and_then(|s| s.replies.take(job)),
        };
        let Some(reply) = reply else {
            // The reader delivered this job's end first. If that is the end
            // decided here, count it; otherwise the core decided before the
            // worker's result reached it, and the result's own arrival
            // (`on_frames`) counts what was delivered.
            if let Some(Detail::Delivered(outcome, kind, run)) = detail {
                let name = self.core.kind_name(kind);
                self.tally.ended(job, kind, name, &outcome, Some(run));
            }
            return;
        };
        if let Some(Detail::Delivered(outcome, kind, run)) = detail {
            // Delivered and still held: cannot happen (the reader takes the
            // target to deliver); count it as delivered all the same.
            let name = self.core.kind_name(kind);
            self.tally.ended(job, kind, name, &outcome, Some(run));
            return;
        }
        let (outcome, run) = outcome_of(end, detail, spec.timeout, || self.stop_reason_text());
        // What the worker says it ran is believed only up to the time since
        // the job was sent to it.
        let sent = now.saturating_duration_since(reply.sent_at);
        let ran_for = run
            .map(|r| r.min(sent))
            .or_else(|| meta.started.map(|t| now.saturating_duration_since(t)));
        self.tally
            .ended(job, spec.kind, &data.kind, &outcome, ran_for);
        reply.send(job, outcome, ran_for);
    }

    /// Hand a job to a worker: its target goes to the worker's reader, its
    /// frame is sent at the end of the pump.
    fn dispatch(&mut self, slot: SlotId, job: JobId, now: Instant) {
        let failure_is_final = self.core.failure_is_final(job);
        let Some((meta, _)) = self.core.job_meta(job) else {
            return;
        };
        let pid = self.slots[slot].pid;
        let Some(rec) = self.core.data_mut(job) else {
            return;
        };
        tracing::trace!(job, kind = %rec.kind, priority = meta.priority, attempt = meta.attempt, slot, "dispatch");
        let waited = now.saturating_duration_since(rec.queued_at);
        self.tally
            .started(job, meta.kind, &rec.kind, waited, pid, meta.attempt);
        if let Some(target) = rec.target.take() {
            let reply = reply_for(target, rec, &meta, pid, failure_is_final, now);
            self.slots[slot].replies.lock().insert(job, reply);
        }
        self.dispatches.0.push((slot, job));
    }

    /// Send the jobs dispatched in this pump that are still in the slot they
    /// were dispatched to, one frame per worker.
    pub(super) fn send_runs(&mut self) {
        let mut dispatched = std::mem::take(&mut self.dispatches.0);
        if dispatched.is_empty() {
            self.dispatches.0 = dispatched;
            return;
        }
        dispatched.sort_by_key(|&(slot, _)| slot);
        for group in dispatched.chunk_by(|a, b| a.0 == b.0) {
            let slot = group[0].0;
            let messages: Vec<ToWorkerRef<'_>> = group
                .iter()
                .filter_map(|&(_, job)| {
                    let (meta, _) = self.core.job_meta(job)?;
                    if meta.slot != Some(slot) {
                        return None;
                    }
                    let rec = self.core.data(job)?;
                    Some(ToWorkerRef::Run(RunRef {
                        job,
                        kind: &rec.kind,
                        payload: &rec.payload,
                        attempt: meta.attempt,
                    }))
                })
                .collect();
            if messages.is_empty() {
                continue;
            }
            wire::encode_frame(&messages, &mut self.frame);
            let delivered = match self.slots[slot].tx.as_mut() {
                Some(tx) => tx.send(&self.frame),
                None => true,
            };
            if !delivered {
                // The worker is gone and its exit not yet seen: these jobs
                // never ran there.
                for &(_, job) in group {
                    self.core.undelivered(job, slot);
                }
            }
        }
        dispatched.clear();
        self.dispatches.0 = dispatched;
    }

    /// Messages from a worker's reader. Results of a worker the slot no
    /// longer serves with (`live` false) only count what the reader
    /// delivered. Returns whether a live worker finished a job (whatever its
    /// outcome: the worker itself is healthy).
    /// Route a worker's messages; returns how many jobs it finished.
    pub(super) fn on_frames(&mut self, slot: SlotId, live: bool, messages: Vec<Incoming>) -> u32 {
        let mut finished = 0u32;
        for m in messages {
            match m {
                Incoming::Finished {
                    job,
                    how,
                    end,
                    at,
                    run,
                } => {
                    finished += u32::from(live);
                    let detail = match end {
                        Finish::Delivered(o, kind) => Detail::Delivered(o, kind, run),
                        Finish::Pending(o) => Detail::Result(o, run),
                    };
                    // The core decides what the result means, unless it has
                    // decided this job's end already (a timeout or a kill
                    // that raced the result).
                    let unknown = if live {
                        self.core.finished(slot, job, how, Some(detail), at).err()
                    } else {
                        Some(Some(detail))
                    };
                    if let Some(Some(Detail::Delivered(outcome, kind, run))) = unknown {
                        let name = self.core.kind_name(kind);
                        self.tally.ended(job, kind, name, &outcome, Some(run));
                    }
                }
                Incoming::Progress {
                    job,
                    fraction,
                    note,
                } => {
                    if let Some(rec) = self.core.data_mut(job) {
                        self.tally.progress(job, &rec.kind, fraction, &note);
                        rec.progress = Some((fraction, note));
                    }
                }
                // The pool's business (see `pool.rs`).
                Incoming::Heartbeat | Incoming::MemoryLimit | Incoming::MemoryHigh { .. } => {}
            }
        }
        finished
    }
}

/// A job's report target with what its report says besides the outcome
/// (its history moves along with it).
fn reply_for(
    target: Target,
    rec: &mut JobRecord,
    meta: &JobMeta,
    pid: Option<u32>,
    failure_is_final: bool,
    now: Instant,
) -> Reply {
    Reply {
        target,
        kind: rec.kind.clone(),
        kind_id: meta.kind,
        attempt: meta.attempt,
        evictions: meta.evictions,
        pid,
        history: std::mem::take(&mut rec.history),
        failure_is_final,
        sent_at: now,
    }
}

/// The outcome a decided end stands for, and the run time the worker
/// measured if it reported one. `stop_reason` is asked only for a job
/// rejected because the supervisor stopped.
fn outcome_of(
    end: End,
    detail: Option<Detail>,
    timeout: Option<Duration>,
    stop_reason: impl FnOnce() -> String,
) -> (Outcome<Payload>, Option<Duration>) {
    match (end, detail) {
        (End::Completed | End::Failed, Some(Detail::Result(o, run))) => (o, Some(run)),
        (End::Crashed, Some(Detail::Crash(c))) => (Outcome::Crashed(c), None),
        (End::Crashed, _) => (
            Outcome::Crashed(Crash::ProtocolFault(
                "the worker went away while it ran the job".into(),
            )),
            None,
        ),
        (End::TimedOut, _) => (
            Outcome::TimedOut {
                after: timeout.unwrap_or_default(),
            },
            None,
        ),
        (End::Evicted, _) => (Outcome::Evicted, None),
        (End::Cancelled, _) => (Outcome::Cancelled, None),
        (End::Rejected(Rejection::PushedOut), _) => (
            Outcome::Rejected("pushed out of the full queue by a more urgent job".into()),
            None,
        ),
        (End::Rejected(Rejection::Stopped), _) => (Outcome::Rejected(stop_reason()), None),
        (End::Completed | End::Failed, _) => (
            Outcome::Failed(super::outcome::JobError::Handler(
                "the worker's result was lost".into(),
            )),
            None,
        ),
    }
}
