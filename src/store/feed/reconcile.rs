//! Reconciling what the table says a supervisor runs with what it knows it
//! holds, sans IO (time is passed in).
//!
//! A claim can commit in the database while its answer never reaches the
//! supervisor (the connection broke, the statement timed out): the table
//! then shows rows `running` under a live, heartbeating supervisor that
//! does not know them, and a job without a timeout would never be taken
//! back. Each heartbeat returns the rows the table says this supervisor
//! runs; a row it does not know (by id and lease) is a *stray* once it was
//! seen unknown at two heartbeats at least `settle` apart, longer than any
//! claim may take to answer or give up. A row seen only once may belong to
//! a claim whose answer is on its way, or to an ending just written.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Rows seen running under this supervisor that it does not know.
#[derive(Debug, Default)]
pub(crate) struct Reconcile {
    /// Each unknown row (id, lease), and when it was first seen unknown.
    unknown: HashMap<(i64, i64), Instant>,
}

impl Reconcile {
    /// A heartbeat at `now` said the table runs `table` under this
    /// supervisor; `known` tells whether the supervisor knows a row (holds
    /// it, or is writing its ending). Returns the strays to give back.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        settle: Duration,
        table: &[(i64, i64)],
        known: impl Fn(i64, i64) -> bool,
    ) -> Vec<(i64, i64)> {
        let mut seen = HashMap::with_capacity(self.unknown.len());
        let mut strays = Vec::new();
        for &(id, lease) in table {
            if known(id, lease) {
                continue;
            }
            let first = self.unknown.get(&(id, lease)).copied().unwrap_or(now);
            if now.saturating_duration_since(first) >= settle {
                strays.push((id, lease));
            } else {
                seen.insert((id, lease), first);
            }
        }
        self.unknown = seen;
        strays
    }

    /// Forget everything (the supervisor registered anew).
    pub(crate) fn reset(&mut self) {
        self.unknown.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(2);

    #[test]
    fn a_row_unknown_at_two_heartbeats_a_settle_apart_is_a_stray() {
        let t0 = Instant::now();
        let mut r = Reconcile::default();
        let table = [(1, 1), (2, 5)];
        let known = |id, _| id == 1;
        assert!(r.observe(t0, SETTLE, &table, known).is_empty());
        let soon = t0 + Duration::from_secs(1);
        assert!(
            r.observe(soon, SETTLE, &table, known).is_empty(),
            "too soon"
        );
        let later = t0 + SETTLE;
        assert_eq!(r.observe(later, SETTLE, &table, known), vec![(2, 5)]);
        // Once given back it starts over, if it is seen again.
        assert!(r.observe(later, SETTLE, &table, known).is_empty());
    }

    #[test]
    fn a_row_that_became_known_or_left_is_forgotten() {
        let t0 = Instant::now();
        let mut r = Reconcile::default();
        assert!(r.observe(t0, SETTLE, &[(2, 5)], |_, _| false).is_empty());
        // The claim's answer arrived: known now.
        let t1 = t0 + SETTLE;
        assert!(r.observe(t1, SETTLE, &[(2, 5)], |_, _| true).is_empty());
        // Unknown again later (its ending is being written): a fresh start.
        let t2 = t1 + SETTLE;
        assert!(r.observe(t2, SETTLE, &[(2, 5)], |_, _| false).is_empty());
        // Left the table, then came back under a new lease.
        let t3 = t2 + SETTLE;
        assert!(r.observe(t3, SETTLE, &[], |_, _| false).is_empty());
        assert!(r.observe(t3, SETTLE, &[(2, 6)], |_, _| false).is_empty());
    }

    #[test]
    fn reset_forgets_what_was_seen() {
        let t0 = Instant::now();
        let mut r = Reconcile::default();
        r.observe(t0, SETTLE, &[(3, 1)], |_, _| false);
        r.reset();
        assert!(r
            .observe(t0 + SETTLE, SETTLE, &[(3, 1)], |_, _| false)
            .is_empty());
    }
}
