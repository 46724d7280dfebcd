//! The claimer of a store-fed supervisor: it carries out the planner's
//! claims (`plan.rs`) and hands each claimed job to the supervisor.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::endings::Claimed;
use super::plan::Planner;
use super::{Ending, FeedOptions, Shared};
use crate::store::engine::{self, Ask, Draw, Grant};
use crate::store::{Store, StoreError, Wakeups, JOBS_CHANNEL};
use crate::{Codec, Job, JobSink, Payload, SubmitError, Supervisor};

/// What the claimer works with.
pub(super) struct Claimer {
    pub(super) store: Store,
    pub(super) sup: Supervisor,
    pub(super) shared: Arc<Shared>,
    pub(super) options: FeedOptions,
    pub(super) kinds: Vec<String>,
    pub(super) sink: Arc<dyn JobSink>,
    pub(super) endings: mpsc::UnboundedSender<Ending>,
    pub(super) workers: usize,
}

pub(super) async fn claim_loop(c: Claimer) {
    let Claimer {
        store,
        sup,
        shared,
        options,
        kinds,
        sink,
        endings,
        workers,
    } = c;
    let mut wakeups = Wakeups::new(&[JOBS_CHANNEL]);
    let mut failures = 0u32;
    // A supervisor that draws at random draws across the whole table at
    // each free slot: it claims nothing ahead, which would draw early.
    let draw = Draw::of(sup.policy());
    let most_ahead = if draw == Draw::Priority {
        options.claim_ahead
    } else {
        0
    };
    let mut planner = Planner::new(workers, most_ahead, Instant::now());
    let bound = shared.clock().statement_bound();
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let listening = StoreError::within("listen for new jobs", bound, wakeups.connect(&store));
        if let Err(e) = listening.await {
            tracing::warn!("cannot listen for new jobs (polling instead): {e}");
        }
        let ended = shared.ended.load(Ordering::Relaxed);
        let inside = shared.claimed.load(Ordering::Relaxed).saturating_sub(ended) as usize;
        // While this supervisor's lease is in doubt it takes nothing more.
        let may_start = shared.clock().may_start(Instant::now());
        let plan = if planner.ask(Instant::now(), ended, inside, may_start) {
            planner.plan(sup.demand().await)
        } else {
            None
        };
        if let Some(plan) = plan {
            let limit = plan.limit;
            let ask = Ask {
                queues: &options.queues,
                kinds: &kinds,
                below: plan.below,
                limit,
                now: plan.now,
                wait: plan.wait,
                supervisor: shared.me.load(Ordering::Acquire),
                draw,
            };
            let began = Instant::now();
            let claimed = StoreError::within("claim jobs", bound, async {
                let c = store.client().await?;
                engine::claim(&c, &ask).await
            })
            .await;
            match claimed {
                Ok(grants) => {
                    failures = 0;
                    let n = grants.len();
                    shared.meters.claimed(n, began.elapsed());
                    if n > 0 {
                        Shared::stamp(&shared.last_claim);
                        shared.claims.fetch_add(1, Ordering::Relaxed);
                    }
                    shared.claimed.fetch_add(n as u64, Ordering::Release);
                    for g in grants {
                        hand_over(&sup, &shared, &sink, &endings, g);
                    }
                    if n == limit {
                        planner.filled();
                        continue;
                    }
                }
                Err(e) => {
                    shared.error();
                    failures += 1;
                    tracing::warn!("cannot claim jobs (retrying): {e}");
                    let pause = Duration::from_millis(50 << failures.min(5));
                    tokio::time::sleep(pause.min(options.poll)).await;
                    planner.news();
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = wakeups.next() => planner.news(),
            _ = tokio::time::sleep(options.poll) => planner.news(),
        }
    }
}

/// Submit one claimed job to the supervisor.
fn hand_over(
    sup: &Supervisor,
    shared: &Arc<Shared>,
    sink: &Arc<dyn JobSink>,
    endings: &mpsc::UnboundedSender<Ending>,
    g: Grant,
) {
    let token = shared.next_token.fetch_add(1, Ordering::Relaxed);
    shared.held().insert(token, Claimed::granted(&g));
    let payload = Payload {
        codec: Codec::Json,
        bytes: g.args.into_bytes(),
    };
    // Its retries live in the table (they must outlive this supervisor):
    // none here, whatever the supervisor's own retry policy.
    let mut job = Job::<serde_json::Value>::with_encoded(&g.kind, payload)
        .priority(g.priority)
        .weight(g.weight)
        .retry(crate::RetryPolicy::default());
    if let Some(t) = g.timeout {
        job = job.timeout(t);
    }
    match sup.submit_for(job, sink.clone(), token) {
        Ok(local) => {
            if let Some(c) = shared.held().get_mut(&token) {
                c.local = Some(local);
            }
        }
        Err(
            e @ (SubmitError::QueueFull { .. }
            | SubmitError::ShuttingDown
            | SubmitError::Failed(_)
            | SubmitError::UnknownKind { .. }),
        ) => {
            shared.ended.fetch_add(1, Ordering::Relaxed);
            let _ = endings.send(Ending::NotNow(token, e.to_string()));
        }
        Err(e) => {
            shared.ended.fetch_add(1, Ordering::Relaxed);
            let _ = endings.send(Ending::Refused(token, e.to_string()));
        }
    }
}
