//! The claimer of a store-fed supervisor: it keeps the supervisor's
//! workers fed from the table, claiming in batches as far ahead as their
//! pace asks, and claims an urgent job when all are busy so the supervisor
//! evicts for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::endings::Claimed;
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
    let mut pace = Pace::new();
    let bound = shared.clock().statement_bound();
    // What the workers take at once: at least one job each, more with
    // prefetch (seen as free room while they are idle).
    let mut capacity = workers.max(1);
    // The table may hold something new (at the start, after a
    // notification or a poll); the last claim was full.
    let (mut news, mut more) = (true, false);
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let listening = StoreError::within("listen for new jobs", bound, wakeups.connect(&store));
        if let Err(e) = listening.await {
            tracing::warn!("cannot listen for new jobs (polling instead): {e}");
        }
        let ended = shared.ended.load(Ordering::Relaxed);
        pace.observe(ended);
        let ahead = pace.ahead(most_ahead);
        let inside = shared.claimed.load(Ordering::Relaxed).saturating_sub(ended) as usize;
        // Enough in the supervisor and nothing new: do not even ask it.
        let busy = inside > capacity + ahead / 2;
        // While this supervisor's lease is in doubt it takes nothing more.
        let fenced = !shared.clock().may_start(Instant::now());
        let (limit, below, now, wait) = if fenced || (busy && !news && !more) {
            (0, 0, 0, Duration::ZERO)
        } else {
            let demand = sup.demand().await;
            capacity = capacity.max(demand.free);
            if demand.free > 0 || (ahead > 0 && demand.waiting <= ahead / 2) {
                let ahead = ahead.saturating_sub(demand.waiting);
                (
                    demand.free + ahead,
                    crate::LEAST_URGENT + 1,
                    demand.idle,
                    pace.wait(demand.waiting + demand.free - demand.idle + ahead),
                )
            } else if let (true, Some(p)) = (news, demand.evict_above) {
                // All busy: only a job more urgent than the least urgent
                // running one, which it will evict.
                (1, p, 1, Duration::ZERO)
            } else {
                (0, 0, 0, Duration::ZERO)
            }
        };
        news = false;
        more = false;
        if limit > 0 {
            let ask = Ask {
                queues: &options.queues,
                kinds: &kinds,
                below,
                limit,
                now,
                wait,
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
                        more = true;
                        continue;
                    }
                }
                Err(e) => {
                    shared.error();
                    failures += 1;
                    tracing::warn!("cannot claim jobs (retrying): {e}");
                    let pause = Duration::from_millis(50 << failures.min(5));
                    tokio::time::sleep(pause.min(options.poll)).await;
                    news = true;
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = wakeups.next() => news = true,
            _ = tokio::time::sleep(options.poll) => news = true,
        }
    }
}

/// How far ahead of its workers a feed claims: the jobs they get through
/// in [`AHEAD_HORIZON`], from a moving average of their pace.
struct Pace {
    at: Instant,
    ended: u64,
    per_sec: f64,
}

/// Claim ahead what the workers get through in this long.
const AHEAD_HORIZON: Duration = Duration::from_millis(150);

impl Pace {
    fn new() -> Pace {
        Pace {
            at: Instant::now(),
            ended: 0,
            per_sec: 0.0,
        }
    }

    /// Take the count of ended jobs into the average (every 20 ms at most).
    fn observe(&mut self, ended: u64) {
        let dt = self.at.elapsed();
        if dt < Duration::from_millis(20) {
            return;
        }
        let now = ended.saturating_sub(self.ended) as f64 / dt.as_secs_f64();
        self.per_sec = (self.per_sec + now) / 2.0;
        self.at = Instant::now();
        self.ended = ended;
    }

    fn ahead(&self, most: usize) -> usize {
        ((self.per_sec * AHEAD_HORIZON.as_secs_f64()) as usize).min(most)
    }

    /// How long the last of `jobs` waiting in the supervisor waits at this
    /// pace (a day when there is no pace yet).
    fn wait(&self, jobs: usize) -> Duration {
        if self.per_sec > 0.0 {
            Duration::from_secs_f64((jobs as f64 / self.per_sec).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
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
