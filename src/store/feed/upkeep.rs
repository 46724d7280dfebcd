//! The upkeep of a store-fed supervisor: taking back the jobs of lost
//! supervisors, making due jobs available, firing periodic schedules,
//! passing on cancel requests, writing progress, and pruning old history.
//! (Its heartbeat has a task of its own, `heartbeat.rs`, so that no
//! statement here can delay it.)

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{FeedOptions, Shared};
use crate::store::engine;
use crate::store::{Store, StoreError, Wakeups, CANCEL_CHANNEL};
use crate::Supervisor;

/// How often a supervisor deletes history older than its retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub(super) async fn upkeep_loop(
    store: Store,
    sup: Supervisor,
    shared: Arc<Shared>,
    options: FeedOptions,
) {
    let mut last_prune: Option<Instant> = None;
    let mut wakeups = Wakeups::new(&[CANCEL_CHANNEL]);
    let mut told = Told::default();
    let bound = shared.clock().statement_bound();
    loop {
        // Without the listener, cancels are still seen at the next poll.
        let _ = StoreError::within("listen for cancels", bound, wakeups.connect(&store)).await;
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
        tokio::select! {
            _ = wakeups.next() => {}
            _ = tokio::time::sleep(options.poll) => {}
        }
    }
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
