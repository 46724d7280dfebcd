//! What a store-fed supervisor claims next, sans IO (time and the
//! supervisor's demand are passed in): how many jobs, how urgent, how many
//! of them start at once and how long the rest may wait.
//!
//! The claimer keeps the supervisor's workers fed: it claims what they can
//! take at once (idle workers and prefetch room), plus as many as they get
//! through in [`AHEAD_HORIZON`] at their recent pace (claimed ahead, so a
//! worker that finishes finds its next job in memory). When every worker
//! is busy it claims only one job more urgent than the least urgent
//! running one, which the supervisor will evict for it. While its lease is
//! in doubt it claims nothing.

use std::time::{Duration, Instant};

use crate::Demand;

/// Claim ahead what the workers get through in this long.
pub(crate) const AHEAD_HORIZON: Duration = Duration::from_millis(150);

/// One claim to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// At most this many jobs.
    pub(crate) limit: usize,
    /// Only jobs more urgent than this (11: any).
    pub(crate) below: u8,
    /// Of them, this many start at once.
    pub(crate) now: usize,
    /// The rest wait up to this long in the supervisor.
    pub(crate) wait: Duration,
}

/// The claimer's planner (see the module docs).
#[derive(Debug)]
pub(crate) struct Planner {
    pace: Pace,
    /// Most jobs claimed ahead (0 for a supervisor that draws at random,
    /// which would draw early).
    most_ahead: usize,
    /// What the workers take at once: at least one job each, more with
    /// prefetch (learnt from the demand while they are idle).
    capacity: usize,
    /// The table may hold something new (at the start, after a
    /// notification, a poll or a failed claim).
    news: bool,
    /// The last claim filled its limit: there may be more.
    more: bool,
}

impl Planner {
    /// A planner for `workers` workers, claiming up to `most_ahead` ahead,
    /// starting at `at`.
    pub(crate) fn new(workers: usize, most_ahead: usize, at: Instant) -> Planner {
        Planner {
            pace: Pace::new(at),
            most_ahead,
            capacity: workers.max(1),
            news: true,
            more: false,
        }
    }

    /// The table may hold something new.
    pub(crate) fn news(&mut self) {
        self.news = true;
    }

    /// The last claim returned as many jobs as it asked for.
    pub(crate) fn filled(&mut self) {
        self.more = true;
    }

    /// Whether to ask the supervisor for its demand at `now`: `ended` jobs
    /// of this feed ended so far, `inside` are in the supervisor, and
    /// `may_start` says whether the lease lets it start jobs. When not,
    /// there is nothing to claim this round.
    pub(crate) fn ask(&mut self, now: Instant, ended: u64, inside: usize, may_start: bool) -> bool {
        self.pace.observe(now, ended);
        let ahead = self.pace.ahead(self.most_ahead);
        // Enough in the supervisor and nothing new: do not even ask it.
        let busy = inside > self.capacity + ahead / 2;
        let ask = may_start && !(busy && !self.news && !self.more);
        if !ask {
            self.news = false;
            self.more = false;
        }
        ask
    }

    /// What to claim, given the supervisor's `demand` (after
    /// [`ask`](Self::ask) said to ask).
    pub(crate) fn plan(&mut self, demand: Demand) -> Option<Plan> {
        let news = std::mem::take(&mut self.news);
        self.more = false;
        self.capacity = self.capacity.max(demand.free);
        let ahead = self.pace.ahead(self.most_ahead);
        if demand.free > 0 || (ahead > 0 && demand.waiting <= ahead / 2) {
            let ahead = ahead.saturating_sub(demand.waiting);
            let behind = demand.free.saturating_sub(demand.idle) + ahead;
            Some(Plan {
                limit: demand.free + ahead,
                below: crate::LEAST_URGENT + 1,
                now: demand.idle.min(demand.free),
                wait: self.pace.wait(demand.waiting + behind),
            })
            .filter(|p| p.limit > 0)
        } else if let (true, Some(p)) = (news, demand.evict_above) {
            // All busy: only a job more urgent than the least urgent
            // running one, which it will evict.
            Some(Plan {
                limit: 1,
                below: p,
                now: 1,
                wait: Duration::ZERO,
            })
        } else {
            None
        }
    }
}

/// The workers' pace: a moving average of jobs ended per second.
#[derive(Debug)]
struct Pace {
    at: Instant,
    ended: u64,
    per_sec: f64,
}

impl Pace {
    fn new(at: Instant) -> Pace {
        Pace {
            at,
            ended: 0,
            per_sec: 0.0,
        }
    }

    /// Take the count of ended jobs at `now` into the average (every 20 ms
    /// at most).
    fn observe(&mut self, now: Instant, ended: u64) {
        let dt = now.saturating_duration_since(self.at);
        if dt < Duration::from_millis(20) {
            return;
        }
        let rate = ended.saturating_sub(self.ended) as f64 / dt.as_secs_f64();
        self.per_sec = (self.per_sec + rate) / 2.0;
        self.at = now;
        self.ended = ended;
    }

    /// The jobs the workers get through in [`AHEAD_HORIZON`], at most `most`.
    fn ahead(&self, most: usize) -> usize {
        ((self.per_sec * AHEAD_HORIZON.as_secs_f64()) as usize).min(most)
    }

    /// How long the last of `jobs` waiting in the supervisor waits at this
    /// pace (a day when there is no pace yet).
    fn wait(&self, jobs: usize) -> Duration {
        if self.per_sec > 0.0 {
            Duration::from_secs_f64((jobs as f64 / self.per_sec).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(free: usize, idle: usize, waiting: usize, evict_above: Option<u8>) -> Demand {
        Demand {
            free,
            idle,
            evict_above,
            waiting,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn idle_workers_get_jobs_at_once_and_with_no_pace_yet_nothing_waits_with_a_timeout() {
        let t0 = Instant::now();
        let mut p = Planner::new(2, 1000, t0);
        assert!(p.ask(t0, 0, 0, true));
        // Two idle workers, room for two more behind them (prefetch 2).
        let plan = p.plan(demand(4, 2, 0, None)).unwrap();
        assert_eq!((plan.limit, plan.now), (4, 2));
        assert_eq!(plan.below, crate::LEAST_URGENT + 1);
        assert_eq!(
            plan.wait,
            Duration::from_secs(86_400),
            "no pace: no job with a timeout waits"
        );
    }

    #[test]
    fn at_a_steady_pace_it_claims_ahead_what_the_workers_get_through_in_the_horizon() {
        let t0 = Instant::now();
        let mut p = Planner::new(2, 1000, t0);
        // 1,000 jobs a second, over a few rounds of the average.
        let mut ended = 0;
        let mut t = t0;
        for _ in 0..10 {
            t += ms(100);
            ended += 100;
            p.ask(t, ended, 0, true);
            p.plan(demand(0, 0, 1000, None));
        }
        assert!(p.ask(t + ms(100), ended + 100, 0, true));
        let plan = p.plan(demand(1, 1, 0, None)).unwrap();
        // About 150 ahead (1,000/s × 150 ms), one of which starts now.
        assert!((140..=152).contains(&plan.limit), "{plan:?}");
        assert_eq!(plan.now, 1);
        // The last of them waits about its place in line at that pace.
        assert!(plan.wait > ms(130) && plan.wait < ms(160), "{plan:?}");
        // Never more ahead than allowed.
        let mut capped = Planner::new(2, 10, t0);
        let (mut e, mut t) = (0, t0);
        for _ in 0..10 {
            t += ms(100);
            e += 100;
            capped.ask(t, e, 0, true);
            capped.plan(demand(0, 0, 1000, None));
        }
        capped.ask(t + ms(100), e + 100, 0, true);
        assert_eq!(capped.plan(demand(1, 1, 0, None)).unwrap().limit, 11);
    }

    #[test]
    fn when_all_are_busy_it_claims_one_job_urgent_enough_to_evict_only_on_news() {
        let t0 = Instant::now();
        let mut p = Planner::new(1, 0, t0);
        assert!(p.ask(t0, 0, 1, true));
        assert_eq!(
            p.plan(demand(0, 0, 0, Some(4))),
            Some(Plan {
                limit: 1,
                below: 4,
                now: 1,
                wait: Duration::ZERO
            })
        );
        // Its job and the one claimed to evict it inside, nothing new
        // since: the supervisor is not even asked.
        assert!(!p.ask(t0 + ms(10), 0, 2, true));
        p.news();
        assert!(p.ask(t0 + ms(20), 0, 2, true));
        assert!(p.plan(demand(0, 0, 0, Some(4))).is_some());
        assert!(p.ask(t0 + ms(30), 0, 0, true), "room again: ask");
        assert_eq!(p.plan(demand(0, 0, 0, None)), None);
    }

    #[test]
    fn nothing_is_claimed_while_the_lease_is_in_doubt() {
        let t0 = Instant::now();
        let mut p = Planner::new(4, 100, t0);
        p.news();
        assert!(!p.ask(t0, 0, 0, false));
        assert!(p.ask(t0 + ms(5), 0, 0, true));
    }

    #[test]
    fn a_full_claim_asks_again_at_once() {
        let t0 = Instant::now();
        let mut p = Planner::new(1, 0, t0);
        assert!(p.ask(t0, 0, 0, true));
        p.plan(demand(1, 1, 0, None));
        // Busy now, and nothing new: not asked…
        assert!(!p.ask(t0 + ms(1), 0, 5, true));
        // …unless the last claim was full.
        p.filled();
        assert!(p.ask(t0 + ms(2), 0, 5, true));
    }
}
