//! How a supervisor is set up: pool size, prefetch, eviction, timeouts,
//! heartbeats, restarts, limits, and which worker program to run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sched::core::{check_delay, MAX_DELAY};
use crate::sched::{CoreConfig, EvictionMode, Policy, RateLimit, RestartPolicy, RetryPolicy};

/// The largest payload or result size that can be configured (1 GiB).
pub(crate) const MAX_MESSAGE: usize = 1 << 30;

/// A setting out of its range; the message names it, its value and the
/// range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid supervisor configuration: {0}")]
pub struct ConfigError(pub(crate) String);

/// The program a supervisor starts as its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
    /// `None`: the worker inherits this process's environment (the
    /// default). `Some(keep)`: it starts from an empty one, with only the
    /// variables named in `keep` (and `env`).
    pub keep_env: Option<Vec<OsString>>,
    /// Send the worker's standard output to this process's standard error,
    /// so that what a handler prints never mixes with this process's own
    /// output.
    pub stdout_to_stderr: bool,
}

/// Name of the stock worker executable.
pub const STOCK_WORKER: &str = "procvisor-worker";

impl WorkerCommand {
    /// Run `program` as the worker.
    pub fn new(program: impl Into<PathBuf>) -> WorkerCommand {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            keep_env: None,
            stdout_to_stderr: false,
        }
    }

    /// Re-execute the current executable as the worker: its `main` must call
    /// `Worker::run_if_worker` first thing.
    pub fn current_exe() -> std::io::Result<WorkerCommand> {
        Ok(WorkerCommand::new(std::env::current_exe()?))
    }

    /// The stock `procvisor-worker` found beside the current executable, in
    /// the same directory and nowhere else. `None` if there is none, or if
    /// that directory (or the file) can be written by other users: a program
    /// is never taken from a place someone else could have put it.
    pub fn stock_beside_current_exe() -> Option<WorkerCommand> {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        let path = dir.join(STOCK_WORKER);
        (is_executable(&path) && !writable_by_others(dir) && !writable_by_others(&path))
            .then(|| WorkerCommand::new(path))
    }

    /// Add an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> WorkerCommand {
        self.args.push(arg.into());
        self
    }

    /// Start the worker with a clean environment: only the variables named
    /// here (taken from this process's environment, if set) and those added
    /// with [`env`](Self::env). By default a worker inherits everything.
    pub fn clean_env<K: Into<OsString>>(
        mut self,
        keep: impl IntoIterator<Item = K>,
    ) -> WorkerCommand {
        self.keep_env = Some(keep.into_iter().map(Into::into).collect());
        self
    }

    /// Send the worker's standard output to this process's standard error.
    pub fn stdout_to_stderr(mut self) -> WorkerCommand {
        self.stdout_to_stderr = true;
        self
    }

    /// Add an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> WorkerCommand {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Whether users other than the owner may write `p` (group or world
/// writable), or it belongs to another user than us or root.
fn writable_by_others(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(p) else {
        return true;
    };
    let me = rustix::process::geteuid().as_raw();
    m.mode() & 0o022 != 0 || (m.uid() != me && m.uid() != 0)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A supervisor's settings. Start from [`Config::new`] and adjust with the
/// builder methods; [`Supervisor::start`](crate::Supervisor::start) checks
/// every value against its range and says which one is off.
///
/// ```
/// use std::time::Duration;
/// use procvisor::{Config, EvictionMode, Policy, RateLimit, WorkerCommand};
///
/// let cfg = Config::new(WorkerCommand::new("my-worker"))
///     .workers(4)
///     .default_timeout(Some(Duration::from_secs(60)))
///     .eviction(EvictionMode::Requeue)
///     .policy(Policy::Priority)
///     .kind_limit("render", 2)
///     .rate_limit(RateLimit::new(50.0, 10));
/// assert!(cfg.check().is_ok());
/// assert!(cfg.clone().workers(0).check().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) worker: WorkerCommand,
    /// Everything the scheduling core decides with (slots = workers).
    pub(crate) core: CoreConfig,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) kill_grace: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) heartbeat_misses: u32,
    pub(crate) restart: RestartPolicy,
    pub(crate) max_payload: usize,
    pub(crate) max_result: usize,
    pub(crate) start_timeout: Duration,
    pub(crate) spin: Duration,
    pub(crate) tune_allocator: bool,
    pub(crate) limits: WorkerLimits,
    pub(crate) event_buffer: usize,
}

/// Per-worker memory and recycling limits (see [`Config::memory_limit`],
/// [`Config::recycle_after`], [`Config::recycle_above_rss`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WorkerLimits {
    /// Bytes of data memory a worker may map (`RLIMIT_DATA`).
    pub(crate) memory: Option<u64>,
    /// Jobs after which a worker is replaced.
    pub(crate) recycle_after: Option<u32>,
    /// Resident bytes past which a worker is replaced after a job.
    pub(crate) recycle_above_rss: Option<u64>,
}

/// The smallest memory limit: what a worker needs before any job.
pub(crate) const MIN_MEMORY_LIMIT: u64 = 32 << 20;
/// The largest memory limit (1 TiB).
pub(crate) const MAX_MEMORY_LIMIT: u64 = 1 << 40;

impl Config {
    /// Defaults, with `worker` as the worker program: one worker per CPU, no
    /// prefetch, eviction that requeues, no default timeout, `SIGKILL` at a
    /// deadline, heartbeats every second (five missed: the worker is
    /// unresponsive), at most 20 unexpected worker deaths in 10 s, payloads
    /// up to 64 MiB.
    pub fn new(worker: WorkerCommand) -> Config {
        Config {
            worker,
            core: CoreConfig {
                slots: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
                seed: rand::random(),
                ..CoreConfig::default()
            },
            default_timeout: None,
            kill_grace: Duration::ZERO,
            heartbeat: Duration::from_secs(1),
            heartbeat_misses: 5,
            restart: RestartPolicy::default(),
            max_payload: 64 << 20,
            max_result: 64 << 20,
            start_timeout: Duration::from_secs(10),
            spin: Duration::from_micros(200),
            tune_allocator: true,
            limits: WorkerLimits::default(),
            event_buffer: 4096,
        }
    }

    /// Number of worker processes, 1 to 4096.
    pub fn workers(mut self, n: usize) -> Config {
        self.core.slots = n;
        self
    }

    /// Jobs a worker may hold at once, 1 to 1024: 1 (default) hands a job
    /// only to an idle worker; more lets quick jobs flow without a round
    /// trip between them. A worker is topped up to `k` once it holds `k / 2`
    /// or fewer, so that jobs travel to it several at a time. Jobs held but
    /// not started are put back in the queue, never lost, when their worker
    /// dies or is evicted. Prefetch trades strict priority for throughput:
    /// an urgent job may wait behind jobs a worker already holds.
    pub fn prefetch(mut self, k: usize) -> Config {
        self.core.prefetch = k;
        self
    }

    /// What eviction does (default: requeue the evicted job).
    pub fn eviction(mut self, mode: EvictionMode) -> Config {
        self.core.eviction = mode;
        self
    }

    /// Timeout for jobs that do not set their own (default: none).
    pub fn default_timeout(mut self, t: Option<Duration>) -> Config {
        self.default_timeout = t;
        self
    }

    /// At a deadline, send `SIGTERM` and wait this long before `SIGKILL`
    /// (default zero: `SIGKILL` at once).
    pub fn kill_grace(mut self, grace: Duration) -> Config {
        self.kill_grace = grace;
        self
    }

    /// How long a cancelled running job may take to stop by itself (it sees
    /// `JobContext::is_cancelled`) before its worker is killed (default zero).
    pub fn cancel_grace(mut self, grace: Duration) -> Config {
        self.core.cancel_grace = grace;
        self
    }

    /// Heartbeat interval, and how many may be missed before a worker counts
    /// as unresponsive and is killed.
    /// (`every` from 1 ms to a day, `misses` from 1 to 1000).
    pub fn heartbeat(mut self, every: Duration, misses: u32) -> Config {
        self.heartbeat = every;
        self.heartbeat_misses = misses;
        self
    }

    /// Restart backoff and intensity limit.
    pub fn restart(mut self, policy: RestartPolicy) -> Config {
        self.restart = policy;
        self
    }

    /// Largest payload accepted at submit, in bytes (default 64 MiB; at
    /// most 1 GiB).
    pub fn max_payload(mut self, bytes: usize) -> Config {
        self.max_payload = bytes;
        self
    }

    /// Largest result a worker may send back, in bytes (default 64 MiB; at
    /// most 1 GiB). A worker that sends more is killed, and its job ends as
    /// `Crashed` with a protocol fault that says so; the supervisor never
    /// holds more than this for one worker.
    pub fn max_result(mut self, bytes: usize) -> Config {
        self.max_result = bytes;
        self
    }

    /// A hard cap on each worker's memory, in bytes (default none; from
    /// 32 MiB to 1 TiB): the kernel refuses the worker any data memory
    /// (heap, anonymous mappings, thread stacks) past it (`RLIMIT_DATA`).
    /// A job whose allocation is refused ends as `Crashed` with
    /// [`Crash::MemoryLimit`](crate::Crash::MemoryLimit) when the worker is
    /// a Rust program (a failed allocation aborts it); the worker is
    /// replaced and other jobs are untouched. The cap is per worker
    /// process, so it bounds one job at a time.
    pub fn memory_limit(mut self, bytes: Option<u64>) -> Config {
        self.limits.memory = bytes;
        self
    }

    /// Replace each worker after it has run `jobs` jobs (default never;
    /// from 1 to 1,000,000,000), as pebble's and Celery's "max tasks per
    /// child": a fresh process for code that leaks. The worker takes no
    /// new job once it reaches the count, finishes what it holds, exits,
    /// and a new one starts in its place.
    pub fn recycle_after(mut self, jobs: Option<u32>) -> Config {
        self.limits.recycle_after = jobs;
        self
    }

    /// Replace a worker whose resident memory, measured after each job, is
    /// over `bytes` (default never; from 1 MiB to 1 TiB), the same way as
    /// [`Config::recycle_after`]. The job that grew it still completes.
    pub fn recycle_above_rss(mut self, bytes: Option<u64>) -> Config {
        self.limits.recycle_above_rss = bytes;
        self
    }

    /// The pool state machine's settings.
    pub(crate) fn pool(&self) -> crate::sched::pool::PoolConfig {
        crate::sched::pool::PoolConfig {
            slots: self.core.slots.clamp(1, crate::sched::core::MAX_SLOTS),
            start_timeout: self.start_timeout,
            heartbeat: self.heartbeat.max(Duration::from_millis(1)),
            heartbeat_misses: self.heartbeat_misses.max(1),
            closed_grace: Duration::from_secs(1),
            drain_grace: Duration::from_millis(100),
            exit_grace: Duration::from_secs(2),
            restart: self.restart,
            recycle_after: self.limits.recycle_after,
        }
    }

    /// The largest frame a worker may send: a result and its envelope.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_result.saturating_add(64 << 10)
    }

    /// Check every setting against its range. [`Supervisor::start`] does
    /// this first and refuses a configuration out of range.
    ///
    /// [`Supervisor::start`]: crate::Supervisor::start
    pub fn check(&self) -> Result<(), ConfigError> {
        self.core.check().map_err(ConfigError)?;
        let err = |m: String| ConfigError(m);
        if self.heartbeat < Duration::from_millis(1) || self.heartbeat > MAX_DELAY {
            return Err(err(format!(
                "the heartbeat interval is {:?}; it must be from 1 ms to a day",
                self.heartbeat
            )));
        }
        if !(1..=1_000_000).contains(&self.event_buffer) {
            return Err(err(format!(
                "an event buffer of {} events: it must be from 1 to 1000000",
                self.event_buffer
            )));
        }
        if !(1..=1000).contains(&self.heartbeat_misses) {
            return Err(err(format!(
                "{} heartbeat misses: it must be from 1 to 1000",
                self.heartbeat_misses
            )));
        }
        check_delay("kill_grace", self.kill_grace).map_err(err)?;
        check_delay("start_timeout", self.start_timeout).map_err(err)?;
        if self.start_timeout.is_zero() {
            return Err(err(
                "start_timeout is zero: workers need time to start".into()
            ));
        }
        if self.spin > Duration::from_secs(1) {
            return Err(err(format!(
                "spin is {:?}; it must be at most 1 s",
                self.spin
            )));
        }
        if let Some(t) = self.default_timeout {
            check_delay("default_timeout", t).map_err(err)?;
            if t.is_zero() {
                return Err(err(
                    "default_timeout is zero: give a positive timeout, or None".into(),
                ));
            }
        }
        for (what, v) in [
            ("max_payload", self.max_payload),
            ("max_result", self.max_result),
        ] {
            if !(1..=MAX_MESSAGE).contains(&v) {
                return Err(err(format!(
                    "{what} is {v} bytes; it must be from 1 to {MAX_MESSAGE} (1 GiB)"
                )));
            }
        }
        let l = &self.limits;
        if let Some(m) = l
            .memory
            .filter(|m| !(MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT).contains(m))
        {
            return Err(err(format!(
                "memory_limit is {m} bytes; it must be from {MIN_MEMORY_LIMIT} (32 MiB) to {MAX_MEMORY_LIMIT} (1 TiB), or None"
            )));
        }
        if let Some(n) = l.recycle_after.filter(|n| !(1..=1_000_000_000).contains(n)) {
            return Err(err(format!(
                "recycle_after is {n} jobs; it must be from 1 to 1000000000, or None"
            )));
        }
        if let Some(m) = l
            .recycle_above_rss
            .filter(|m| !((1 << 20)..=MAX_MEMORY_LIMIT).contains(m))
        {
            return Err(err(format!(
                "recycle_above_rss is {m} bytes; it must be from 1048576 (1 MiB) to {MAX_MEMORY_LIMIT} (1 TiB), or None"
            )));
        }
        let r = &self.restart;
        check_delay("the restart window", r.within).map_err(err)?;
        check_delay("the restart backoff base", r.backoff_base).map_err(err)?;
        check_delay("the restart backoff cap", r.backoff_max).map_err(err)?;
        Ok(())
    }

    /// How long a new worker may take to connect (default 10 s).
    pub fn start_timeout(mut self, t: Duration) -> Config {
        self.start_timeout = t;
        self
    }

    /// How long a thread that expects a message soon (a worker waiting for
    /// its next job, a link waiting for a result, a submitter waiting for an
    /// outcome) polls before it blocks (default 200 µs; zero: never spin).
    /// Waking a thread on an idle CPU costs tens of microseconds on virtual
    /// machines; a short spin saves that on every hop while costing an idle
    /// pool only one spin after its last job.
    pub fn spin(mut self, spin: Duration) -> Config {
        self.spin = spin;
        self
    }

    /// Whether to raise glibc's malloc trim and mmap thresholds in this
    /// process (default true; see `wire::spin::tune_allocator`). Without it,
    /// every message received costs an `madvise` that interrupts every CPU.
    pub fn tune_allocator(mut self, yes: bool) -> Config {
        self.tune_allocator = yes;
        self
    }

    /// How many unread job events each subscriber of
    /// [`Supervisor::events`](crate::Supervisor::events) may have before
    /// it loses the oldest (1 to 1,000,000; default 4096).
    pub fn event_buffer(mut self, events: usize) -> Config {
        self.event_buffer = events;
        self
    }

    /// The spin setting.
    pub fn spin_time(&self) -> Duration {
        self.spin
    }

    /// How the next job is chosen (default: by priority).
    pub fn policy(mut self, policy: Policy) -> Config {
        self.core.policy = policy;
        self
    }

    /// Avoid starting a job of the same kind as one of the last `k` started,
    /// when a job of another kind is waiting (default 0: off).
    pub fn exclusion_window(mut self, k: usize) -> Config {
        self.core.exclusion_window = k;
        self
    }

    /// At most `n` jobs of `kind` in workers at once (besides the pool size).
    pub fn kind_limit(mut self, kind: &str, n: usize) -> Config {
        self.core.kind_limits.push((kind.to_string(), n));
        self
    }

    /// Rate limit on job starts over all kinds. A job with no token waits in
    /// the queue; it is never dropped for that.
    pub fn rate_limit(mut self, limit: RateLimit) -> Config {
        self.core.rate = Some(limit);
        self
    }

    /// Rate limit on starts of jobs of `kind`.
    pub fn kind_rate_limit(mut self, kind: &str, limit: RateLimit) -> Config {
        self.core.kind_rates.push((kind.to_string(), limit));
        self
    }

    /// Most jobs waiting (queued, or waiting to retry): `submit` then waits
    /// for room, `try_submit` fails at once, `submit_timeout` waits at most
    /// its limit. `None` (default): unbounded.
    pub fn capacity(mut self, capacity: Option<usize>) -> Config {
        self.core.capacity = capacity;
        self
    }

    /// With a capacity: a job more urgent than the least urgent waiting one
    /// pushes that one out (its submitter gets `Rejected`) instead of waiting.
    pub fn push_out(mut self, yes: bool) -> Config {
        self.core.push_out = yes;
        self
    }

    /// Retries for jobs that do not set their own (default: none).
    pub fn retry(mut self, policy: RetryPolicy) -> Config {
        self.core.retry = policy;
        self
    }

    /// Seed for the random choices (weighted draws, jitter), for
    /// reproducible runs; default: from the OS.
    pub fn seed(mut self, seed: u64) -> Config {
        self.core.seed = seed;
        self
    }

    /// Change the worker program.
    pub fn worker(mut self, worker: WorkerCommand) -> Config {
        self.worker = worker;
        self
    }

    /// The worker program.
    pub fn worker_command(&self) -> &WorkerCommand {
        &self.worker
    }

    /// The number of workers.
    pub fn worker_count(&self) -> usize {
        self.core.slots
    }
}
