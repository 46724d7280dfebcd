//! The heartbeat of a store-fed supervisor, a task of its own: it carries
//! out what the lease clock (`clock.rs`) says — heartbeat when due, hold
//! starts, fence at a lapse, register again when declared lost — and gives
//! back the rows the table says it runs that it does not know (see
//! `reconcile.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::reconcile::Reconcile;
use super::{FeedOptions, Shared};
use crate::store::engine::{self, Exit};
use crate::store::{Store, StoreError};
use crate::Supervisor;

/// Why a supervisor whose lease lapsed stops its jobs.
const LAPSED: &str = "its lease lapsed (no heartbeat reached the database within the lease), so another supervisor may be running its jobs";
/// Why a supervisor declared lost stops its jobs.
const DECLARED_LOST: &str =
    "it was declared lost (no heartbeat within its lease) and its jobs were taken over";

pub(super) async fn beat_loop(
    store: Store,
    sup: Supervisor,
    shared: std::sync::Arc<Shared>,
    options: FeedOptions,
    workers: usize,
) {
    let mut reconcile = Reconcile::default();
    let bound = shared.clock().statement_bound();
    loop {
        // First of all, before any statement that may wait on the network:
        // a supervisor woken from a long pause fences itself at once.
        lapse_check(&sup, &shared);
        if shared.clock().beat_due(Instant::now()) {
            match beat(&store, &sup, &shared, &options, workers, bound).await {
                Ok(Some(running)) => {
                    let strays = {
                        let known = shared.knows(&running);
                        // Settled past any claim's bound: no claim whose
                        // answer is on its way can be among them.
                        reconcile.observe(Instant::now(), bound * 2, &running, |id, lease| {
                            known.contains(&(id, lease))
                        })
                    };
                    if !strays.is_empty() {
                        let back = give_back_strays(&store, &shared, &strays, bound).await;
                        if let Err(e) = back {
                            shared.error();
                            tracing::warn!(
                                "cannot give back jobs it did not know it held (retrying): {e}"
                            );
                        }
                    }
                }
                Ok(None) => reconcile.reset(),
                Err(e) => {
                    shared.clock().beat_failed();
                    shared.error();
                    tracing::warn!("heartbeat failed (retrying soon): {e}");
                }
            }
            lapse_check(&sup, &shared);
        }
        let wake = {
            let c = shared.clock();
            c.next_beat().min(c.lapses_at())
        };
        let nap = wake.saturating_duration_since(Instant::now());
        tokio::time::sleep(nap.max(Duration::from_millis(10))).await;
    }
}

/// Fence this supervisor if its lease lapsed: stop every job it holds.
fn lapse_check(sup: &Supervisor, shared: &Shared) {
    if shared.clock().must_fence(Instant::now()) {
        let n = shared.fence(sup, LAPSED);
        tracing::error!(
            jobs = n,
            "no heartbeat reached the database within the lease: stopped every job this supervisor held, and starts none until a heartbeat succeeds"
        );
    }
}

/// One heartbeat, each statement bounded by `bound`. On success the
/// supervisor may start jobs for two thirds of a lease more, and the rows
/// the table says it runs come back; if it was declared lost, it stops
/// every job of the old registration and registers again (`None`).
async fn beat(
    store: &Store,
    sup: &Supervisor,
    shared: &Shared,
    options: &FeedOptions,
    workers: usize,
    bound: Duration,
) -> Result<Option<Vec<(i64, i64)>>, StoreError> {
    let sent = Instant::now();
    shared.clock().beat_sent(sent);
    let me = shared.me.load(Ordering::Acquire);
    let beat = StoreError::within("heartbeat", bound, async {
        let client = store.client().await?;
        engine::heartbeat(&client, me).await
    })
    .await?;
    if beat.alive {
        shared.renewed(sup, |c| c.confirmed(sent));
        return Ok(Some(beat.running));
    }
    let n = shared.fence(sup, DECLARED_LOST);
    let sent = Instant::now();
    let again = StoreError::within("register this supervisor again", bound, async {
        let client = store.client().await?;
        engine::register(&client, &options.queues, workers, options.lease).await
    })
    .await?;
    tracing::error!(
        old = me,
        new = again,
        jobs = n,
        "this supervisor was declared lost (no heartbeat within its lease): it stopped the jobs it held, which were taken over, and registered again"
    );
    shared.me.store(again, Ordering::Release);
    shared.renewed(sup, |c| c.registered(sent));
    Ok(None)
}

/// Why a job the supervisor did not know it held goes back.
const STRAY: &str = "the table showed it running under this supervisor, which did not know it held it (the answer to the claim that took it was lost); it is queued again";

/// Give back `strays`, rows the table says this supervisor runs that it
/// does not know it holds.
async fn give_back_strays(
    store: &Store,
    shared: &Shared,
    strays: &[(i64, i64)],
    bound: Duration,
) -> Result<(), StoreError> {
    let exit = Exit::released(STRAY.into(), None);
    let exits: Vec<(i64, i64, &Exit)> = strays.iter().map(|&(i, l)| (i, l, &exit)).collect();
    let n = StoreError::within("give back unknown jobs", bound, async {
        engine::leave(&store.client().await?, &exits).await
    })
    .await?;
    tracing::warn!(
        jobs = n,
        "gave back jobs the table said this supervisor ran but it did not know it held (a claim's answer was lost)"
    );
    shared.wake.notify_one();
    Ok(())
}
