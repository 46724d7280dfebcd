//! The queue of jobs waiting for a worker, ordered by priority.
//!
//! Priority 0 is the most urgent, 10 the least; within a priority, jobs leave
//! in submission order (job ids increase with submission, so the id is the
//! FIFO sequence). A job put back after an eviction keeps its place because
//! its key is the same `(priority, id)` it had.
//!
//! Every operation is O(log n). Per-priority counts make "how many queued jobs
//! are more urgent than p" O(levels), which eviction needs.

use std::collections::BTreeSet;

use crate::wire::JobId;

/// Number of priority levels: 0..=10.
pub const PRIORITY_LEVELS: usize = 11;

/// The most urgent priority.
pub const MOST_URGENT: u8 = 0;

/// The least urgent priority.
pub const LEAST_URGENT: u8 = (PRIORITY_LEVELS - 1) as u8;

/// Jobs waiting for a worker, most urgent first, FIFO within a priority.
#[derive(Debug, Default)]
pub struct PriorityQueue {
    set: BTreeSet<(u8, JobId)>,
    per_level: [usize; PRIORITY_LEVELS],
}

impl PriorityQueue {
    /// An empty queue.
    pub fn new() -> PriorityQueue {
        PriorityQueue::default()
    }

    /// Add a job (or put one back: its place follows from its id).
    pub fn push(&mut self, priority: u8, job: JobId) {
        debug_assert!((priority as usize) < PRIORITY_LEVELS);
        if self.set.insert((priority, job)) {
            self.per_level[priority as usize] += 1;
        }
    }

    /// Take the most urgent, oldest job.
    pub fn pop(&mut self) -> Option<(u8, JobId)> {
        let first = self.set.pop_first()?;
        self.per_level[first.0 as usize] -= 1;
        Some(first)
    }

    /// The job [`pop`](Self::pop) would take, without taking it.
    pub fn peek(&self) -> Option<(u8, JobId)> {
        self.set.first().copied()
    }

    /// Remove a job; false if it was not queued.
    pub fn remove(&mut self, priority: u8, job: JobId) -> bool {
        let removed = self.set.remove(&(priority, job));
        if removed {
            self.per_level[priority as usize] -= 1;
        }
        removed
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

    /// Number of queued jobs.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Remove and return every queued job, most urgent first.
    pub fn drain(&mut self) -> Vec<(u8, JobId)> {
        self.per_level = [0; PRIORITY_LEVELS];
        std::mem::take(&mut self.set).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_fifo_and_requeue_keeps_place() {
        let mut q = PriorityQueue::new();
        q.push(5, 1);
        q.push(0, 2);
        q.push(5, 3);
        q.push(10, 4);
        q.push(5, 5);
        assert_eq!(q.count_more_urgent_than(5), 1);
        assert_eq!(q.pop(), Some((0, 2)));
        assert_eq!(q.pop(), Some((5, 1)));
        assert_eq!(q.pop(), Some((5, 3)));
        // 1 and 3 come back (evicted): they go before 5, in their old order.
        q.push(5, 3);
        q.push(5, 1);
        assert_eq!(q.pop(), Some((5, 1)));
        assert_eq!(q.pop(), Some((5, 3)));
        assert!(q.remove(10, 4));
        assert!(!q.remove(10, 4));
        assert_eq!(q.pop(), Some((5, 5)));
        assert_eq!(q.pop(), None);
        assert_eq!(q.per_level(), [0; PRIORITY_LEVELS]);
    }
}
