//! The worker pool: starting workers, their handshakes, their results and
//! faults, their exits, restarts with backoff and the intensity limit, and
//! the heartbeat watch.
//!
//! A worker's exit is acted on only once its results socket has closed (or
//! [`DRAIN_GRACE`] after the exit, if a process it started still holds the
//! socket), so every result it sent before it died reaches the core first:
//! a job that finished is never reported as crashed.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::actor::{Phase, SupervisorActor, WorkerSlot};
use super::jobs::Detail;
use super::link::{abandon_handshake, LinkEvent, WorkerTx};
use super::outcome::Crash;
use crate::process::{Exit, ProcessOutcome};
use crate::sched::{KillReason, RestartDecision, SlotId};
use crate::wire::ToWorkerRef;

/// After a worker closes its results socket, how long it has to exit
/// before it is killed.
const CLOSED_GRACE: Duration = Duration::from_secs(1);

/// After a worker exits, how long its results may take to be drained.
const DRAIN_GRACE: Duration = Duration::from_millis(100);

impl SupervisorActor {
    /// Start a worker in `slot` (a fresh generation of it).
    pub(super) fn spawn_worker(&mut self, slot: SlotId) {
        let gen = self.next_gen;
        self.next_gen += 1;
        let s = &mut self.slots[slot];
        *s = WorkerSlot {
            gen,
            phase: Phase::Spawning,
            consecutive_deaths: s.consecutive_deaths,
            ..WorkerSlot::new()
        };
        self.core.slot_pending(slot);
        if let Some(sp) = &self.spawner {
            sp.spawn(slot, gen, self.slots[slot].replies.clone());
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
            self.counts.evictions += 1;
        }
        let s = &mut self.slots[slot];
        tracing::debug!(slot, pid = s.pid, ?reason, job, "killing worker");
        s.expected_exit = true;
        s.phase = Phase::Stopping;
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

    /// Kill a worker that broke; its running job will end as `crash`.
    pub(super) fn kill_broken(&mut self, slot: SlotId, crash: Crash) {
        let s = &mut self.slots[slot];
        tracing::warn!(slot, pid = s.pid, "{crash}");
        s.crash.get_or_insert(crash);
        s.tx = None;
        if let Some(p) = &s.process {
            p.kill();
        }
    }

    /// Kill workers that stopped sending heartbeats.
    pub(super) fn watch_heartbeats(&mut self, ctx: &mut Context<Self>) {
        let every = self.cfg.heartbeat;
        let limit = every.saturating_mul(self.cfg.heartbeat_misses);
        ctx.run_interval(every, move |act, _| {
            let now = Instant::now();
            for slot in 0..act.slots.len() {
                let s = &act.slots[slot];
                let silent = now.saturating_duration_since(s.last_seen);
                if s.phase == Phase::Ready && silent > limit {
                    act.kill_broken(slot, Crash::Unresponsive(silent));
                }
            }
        });
    }

    /// A worker process exited: act on it once its results are drained.
    fn on_exit(
        &mut self,
        slot: SlotId,
        gen: u64,
        result: std::io::Result<ProcessOutcome>,
        ctx: &mut Context<Self>,
    ) {
        let s = &mut self.slots[slot];
        if s.gen != gen {
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
        s.process = None;
        s.tx = None;
        if s.drained || s.phase != Phase::Ready {
            return self.after_death(slot, exit, ctx);
        }
        s.exited = Some(exit);
        ctx.run_later(DRAIN_GRACE, move |act, ctx| {
            let s = &mut act.slots[slot];
            if s.gen == gen {
                if let Some(exit) = s.exited.take() {
                    act.after_death(slot, exit, ctx);
                }
            }
        });
    }

    /// A worker is gone and everything it sent has been read: end or put
    /// back its jobs, then restart it (or give up).
    fn after_death(&mut self, slot: SlotId, exit: Exit, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let s = &mut self.slots[slot];
        s.exited = None;
        if let Some(server) = s.server.take() {
            if matches!(s.phase, Phase::Spawning | Phase::Handshaking) {
                abandon_handshake(&server);
            }
        }
        let was = s.phase;
        tracing::debug!(slot, pid = s.pid, %exit, expected = s.expected_exit, "worker exited");
        if s.expected_exit {
            return self.after_exit(slot, ctx);
        }
        let crash = s.crash.take().unwrap_or(Crash::Exited(exit));
        s.consecutive_deaths += 1;
        let consecutive = s.consecutive_deaths;
        // The core ends its running job (or retries it) and puts the others
        // back; routed now, while the slot still holds their targets.
        self.core
            .worker_lost(slot, Some(Detail::Crash(crash.clone())), now);
        self.pump(ctx);
        if !self.ever_ready && was != Phase::Ready {
            let why = format!(
                "the worker program {} did not start: {crash}, before its handshake; is it a procvisor worker (does its main call Worker::main or run_if_worker)?",
                self.cfg.worker.program.display()
            );
            self.fail(why, ctx);
        } else if self.accepting() {
            match self.restarts.on_death(now, consecutive) {
                RestartDecision::After(delay) => {
                    self.slots[slot].phase = Phase::Backoff;
                    let gen = self.slots[slot].gen;
                    ctx.run_later(delay, move |act, ctx| {
                        if act.slots[slot].gen == gen
                            && act.slots[slot].phase == Phase::Backoff
                            && act.accepting()
                        {
                            act.counts.restarts += 1;
                            act.spawn_worker(slot);
                        }
                        act.pump(ctx);
                    });
                    return self.pump(ctx);
                }
                RestartDecision::GiveUp { deaths, within } => {
                    let why = format!(
                        "worker processes died {deaths} times within {within:?} (last: {crash}); the restart intensity limit is exceeded, so the supervisor gave up; fix the crashing jobs or raise Config::restart"
                    );
                    self.fail(why, ctx);
                }
            }
        }
        // Not restarting: the slot is down for good.
        self.after_exit(slot, ctx);
    }

    /// A worker we meant to end has exited: replace it, or record that it is
    /// gone if we are stopping.
    fn after_exit(&mut self, slot: SlotId, ctx: &mut Context<Self>) {
        if self.accepting() {
            self.counts.restarts += 1;
            self.spawn_worker(slot);
        } else {
            self.slots[slot].phase = Phase::Down;
            self.core.slot_down(slot, Instant::now());
        }
        self.pump(ctx);
        self.check_stopped(ctx);
    }
}

impl Handler<LinkEvent> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, ev: LinkEvent, ctx: &mut Context<Self>) {
        match ev {
            LinkEvent::Spawned {
                slot,
                gen,
                process,
                server,
            } => {
                if self.slots[slot].gen != gen {
                    process.kill();
                    return;
                }
                let stopping = self.lifecycle != super::actor::Lifecycle::Running;
                let s = &mut self.slots[slot];
                s.phase = Phase::Handshaking;
                s.pid = Some(process.pid());
                s.server = Some(server);
                s.process = Some(process.clone());
                if stopping {
                    s.expected_exit = true;
                    process.kill();
                }
                ctx.spawn(
                    async move { process.wait().await }
                        .into_actor(self)
                        .map(move |res, act, ctx| act.on_exit(slot, gen, res, ctx)),
                );
                let timeout = self.cfg.start_timeout;
                ctx.run_later(timeout, move |act, _| {
                    let s = &mut act.slots[slot];
                    if s.gen == gen && s.phase == Phase::Handshaking {
                        let crash = Crash::ProtocolFault(format!(
                            "the worker did not connect within {timeout:?}"
                        ));
                        act.kill_broken(slot, crash);
                    }
                });
            }
            LinkEvent::SpawnFailed { slot, gen, error } => {
                if self.slots[slot].gen != gen {
                    return;
                }
                tracing::error!(slot, "{error}");
                if !self.ever_ready || !self.accepting() {
                    // No process came of it, and none will.
                    self.slots[slot].phase = Phase::Down;
                    self.core.slot_down(slot, Instant::now());
                    self.fail(error, ctx);
                    self.check_stopped(ctx);
                } else {
                    // Count it like a worker that died at once.
                    self.slots[slot].phase = Phase::Handshaking;
                    self.slots[slot].crash = Some(Crash::ProtocolFault(error));
                    self.after_death(slot, Exit::Code(-1), ctx);
                }
            }
            LinkEvent::Ready {
                slot,
                gen,
                pid,
                kinds,
                tx,
                control,
            } => {
                let s = &mut self.slots[slot];
                if s.gen != gen || s.phase != Phase::Handshaking {
                    return;
                }
                s.phase = Phase::Ready;
                s.pid = Some(pid);
                s.server = None;
                s.tx = Some(WorkerTx::new(tx, control));
                s.last_seen = Instant::now();
                self.ever_ready = true;
                self.initial_pending = self.initial_pending.saturating_sub(1);
                if self.initial_pending == 0 {
                    if let Some(tx) = self.on_ready.take() {
                        let _ = tx.send(Ok(kinds));
                    }
                }
                if self.lifecycle == super::actor::Lifecycle::Stopping {
                    self.send(slot, &[ToWorkerRef::Shutdown]);
                    self.slots[slot].expected_exit = true;
                    self.slots[slot].phase = Phase::Stopping;
                    return;
                }
                self.core.worker_ready(slot);
                self.pump(ctx);
            }
            LinkEvent::HandshakeFailed { slot, gen, error } => {
                if self.slots[slot].gen == gen {
                    self.kill_broken(slot, Crash::ProtocolFault(error));
                }
            }
            LinkEvent::Frames {
                slot,
                gen,
                messages,
            } => {
                let current = self.slots[slot].gen == gen;
                self.on_frames(slot, current, messages, ctx);
            }
            LinkEvent::Fault { slot, gen, error } => {
                if self.slots[slot].gen == gen {
                    self.kill_broken(slot, Crash::ProtocolFault(error.to_string()));
                }
            }
            LinkEvent::Closed { slot, gen } => {
                let s = &mut self.slots[slot];
                if s.gen != gen {
                    return;
                }
                s.drained = true;
                if let Some(exit) = s.exited.take() {
                    return self.after_death(slot, exit, ctx);
                }
                if s.process.is_some() {
                    ctx.run_later(CLOSED_GRACE, move |act, _| {
                        let s = &act.slots[slot];
                        if s.gen == gen && s.process.is_some() && !s.expected_exit {
                            let crash = Crash::ProtocolFault(
                                "the worker closed its results channel but kept running".into(),
                            );
                            act.kill_broken(slot, crash);
                        }
                    });
                }
            }
        }
    }
}
