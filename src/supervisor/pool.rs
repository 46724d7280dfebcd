//! The worker processes, driven by the pool state machine
//! (`sched::pool`): this file does the IO — start a process, kill it, send
//! it frames, watch its exit and its channels — and tells the state machine
//! what happened; the machine decides restarts, backoff, the intensity
//! limit, and which worker broke (no connection, silence, a channel closed
//! while running).

use std::time::Instant;

use actix::prelude::*;

use super::actor::{SupervisorActor, WorkerSlot};
use super::jobs::Detail;
use super::link::{abandon_handshake, Incoming, LinkEvent, WorkerTx};
use super::outcome::Crash;
use crate::process::{Exit, ProcessOutcome};
use crate::sched::pool::{Broke, Death, Phase, PoolAction};
use crate::sched::{KillReason, SlotId};
use crate::wire::ToWorkerRef;

impl SupervisorActor {
    /// Carry out what the pool state machine decided.
    pub(super) fn pool_actions(&mut self, now: Instant, ctx: &mut Context<Self>) {
        for action in self.pool.poll(now) {
            match action {
                PoolAction::Spawn { slot, gen } => {
                    if self.slots[slot].started {
                        self.tally.restarted();
                    }
                    debug_assert!(
                        self.slots[slot].replies.lock().is_empty(),
                        "slot {slot} reused while it holds report targets"
                    );
                    self.slots[slot] = WorkerSlot {
                        started: true,
                        ..WorkerSlot::new()
                    };
                    self.core.slot_pending(slot);
                    if let Some(sp) = &self.spawner {
                        sp.spawn(slot, gen, self.slots[slot].replies.clone());
                    }
                }
                PoolAction::Kill { slot, why } => {
                    let crash = match why {
                        Broke::NoHandshake(t) => {
                            Crash::ProtocolFault(format!("the worker did not connect within {t:?}"))
                        }
                        Broke::Unresponsive(silent) => Crash::Unresponsive(silent),
                        Broke::ClosedButRunning => Crash::ProtocolFault(
                            "the worker closed its results channel but kept running".into(),
                        ),
                    };
                    self.kill_broken(slot, crash);
                }
                PoolAction::Dead { slot, death } => self.dead(slot, death, now, ctx),
                PoolAction::GiveUp { deaths, within } => {
                    let last = self.last_crash.clone().unwrap_or_default();
                    self.fail(
                        format!(
                            "worker processes died {deaths} times within {within:?} (last: {last}); the restart intensity limit is exceeded, so the supervisor gave up; fix the crashing jobs or raise Config::restart"
                        ),
                        ctx,
                    );
                }
                PoolAction::KillAll => {
                    for s in &self.slots {
                        if let Some(p) = &s.process {
                            p.kill();
                        }
                    }
                }
            }
        }
    }

    /// A worker is gone and all it sent has been read.
    fn dead(&mut self, slot: SlotId, death: Death, now: Instant, ctx: &mut Context<Self>) {
        let s = &mut self.slots[slot];
        s.process = None;
        s.tx = None;
        if let Some(server) = s.server.take() {
            abandon_handshake(&server);
        }
        let exit = s.exit.take().unwrap_or(Exit::Code(-1));
        let crash = s.crash.take().unwrap_or(Crash::Exited(exit));
        tracing::debug!(slot, pid = s.pid, %exit, ?death, "worker exited");
        if death != Death::Expected {
            self.last_crash = Some(crash.to_string());
            // The core ends its running job (or retries it) and puts the
            // others back; routed at once, before any pool action (a
            // restart) could reuse the slot and its map of targets.
            self.core
                .worker_lost(slot, Some(Detail::Crash(crash.clone())), now);
            self.route_core(now, ctx);
        }
        if death == (Death::BeforeReady { not_a_worker: true }) {
            let program = self.cfg.worker.program.display();
            let why = if matches!(crash, Crash::HandshakeTaken | Crash::ProtocolFault(_)) {
                format!(
                    "the worker program {program} never became a worker: its handshake was refused three times in a row (last: {crash}); either it does not present the secret it is given (is it a procvisor worker of this version?), or another process of this user keeps connecting first to its handshake socket"
                )
            } else {
                format!(
                    "the worker program {program} did not start: {crash}, before its handshake; is it a procvisor worker (does its main call Worker::main or run_if_worker)?"
                )
            };
            self.fail(why, ctx);
        }
        if self.pool.phase(slot) == Phase::Down {
            self.core.slot_down(slot, now);
        }
    }

    /// Send a frame to a worker.
    pub(super) fn send(&mut self, slot: SlotId, messages: &[ToWorkerRef<'_>]) {
        crate::wire::encode_frame(messages, &mut self.frame);
        if let Some(tx) = self.slots[slot].tx.as_mut() {
            tx.send(&self.frame);
        }
    }

    /// Kill a worker on the core's decision.
    pub(super) fn kill(
        &mut self,
        slot: SlotId,
        reason: KillReason,
        job: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        if reason == KillReason::Evicted {
            // The victim, still in the core if it goes back to the queue.
            let kind = job.and_then(|j| self.core.data(j)).map(|r| &*r.kind);
            self.tally.evicted(job.zip(kind));
        }
        self.pool.stopping(slot);
        let s = &mut self.slots[slot];
        tracing::debug!(slot, pid = s.pid, ?reason, job, "killing worker");
        s.tx = None;
        let Some(p) = s.process.clone() else { return };
        if reason == KillReason::Timeout && !self.cfg.kill_grace.is_zero() {
            let grace = self.cfg.kill_grace;
            ctx.spawn(
                async move {
                    let _ = p.terminate(grace).await;
                }
                .into_actor(self),
            );
        } else {
            p.kill();
        }
    }

    /// What a worker said of its memory.
    fn on_memory(&mut self, slot: SlotId, gen: u64, messages: &[Incoming]) {
        for m in messages {
            match m {
                Incoming::MemoryLimit => {
                    let limit = self.cfg.limits.memory.unwrap_or(0);
                    self.slots[slot]
                        .crash
                        .get_or_insert(Crash::MemoryLimit { limit });
                }
                Incoming::MemoryHigh { rss } => {
                    tracing::debug!(slot, rss, "worker memory past the recycling limit");
                    self.pool.asks_out(slot, gen);
                }
                _ => {}
            }
        }
    }

    /// Replace a worker that is due: it takes no new job; once it holds
    /// none, it is asked to exit, and the pool starts another in its place.
    fn recycle(&mut self, slot: SlotId) {
        self.core.retire(slot);
        if self.core.held(slot) == 0 {
            tracing::debug!(slot, pid = self.slots[slot].pid, "recycling worker");
            self.pool.stopping(slot);
            self.send(slot, &[ToWorkerRef::Shutdown]);
            self.slots[slot].tx = None;
        }
    }

    /// Kill a worker that broke; its running job will end as `crash`.
    pub(super) fn kill_broken(&mut self, slot: SlotId, crash: Crash) {
        let gen = self.pool.gen(slot);
        self.pool.broke(slot, gen);
        let s = &mut self.slots[slot];
        tracing::warn!(slot, pid = s.pid, "{crash}");
        s.crash.get_or_insert(crash);
        s.tx = None;
        if let Some(p) = &s.process {
            p.kill();
        }
    }

    /// A worker process exited.
    fn on_exit(
        &mut self,
        slot: SlotId,
        gen: u64,
        result: std::io::Result<ProcessOutcome>,
        ctx: &mut Context<Self>,
    ) {
        if !self.pool.is_current(slot, gen) {
            return;
        }
        let exit = match result {
            Ok(ProcessOutcome::Success) => Exit::Code(0),
            Ok(
                ProcessOutcome::Error(e)
                | ProcessOutcome::TimedOut(e)
                | ProcessOutcome::Terminated(e),
            ) => e,
            Err(e) => {
                tracing::error!(slot, "lost track of a worker process: {e}");
                Exit::Code(-1)
            }
        };
        let s = &mut self.slots[slot];
        s.exit = Some(exit);
        s.process = None;
        s.tx = None;
        self.pool.exited(slot, gen, Instant::now());
        self.pump(ctx);
        self.check_stopped(ctx);
    }
}

impl Handler<LinkEvent> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, ev: LinkEvent, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match ev {
            LinkEvent::Spawned {
                slot,
                gen,
                process,
                server,
            } => {
                if !self.pool.is_current(slot, gen) {
                    process.kill();
                    return;
                }
                self.pool.spawned(slot, gen, now);
                let s = &mut self.slots[slot];
                s.pid = Some(process.pid());
                s.server = Some(server);
                s.process = Some(process.clone());
                if self.pool.phase(slot) != Phase::Handshaking || self.shutting_down() {
                    process.kill();
                }
                ctx.spawn(
                    async move { process.wait().await }
                        .into_actor(self)
                        .map(move |res, act, ctx| act.on_exit(slot, gen, res, ctx)),
                );
            }
            LinkEvent::SpawnFailed { slot, gen, error } => {
                if !self.pool.is_current(slot, gen) {
                    return;
                }
                // The program could not be started at all (missing, not
                // executable, the process limit): starting it again would
                // fail the same way, so stop, and say why.
                tracing::error!(slot, "{error}");
                self.fail(error.clone(), ctx);
                self.slots[slot].crash = Some(Crash::ProtocolFault(error));
                self.pool.spawn_failed(slot, gen, now);
            }
            LinkEvent::Ready {
                slot,
                gen,
                pid,
                kinds,
                tx,
                control,
            } => {
                if !self.pool.is_current(slot, gen) {
                    return;
                }
                let wanted = self.pool.ready(slot, gen, now);
                let s = &mut self.slots[slot];
                // The pid is the process this supervisor started, not what
                // the worker says it is (a wrapper's child says another).
                if s.pid != Some(pid) {
                    tracing::debug!(
                        slot,
                        spawned = s.pid,
                        said = pid,
                        "the worker says it has another pid than the process started"
                    );
                }
                s.server = None;
                s.tx = Some(WorkerTx::new(tx, control));
                self.initial_pending = self.initial_pending.saturating_sub(1);
                if self.initial_pending == 0 {
                    if let Some(tx) = self.on_ready.take() {
                        let _ = tx.send(Ok(kinds));
                    }
                }
                if !wanted {
                    self.send(slot, &[ToWorkerRef::Shutdown]);
                    return;
                }
                self.core.worker_ready(slot);
            }
            LinkEvent::HandshakeFailed { slot, gen, error } => {
                // Whoever connected first sent what does not decode: the
                // worker, or another process racing it (which is then
                // refused like one that lacks the secret).
                if self.pool.is_current(slot, gen) {
                    self.kill_broken(slot, Crash::ProtocolFault(error));
                    self.pool.intruded(slot, gen);
                }
            }
            LinkEvent::HandshakeTaken { slot, gen } => {
                if self.pool.is_current(slot, gen) {
                    self.kill_broken(slot, Crash::HandshakeTaken);
                    self.pool.intruded(slot, gen);
                }
            }
            LinkEvent::Frames {
                slot,
                gen,
                messages,
            } => {
                let current = self.pool.is_current(slot, gen);
                if current {
                    self.pool.heard(slot, gen, now);
                }
                let live = current && self.pool.phase(slot) == Phase::Ready;
                if current {
                    self.on_memory(slot, gen, &messages);
                }
                let finished = self.on_frames(slot, live, messages);
                if finished > 0 {
                    self.pool.job_done(slot, gen, finished);
                }
                if live && self.pool.due_for_recycling(slot) {
                    self.recycle(slot);
                }
            }
            LinkEvent::Fault { slot, gen, error } => {
                if self.pool.is_current(slot, gen) {
                    self.kill_broken(slot, Crash::ProtocolFault(error.to_string()));
                }
            }
            LinkEvent::Closed { slot, gen } => self.pool.closed(slot, gen, now),
        }
        self.pump(ctx);
        self.check_stopped(ctx);
    }
}
