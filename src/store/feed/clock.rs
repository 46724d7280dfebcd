//! A store-fed supervisor's own clock of its lease, with no IO: when it
//! heartbeats, until when it may start jobs, and when it must take its
//! lease as lost.
//!
//! The table declares a supervisor lost once its last heartbeat is older
//! than its lease, by the database's clock, and then lets any supervisor
//! take its jobs over. A heartbeat's time in the table is no earlier than
//! the moment this supervisor sent it, so the supervisor counts from the
//! sending of its last heartbeat that succeeded (`confirmed`):
//!
//! - it heartbeats every third of the lease, and after a heartbeat that
//!   failed, again soon (every twelfth of the lease, 100 ms to 1 s), so
//!   that a database back from a short outage confirms the lease at once;
//! - it starts no job once two thirds of the lease have passed since
//!   `confirmed` (one heartbeat may fail or be late without holding
//!   anything back);
//! - once the whole lease has passed since `confirmed`, the table may have
//!   given its jobs to another supervisor: it stops every job it holds,
//!   queued or running, and gives them back.
//!
//! Time is passed in (monotonic instants, which go on while a process is
//! stopped), so every rule here is tested with virtual time.

use std::time::{Duration, Instant};

/// The lease clock (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct LeaseClock {
    lease: Duration,
    /// When the last heartbeat that succeeded (or the registration) was
    /// sent.
    confirmed: Instant,
    /// When the last heartbeat was sent, whatever became of it.
    last_try: Instant,
    /// The last heartbeat failed.
    failing: bool,
    /// The lease lapsed since `confirmed` and the supervisor fenced itself.
    fenced: bool,
}

/// The share of the lease after its confirmation during which jobs may
/// start: two thirds.
const START_SHARE: (u32, u32) = (2, 3);

impl LeaseClock {
    /// A registration sent at `sent`, with this lease.
    pub(crate) fn new(lease: Duration, sent: Instant) -> LeaseClock {
        LeaseClock {
            lease,
            confirmed: sent,
            last_try: sent,
            failing: false,
            fenced: false,
        }
    }

    /// How often to heartbeat: a third of the lease.
    pub(crate) fn beat_every(&self) -> Duration {
        self.lease / 3
    }

    /// How soon to try again after a heartbeat that failed.
    fn retry_every(&self) -> Duration {
        (self.lease / 12).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// When the next heartbeat is due.
    pub(crate) fn next_beat(&self) -> Instant {
        let every = if self.failing {
            self.retry_every()
        } else {
            self.beat_every()
        };
        self.last_try + every
    }

    /// Whether a heartbeat is due at `now`.
    pub(crate) fn beat_due(&self, now: Instant) -> bool {
        now >= self.next_beat()
    }

    /// A heartbeat is being sent at `at`.
    pub(crate) fn beat_sent(&mut self, at: Instant) {
        self.last_try = at;
    }

    /// The last heartbeat sent failed (the database did not answer, or
    /// refused it).
    pub(crate) fn beat_failed(&mut self) {
        self.failing = true;
    }

    /// The heartbeat sent at `sent` succeeded for the same registration.
    pub(crate) fn confirmed(&mut self, sent: Instant) {
        self.failing = false;
        if sent > self.confirmed {
            self.confirmed = sent;
            self.fenced = false;
        }
    }

    /// A new registration, sent at `sent` (after being declared lost).
    pub(crate) fn registered(&mut self, sent: Instant) {
        *self = LeaseClock::new(self.lease, sent);
    }

    /// No job may start at or after this instant.
    pub(crate) fn starts_until(&self) -> Instant {
        self.confirmed + self.lease * START_SHARE.0 / START_SHARE.1
    }

    /// Whether jobs may start (and be claimed) at `now`.
    pub(crate) fn may_start(&self, now: Instant) -> bool {
        now < self.starts_until()
    }

    /// When the lease lapses, unless confirmed again before.
    pub(crate) fn lapses_at(&self) -> Instant {
        self.confirmed + self.lease
    }

    /// Whether the supervisor must fence itself now: its lease lapsed and
    /// it has not done so for this lapse yet. Returns true once per lapse.
    pub(crate) fn must_fence(&mut self, now: Instant) -> bool {
        if self.fenced || now < self.lapses_at() {
            return false;
        }
        self.fenced = true;
        true
    }

    /// How long a statement on the lease's behalf (a heartbeat, a claim)
    /// may wait on the database: a third of the lease, at most 30 s and at
    /// least 1 s, so that a stalled connection costs one heartbeat, not
    /// the lease.
    pub(crate) fn statement_bound(&self) -> Duration {
        (self.lease / 3).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn starts_stop_at_two_thirds_of_the_lease_and_resume_when_a_heartbeat_succeeds() {
        let t0 = Instant::now();
        let mut c = LeaseClock::new(secs(3.0), t0);
        assert!(c.may_start(t0 + secs(1.99)));
        assert!(!c.may_start(t0 + secs(2.0)));
        // A heartbeat sent at 1 s that came back late (at 2.5 s) still
        // counts from 1 s.
        c.confirmed(t0 + secs(1.0));
        assert!(c.may_start(t0 + secs(2.5)));
        assert!(!c.may_start(t0 + secs(3.0)));
        // An older confirmation never moves the clock back.
        c.confirmed(t0 + secs(0.5));
        assert_eq!(c.starts_until(), t0 + secs(3.0));
    }

    #[test]
    fn the_lease_lapses_a_whole_lease_after_the_last_confirmed_heartbeat_and_fences_once() {
        let t0 = Instant::now();
        let mut c = LeaseClock::new(secs(3.0), t0);
        assert!(!c.must_fence(t0 + secs(2.9)));
        assert!(c.must_fence(t0 + secs(3.0)));
        assert!(!c.must_fence(t0 + secs(10.0)), "once per lapse");
        c.confirmed(t0 + secs(11.0));
        assert!(c.may_start(t0 + secs(11.5)));
        assert!(!c.must_fence(t0 + secs(13.9)));
        assert!(c.must_fence(t0 + secs(14.0)), "a later lapse fences again");
    }

    #[test]
    fn a_process_stopped_past_its_lease_starts_nothing_on_waking() {
        // Paused 7 s with a 2 s lease: on waking, before any heartbeat can
        // run, starts are held and the lease is lapsed.
        let t0 = Instant::now();
        let mut c = LeaseClock::new(secs(2.0), t0);
        c.beat_sent(t0 + secs(0.6));
        c.confirmed(t0 + secs(0.6));
        let woke = t0 + secs(0.7) + secs(7.0);
        assert!(!c.may_start(woke));
        assert!(c.beat_due(woke));
        assert!(c.must_fence(woke));
        c.registered(woke + secs(0.01));
        assert!(c.may_start(woke + secs(0.02)));
    }

    #[test]
    fn heartbeats_are_due_every_third_of_the_lease_and_statements_are_bounded() {
        let t0 = Instant::now();
        let mut c = LeaseClock::new(secs(15.0), t0);
        assert!(!c.beat_due(t0 + secs(4.9)));
        assert!(c.beat_due(t0 + secs(5.0)));
        c.beat_sent(t0 + secs(5.0));
        assert!(!c.beat_due(t0 + secs(9.9)));
        assert_eq!(c.statement_bound(), secs(5.0));
        // After a failure, again within a second.
        c.beat_failed();
        assert!(c.beat_due(t0 + secs(6.0)));
        c.beat_sent(t0 + secs(6.0));
        assert!(!c.beat_due(t0 + secs(6.9)));
        c.confirmed(t0 + secs(6.0));
        assert!(!c.beat_due(t0 + secs(10.9)));
        assert!(c.beat_due(t0 + secs(11.0)));
        assert_eq!(LeaseClock::new(secs(1.0), t0).statement_bound(), secs(1.0));
        assert_eq!(
            LeaseClock::new(secs(3600.0), t0).statement_bound(),
            secs(30.0)
        );
    }
}
