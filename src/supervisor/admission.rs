//! Admitting jobs into the core: submits from the API (and other job
//! sources), and the waiting room of a bounded queue.

use std::time::Instant;

use actix::{AsyncContext, Context, Handler};

use super::actor::SupervisorActor;
use super::protocol::{Admission, AdmitError, JobRecord, Submit};
use crate::sched::{JobSpec, Refused};
use crate::wire::JobId;

/// A submit waiting for room in a full queue.
pub(crate) struct Waiting {
    id: JobId,
    spec: JobSpec,
    record: JobRecord,
    admission: Admission,
}

impl Handler<Submit> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        let Submit {
            id,
            priority,
            timeout,
            weight,
            retry,
            record,
            admission,
        } = msg;
        let spec = JobSpec {
            priority,
            timeout,
            kind: self.core.kind(&record.kind),
            weight,
            retry,
        };
        if !self.accepting() {
            // The core ends it as rejected: it reports, and counts, once.
            admission.answer(Err(AdmitError::Closed(self.stop_reason_text())));
            let kind = spec.kind;
            self.tally
                .submitted(id, kind, self.core.kind_name(kind), priority);
            let _ = self.core.submit(id, spec, record);
            return self.pump(ctx);
        }
        let waits = matches!(admission, Admission::Wait { .. });
        // Submits already waiting for room keep their turn.
        let (spec, record) = if waits && !self.room.is_empty() {
            (spec, record)
        } else {
            let keep = self.cfg.core.capacity.map(|_| spec.clone());
            let kind = spec.kind;
            match self.core.submit(id, spec, record) {
                Ok(()) => {
                    self.tally
                        .submitted(id, kind, self.core.kind_name(kind), priority);
                    admission.answer(Ok(()));
                    return self.pump(ctx);
                }
                Err((record, Refused::Full)) if waits => {
                    (keep.expect("a full queue has a capacity"), record)
                }
                Err((_, Refused::Full)) => {
                    let capacity = self.cfg.core.capacity.unwrap_or(0);
                    return admission.answer(Err(AdmitError::Full(capacity)));
                }
            }
        };
        self.wait_for_room(
            Waiting {
                id,
                spec,
                record,
                admission,
            },
            ctx,
        );
    }
}

impl SupervisorActor {
    /// Why jobs are not accepted now.
    pub(super) fn stop_reason_text(&self) -> String {
        self.failed
            .clone()
            .unwrap_or_else(|| "the supervisor is shutting down".into())
    }

    /// Park a submit until there is room (or its wait runs out).
    fn wait_for_room(&mut self, w: Waiting, ctx: &mut Context<Self>) {
        if let Admission::Wait {
            until: Some(until), ..
        } = &w.admission
        {
            let id = w.id;
            let started = Instant::now();
            ctx.run_later(until.saturating_duration_since(started), move |act, _| {
                if let Some(pos) = act.room.iter().position(|w| w.id == id) {
                    let cap = act.cfg.core.capacity.unwrap_or(0);
                    if let Some(w) = act.room.remove(pos) {
                        w.admission
                            .answer(Err(AdmitError::StillFull(cap, started.elapsed())));
                    }
                }
            });
        }
        self.room.push_back(w);
    }

    /// Admit submits waiting for room, in arrival order, while there is room.
    /// Returns whether any was admitted.
    pub(super) fn admit_waiting(&mut self) -> bool {
        let Some(cap) = self.cfg.core.capacity else {
            return false;
        };
        let mut admitted = false;
        while self.core.waiting() < cap {
            let Some(w) = self.room.pop_front() else {
                break;
            };
            let (id, kind, priority) = (w.id, w.spec.kind, w.spec.priority);
            if self.core.submit(w.id, w.spec, w.record).is_ok() {
                self.tally
                    .submitted(id, kind, self.core.kind_name(kind), priority);
                w.admission.answer(Ok(()));
                admitted = true;
            }
        }
        admitted
    }

    /// Refuse every submit waiting for room (the supervisor stopped
    /// accepting).
    pub(super) fn close_room(&mut self) {
        let why = self.stop_reason_text();
        for w in self.room.drain(..) {
            w.admission.answer(Err(AdmitError::Closed(why.clone())));
        }
    }
}
