//! The upkeep of a store-fed supervisor: its heartbeat, taking back the
//! jobs of lost supervisors, making due jobs available, firing periodic
//! schedules, passing on cancel requests, and pruning old history.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reconcile::Reconcile;
use super::{FeedOptions, Shared};
use crate::store::engine::{self, Exit};
use crate::store::{Store, StoreError, Wakeups, CANCEL_CHANNEL};
use crate::Supervisor;

/// How often a supervisor deletes history older than its retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Why a supervisor whose lease lapsed stops its jobs.
const LAPSED: &str = "its lease lapsed (no heartbeat reached the database within the lease), so another supervisor may be running its jobs";
/// Why a supervisor declared lost stops its jobs.
const DECLARED_LOST: &str =
    "it was declared lost (no heartbeat within its lease) and its jobs were taken over";

pub(super) async fn upkeep_loop(
    store: Store,
    sup: Supervisor,
    shared: Arc<Shared>,
    options: FeedOptions,
    workers: usize,
) {
    let mut last_prune: Option<Instant> = None;
    let mut wakeups = Wakeups::new(&[CANCEL_CHANNEL]);
    let mut told = Told::default();
    let mut reconcile = Reconcile::default();
    let (bound, every) = {
        let c = shared.clock();
        (c.statement_bound(), c.beat_every())
    };
    loop {
        // First of all, before any statement that may wait on the network:
        // a supervisor woken from a long pause fences itself at once.
        lapse_check(&sup, &shared);
        // Without the listener, cancels are still seen at the next poll.
        let _ = StoreError::within("listen for cancels", bound, wakeups.connect(&store)).await;
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
                    shared.error();
                    tracing::warn!("heartbeat failed (retrying): {e}");
                }
            }
            lapse_check(&sup, &shared);
        }
        let work = upkeep(&store, &sup, &shared, &options);
        if let Err(e) = StoreError::within("keep up the job queue", bound, work).await {
            shared.error();
            tracing::warn!("store upkeep failed (retrying): {e}");
        }
        let progress = write_progress(&store, &sup, &shared, &mut told);
        if let Err(e) = StoreError::within("write running jobs' progress", bound, progress).await {
            shared.error();
            tracing::warn!("cannot write running jobs' progress (retrying): {e}");
        }
        if let Some(keep) = options.retention {
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                match StoreError::within("delete old history", bound, store.prune(keep)).await {
                    Ok(p) if p.events > 0 || p.supervisors > 0 => tracing::info!(
                        events = p.events,
                        supervisors = p.supervisors,
                        "deleted history older than the retention"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        shared.error();
                        tracing::warn!("cannot delete old history (retrying): {e}");
                    }
                }
            }
        }
        let lapse = shared.clock().lapses_at();
        let until_lapse = lapse.saturating_duration_since(Instant::now());
        let nap = options.poll.min(every);
        tokio::select! {
            _ = wakeups.next() => {}
            _ = tokio::time::sleep(nap) => {}
            _ = tokio::time::sleep(until_lapse), if !until_lapse.is_zero() => {}
        }
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

async fn upkeep(
    store: &Store,
    sup: &Supervisor,
    shared: &Shared,
    options: &FeedOptions,
) -> Result<(), StoreError> {
    let mut client = store.client().await?;
    let me = shared.me.load(Ordering::Acquire);
    let reclaimed = engine::reclaim(&mut client, options.max_reclaims).await?;
    if reclaimed > 0 {
        shared.reclaimed.fetch_add(reclaimed, Ordering::Relaxed);
        shared.meters.reclaimed(reclaimed);
        tracing::info!(jobs = reclaimed, "reclaimed the jobs of lost supervisors");
    }
    engine::promote(&client).await?;
    for f in crate::store::schedules::fire_due(&**client, std::time::SystemTime::now()).await? {
        tracing::info!(
            schedule = f.schedule,
            job = f.job,
            "enqueued a periodic job's fire"
        );
    }
    let asked = engine::cancels(&client, me).await?;
    if !asked.is_empty() {
        let mut held = shared.held();
        for (id, lease) in asked {
            if let Some(c) = held.values_mut().find(|c| c.id == id && c.lease == lease) {
                c.cancel_requested = true;
                if let Some(local) = c.local {
                    sup.cancel(local);
                }
            }
        }
    }
    Ok(())
}

/// The progress last written, by store job id.
type Told = std::collections::HashMap<i64, (f32, String)>;

/// The longest progress note written to the store, in characters.
const MAX_NOTE: usize = 500;

/// Write the running jobs' progress that changed since the last time.
async fn write_progress(
    store: &Store,
    sup: &Supervisor,
    shared: &Shared,
    told: &mut Told,
) -> Result<(), StoreError> {
    let Some(snap) = sup.snapshot().await else {
        return Ok(());
    };
    let running: Vec<(crate::JobId, (f32, String))> = snap
        .workers
        .into_iter()
        .filter_map(|w| {
            let r = w.running?;
            let (f, note) = r.progress?;
            f.is_finite().then(|| {
                (
                    r.id,
                    (f.clamp(0.0, 1.0), note.chars().take(MAX_NOTE).collect()),
                )
            })
        })
        .collect();
    let mut changed = Vec::new();
    {
        let held = shared.held();
        for (local, p) in running {
            if let Some(c) = held.values().find(|c| c.local == Some(local)) {
                if told.get(&c.id) != Some(&p) {
                    changed.push((c.id, c.lease, p));
                }
            }
        }
        told.retain(|id, _| held.values().any(|c| c.id == *id));
    }
    if changed.is_empty() {
        return Ok(());
    }
    engine::progress(&store.client().await?, &changed).await?;
    for (id, _, p) in changed {
        told.insert(id, p);
    }
    Ok(())
}
