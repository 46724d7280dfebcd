//! The writer of a store-fed supervisor: it gathers the endings of jobs
//! as the supervisor reports them and writes them back in batches, each
//! under its job's lease, retrying a batch until it is written.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::endings::{decide, Claimed};
use super::{Ending, Shared};
use crate::store::engine::{self, Exit};
use crate::store::{Store, StoreError};

/// A job that started in a worker: its id and lease.
type Started = (i64, i64);

/// `grace`: how long past its timeout a started job's deadline in the
/// table lies.
pub(super) async fn write_loop(
    store: Store,
    shared: Arc<Shared>,
    max_batch: usize,
    grace: Duration,
    mut rx: mpsc::UnboundedReceiver<Ending>,
) {
    let mut incoming = Vec::with_capacity(max_batch);
    let mut started_tokens = Vec::new();
    let bound = shared.clock().statement_bound();
    loop {
        if rx.recv_many(&mut incoming, max_batch).await == 0 {
            return;
        }
        let stopping = shared.stopping.load(Ordering::Acquire);
        let (mut batch, started): (Vec<(Claimed, Exit)>, Vec<Started>) = {
            let mut rng = rand::rng();
            let mut held = shared.held();
            let batch = incoming
                .drain(..)
                .filter_map(|e| match e {
                    Ending::Started(token) => {
                        started_tokens.push(token);
                        None
                    }
                    Ending::Report(token, report) => {
                        let job = held.remove(&token)?;
                        let w = decide(&job, &report, stopping, &mut rng);
                        Some((job, w))
                    }
                    Ending::Refused(token, why) => Some((
                        held.remove(&token)?,
                        Exit::End {
                            event: "rejected",
                            result: None,
                            error: Some(why),
                            pid: None,
                        },
                    )),
                    Ending::NotNow(token, why) => {
                        Some((held.remove(&token)?, Exit::released(why, None)))
                    }
                })
                .collect::<Vec<_>>();
            // Still this supervisor's until the write commits (for the
            // heartbeat's reconciling).
            shared
                .writing()
                .extend(batch.iter().map(|(c, _)| (c.id, c.lease)));
            // A job that started and ended within one batch needs no
            // deadline.
            let started = started_tokens
                .drain(..)
                .filter_map(|t| held.get(&t).map(|c| (c.id, c.lease)))
                .collect();
            (batch, started)
        };
        if batch.is_empty() && started.is_empty() {
            continue;
        }
        let mut failures = 0u32;
        loop {
            let began = Instant::now();
            let result = StoreError::within("write job endings", bound, async {
                let mut c = store.client().await?;
                write(&mut c, &batch, &started, grace).await
            })
            .await;
            match result {
                Ok(stale) => {
                    shared.meters.wrote(batch.len(), stale, began.elapsed());
                    Shared::stamp(&shared.last_write);
                    shared.batches.fetch_add(1, Ordering::Relaxed);
                    shared
                        .written
                        .fetch_add((batch.len() - stale) as u64, Ordering::Release);
                    if stale > 0 {
                        shared.stale.fetch_add(stale as u64, Ordering::Relaxed);
                        tracing::warn!(
                            stale,
                            "endings not written: those jobs were taken over by another supervisor (their lease moved on)"
                        );
                    }
                    break;
                }
                Err(e) if e.refuses_data() => {
                    // One ending the database cannot keep must not hold
                    // back the others: each is written alone.
                    shared.error();
                    tracing::error!(
                        jobs = batch.len(),
                        "the database refused a batch of endings; writing them one by one: {e}"
                    );
                    let (stale, failed) =
                        isolate(&store, &shared, &mut batch, &started, grace, bound).await;
                    let done = batch.len() - failed.len();
                    shared.meters.wrote(done, stale, began.elapsed());
                    Shared::stamp(&shared.last_write);
                    shared
                        .written
                        .fetch_add((done - stale) as u64, Ordering::Release);
                    if failed.is_empty() {
                        break;
                    }
                    // Those that could not be written at all are tried
                    // again; the others are done with.
                    {
                        let mut writing = shared.writing();
                        for (c, _) in batch.iter().filter(|(c, _)| !failed.contains(&c.id)) {
                            writing.remove(&(c.id, c.lease));
                        }
                    }
                    batch.retain(|(c, _)| failed.contains(&c.id));
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(50 << failures.min(5))).await;
                }
                Err(e) => {
                    shared.error();
                    failures += 1;
                    if failures >= 3 {
                        tracing::error!(
                            failures,
                            jobs = batch.len(),
                            "cannot write job endings (retrying): {e}"
                        );
                    } else {
                        tracing::warn!("cannot write job endings (retrying): {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50 << failures.min(5))).await;
                }
            }
        }
        {
            let mut writing = shared.writing();
            for (c, _) in &batch {
                writing.remove(&(c.id, c.lease));
            }
        }
        if shared.held().is_empty() {
            shared.drained.notify_waiters();
        }
    }
}

/// Write each ending of `batch` alone (after the database refused the
/// batch), and the deadlines of `started`. An ending still refused is
/// written without the job's own data (see `Exit::without_data`), which
/// replaces it in `batch`. Returns how many were stale, and the ids of
/// those that could not be written at all (to retry).
async fn isolate(
    store: &Store,
    shared: &Shared,
    batch: &mut [(Claimed, Exit)],
    started: &[Started],
    grace: Duration,
    bound: Duration,
) -> (usize, Vec<i64>) {
    let (mut stale, mut failed) = (0, Vec::new());
    let deadlines = StoreError::within("write started jobs' deadlines", bound, async {
        engine::start(&store.client().await?, started, grace).await
    });
    if let Err(e) = deadlines.await {
        tracing::warn!("cannot write started jobs' deadlines: {e}");
    }
    for one in batch.iter_mut() {
        let mut stripped = false;
        loop {
            let alone = std::slice::from_ref(&*one);
            let result = StoreError::within("write a job's ending", bound, async {
                write(&mut store.client().await?, alone, &[], grace).await
            })
            .await;
            match result {
                Ok(s) => {
                    stale += s;
                    shared.batches.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) if e.refuses_data() && !stripped => {
                    tracing::error!(
                        job = one.0.id,
                        "the database refused a job's ending; writing it without the job's result and error text: {e}"
                    );
                    stripped = true;
                    one.1 = one.1.without_data(&e.to_string());
                }
                Err(e) => {
                    tracing::error!(job = one.0.id, "cannot write a job's ending: {e}");
                    failed.push(one.0.id);
                    break;
                }
            }
        }
    }
    (stale, failed)
}

/// Write a batch of endings and the deadlines of jobs that started
/// (`grace` beyond their timeout) in one transaction. Returns how many
/// endings were stale (their lease had moved on).
async fn write(
    client: &mut deadpool_postgres::Object,
    batch: &[(Claimed, Exit)],
    started: &[Started],
    grace: Duration,
) -> Result<usize, StoreError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::query("begin writing endings", e))?;
    engine::start(&tx, started, grace).await?;
    let exits: Vec<(i64, i64, &Exit)> = batch.iter().map(|(c, e)| (c.id, c.lease, e)).collect();
    let written = engine::leave(&tx, &exits).await?;
    tx.commit()
        .await
        .map_err(|e| StoreError::query("commit job endings", e))?;
    Ok(batch.len().saturating_sub(written))
}
