//! A supervisor fed by the store: it claims as many jobs as its workers can
//! take (or, when they are all busy, one job urgent enough to evict the
//! least urgent running one), runs them exactly as embedded jobs, and
//! writes each ending back under the job's lease, in batches.
//!
//! Three tasks on the caller's tokio runtime: the claimer (woken by the
//! store's notifications, by a local job ending, and by a poll), the
//! writer of endings, and the upkeep (heartbeat, reclaims, due jobs,
//! cancels).

mod endings;
mod lease;
mod writes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use self::endings::{decide, Claimed, Write};
use self::writes::{Ask, Grant};
use super::{Store, StoreError, Wakeups, CANCEL_CHANNEL, JOBS_CHANNEL};
use crate::{Codec, Job, JobSink, Payload, Report, SubmitError, Supervisor};

/// How a store-fed supervisor behaves.
///
/// ```
/// use std::time::Duration;
/// use procvisor::store::FeedOptions;
///
/// let options = FeedOptions::default()
///     .queues(&["default", "images"])
///     .lease(Duration::from_secs(10));
/// assert!(options.check().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FeedOptions {
    pub(crate) queues: Vec<String>,
    pub(crate) lease: Duration,
    pub(crate) poll: Duration,
    pub(crate) batch: usize,
}

impl Default for FeedOptions {
    /// The `default` queue, a 15 s lease, a 1 s poll, endings written in
    /// batches of up to 1,000.
    fn default() -> Self {
        FeedOptions {
            queues: vec!["default".into()],
            lease: Duration::from_secs(15),
            poll: Duration::from_secs(1),
            batch: 1000,
        }
    }
}

impl FeedOptions {
    /// The queues to take jobs from.
    pub fn queues(mut self, queues: &[&str]) -> FeedOptions {
        self.queues = queues.iter().map(|q| q.to_string()).collect();
        self
    }

    /// How long after this supervisor's last heartbeat its jobs may be
    /// taken over by another (1 s to 1 h; it heartbeats every third of
    /// it). Jobs of a supervisor that died are run again after at most
    /// this plus one poll.
    pub fn lease(mut self, lease: Duration) -> FeedOptions {
        self.lease = lease;
        self
    }

    /// How often to look at the table without a notification: due delayed
    /// jobs and retries, reclaims, cancels (10 ms to 1 min).
    pub fn poll(mut self, poll: Duration) -> FeedOptions {
        self.poll = poll;
        self
    }

    /// Check the values, with a message that names the one out of range.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::Invalid(m));
        if self.queues.is_empty() || self.queues.iter().any(|q| q.is_empty() || q.len() > 100) {
            return bad("give one or more queue names, each 1 to 100 bytes long".into());
        }
        if self.lease < Duration::from_secs(1) || self.lease > Duration::from_secs(3600) {
            return bad(format!(
                "a lease of {:?} is out of range: use 1 s to 1 h",
                self.lease
            ));
        }
        if self.poll < Duration::from_millis(10) || self.poll > Duration::from_secs(60) {
            return bad(format!(
                "a poll period of {:?} is out of range: use 10 ms to 1 min",
                self.poll
            ));
        }
        if !(1..=100_000).contains(&self.batch) {
            return bad(format!(
                "a batch of {} is out of range: use 1 to 100000",
                self.batch
            ));
        }
        Ok(())
    }
}

/// What a feed has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Jobs claimed.
    pub claimed: u64,
    /// Endings written (terminal or not).
    pub written: u64,
    /// Writes refused because the job's lease had moved on.
    pub stale: u64,
    /// Jobs of lost supervisors this one put back in the queue.
    pub reclaimed: u64,
    /// Statements that failed (and were retried).
    pub errors: u64,
}

/// A running store feed: see the module docs. Stop it with
/// [`stop`](Self::stop), which gives back what it could not finish.
pub struct Feed {
    shared: Arc<Shared>,
    store: Store,
    supervisor: Supervisor,
    claimer: JoinHandle<()>,
    writer: JoinHandle<()>,
    upkeep: JoinHandle<()>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("supervisor_id", &self.supervisor_id())
            .finish()
    }
}

struct Shared {
    me: AtomicI64,
    held: Mutex<HashMap<u64, Claimed>>,
    next_token: AtomicU64,
    stopping: AtomicBool,
    /// A local job ended, a wake-up came, or a stop.
    wake: Notify,
    /// The writer emptied `held`.
    drained: Notify,
    claimed: AtomicU64,
    written: AtomicU64,
    stale: AtomicU64,
    reclaimed: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Claimed>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An ending on its way to the writer.
enum Ending {
    /// The core's report of a job.
    Report(u64, Report<Payload>),
    /// The supervisor refused the job itself (bad input): it ends rejected.
    Refused(u64, String),
    /// The supervisor could not take the job now: it goes back.
    NotNow(u64, String),
}

struct Sink {
    tx: mpsc::UnboundedSender<Ending>,
    shared: Arc<Shared>,
}

impl JobSink for Sink {
    fn ended(&self, token: u64, report: Report<Payload>) {
        let _ = self.tx.send(Ending::Report(token, report));
        self.shared.wake.notify_one();
    }
}

impl Feed {
    /// Register with the store and start feeding `supervisor` (on the
    /// current tokio runtime). The supervisor should evict by dropping
    /// ([`EvictionMode::Drop`](crate::EvictionMode::Drop)): an evicted
    /// store job then goes back to the table, keeping its place.
    pub async fn start(
        store: &Store,
        supervisor: &Supervisor,
        options: FeedOptions,
    ) -> Result<Feed, StoreError> {
        options.check()?;
        store.require_schema().await?;
        let kinds: Vec<String> = supervisor.kinds().map(str::to_string).collect();
        let workers = supervisor
            .snapshot()
            .await
            .map(|s| s.workers.len())
            .unwrap_or(0);
        let me = lease::register(
            &store.client().await?,
            &options.queues,
            workers,
            options.lease,
        )
        .await?;
        let shared = Arc::new(Shared {
            me: AtomicI64::new(me),
            held: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            drained: Notify::new(),
            claimed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let sink: Arc<dyn JobSink> = Arc::new(Sink {
            tx: tx.clone(),
            shared: shared.clone(),
        });
        let claimer = tokio::spawn(claim_loop(
            store.clone(),
            supervisor.clone(),
            shared.clone(),
            options.clone(),
            kinds,
            sink,
            tx,
        ));
        let writer = tokio::spawn(write_loop(store.clone(), shared.clone(), options.batch, rx));
        let upkeep = tokio::spawn(upkeep_loop(
            store.clone(),
            supervisor.clone(),
            shared.clone(),
            options.clone(),
            workers,
        ));
        tracing::info!(supervisor = me, "feeding from the store");
        Ok(Feed {
            shared,
            store: store.clone(),
            supervisor: supervisor.clone(),
            claimer,
            writer,
            upkeep,
        })
    }

    /// This supervisor's id in the store.
    pub fn supervisor_id(&self) -> i64 {
        self.shared.me.load(Ordering::Acquire)
    }

    /// What the feed has done so far.
    pub fn stats(&self) -> FeedStats {
        stats(&self.shared)
    }

    /// Stop: claim nothing more, give running jobs `grace` to finish (the
    /// supervisor shuts down), write their endings, give back whatever was
    /// cut short so other supervisors take it at once, and mark this
    /// supervisor stopped.
    pub async fn stop(self, grace: Duration) -> Result<FeedStats, StoreError> {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let _ = self.claimer.await;
        self.supervisor.shutdown(grace).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let drained = self.shared.drained.notified();
            if self.shared.held().is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, drained).await.is_err() {
                break;
            }
        }
        self.writer.abort();
        self.upkeep.abort();
        let me = self.shared.me.load(Ordering::Acquire);
        let given_back = lease::stop(&self.store.client().await?, me).await?;
        if given_back > 0 {
            tracing::info!(jobs = given_back, "gave back jobs on stopping");
        }
        Ok(stats(&self.shared))
    }
}

fn stats(s: &Shared) -> FeedStats {
    FeedStats {
        claimed: s.claimed.load(Ordering::Relaxed),
        written: s.written.load(Ordering::Relaxed),
        stale: s.stale.load(Ordering::Relaxed),
        reclaimed: s.reclaimed.load(Ordering::Relaxed),
        errors: s.errors.load(Ordering::Relaxed),
    }
}

async fn claim_loop(
    store: Store,
    sup: Supervisor,
    shared: Arc<Shared>,
    options: FeedOptions,
    kinds: Vec<String>,
    sink: Arc<dyn JobSink>,
    endings: mpsc::UnboundedSender<Ending>,
) {
    let mut wakeups = Wakeups::new(&[JOBS_CHANNEL]);
    let mut failures = 0u32;
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = wakeups.connect(&store).await {
            tracing::warn!("cannot listen for new jobs (polling instead): {e}");
        }
        let demand = sup.demand().await;
        let (limit, below) = if demand.free > 0 {
            (demand.free, crate::LEAST_URGENT + 1)
        } else if let Some(p) = demand.evict_above {
            (1, p)
        } else {
            (0, 0)
        };
        if limit > 0 {
            let ask = Ask {
                queues: &options.queues,
                kinds: &kinds,
                below,
                limit,
                supervisor: shared.me.load(Ordering::Acquire),
                grace: options.lease,
            };
            let claimed = match store.client().await {
                Ok(c) => writes::claim(&c, &ask).await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(grants) => {
                    failures = 0;
                    let n = grants.len();
                    shared.claimed.fetch_add(n as u64, Ordering::Relaxed);
                    for g in grants {
                        hand_over(&sup, &shared, &sink, &endings, g);
                    }
                    if n == limit {
                        continue;
                    }
                }
                Err(e) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    tracing::warn!("cannot claim jobs (retrying): {e}");
                    let pause = Duration::from_millis(50 << failures.min(5));
                    tokio::time::sleep(pause.min(options.poll)).await;
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = wakeups.next() => {}
            _ = tokio::time::sleep(options.poll) => {}
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
    shared.held().insert(token, g.job);
    let payload = Payload {
        codec: Codec::Json,
        bytes: g.args.into_bytes(),
    };
    let mut job = Job::<serde_json::Value>::with_encoded(&g.kind, payload).priority(g.priority);
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
            let _ = endings.send(Ending::NotNow(token, e.to_string()));
        }
        Err(e) => {
            let _ = endings.send(Ending::Refused(token, e.to_string()));
        }
    }
}

async fn write_loop(
    store: Store,
    shared: Arc<Shared>,
    max_batch: usize,
    mut rx: mpsc::UnboundedReceiver<Ending>,
) {
    let mut incoming = Vec::with_capacity(max_batch);
    loop {
        if rx.recv_many(&mut incoming, max_batch).await == 0 {
            return;
        }
        let stopping = shared.stopping.load(Ordering::Acquire);
        let batch: Vec<(Claimed, Write)> = {
            let mut rng = rand::rng();
            let mut held = shared.held();
            incoming
                .drain(..)
                .filter_map(|e| match e {
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
                .collect()
        };
        let mut failures = 0u32;
        loop {
            let me = shared.me.load(Ordering::Acquire);
            let result = match store.client().await {
                Ok(mut c) => writes::write_endings(&mut c, me, &batch).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(stale) => {
                    shared
                        .written
                        .fetch_add((batch.len() - stale) as u64, Ordering::Relaxed);
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
                    shared.errors.fetch_add(1, Ordering::Relaxed);
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

async fn upkeep_loop(
    store: Store,
    sup: Supervisor,
    shared: Arc<Shared>,
    options: FeedOptions,
    workers: usize,
) {
    let beat_every = options.lease / 3;
    let mut last_beat = Instant::now();
    let mut wakeups = Wakeups::new(&[CANCEL_CHANNEL]);
    loop {
        // Without the listener, cancels are still seen at the next poll.
        let _ = wakeups.connect(&store).await;
        if let Err(e) = upkeep(
            &store,
            &sup,
            &shared,
            &options,
            workers,
            &mut last_beat,
            beat_every,
        )
        .await
        {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("store upkeep failed (retrying): {e}");
        }
        tokio::select! {
            _ = wakeups.next() => {}
            _ = tokio::time::sleep(options.poll.min(beat_every)) => {}
        }
    }
}

async fn upkeep(
    store: &Store,
    sup: &Supervisor,
    shared: &Shared,
    options: &FeedOptions,
    workers: usize,
    last_beat: &mut Instant,
    beat_every: Duration,
) -> Result<(), StoreError> {
    let client = store.client().await?;
    let me = shared.me.load(Ordering::Acquire);
    if last_beat.elapsed() >= beat_every {
        if !lease::heartbeat(&client, me).await? {
            let again = lease::register(&client, &options.queues, workers, options.lease).await?;
            tracing::error!(
                old = me,
                new = again,
                "this supervisor was declared lost (no heartbeat within its lease); its jobs were taken over and it registered again"
            );
            shared.me.store(again, Ordering::Release);
        }
        *last_beat = Instant::now();
    }
    let reclaimed = lease::reclaim(&client).await?;
    if reclaimed > 0 {
        shared.reclaimed.fetch_add(reclaimed, Ordering::Relaxed);
        tracing::info!(jobs = reclaimed, "reclaimed the jobs of lost supervisors");
    }
    lease::promote(&client).await?;
    let asked = lease::cancels(&client, me).await?;
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
