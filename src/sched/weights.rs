//! A weighted set with O(log n) insert, remove and weighted draw: an 8-ary
//! sum tree over slots.
//!
//! Each internal node holds the sums of eight children, which share one
//! 64-byte cache line, so a walk from the root to a slot touches about
//! log8(n) lines (5 for 32,768 slots) rather than the ~15 scattered nodes of
//! a binary (Fenwick) tree. Weights are integers (the caller converts to
//! fixed point), so sums are exact and never drift. Freed slots are reused;
//! the tree doubles when full (amortised O(1)).

/// Children per node.
const FANOUT: usize = 8;

/// A weighted set of `u64` items (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct WeightTree {
    /// `levels[0]`: the weight of each slot (0 = free); `levels[k + 1][i]`:
    /// the sum of `levels[k][8i .. 8i + 8]`. The last level has one node.
    levels: Vec<Vec<u64>>,
    /// Item per slot ([`FREE`] when the slot is free).
    items: Vec<u64>,
    free: Vec<u32>,
    len: usize,
}

/// Where an item sits in a [`WeightTree`].
pub type Slot = u32;

/// Marks a free slot (so the value itself is not a storable item).
const FREE: u64 = u64::MAX;

impl WeightTree {
    /// An empty set.
    pub fn new() -> WeightTree {
        WeightTree::default()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of all weights.
    pub fn total(&self) -> u64 {
        self.levels.last().map_or(0, |root| root[0])
    }

    /// Add `item` (not `u64::MAX`) with `weight` (> 0); returns its slot.
    pub fn insert(&mut self, item: u64, weight: u64) -> Slot {
        debug_assert!(weight > 0 && item != FREE);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.items.len() == self.levels.first().map_or(0, Vec::len) {
                    self.grow();
                }
                self.items.push(FREE);
                (self.items.len() - 1) as Slot
            }
        };
        self.items[slot as usize] = item;
        self.add(slot as usize, weight as i128);
        self.len += 1;
        slot
    }

    /// Remove the item in `slot`; returns it and its weight (None if the
    /// slot is free).
    pub fn remove(&mut self, slot: Slot) -> Option<(u64, u64)> {
        let item = self.get(slot)?;
        let w = self.levels[0][slot as usize];
        self.items[slot as usize] = FREE;
        self.add(slot as usize, -(w as i128));
        self.len -= 1;
        self.free.push(slot);
        Some((item, w))
    }

    /// The item in `slot`, if it is live.
    pub fn get(&self, slot: Slot) -> Option<u64> {
        self.items
            .get(slot as usize)
            .copied()
            .filter(|&i| i != FREE)
    }

    /// The live items, in slot order.
    pub fn items(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().copied().filter(|&i| i != FREE)
    }

    /// The item in the highest live slot, if any.
    pub fn last(&self) -> Option<u64> {
        self.items.iter().rev().copied().find(|&i| i != FREE)
    }

    /// The slot whose cumulative weight range contains `r` (`r < total`):
    /// with `r` uniform in `0..total`, each item is found with probability
    /// weight / total.
    pub fn find(&self, mut r: u64) -> Option<(Slot, u64)> {
        if r >= self.total() {
            return None;
        }
        let mut node = 0usize;
        for level in self.levels[..self.levels.len() - 1].iter().rev() {
            let first = node * FANOUT;
            let last = (first + FANOUT).min(level.len());
            node = last - 1;
            for (i, &sum) in level[first..last].iter().enumerate() {
                if r < sum {
                    node = first + i;
                    break;
                }
                r -= sum;
            }
        }
        Some((node as Slot, self.items[node]))
    }

    fn add(&mut self, slot: usize, delta: i128) {
        let mut i = slot;
        for level in &mut self.levels {
            level[i] = (level[i] as i128 + delta) as u64;
            i /= FANOUT;
        }
    }

    /// Double the capacity and rebuild the sums (O(n)).
    fn grow(&mut self) {
        let mut weights = std::mem::take(&mut self.levels)
            .into_iter()
            .next()
            .unwrap_or_default();
        let cap = (weights.len() * 2).max(FANOUT * FANOUT);
        weights.resize(cap, 0);
        let mut levels = vec![weights];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().expect("a level");
            let sums: Vec<u64> = below.chunks(FANOUT).map(|c| c.iter().sum()).collect();
            levels.push(sums);
        }
        self.levels = levels;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_walks_cumulative_weights() {
        let mut t = WeightTree::new();
        let a = t.insert(10, 1);
        let b = t.insert(20, 3);
        let c = t.insert(30, 6);
        assert_eq!(t.total(), 10);
        let found: Vec<u64> = (0..10).map(|r| t.find(r).unwrap().1).collect();
        assert_eq!(found, vec![10, 20, 20, 20, 30, 30, 30, 30, 30, 30]);
        assert_eq!(t.find(10), None);
        assert_eq!(t.remove(b), Some((20, 3)));
        assert_eq!(t.remove(b), None);
        let found: Vec<u64> = (0..7).map(|r| t.find(r).unwrap().1).collect();
        assert_eq!(found, vec![10, 30, 30, 30, 30, 30, 30]);
        // The freed slot is reused.
        assert_eq!(t.insert(40, 2), b);
        assert_eq!((t.len(), t.total()), (3, 9));
        let _ = (a, c);
    }

    #[test]
    fn survives_growth_and_churn() {
        let mut t = WeightTree::new();
        let mut slots = Vec::new();
        for i in 0..1000u64 {
            slots.push(t.insert(i, i % 7 + 1));
        }
        for (i, s) in slots.iter().enumerate() {
            if i % 3 == 0 {
                t.remove(*s);
            }
        }
        let expect: u64 = (0..1000u64).filter(|i| i % 3 != 0).map(|i| i % 7 + 1).sum();
        assert_eq!(t.total(), expect);
        // Every r maps to a live item, and item i covers exactly its weight.
        let mut hits = std::collections::HashMap::new();
        for r in 0..t.total() {
            *hits.entry(t.find(r).unwrap().1).or_insert(0u64) += 1;
        }
        for (item, n) in hits {
            assert_ne!(item % 3, 0);
            assert_eq!(n, item % 7 + 1);
        }
    }
}
