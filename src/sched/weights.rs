//! A weighted set with O(log n) insert, remove and weighted draw: a Fenwick
//! (binary indexed) tree over slots.
//!
//! Weights are integers (the caller converts to fixed point), so sums are
//! exact and never drift however many inserts and removals pass. Freed slots
//! are reused; the tree doubles when full (amortised O(1)).

/// A weighted set of `u64` items (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct WeightTree {
    /// Fenwick tree, 1-based: `tree[i]` sums a range of weights ending at i.
    tree: Vec<u64>,
    /// Item per slot ([`FREE`] when the slot is free).
    items: Vec<u64>,
    free: Vec<u32>,
    total: u64,
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
        self.total
    }

    /// Add `item` (not `u64::MAX`) with `weight` (> 0); returns its slot.
    pub fn insert(&mut self, item: u64, weight: u64) -> Slot {
        debug_assert!(weight > 0 && item != FREE);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                if self.items.len() + 1 >= self.tree.len() {
                    self.grow();
                }
                self.items.push(FREE);
                (self.items.len() - 1) as Slot
            }
        };
        self.items[slot as usize] = item;
        self.add(slot as usize, weight as i128);
        self.total += weight;
        self.len += 1;
        slot
    }

    /// Remove the item in `slot`; returns it and its weight (None if the
    /// slot is free).
    pub fn remove(&mut self, slot: Slot) -> Option<(u64, u64)> {
        let item = self.get(slot)?;
        let w = self.weight_at(slot as usize);
        self.items[slot as usize] = FREE;
        self.add(slot as usize, -(w as i128));
        self.total -= w;
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
        if r >= self.total {
            return None;
        }
        let n = self.tree.len() - 1;
        let mut pos = 0usize;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step >>= 1;
        }
        // `pos` is the longest prefix whose sum is <= r: the answer is the
        // next element, slot `pos` (0-based).
        let slot = pos as Slot;
        Some((slot, self.items[slot as usize]))
    }

    /// The weight of one slot, from the tree: its node minus its children.
    fn weight_at(&self, slot: usize) -> u64 {
        let i = slot + 1;
        let mut w = self.tree[i];
        let mut child = i - 1;
        let stop = i - (i & i.wrapping_neg());
        while child > stop {
            w -= self.tree[child];
            child -= child & child.wrapping_neg();
        }
        w
    }

    fn add(&mut self, slot: usize, delta: i128) {
        let mut i = slot + 1;
        while i < self.tree.len() {
            self.tree[i] = (self.tree[i] as i128 + delta) as u64;
            i += i & i.wrapping_neg();
        }
    }

    /// Double the capacity and rebuild the tree (O(n)).
    fn grow(&mut self) {
        let old = self.tree.len().saturating_sub(1);
        // Recover the single weights from the old tree, then build anew.
        let weights: Vec<u64> = (0..self.items.len()).map(|s| self.weight_at(s)).collect();
        let cap = (old * 2).max(16);
        let mut tree = vec![0u64; cap + 1];
        for (i, w) in weights.into_iter().enumerate() {
            tree[i + 1] += w;
        }
        for i in 1..=cap {
            let parent = i + (i & i.wrapping_neg());
            if parent <= cap {
                tree[parent] += tree[i];
            }
        }
        self.tree = tree;
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
