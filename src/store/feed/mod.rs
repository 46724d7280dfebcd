//! A supervisor fed by the store: it claims as many jobs as its workers can
//! take (or, when they are all busy, one job urgent enough to evict the
//! least urgent running one), runs them exactly as embedded jobs, and
//! writes each ending back under the job's lease, in batches.
//!
//! Four tasks on the caller's tokio runtime: the claimer (woken by the
//! store's notifications, by a local job ending, and by a poll), the
//! writer of endings, the heartbeat (which carries out the lease clock's
//! decisions), and the upkeep (reclaims, due jobs, periodic schedules'
//! fires, cancels, progress).

mod claim;
mod clock;
mod endings;
mod heartbeat;
mod meters;
mod plan;
mod reconcile;
mod upkeep;
mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use self::claim::{claim_loop, Claimer};
use self::clock::LeaseClock;
use self::endings::Claimed;
use self::heartbeat::beat_loop;
use self::meters::FeedMeters;
use self::upkeep::upkeep_loop;
use self::writer::write_loop;
use super::{engine, Store, StoreError};
use crate::{JobSink, Payload, Report, Supervisor};

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
    pub(crate) claim_ahead: usize,
    pub(crate) retention: Option<Duration>,
    pub(crate) max_reclaims: u32,
}

impl Default for FeedOptions {
    /// The `default` queue, a 15 s lease, a 1 s poll, endings written in
    /// batches of up to 1,000, up to 4,000 jobs claimed ahead, events
    /// kept 7 days, a job taken over from lost supervisors at most 5 times.
    fn default() -> Self {
        FeedOptions {
            queues: vec!["default".into()],
            lease: Duration::from_secs(15),
            poll: Duration::from_secs(1),
            batch: 1000,
            claim_ahead: 4000,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            max_reclaims: 5,
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
    ///
    /// The supervisor keeps its own clock of the lease, from the sending
    /// of its last heartbeat that succeeded: two thirds of a lease after
    /// it, it starts and claims nothing more; a whole lease after it, it
    /// stops every job it holds and gives them back, since another
    /// supervisor may already run them; and when told it was declared
    /// lost, it stops the jobs of its old registration and registers
    /// again (see the README, *What holds under faults*).
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

    /// At most how many jobs to claim beyond what the workers can take at
    /// once (0 to 100,000), so they never wait for the database between
    /// jobs. The feed claims ahead only as much as its workers get through
    /// in about 150 ms: none for jobs that take seconds, up to this many for
    /// a stream of short ones. Jobs claimed ahead are run in priority order
    /// with the rest, and given back if the supervisor stops. A supervisor
    /// whose policy draws at random claims nothing ahead: it draws across
    /// the whole table for each free worker.
    pub fn claim_ahead(mut self, jobs: usize) -> FeedOptions {
        self.claim_ahead = jobs;
        self
    }

    /// How long to keep events (the history of every job) and the rows of
    /// stopped supervisors: 1 minute to 100 years, or `None` to keep them
    /// all. The supervisor deletes what is older about once a minute.
    pub fn retention(mut self, keep: Option<Duration>) -> FeedOptions {
        self.retention = keep;
        self
    }

    /// How many times a job may be taken over from a supervisor that was
    /// lost while running it (or that let it run past its deadline) and
    /// run again (0 to 1,000). A job lost once more than this ends
    /// `crashed` instead: a job that kills or hangs every supervisor that
    /// runs it stops doing so. The supervisor that finds the loss applies
    /// its own setting.
    pub fn max_reclaims(mut self, times: u32) -> FeedOptions {
        self.max_reclaims = times;
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
        if let Some(keep) = self.retention {
            super::prune::check_retention(keep)?;
        }
        if self.max_reclaims > 1000 {
            return bad(format!(
                "{} reclaims is out of range: use 0 to 1000",
                self.max_reclaims
            ));
        }
        if self.claim_ahead > 100_000 {
            return bad(format!(
                "claiming {} jobs ahead is out of range: use 0 to 100000",
                self.claim_ahead
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
    /// Claim statements that returned jobs.
    pub claims: u64,
    /// Endings written (terminal or not).
    pub written: u64,
    /// Transactions that wrote endings.
    pub batches: u64,
    /// Writes refused because the job's lease had moved on.
    pub stale: u64,
    /// Jobs of lost supervisors this one put back in the queue.
    pub reclaimed: u64,
    /// Statements that failed (and were retried).
    pub errors: u64,
    /// When the latest claim statement that returned jobs came back.
    pub last_claim: Option<std::time::Instant>,
    /// When the latest transaction of endings committed.
    pub last_write: Option<std::time::Instant>,
}

/// A running store feed: see the module docs. Stop it with
/// [`stop`](Self::stop), which gives back what it could not finish.
pub struct Feed {
    shared: Arc<Shared>,
    store: Store,
    supervisor: Supervisor,
    claimer: JoinHandle<()>,
    writer: JoinHandle<()>,
    beat: JoinHandle<()>,
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
    /// This supervisor's own clock of its lease.
    clock: Mutex<LeaseClock>,
    held: Mutex<HashMap<u64, Claimed>>,
    /// Jobs taken out of `held` whose ending the writer is writing (id
    /// and lease each): still this supervisor's until the write commits.
    /// Locked after `held` when both are.
    writing: Mutex<HashSet<(i64, i64)>>,
    next_token: AtomicU64,
    stopping: AtomicBool,
    /// A local job ended, a wake-up came, or a stop.
    wake: Notify,
    /// The writer emptied `held`.
    drained: Notify,
    claimed: AtomicU64,
    /// Claimed jobs whose ending the supervisor reported (or that it did
    /// not take): `claimed - ended` are in the supervisor.
    ended: AtomicU64,
    claims: AtomicU64,
    written: AtomicU64,
    batches: AtomicU64,
    stale: AtomicU64,
    reclaimed: AtomicU64,
    errors: AtomicU64,
    /// Set before `claimed` and `written` rise (which they do with
    /// `Release`), so a reader that sees them rise sees these too.
    last_claim: Mutex<Option<std::time::Instant>>,
    last_write: Mutex<Option<std::time::Instant>>,
    meters: FeedMeters,
}

impl Shared {
    /// A statement failed (it will be retried).
    fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.meters.error();
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Claimed>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writing(&self) -> std::sync::MutexGuard<'_, HashSet<(i64, i64)>> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Which of `rows` (id and lease each) this supervisor knows it runs:
    /// it holds them, or is writing their endings.
    fn knows(&self, rows: &[(i64, i64)]) -> HashSet<(i64, i64)> {
        let held = self.held();
        let writing = self.writing();
        let mine: HashSet<(i64, i64)> = held.values().map(|c| (c.id, c.lease)).collect();
        rows.iter()
            .copied()
            .filter(|r| mine.contains(r) || writing.contains(r))
            .collect()
    }

    fn clock(&self) -> std::sync::MutexGuard<'_, LeaseClock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease was confirmed or taken anew (`how` tells the clock): the
    /// supervisor may start jobs until the clock's new bound, and the
    /// claimer, which claims nothing while the lease is in doubt, looks
    /// again.
    fn renewed(&self, sup: &Supervisor, how: impl FnOnce(&mut LeaseClock)) {
        let until = {
            let mut c = self.clock();
            how(&mut c);
            c.starts_until()
        };
        sup.hold_starts_from(Some(until));
        self.wake.notify_one();
    }

    /// Stop every job this supervisor holds, queued or running, because it
    /// may no longer hold them (`why`): each is cancelled in the
    /// supervisor, and its ending gives it back to the table under the
    /// lease it was claimed with (a write the table refuses if the job was
    /// taken over meanwhile). Returns how many.
    fn fence(&self, sup: &Supervisor, why: &'static str) -> usize {
        let locals: Vec<crate::JobId> = self
            .held()
            .values_mut()
            .filter(|c| c.fenced.is_none())
            .filter_map(|c| {
                c.fenced = Some(why);
                c.local
            })
            .collect();
        for &local in &locals {
            sup.cancel(local);
        }
        locals.len()
    }

    /// Stamp `at` with now.
    fn stamp(at: &Mutex<Option<std::time::Instant>>) {
        *at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    fn read(at: &Mutex<Option<std::time::Instant>>) -> Option<std::time::Instant> {
        *at.lock().unwrap_or_else(|p| p.into_inner())
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
    /// The job, which has a timeout, started in a worker: its deadline in
    /// the table counts from now.
    Started(u64),
}

struct Sink {
    tx: mpsc::UnboundedSender<Ending>,
    shared: Arc<Shared>,
}

impl JobSink for Sink {
    fn ended(&self, token: u64, report: Report<Payload>) {
        let _ = self.tx.send(Ending::Report(token, report));
        self.shared.ended.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    fn started(&self, token: u64) {
        let _ = self.tx.send(Ending::Started(token));
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
        let sent = Instant::now();
        let me = engine::register(
            &store.client().await?,
            &options.queues,
            workers,
            options.lease,
        )
        .await?;
        let clock = LeaseClock::new(options.lease, sent);
        supervisor.hold_starts_from(Some(clock.starts_until()));
        let shared = Arc::new(Shared {
            me: AtomicI64::new(me),
            clock: Mutex::new(clock),
            held: Mutex::new(HashMap::new()),
            writing: Mutex::new(HashSet::new()),
            next_token: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            drained: Notify::new(),
            claimed: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            claims: AtomicU64::new(0),
            written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_claim: Mutex::new(None),
            last_write: Mutex::new(None),
            meters: FeedMeters::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let sink: Arc<dyn JobSink> = Arc::new(Sink {
            tx: tx.clone(),
            shared: shared.clone(),
        });
        let claimer = tokio::spawn(claim_loop(Claimer {
            store: store.clone(),
            sup: supervisor.clone(),
            shared: shared.clone(),
            options: options.clone(),
            kinds,
            sink,
            endings: tx,
            workers,
        }));
        let writer = tokio::spawn(write_loop(
            store.clone(),
            shared.clone(),
            options.batch,
            options.lease,
            rx,
        ));
        let beat = tokio::spawn(beat_loop(
            store.clone(),
            supervisor.clone(),
            shared.clone(),
            options.clone(),
            workers,
        ));
        let upkeep = tokio::spawn(upkeep_loop(
            store.clone(),
            supervisor.clone(),
            shared.clone(),
            options.clone(),
        ));
        tracing::info!(supervisor = me, "feeding from the store");
        Ok(Feed {
            shared,
            store: store.clone(),
            supervisor: supervisor.clone(),
            claimer,
            writer,
            beat,
            upkeep,
        })
    }

    /// This supervisor's id in the store.
    pub fn supervisor_id(&self) -> i64 {
        self.shared.me.load(Ordering::Acquire)
    }

    /// The store's id of the job this feed submitted to its supervisor as
    /// `local` (as [`Supervisor::snapshot`](crate::Supervisor::snapshot)
    /// shows it), while the feed holds it.
    pub fn store_id(&self, local: crate::JobId) -> Option<i64> {
        self.shared
            .held()
            .values()
            .find(|c| c.local == Some(local))
            .map(|c| c.id)
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
        self.beat.abort();
        self.upkeep.abort();
        let me = self.shared.me.load(Ordering::Acquire);
        let given_back = engine::stop(&mut self.store.client().await?, me).await?;
        if given_back > 0 {
            tracing::info!(jobs = given_back, "gave back jobs on stopping");
        }
        Ok(stats(&self.shared))
    }
}

fn stats(s: &Shared) -> FeedStats {
    FeedStats {
        claimed: s.claimed.load(Ordering::Acquire),
        claims: s.claims.load(Ordering::Relaxed),
        written: s.written.load(Ordering::Acquire),
        batches: s.batches.load(Ordering::Relaxed),
        stale: s.stale.load(Ordering::Relaxed),
        reclaimed: s.reclaimed.load(Ordering::Relaxed),
        errors: s.errors.load(Ordering::Relaxed),
        last_claim: Shared::read(&s.last_claim),
        last_write: Shared::read(&s.last_write),
    }
}
