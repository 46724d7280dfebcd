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
        let (batch, started): (Vec<(Claimed, Exit)>, Vec<Started>) = {
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
                Err(e) => {
                    shared.error();
                    failures += 1;
                    tracing::warn!("cannot write job endings (retrying): {e}");
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
