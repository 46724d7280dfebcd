//! The pool state machine, driven with injected time.

use super::*;

fn cfg(slots: usize) -> PoolConfig {
    PoolConfig {
        slots,
        start_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(1),
        heartbeat_misses: 5,
        closed_grace: Duration::from_secs(1),
        drain_grace: Duration::from_millis(100),
        exit_grace: Duration::from_secs(2),
        restart: RestartPolicy {
            max_restarts: 3,
            within: Duration::from_secs(10),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(5),
        },
        recycle_after: None,
    }
}

struct T {
    t0: Instant,
    pool: Pool,
}

impl T {
    fn new(slots: usize) -> T {
        let t0 = Instant::now();
        let mut pool = Pool::new(cfg(slots), t0);
        pool.start(t0);
        T { t0, pool }
    }
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    fn poll(&mut self, ms: u64) -> Vec<PoolAction> {
        let now = self.at(ms);
        self.pool.poll(now)
    }
    /// Start and connect the worker of `slot`.
    fn up(&mut self, slot: SlotId, ms: u64) -> u64 {
        let gen = self.pool.gen(slot);
        self.pool.spawned(slot, gen, self.at(ms));
        assert!(self.pool.ready(slot, gen, self.at(ms)));
        gen
    }
}

#[test]
fn a_supervisor_stopped_before_its_first_check_blames_no_worker_for_its_own_silence() {
    // Paused 7 s half a second after start: no check has run yet, and the
    // workers' heartbeats sent meanwhile are read only after the checks.
    let mut t = T::new(1);
    t.poll(0);
    let g = t.up(0, 5);
    t.pool.heard(0, g, t.at(400));
    assert!(t.poll(7_500).is_empty(), "no kill on waking");
    t.pool.heard(0, g, t.at(7_501));
    for s in 8..=14 {
        t.pool.heard(0, g, t.at(s * 1000));
        assert!(t.poll(s * 1000).is_empty(), "second {s}");
    }
    // A worker that really goes silent after that is still killed, once
    // its misses are used up.
    let killed: Vec<u64> = (15..=21)
        .filter(|&s| {
            matches!(
                t.poll(s * 1000).as_slice(),
                [PoolAction::Kill {
                    slot: 0,
                    why: Broke::Unresponsive(_)
                }]
            )
        })
        .collect();
    assert_eq!(killed, vec![20]);
}

#[test]
fn workers_start_then_a_silent_one_is_killed_after_its_misses() {
    let mut t = T::new(2);
    assert_eq!(
        t.poll(0),
        vec![
            PoolAction::Spawn { slot: 0, gen: 1 },
            PoolAction::Spawn { slot: 1, gen: 2 }
        ]
    );
    let (g0, g1) = (t.up(0, 5), t.up(1, 5));
    for s in 1..=6 {
        t.pool.heard(0, g0, t.at(s * 1000));
        let out = t.poll(s * 1000);
        if s < 6 {
            assert!(out.is_empty(), "second {s}: {out:?}");
        } else {
            assert_eq!(
                out,
                vec![PoolAction::Kill {
                    slot: 1,
                    why: Broke::Unresponsive(Duration::from_millis(5995))
                }]
            );
        }
    }
    let _ = g1;
}

#[test]
fn a_stopped_supervisor_does_not_blame_its_workers() {
    let mut t = T::new(1);
    t.poll(0);
    t.up(0, 0);
    t.poll(1000);
    // The supervisor itself was stopped for 7 s: the next check comes
    // late, and kills nobody.
    assert!(t.poll(8000).is_empty());
    assert!(t.poll(9000).is_empty());
}

#[test]
fn a_worker_that_does_not_connect_is_killed_at_the_start_timeout() {
    let mut t = T::new(1);
    t.poll(0);
    t.pool.spawned(0, 1, t.at(1));
    assert!(t.poll(10_000).is_empty());
    assert_eq!(
        t.poll(10_001),
        vec![PoolAction::Kill {
            slot: 0,
            why: Broke::NoHandshake(Duration::from_secs(10))
        }]
    );
    // It dies before it ever connected: no restart loop.
    t.pool.exited(0, 1, t.at(10_002));
    assert_eq!(
        t.poll(10_002),
        vec![PoolAction::Dead {
            slot: 0,
            death: Death::BeforeReady { not_a_worker: true }
        }]
    );
    assert!(t.pool.next_timer().is_some_and(|at| at > t.at(10_002)));
}

#[test]
fn a_death_waits_for_the_results_to_drain_then_restarts_with_backoff() {
    let mut t = T::new(1);
    t.poll(0);
    let g = t.up(0, 0);
    t.pool.exited(0, g, t.at(100));
    assert!(t.poll(100).is_empty(), "results not drained yet");
    t.pool.closed(0, g, t.at(101));
    // First death in a row: restarted at once (backoff 0).
    assert_eq!(
        t.poll(101),
        vec![
            PoolAction::Dead {
                slot: 0,
                death: Death::Lost
            },
            PoolAction::Spawn { slot: 0, gen: 2 }
        ]
    );
    // Second in a row: after the base backoff.
    let g = t.up(0, 102);
    t.pool.exited(0, g, t.at(110));
    t.pool.closed(0, g, t.at(110));
    assert_eq!(t.poll(110).len(), 1);
    assert_eq!(t.pool.phase(0), Phase::Backoff);
    assert!(t.poll(119).is_empty());
    assert_eq!(t.poll(120), vec![PoolAction::Spawn { slot: 0, gen: 3 }]);
}

#[test]
fn results_that_never_drain_are_given_up_on_after_a_grace() {
    // A process the worker started holds its channel open.
    let mut t = T::new(1);
    t.poll(0);
    let g = t.up(0, 0);
    t.pool.exited(0, g, t.at(10));
    assert!(t.poll(109).is_empty());
    assert_eq!(
        t.poll(110)[0],
        PoolAction::Dead {
            slot: 0,
            death: Death::Lost
        }
    );
}

#[test]
fn too_many_deaths_give_up_and_stop_restarting() {
    let mut t = T::new(1);
    t.poll(0);
    let mut ms = 0;
    for death in 1..=4 {
        let g = t.up(0, ms);
        t.pool.exited(0, g, t.at(ms + 1));
        t.pool.closed(0, g, t.at(ms + 1));
        let out = t.poll(ms + 1);
        if death < 4 {
            // Dead, then a restart: at once the first time, after a
            // backoff later.
            if death == 1 {
                assert_eq!(out.len(), 2, "{out:?}");
                ms += 1;
            } else {
                assert_eq!(out.len(), 1, "{out:?}");
                let at = t.pool.next_timer().unwrap();
                ms = (at - t.t0).as_millis() as u64 + 1;
                let out = t.poll(ms);
                assert!(
                    matches!(out.as_slice(), [PoolAction::Spawn { .. }]),
                    "{out:?}"
                );
            }
        } else {
            assert_eq!(
                out,
                vec![
                    PoolAction::Dead {
                        slot: 0,
                        death: Death::Lost
                    },
                    PoolAction::GiveUp {
                        deaths: 4,
                        within: Duration::from_secs(10)
                    }
                ]
            );
        }
    }
    assert_eq!(t.pool.phase(0), Phase::Down);
}

#[test]
fn a_kill_on_the_cores_decision_is_no_crash_and_restarts_at_once() {
    let mut t = T::new(1);
    t.poll(0);
    let g = t.up(0, 0);
    t.pool.stopping(0);
    t.pool.exited(0, g, t.at(5));
    assert_eq!(
        t.poll(5),
        vec![
            PoolAction::Dead {
                slot: 0,
                death: Death::Expected
            },
            PoolAction::Spawn { slot: 0, gen: 2 }
        ]
    );
}

#[test]
fn shutdown_asks_ready_workers_to_exit_then_kills_all_after_the_grace() {
    let mut t = T::new(2);
    t.poll(0);
    let g0 = t.up(0, 0);
    assert_eq!(t.pool.ask_all_to_exit(t.at(10)), vec![0]);
    t.pool.exited(0, g0, t.at(20));
    assert_eq!(
        t.poll(20),
        vec![PoolAction::Dead {
            slot: 0,
            death: Death::Expected
        }]
    );
    assert!(!t.pool.all_down(), "slot 1 is still starting");
    assert_eq!(t.poll(2010), vec![PoolAction::KillAll]);
    t.pool.spawned(1, 2, t.at(2011));
    t.pool.exited(1, 2, t.at(2012));
    t.poll(2012);
    assert!(t.pool.all_down());
}

#[test]
fn news_of_a_replaced_worker_is_ignored() {
    let mut t = T::new(1);
    t.poll(0);
    let old = t.up(0, 0);
    t.pool.stopping(0);
    t.pool.exited(0, old, t.at(1));
    t.poll(1);
    t.pool.exited(0, old, t.at(2));
    t.pool.closed(0, old, t.at(2));
    assert!(t.poll(2).is_empty());
    assert_eq!(t.pool.gen(0), old + 1);
}

#[test]
fn a_worker_whose_handshake_was_taken_is_restarted_even_before_any_was_ready() {
    let mut t = T::new(1);
    t.poll(0);
    t.pool.spawned(0, 1, t.at(1));
    t.pool.broke(0, 1);
    t.pool.intruded(0, 1);
    t.pool.exited(0, 1, t.at(2));
    t.pool.closed(0, 1, t.at(2));
    let mut actions = t.poll(2);
    assert_eq!(
        actions.first(),
        Some(&PoolAction::Dead {
            slot: 0,
            death: Death::BeforeReady {
                not_a_worker: false
            }
        })
    );
    // Unlike a program that never connects, it comes back (after its
    // backoff, if any).
    for ms in 3..1000 {
        actions.extend(t.poll(ms));
    }
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, PoolAction::Spawn { slot: 0, gen: 2 })),
        "no restart: {actions:?}"
    );
}

#[test]
fn a_program_whose_handshake_is_refused_three_times_in_a_row_is_not_started_again() {
    let mut t = T::new(1);
    t.poll(0);
    let mut deaths = Vec::new();
    let mut spawns = 1;
    let mut ms = 1;
    for gen in 1..=3u64 {
        t.pool.spawned(0, gen, t.at(ms));
        t.pool.broke(0, gen);
        t.pool.intruded(0, gen);
        t.pool.exited(0, gen, t.at(ms + 1));
        t.pool.closed(0, gen, t.at(ms + 1));
        let end = ms + 1000;
        while ms < end {
            ms += 1;
            for a in t.poll(ms) {
                match a {
                    PoolAction::Dead { death, .. } => deaths.push(death),
                    PoolAction::Spawn { .. } => spawns += 1,
                    _ => {}
                }
            }
        }
    }
    assert_eq!(
        deaths,
        vec![
            Death::BeforeReady {
                not_a_worker: false
            },
            Death::BeforeReady {
                not_a_worker: false
            },
            Death::BeforeReady { not_a_worker: true },
        ]
    );
    assert_eq!(spawns, 3, "started three times, not a fourth");
}
