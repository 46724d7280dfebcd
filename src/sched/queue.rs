//! The queue of jobs waiting for a worker, and the selection policies.
//!
//! Jobs are kept in buckets, one per (kind, priority). Under the priority
//! policy a bucket keeps its jobs in submission order (job ids increase with
//! submission, so the id is the FIFO sequence; a job put back after an
//! eviction keeps its place); under the random policies, in a [`WeightTree`]
//! for O(log n) weighted draws. Selection takes a filter on kinds, so that kinds that may not
//! start now (concurrency limit, rate limit, exclusion window) are skipped
//! without scanning their jobs.
//!
//! | policy | next job |
//! |---|---|
//! | [`Policy::Priority`] | most urgent priority (0), oldest first |
//! | [`Policy::WeightedRandom`] | drawn with probability weight / total weight |
//! | [`Policy::Uniform`] | drawn with equal probability |
//! | [`Policy::PriorityWeighted`] | drawn by weight among the most urgent non-empty priority |
//!
//! Every operation is O(log n) in the number of queued jobs, times the number
//! of kinds for the selection (kinds are few).

use std::collections::BTreeSet;

use rand::{Rng, RngExt};

use super::weights::{Slot, WeightTree};
use crate::wire::JobId;

/// Number of priority levels: 0..=10.
pub const PRIORITY_LEVELS: usize = 11;

/// The most urgent priority.
pub const MOST_URGENT: u8 = 0;

/// The least urgent priority.
pub const LEAST_URGENT: u8 = (PRIORITY_LEVELS - 1) as u8;

/// A job kind, interned by the core.
pub type KindId = u32;

/// How the next job is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Most urgent first (0 before 10), FIFO within a priority.
    #[default]
    Priority,
    /// Each job drawn with probability weight / total weight.
    WeightedRandom,
    /// Every queued job equally likely.
    Uniform,
    /// By weight among the jobs of the most urgent non-empty priority.
    PriorityWeighted,
}

impl Policy {
    fn random(self) -> bool {
        self != Policy::Priority
    }
}

/// Where a job sits in the queue (kept by the core, given back to remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueKey {
    kind: KindId,
    level: u8,
    slot: Slot,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Priority policy: jobs in FIFO order.
    fifo: BTreeSet<JobId>,
    /// Random policies: jobs by weight.
    tree: WeightTree,
}

impl Bucket {
    fn len(&self) -> usize {
        self.fifo.len() + self.tree.len()
    }
}

/// Jobs waiting for a worker (see the module docs).
#[derive(Debug)]
pub struct Queue {
    policy: Policy,
    /// Buckets by kind, then priority.
    kinds: Vec<Vec<Bucket>>,
    per_level: [usize; PRIORITY_LEVELS],
    per_kind: Vec<usize>,
    /// Random policies: total weight queued per kind.
    kind_weight: Vec<u64>,
    len: usize,
}

impl Queue {
    /// An empty queue with `policy`.
    pub fn new(policy: Policy) -> Queue {
        Queue {
            policy,
            kinds: Vec::new(),
            per_level: [0; PRIORITY_LEVELS],
            per_kind: Vec::new(),
            kind_weight: Vec::new(),
            len: 0,
        }
    }

    /// The selection policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn bucket(&mut self, kind: KindId, level: u8) -> &mut Bucket {
        let k = kind as usize;
        if self.kinds.len() <= k {
            self.kinds.resize_with(k + 1, || {
                (0..PRIORITY_LEVELS).map(|_| Bucket::default()).collect()
            });
            self.per_kind.resize(k + 1, 0);
            self.kind_weight.resize(k + 1, 0);
        }
        &mut self.kinds[k][level as usize]
    }

    /// Add a job (or put one back: its place in FIFO order follows from its
    /// id). `weight` is in fixed point and at least 1; `Uniform` ignores it.
    pub fn push(&mut self, job: JobId, kind: KindId, level: u8, weight: u64) -> QueueKey {
        let level = level.min(LEAST_URGENT);
        let policy = self.policy;
        let b = self.bucket(kind, level);
        let slot = if policy.random() {
            let w = if policy == Policy::Uniform {
                1
            } else {
                weight.max(1)
            };
            let slot = b.tree.insert(job, w);
            self.kind_weight[kind as usize] += w;
            slot
        } else {
            b.fifo.insert(job);
            Slot::MAX
        };
        self.per_level[level as usize] += 1;
        self.per_kind[kind as usize] += 1;
        self.len += 1;
        QueueKey { kind, level, slot }
    }

    /// Remove a job; false if it was not queued under `key`.
    pub fn remove(&mut self, key: QueueKey, job: JobId) -> bool {
        let Some(b) = self
            .kinds
            .get_mut(key.kind as usize)
            .map(|levels| &mut levels[key.level as usize])
        else {
            return false;
        };
        let removed = if key.slot == Slot::MAX {
            b.fifo.remove(&job)
        } else if b.tree.get(key.slot) == Some(job) {
            let (_, w) = b.tree.remove(key.slot).expect("live slot");
            self.kind_weight[key.kind as usize] -= w;
            true
        } else {
            false
        };
        if !removed {
            return false;
        }
        self.per_level[key.level as usize] -= 1;
        self.per_kind[key.kind as usize] -= 1;
        self.len -= 1;
        true
    }

    /// Choose and remove the next job among the kinds `eligible` accepts.
    pub fn pop<R: Rng + ?Sized>(
        &mut self,
        eligible: &dyn Fn(KindId) -> bool,
        rng: &mut R,
    ) -> Option<(JobId, KindId)> {
        let (kind, level, pick) = match self.policy {
            Policy::Priority => {
                let (kind, level, job) = self.oldest_most_urgent(eligible)?;
                (kind, level, Pick::Fifo(job))
            }
            Policy::WeightedRandom | Policy::Uniform => self.draw(eligible, None, rng)?,
            Policy::PriorityWeighted => {
                let level = self.best_level(eligible)?;
                self.draw(eligible, Some(level), rng)?
            }
        };
        let b = &mut self.kinds[kind as usize][level as usize];
        let job = match pick {
            Pick::Fifo(job) => {
                b.fifo.remove(&job);
                job
            }
            Pick::Slot(slot) => {
                let (job, w) = b.tree.remove(slot)?;
                self.kind_weight[kind as usize] -= w;
                job
            }
        };
        self.per_level[level as usize] -= 1;
        self.per_kind[kind as usize] -= 1;
        self.len -= 1;
        Some((job, kind))
    }

    fn oldest_most_urgent(&self, eligible: &dyn Fn(KindId) -> bool) -> Option<(KindId, u8, JobId)> {
        let mut best: Option<(u8, JobId, KindId)> = None;
        for (k, levels) in self.kinds.iter().enumerate() {
            if self.per_kind[k] == 0 || !eligible(k as KindId) {
                continue;
            }
            for (level, b) in levels.iter().enumerate() {
                if let Some(&job) = b.fifo.first() {
                    let cand = (level as u8, job, k as KindId);
                    if best.is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                        best = Some(cand);
                    }
                    break;
                }
            }
        }
        best.map(|(level, job, kind)| (kind, level, job))
    }

    /// The most urgent priority among queued jobs of eligible kinds.
    pub fn best_level(&self, eligible: &dyn Fn(KindId) -> bool) -> Option<u8> {
        (0..PRIORITY_LEVELS).find_map(|level| {
            if self.per_level[level] == 0 {
                return None;
            }
            let any = self
                .kinds
                .iter()
                .enumerate()
                .any(|(k, levels)| levels[level].len() > 0 && eligible(k as KindId));
            any.then_some(level as u8)
        })
    }

    /// Draw a slot by weight among eligible buckets (of one level, or all):
    /// first a kind by its total weight, then a level, then a slot.
    fn draw<R: Rng + ?Sized>(
        &self,
        eligible: &dyn Fn(KindId) -> bool,
        only_level: Option<u8>,
        rng: &mut R,
    ) -> Option<(KindId, u8, Pick)> {
        let levels = match only_level {
            Some(l) => l as usize..l as usize + 1,
            None => 0..PRIORITY_LEVELS,
        };
        let weight_of = |k: usize| -> u64 {
            if self.per_kind[k] == 0 || !eligible(k as KindId) {
                return 0;
            }
            match only_level {
                None => self.kind_weight[k],
                Some(l) => self.kinds[k][l as usize].tree.total(),
            }
        };
        let total: u64 = (0..self.kinds.len()).map(weight_of).sum();
        if total == 0 {
            return None;
        }
        let mut r = rng.random_range(0..total);
        for k in 0..self.kinds.len() {
            let t = weight_of(k);
            if r >= t {
                r -= t;
                continue;
            }
            for l in levels.clone() {
                let b = &self.kinds[k][l].tree;
                if r < b.total() {
                    let (slot, _) = b.find(r)?;
                    return Some((k as KindId, l as u8, Pick::Slot(slot)));
                }
                r -= b.total();
            }
            return None;
        }
        None
    }

    /// The least urgent queued job (the one to push out when a bounded
    /// queue is full): of the least urgent priority, the newest under the
    /// priority policy, any one under the random policies.
    pub fn least_urgent(&self) -> Option<(JobId, u8)> {
        let level = (0..PRIORITY_LEVELS)
            .rev()
            .find(|&l| self.per_level[l] > 0)?;
        self.kinds
            .iter()
            .filter_map(|levels| {
                let b = &levels[level];
                b.fifo.last().copied().or_else(|| b.tree.last())
            })
            .max()
            .map(|job| (job, level as u8))
    }

    /// How many queued jobs are strictly more urgent than `priority`.
    pub fn count_more_urgent_than(&self, priority: u8) -> usize {
        self.per_level[..(priority as usize).min(PRIORITY_LEVELS)]
            .iter()
            .sum()
    }

    /// Queued jobs per priority level.
    pub fn per_level(&self) -> [usize; PRIORITY_LEVELS] {
        self.per_level
    }

    /// Queued jobs of `kind`.
    pub fn len_of(&self, kind: KindId) -> usize {
        self.per_kind.get(kind as usize).copied().unwrap_or(0)
    }

    /// Kinds with queued jobs.
    pub fn waiting_kinds(&self) -> impl Iterator<Item = KindId> + '_ {
        self.per_kind
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(k, _)| k as KindId)
    }

    /// Number of queued jobs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Remove and return every queued job, most urgent first.
    pub fn drain(&mut self) -> Vec<JobId> {
        let mut all: Vec<(usize, JobId)> = Vec::with_capacity(self.len);
        for levels in &mut self.kinds {
            for (l, b) in levels.iter_mut().enumerate() {
                all.extend(std::mem::take(&mut b.fifo).into_iter().map(|j| (l, j)));
                all.extend(std::mem::take(&mut b.tree).items().map(|j| (l, j)));
            }
        }
        self.per_level = [0; PRIORITY_LEVELS];
        self.per_kind.iter_mut().for_each(|n| *n = 0);
        self.kind_weight.iter_mut().for_each(|w| *w = 0);
        self.len = 0;
        all.sort_unstable();
        all.into_iter().map(|(_, j)| j).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Pick {
    Fifo(JobId),
    Slot(Slot),
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn any(_: KindId) -> bool {
        true
    }

    #[test]
    fn priority_then_fifo_and_requeue_keeps_place() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut q = Queue::new(Policy::Priority);
        q.push(1, 0, 5, 1);
        q.push(2, 1, 0, 1);
        q.push(3, 0, 5, 1);
        let k4 = q.push(4, 1, 10, 1);
        q.push(5, 1, 5, 1);
        assert_eq!(q.count_more_urgent_than(5), 1);
        assert_eq!(q.least_urgent(), Some((4, 10)));
        assert_eq!(q.pop(&any, &mut rng), Some((2, 1)));
        assert_eq!(q.pop(&any, &mut rng), Some((1, 0)));
        assert_eq!(q.pop(&any, &mut rng), Some((3, 0)));
        // 1 and 3 come back (evicted): they go before 5, in their old order.
        q.push(3, 0, 5, 1);
        q.push(1, 0, 5, 1);
        assert_eq!(q.pop(&any, &mut rng), Some((1, 0)));
        // A filter skips a kind without losing its jobs.
        assert_eq!(q.pop(&|k| k == 1, &mut rng), Some((5, 1)));
        assert!(q.remove(k4, 4));
        assert!(!q.remove(k4, 4));
        assert_eq!(q.pop(&any, &mut rng), Some((3, 0)));
        assert_eq!(q.pop(&any, &mut rng), None);
        assert_eq!(q.per_level(), [0; PRIORITY_LEVELS]);
    }

    #[test]
    fn priority_weighted_draws_only_from_the_most_urgent_level() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut q = Queue::new(Policy::PriorityWeighted);
        for i in 0..10 {
            q.push(i, (i % 3) as KindId, 4, 1 + i);
        }
        for i in 10..20 {
            q.push(i, 0, 2, 1);
        }
        for _ in 0..10 {
            let (job, _) = q.pop(&any, &mut rng).unwrap();
            assert!(
                (10..20).contains(&job),
                "drew {job} from a less urgent level"
            );
        }
        let (job, _) = q.pop(&any, &mut rng).unwrap();
        assert!(job < 10);
    }

    #[test]
    fn drain_returns_everything_most_urgent_first() {
        let mut q = Queue::new(Policy::WeightedRandom);
        q.push(1, 0, 9, 5);
        q.push(2, 1, 0, 5);
        q.push(3, 0, 9, 5);
        assert_eq!(q.drain(), vec![2, 1, 3]);
        assert!(q.is_empty());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(q.pop(&any, &mut rng), None);
    }
}
