//! `procvisor bench --db URL`: the PostgreSQL job queue measured end to
//! end, every job run in a worker process and its outcome recorded.
//!
//! It prints the enqueue rate (one job per statement, and batched), the
//! burn-down rate of a full queue with one and with two supervisors, the
//! time from a job's insert to its start on an idle supervisor, and that
//! time again with a million completed jobs in the history. Beside each
//! figure it prints where the time went: statements, transactions and WAL
//! bytes per job. It works in a queue of its own (`bench-PID`) and removes
//! what it wrote when it ends; still, point it at a database made for it.

use std::time::{Duration, Instant};

use procvisor::store::{Feed, FeedOptions, FeedStats, NewJob, Store};
use procvisor::{EvictionMode, Supervisor};

use super::block_on;
use crate::cli::WorkerArgs;

/// What `bench --db` measures, from `bench`'s arguments.
pub struct Plan {
    pub url: String,
    pub jobs: u32,
    pub workers: usize,
    pub inflight: usize,
    pub latency_jobs: u32,
    pub history: u32,
    /// The supervisor's spin before blocking (`--spin-us`), if given.
    pub spin: Option<std::time::Duration>,
    pub worker: WorkerArgs,
}

/// Run the store benchmark; returns the exit code (1 when a job did not
/// complete as it must).
pub fn run(plan: Plan) -> Result<i32, String> {
    block_on(bench(plan))?
}

async fn bench(plan: Plan) -> Result<i32, String> {
    let store = Store::connect_with(&plan.url, 8)
        .await
        .map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let probe = Probe::connect(&plan.url).await?;
    let queue = format!("bench-{}", std::process::id());
    say!(
        "store bench: {}; queue {queue}; {} workers per supervisor, inflight {}",
        probe.server().await?,
        plan.workers,
        plan.inflight
    );
    let noop = || NewJob::new("noop", serde_json::json!({})).queue(&queue);
    let mut wrong = 0u64;

    // Enqueue: one job per statement (its own transaction), then batched.
    let singles = (plan.jobs / 20).clamp(1, 5_000);
    let t = Instant::now();
    for _ in 0..singles {
        store.submit(&noop()).await.map_err(|e| e.to_string())?;
    }
    rate("enqueue, one job per statement", singles, t.elapsed());
    probe.clear(&queue).await?;
    let batch: Vec<NewJob> = (0..plan.jobs).map(|_| noop()).collect();
    let t = Instant::now();
    store.submit_many(&batch).await.map_err(|e| e.to_string())?;
    rate("enqueue, batched (submit_many)", plan.jobs, t.elapsed());

    // Burn-down: the queue is full; supervisors start on it.
    for supervisors in [1, 2] {
        if supervisors == 2 {
            probe.clear(&queue).await?;
            store.submit_many(&batch).await.map_err(|e| e.to_string())?;
        }
        probe.settle().await?;
        wrong += burn_down(&store, &probe, &plan, &queue, supervisors).await?;
    }

    // Add → start on an idle supervisor, with no history, then with
    // `history` completed jobs behind it; the burn-downs' dead rows
    // vacuumed first, as they would be on a queue that has been idle.
    probe.clear(&queue).await?;
    probe.settle().await?;
    let sup = supervisor(&plan)?;
    let feed = start_feed(&store, &sup, &queue).await?;
    latency(&store, &feed, &queue, plan.latency_jobs, "").await?;
    if plan.history > 0 {
        let t = Instant::now();
        probe.add_history(&queue, plan.history).await?;
        say!(
            "history: {} completed jobs' events written in {:.1} s",
            plan.history,
            t.elapsed().as_secs_f64()
        );
        let label = format!(", {} completed jobs in history", plan.history);
        latency(&store, &feed, &queue, plan.latency_jobs, &label).await?;
    }
    let _ = feed.stop(Duration::from_secs(1)).await;
    probe.clear(&queue).await?;
    Ok(if wrong == 0 { 0 } else { 1 })
}

fn rate(what: &str, jobs: u32, took: Duration) {
    say!(
        "{what}: {jobs} jobs in {:.3} s = {:.0} jobs/s",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );
}

fn supervisor(plan: &Plan) -> Result<Supervisor, String> {
    let mut cfg = plan
        .worker
        .config(plan.workers)?
        .prefetch(plan.inflight)
        .eviction(EvictionMode::Drop);
    if let Some(spin) = plan.spin {
        cfg = cfg.spin(spin);
    }
    let sup = Supervisor::start(cfg).map_err(|e| e.to_string())?;
    // Workers spawned and connected before the clock starts.
    for _ in 0..plan.workers * 2 {
        sup.submit(procvisor::Job::<()>::new(
            "noop",
            &procvisor::stock::Empty {},
        ))
        .map_err(|e| e.to_string())?
        .wait();
    }
    Ok(sup)
}

async fn start_feed(store: &Store, sup: &Supervisor, queue: &str) -> Result<Feed, String> {
    let options = FeedOptions::default()
        .queues(&[queue])
        .poll(Duration::from_millis(200));
    Feed::start(store, sup, options)
        .await
        .map_err(|e| e.to_string())
}

/// Burn the queue down with `n` supervisors; returns how many jobs did not
/// complete.
async fn burn_down(
    store: &Store,
    probe: &Probe,
    plan: &Plan,
    queue: &str,
    n: usize,
) -> Result<u64, String> {
    let sups = (0..n)
        .map(|_| supervisor(plan))
        .collect::<Result<Vec<_>, _>>()?;
    let before = probe.counters().await?;
    let cpu = cpu_seconds();
    let machine = cpu_by_process();
    let ticks = MachineTicks::read();
    let t = Instant::now();
    let mut feeds = Vec::with_capacity(n);
    for sup in &sups {
        feeds.push(start_feed(store, sup, queue).await?);
    }
    let total = u64::from(plan.jobs);
    loop {
        let written: u64 = feeds.iter().map(|f| f.stats().written).sum();
        if written >= total {
            break;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let took = t.elapsed();
    let ticks = MachineTicks::read().since(&ticks);
    let cpu = cpu_seconds() - cpu;
    let machine = cpu_by_program(&machine);
    let after = probe.counters().await?;
    let mut stats = FeedStats::default();
    for f in feeds {
        let s = f
            .stop(Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())?;
        stats.claimed += s.claimed;
        stats.claims += s.claims;
        stats.written += s.written;
        stats.batches += s.batches;
        stats.stale += s.stale;
    }
    let completed = probe.completed(queue).await?;
    rate(
        &format!(
            "burn-down, {n} supervisor{} × {} workers, no-op jobs",
            if n == 1 { "" } else { "s" },
            plan.workers
        ),
        plan.jobs,
        took,
    );
    let per = |x: f64| x / plan.jobs as f64;
    say!(
        "  {completed} completed; claims: {} statements ({:.0} jobs each); endings: {} transactions ({:.0} each); {} stale",
        stats.claims,
        stats.claimed as f64 / stats.claims.max(1) as f64,
        stats.batches,
        stats.written as f64 / stats.batches.max(1) as f64,
        stats.stale
    );
    say!(
        "  per job: {:.0} WAL bytes, {:.4} commits, {:.2} row writes; this process used {:.2} CPU s ({:.0} % of one core)",
        per(after.wal - before.wal),
        per(after.commits - before.commits),
        per(after.rows - before.rows),
        cpu,
        cpu / took.as_secs_f64() * 100.0
    );
    say!(
        "  this machine: {:.1} CPU µs per job, all programs and the kernel ({:.0} % of its cores busy, {:.1} % taken by the host)",
        ticks.busy_seconds() / plan.jobs as f64 * 1e6,
        ticks.busy_share() * 100.0,
        ticks.steal_share() * 100.0
    );
    say!(
        "  CPU µs per job by program: {}",
        machine
            .iter()
            .map(|(t, name)| format!("{name} {:.1}", t / plan.jobs as f64 * 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(total.saturating_sub(completed))
}

/// Jobs one at a time on an idle supervisor: insert → claimed (handed to
/// a worker) and insert → outcome recorded; an error if one is not
/// claimed, or not recorded, within 10 s.
async fn latency(
    store: &Store,
    feed: &Feed,
    queue: &str,
    jobs: u32,
    label: &str,
) -> Result<(), String> {
    if jobs == 0 {
        return Ok(());
    }
    let (mut started, mut recorded) = (Vec::new(), Vec::new());
    for _ in 0..jobs {
        let before = feed.stats();
        let t = Instant::now();
        store
            .submit(&NewJob::new("noop", serde_json::json!({})).queue(queue))
            .await
            .map_err(|e| e.to_string())?;
        let Some(s) = until(feed, t, |s| {
            (s.claimed > before.claimed).then_some(s.last_claim)
        })
        .await
        else {
            return Err("a job was not claimed within 10 s".into());
        };
        let Some(r) = until(feed, t, |s| {
            (s.written > before.written).then_some(s.last_write)
        })
        .await
        else {
            return Err("a job's outcome was not recorded within 10 s".into());
        };
        started.push(s);
        recorded.push(r);
    }
    let show = |what: &str, v: &mut Vec<Duration>| {
        let (p50, p90, p99) = crate::cli::bench::percentiles(v);
        say!(
            "{what}{label} ({} jobs one at a time): p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms",
            v.len()
        );
    };
    show("add → start (claimed, handed to a worker)", &mut started);
    show("add → outcome recorded", &mut recorded);
    Ok(())
}

/// The time from `t` to the moment the feed stamped when `done` first
/// holds of its counters, or `None` after 10 s. It waits in sleeps, not a
/// spin, so the measuring takes no CPU from what it measures; the feed's
/// own stamp makes the figure exact all the same.
async fn until(
    feed: &Feed,
    t: Instant,
    done: impl Fn(&FeedStats) -> Option<Option<Instant>>,
) -> Option<Duration> {
    let deadline = t + Duration::from_secs(10);
    loop {
        if let Some(at) = done(&feed.stats()) {
            return Some(at.unwrap_or_else(Instant::now).saturating_duration_since(t));
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// This process's CPU time (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: it returned 0, so the struct is filled.
    let u = unsafe { u.assume_init() };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// A database error with the server's message.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// CPU seconds (user + system) used so far by each running process on
/// this machine, by pid, with its program name (from `/proc`; a database
/// on another machine does not show).
fn cpu_by_process() -> std::collections::HashMap<u32, (String, f64)> {
    let mut by = std::collections::HashMap::new();
    let tick = ticks_per_second();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return by;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ... utime stime: fields 14 and 15.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| {
            rest.get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        by.insert(pid, (name, (ticks(11) + ticks(12)) / tick));
    }
    by
}

/// The CPU seconds each program used since `before` was read, largest
/// first: by process, so a kernel thread that renames itself as it takes
/// other work is not counted from its start. The kernel threads'
/// names lose what they are working on ("kworker/u8:2-writeback" counts
/// as "kworker"). Processes that ended in between are not counted.
fn cpu_by_program(before: &std::collections::HashMap<u32, (String, f64)>) -> Vec<(f64, String)> {
    let mut by = std::collections::HashMap::<String, f64>::new();
    for (pid, (name, t)) in cpu_by_process() {
        let was = before.get(&pid).map_or(0.0, |(_, t)| *t);
        let name = match name.split_once('/') {
            Some((kernel, _)) if name.starts_with("kworker") => kernel.to_string(),
            _ => name,
        };
        *by.entry(name).or_default() += t - was;
    }
    let mut by: Vec<(f64, String)> = by
        .into_iter()
        .map(|(name, t)| (t, name))
        .filter(|(t, _)| *t >= 0.02)
        .collect();
    by.sort_by(|a, b| b.0.total_cmp(&a.0));
    by
}

/// The machine's CPU time from `/proc/stat`, in clock ticks: busy, idle
/// (with waiting for IO) and stolen by the host of a virtual machine.
#[derive(Debug, Default, Clone, Copy)]
struct MachineTicks {
    busy: f64,
    idle: f64,
    steal: f64,
}

impl MachineTicks {
    fn read() -> MachineTicks {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return MachineTicks::default();
        };
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return MachineTicks::default();
        };
        // user nice system idle iowait irq softirq steal ...
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
        MachineTicks {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
        }
    }

    fn since(&self, before: &MachineTicks) -> MachineTicks {
        MachineTicks {
            busy: self.busy - before.busy,
            idle: self.idle - before.idle,
            steal: self.steal - before.steal,
        }
    }

    fn busy_seconds(&self) -> f64 {
        self.busy / ticks_per_second()
    }

    fn busy_share(&self) -> f64 {
        self.busy / self.total()
    }

    fn steal_share(&self) -> f64 {
        self.steal / self.total()
    }

    fn total(&self) -> f64 {
        (self.busy + self.idle + self.steal).max(1.0)
    }
}

/// The clock ticks in a second, the unit of `/proc`'s CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// A plain connection for the benchmark's own questions to the database.
struct Probe {
    client: tokio_postgres::Client,
}

/// Database-wide counters, to say where the time went.
struct Counters {
    wal: f64,
    commits: f64,
    rows: f64,
}

impl Probe {
    async fn connect(url: &str) -> Result<Probe, String> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect to the database: {e}"))?;
        tokio::spawn(connection);
        Ok(Probe { client })
    }

    async fn one(&self, sql: &str) -> Result<tokio_postgres::Row, String> {
        self.client
            .query_one(sql, &[])
            .await
            .map_err(|e| format!("benchmark query failed: {}", describe(&e)))
    }

    async fn server(&self) -> Result<String, String> {
        let r = self
            .one(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit'), \
                 current_setting('shared_buffers')",
            )
            .await?;
        Ok(format!(
            "PostgreSQL {} (synchronous_commit {}, shared_buffers {})",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2)
        ))
    }

    async fn counters(&self) -> Result<Counters, String> {
        let r = self
            .one(
                "SELECT (pg_current_wal_lsn() - '0/0')::float8, \
                 xact_commit::float8, (tup_inserted + tup_updated + tup_deleted)::float8 \
                 FROM pg_stat_database WHERE datname = current_database()",
            )
            .await?;
        // The statistics are sent at the end of each transaction, with a
        // small delay: the figures are close, not exact.
        Ok(Counters {
            wal: r.get(0),
            commits: r.get(1),
            rows: r.get(2),
        })
    }

    async fn completed(&self, queue: &str) -> Result<u64, String> {
        let r = self
            .client
            .query_one(
                "SELECT count(*) FROM procvisor_events WHERE queue = $1 AND event = 'completed'",
                &[&queue],
            )
            .await
            .map_err(|e| format!("benchmark query failed: {}", describe(&e)))?;
        Ok(r.get::<_, i64>(0) as u64)
    }

    /// Remove the queue's jobs and events.
    async fn clear(&self, queue: &str) -> Result<(), String> {
        for sql in [
            "DELETE FROM procvisor_jobs WHERE queue = $1",
            "DELETE FROM procvisor_events WHERE queue = $1",
        ] {
            self.client
                .execute(sql, &[&queue])
                .await
                .map_err(|e| format!("cannot clear the benchmark's queue: {}", describe(&e)))?;
        }
        Ok(())
    }

    /// Vacuum and checkpoint, so each run starts from the same state.
    async fn settle(&self) -> Result<(), String> {
        for table in ["procvisor_jobs", "procvisor_events"] {
            self.client
                .batch_execute(&format!("VACUUM ANALYZE {table}"))
                .await
                .map_err(|e| format!("cannot vacuum {table}: {}", describe(&e)))?;
        }
        Ok(())
    }

    /// `n` completed jobs' terminal events, as if they had run.
    async fn add_history(&self, queue: &str, n: u32) -> Result<(), String> {
        self.client
            .execute(
                "INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, \
                 lease, attempt, evictions, reclaims, result) \
                 SELECT nextval(pg_get_serial_sequence('procvisor_jobs', 'id')), 'completed', \
                 true, $1, 'noop', 5, 1, 1, 0, 0, 'null' FROM generate_series(1, $2::int)",
                &[&queue, &(n as i32)],
            )
            .await
            .map_err(|e| format!("cannot write the history: {}", describe(&e)))?;
        self.settle().await
    }
}
