//! The writer of a store-fed supervisor: it gathers the endings of jobs
//! as the supervisor reports them and writes them back in batches, each
//! under its job's lease, retrying a batch until it is written.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::endings::{decide, Claimed, Write};
use super::{writes, Ending, Shared};
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
        let (batch, started): (Vec<(Claimed, Write)>, Vec<Started>) = {
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
                        Write::End {
                            event: "rejected",
                            result: None,
                            error: Some(why),
                            pid: None,
                        },
                    )),
                    Ending::NotNow(token, why) => {
                        Some((held.remove(&token)?, Write::released(why, None)))
                    }
                })
                .collect();
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
            let me = shared.me.load(Ordering::Acquire);
            let began = Instant::now();
            let result = StoreError::within("write job endings", bound, async {
                let mut c = store.client().await?;
                writes::write_endings(&mut c, me, &batch, &started, grace).await
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
        if shared.held().is_empty() {
            shared.drained.notify_waiters();
        }
    }
}
