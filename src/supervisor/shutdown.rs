//! The end of a supervisor's life: giving up (the restart limit), and
//! shutting down (a grace for running jobs, then the workers are asked to
//! exit, then killed).

use std::time::Instant;

use actix::prelude::*;

use super::actor::{Lifecycle, SupervisorActor};
use super::protocol::Shutdown;
use crate::sched::pool::Phase;
use crate::sched::{End, KillReason, Rejection};
use crate::wire::ToWorkerRef;

impl SupervisorActor {
    /// Give up: reject the queue and new jobs, start no more workers. Jobs
    /// running go on; a later shutdown gives them its grace as usual.
    pub(super) fn fail(&mut self, why: String, ctx: &mut Context<Self>) {
        if self.failed.is_some() || self.lifecycle == Lifecycle::Stopped {
            return;
        }
        tracing::error!("supervisor failed: {why}");
        self.failed = Some(why.clone());
        self.shared.set_failed(&why);
        if let Some(tx) = self.on_ready.take() {
            let _ = tx.send(Err(why));
        }
        self.core.stop(End::Rejected(Rejection::Stopped));
        self.close_room();
        self.pool.close();
        let now = Instant::now();
        for slot in 0..self.slots.len() {
            if self.pool.phase(slot) == Phase::Down {
                self.core.slot_down(slot, now);
            }
        }
        self.pump(ctx);
        self.check_stopped(ctx);
    }

    /// When draining for shutdown and no job is left in a worker: ask the
    /// workers to exit.
    pub(super) fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if self.lifecycle == Lifecycle::Draining && !self.core.any_assigned() {
            self.stop_workers(ctx);
        }
    }

    fn stop_workers(&mut self, ctx: &mut Context<Self>) {
        self.lifecycle = Lifecycle::Stopping;
        let now = Instant::now();
        for slot in self.pool.ask_all_to_exit(now) {
            self.send(slot, &[ToWorkerRef::Shutdown]);
        }
        for slot in 0..self.slots.len() {
            match self.pool.phase(slot) {
                Phase::Handshaking => {
                    if let Some(p) = &self.slots[slot].process {
                        p.kill();
                    }
                }
                Phase::Down => self.core.slot_down(slot, now),
                _ => {}
            }
        }
        self.check_stopped(ctx);
    }

    /// Stop the actor once shutting down and no worker process remains.
    pub(super) fn check_stopped(&mut self, ctx: &mut Context<Self>) {
        if self.lifecycle != Lifecycle::Stopping {
            return;
        }
        if self.pool.all_down() && self.slots.iter().all(|s| s.process.is_none()) {
            self.lifecycle = Lifecycle::Stopped;
            for w in self.stop_waiters.drain(..) {
                let _ = w.send(());
            }
            ctx.stop();
        }
    }
}

impl Handler<Shutdown> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.shared
            .accepting
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.stop_waiters.push(msg.done);
        match self.lifecycle {
            Lifecycle::Running => {}
            Lifecycle::Draining | Lifecycle::Stopping => return,
            Lifecycle::Stopped => {
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(());
                }
                return;
            }
        }
        // Running, or given up with jobs still running: either way the
        // running jobs get the grace.
        self.lifecycle = Lifecycle::Draining;
        self.core.stop(End::Cancelled);
        self.close_room();
        ctx.run_later(msg.grace, |act, ctx| {
            if act.lifecycle == Lifecycle::Draining {
                act.core.kill_busy(KillReason::Shutdown, Instant::now());
                act.pump(ctx);
            }
        });
        self.pump(ctx);
    }
}
