//! The statements a supervisor writes with: the claim, and the batched,
//! fenced endings. Every write names the lease it holds; a row whose lease
//! moved on (the job was reclaimed and claimed elsewhere) is left alone and
//! the write is counted as stale.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::endings::{Claimed, Write};
use crate::store::{millis, StoreError, ENDED_CHANNEL, JOBS_CHANNEL};

/// The rest of either claim: the picked jobs become running under a new
/// lease for supervisor `$5`. They get no deadline yet: a job's deadline is
/// set when it starts in a worker (`START`), and until then its
/// supervisor's heartbeat keeps it. A job whose cancel was asked is never
/// picked (no such row waits: every way out of `running` ends it).
///
/// The jobs come back most urgent first. The supervisor starts each as it
/// is handed over, so the order matters: an UPDATE returns its rows in the
/// order its join meets them (often the table's physical order), and a
/// less urgent job returned first would start ahead of a more urgent one
/// of the same batch.
///
/// The rows are found by primary key from an array of the picked ids: a
/// join with the picked set lets the planner choose, for a large batch, a
/// hash join that reads the whole table (measured: a claim of 4,000 from
/// 100,000 waiting jobs took twice as long as by key).
macro_rules! take {
    () => {
        ", taken AS (
UPDATE procvisor_jobs j
SET state = 'running', lease = j.lease + 1, attempt = j.attempt + 1, supervisor = $5,
    claimed_at = now(), progress = NULL, progress_note = NULL, deadline_at = NULL
WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
RETURNING j.id, j.lease, j.kind, j.args::text AS args, j.priority, j.timeout_ms, j.attempt,
          j.max_attempts, j.backoff_ms, j.backoff_cap_ms, j.weight, j.run_at
)
SELECT id, lease, kind, args, priority, timeout_ms, attempt, max_attempts, backoff_ms,
       backoff_cap_ms, weight
FROM taken ORDER BY priority, run_at, id"
    };
}

/// The start of either claim: the claiming supervisor `$5`, unless it was
/// declared stopped. The share lock on its row makes a stop wait for a
/// claim in flight, and a claim that starts after a stop claims nothing,
/// so once a stop is committed no job can become running under it (what
/// the sweep of stopped supervisors relies on: see `lease::reclaim`).
macro_rules! me {
    () => {
        "
WITH me AS (
    SELECT id FROM procvisor_supervisors WHERE id = $5 AND stopped_at IS NULL FOR SHARE
),"
    };
}

/// Claim up to `$4` available jobs of the queues `$1` and kinds `$2` more
/// urgent than `$3`, in priority then due-time order, for supervisor `$5`.
///
/// Each queue is read in its own ordered index scan (a scan over all the
/// queues at once would sort every available job of theirs), then the
/// queues' heads are merged. A queue's head rows that lose the merge stay
/// locked only until this statement commits. A paused queue is skipped.
const CLAIM: &str = concat!(
    me!(),
    "
picked AS MATERIALIZED (
    SELECT head.id FROM (
        SELECT u.name FROM unnest($1::text[]) AS u(name)
        WHERE NOT EXISTS (SELECT 1 FROM procvisor_queues p WHERE p.name = u.name AND p.paused)
          AND EXISTS (SELECT 1 FROM me)
    ) AS q
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM procvisor_jobs
        WHERE state = 'available' AND queue = q.name AND priority < $3 AND run_at <= now()
          AND kind = ANY($2) AND NOT cancel_requested
        ORDER BY priority, run_at, id
        LIMIT $4
        FOR UPDATE SKIP LOCKED
    ) AS head
    ORDER BY head.priority, head.run_at, head.id
    LIMIT $4
)",
    take!()
);

/// The claim of a supervisor that draws at random, with the same
/// parameters as [`CLAIM`] and `$6`, how it draws: 1 by weight, 2 every
/// job alike, 3 by weight among the most urgent priority waiting.
///
/// A weighted draw of `n` without replacement across every waiting job of
/// the queues: each job gets the key `ln(u) / weight`, `u` uniform in
/// (0, 1], and the `n` largest keys win (Efraimidis and Spirakis): the
/// first is job `j` with probability `weight_j / total`, and so on for the
/// rest. It reads every waiting job of the queues (or of the band), so it
/// costs more than the priority claim as the backlog grows.
const CLAIM_DRAWN: &str = concat!(
    me!(),
    "
open AS (
    SELECT q.name FROM unnest($1::text[]) AS q(name)
    WHERE NOT EXISTS (SELECT 1 FROM procvisor_queues p WHERE p.name = q.name AND p.paused)
      AND EXISTS (SELECT 1 FROM me)
), band AS (
    SELECT min(priority) AS p FROM procvisor_jobs
    WHERE state = 'available' AND queue IN (SELECT name FROM open) AND priority < $3
      AND run_at <= now() AND kind = ANY($2)
), picked AS MATERIALIZED (
    SELECT id FROM procvisor_jobs
    WHERE state = 'available' AND queue IN (SELECT name FROM open) AND priority < $3
      AND run_at <= now() AND NOT cancel_requested
      AND kind = ANY($2) AND ($6 <> 3 OR priority = (SELECT p FROM band))
    ORDER BY ln(1 - random()) / CASE WHEN $6 = 2 THEN 1 ELSE weight END DESC
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)",
    take!()
);

/// A claimed job with what the supervisor needs to run it.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) job: Claimed,
    pub(crate) kind: String,
    pub(crate) args: String,
    pub(crate) priority: u8,
    pub(crate) timeout: Option<Duration>,
    pub(crate) weight: f64,
}

/// How a claim picks among the waiting jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draw {
    /// Most urgent first, then oldest.
    Priority,
    /// At random by weight, across every waiting job.
    Weighted,
    /// At random, every waiting job alike.
    Uniform,
    /// At random by weight among the most urgent priority waiting.
    PriorityWeighted,
}

impl Draw {
    /// How a supervisor with this policy claims.
    pub(crate) fn of(policy: crate::Policy) -> Draw {
        match policy {
            crate::Policy::Priority => Draw::Priority,
            crate::Policy::WeightedRandom => Draw::Weighted,
            crate::Policy::Uniform => Draw::Uniform,
            crate::Policy::PriorityWeighted => Draw::PriorityWeighted,
        }
    }
}

/// What to claim.
pub(crate) struct Ask<'a> {
    pub(crate) queues: &'a [String],
    pub(crate) kinds: &'a [String],
    /// Only jobs more urgent than this (11: any).
    pub(crate) below: u8,
    pub(crate) limit: usize,
    pub(crate) supervisor: i64,
    pub(crate) draw: Draw,
}

pub(crate) async fn claim(
    client: &impl GenericClient,
    ask: &Ask<'_>,
) -> Result<Vec<Grant>, StoreError> {
    let below = i16::from(ask.below);
    let limit = ask.limit.min(i64::MAX as usize) as i64;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        vec![&ask.queues, &ask.kinds, &below, &limit, &ask.supervisor];
    let mode: i32 = match ask.draw {
        Draw::Priority => 0,
        Draw::Weighted => 1,
        Draw::Uniform => 2,
        Draw::PriorityWeighted => 3,
    };
    let sql = if mode == 0 {
        CLAIM
    } else {
        params.push(&mode);
        CLAIM_DRAWN
    };
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(|e| StoreError::query("prepare the claim", e))?;
    let rows = client
        .query(&stmt, &params)
        .await
        .map_err(|e| StoreError::query("claim jobs", e))?;
    let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
    Ok(rows
        .iter()
        .map(|r| Grant {
            job: Claimed {
                id: r.get("id"),
                lease: r.get("lease"),
                attempt: r.get::<_, i32>("attempt").max(1) as u32,
                max_attempts: r.get::<_, i32>("max_attempts").max(1) as u32,
                backoff: ms(r.get("backoff_ms")),
                backoff_cap: ms(r.get("backoff_cap_ms")),
                local: None,
                cancel_requested: false,
                fenced: None,
            },
            kind: r.get("kind"),
            args: r.get("args"),
            priority: r
                .get::<_, i16>("priority")
                .clamp(0, crate::LEAST_URGENT.into()) as u8,
            timeout: r.get::<_, Option<i64>>("timeout_ms").map(ms),
            weight: r.get("weight"),
        })
        .collect())
}

/// A row still under the lease a write names is running under that claim:
/// every move out of `running` raises the lease. The writes match on
/// `(id, lease)` only, so each is a primary-key lookup per job, whatever
/// the planner's statistics say about how many jobs are running.
///
/// Terminal endings: delete the live rows still under their lease and
/// write each one's terminal event, in one statement (an ending other than
/// `completed` keeps what it takes to retry the job); wake waiters. The
/// events take their ids in the order the endings came (a join alone
/// would number them in whatever order it produces).
const END: &str = "
WITH d AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                         $6::integer[]) WITH ORDINALITY
        AS d(id, lease, event, result, error, pid, ord)
), gone AS (
    DELETE FROM procvisor_jobs j USING d
    WHERE j.id = d.id AND j.lease = d.lease
    RETURNING j.id, d.event, j.queue, j.kind, j.priority, j.lease, j.attempt, j.evictions,
              j.reclaims, j.supervisor, d.pid, d.result, d.error, d.ord,
              CASE WHEN d.event <> 'completed' THEN procvisor_job_again(j) END AS job
), ev AS (
    INSERT INTO procvisor_events (job_id, event, terminal, queue, kind, priority, lease, attempt,
                                  evictions, reclaims, supervisor, worker_pid, result, error, job)
    SELECT id, event, true, queue, kind, priority, lease, attempt, evictions, reclaims,
           supervisor, pid, result::jsonb, error, job
    FROM gone
    ORDER BY ord
    RETURNING job_id
), wake AS (
    SELECT pg_notify($7, '') FROM (SELECT 1 FROM ev LIMIT 1) AS hit
)
SELECT (SELECT count(*) FROM ev) AS written, (SELECT count(*) FROM wake) AS woke";

/// Non-terminal endings (see the file): the row goes back to waiting
/// under a new lease, or ends `cancelled` when its cancel was asked.
const REQUEUE: &str = include_str!("../sql/requeue.sql");

/// The deadlines of jobs that started in a worker (see the file).
const START: &str = include_str!("../sql/start.sql");

/// Write a batch of endings, and the deadlines of jobs that started
/// (`started`: id and lease each; `grace` beyond their timeout), in one
/// transaction (three statements at most). Returns how many endings were
/// stale (their lease had moved on).
pub(crate) async fn write_endings(
    client: &mut deadpool_postgres::Object,
    supervisor: i64,
    batch: &[(Claimed, Write)],
    started: &[(i64, i64)],
    grace: Duration,
) -> Result<usize, StoreError> {
    let mut ends = EndCols::default();
    let mut requeues = RequeueCols::default();
    for (job, w) in batch {
        match w {
            Write::End {
                event,
                result,
                error,
                pid,
            } => {
                ends.id.push(job.id);
                ends.lease.push(job.lease);
                ends.event.push(event);
                ends.result.push(result.as_deref());
                ends.error.push(error.as_deref());
                ends.pid.push(pid.map(|p| p.min(i32::MAX as u32) as i32));
            }
            Write::Requeue {
                event,
                state,
                delay,
                uncount,
                evicted,
                error,
                pid,
            } => {
                requeues.id.push(job.id);
                requeues.lease.push(job.lease);
                requeues.event.push(event);
                requeues.state.push(state);
                requeues.error.push(error.as_deref());
                requeues.delay.push(delay.map(millis));
                requeues.uncount.push(i32::from(*uncount));
                requeues.evicted.push(i32::from(*evicted));
                requeues
                    .pid
                    .push(pid.map(|p| p.min(i32::MAX as u32) as i32));
            }
        }
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::query("begin writing endings", e))?;
    let mut written = 0i64;
    if !started.is_empty() {
        let ids: Vec<i64> = started.iter().map(|s| s.0).collect();
        let leases: Vec<i64> = started.iter().map(|s| s.1).collect();
        let stmt = tx
            .prepare_cached(START)
            .await
            .map_err(|e| StoreError::query("prepare the deadline write", e))?;
        tx.execute(&stmt, &[&ids, &leases, &millis(grace)])
            .await
            .map_err(|e| StoreError::query("write started jobs' deadlines", e))?;
    }
    if !ends.id.is_empty() {
        let stmt = tx
            .prepare_cached(END)
            .await
            .map_err(|e| StoreError::query("prepare the ending write", e))?;
        let row = tx
            .query_one(
                &stmt,
                &[
                    &ends.id,
                    &ends.lease,
                    &ends.event,
                    &ends.result,
                    &ends.error,
                    &ends.pid,
                    &ENDED_CHANNEL,
                ],
            )
            .await
            .map_err(|e| StoreError::query("write job endings", e))?;
        written += row.get::<_, i64>("written");
    }
    if !requeues.id.is_empty() {
        let stmt = tx
            .prepare_cached(REQUEUE)
            .await
            .map_err(|e| StoreError::query("prepare the requeue", e))?;
        let row = tx
            .query_one(
                &stmt,
                &[
                    &requeues.id,
                    &requeues.lease,
                    &requeues.event,
                    &requeues.state,
                    &requeues.error,
                    &requeues.delay,
                    &requeues.uncount,
                    &requeues.evicted,
                    &requeues.pid,
                    &supervisor,
                    &JOBS_CHANNEL,
                    &ENDED_CHANNEL,
                ],
            )
            .await
            .map_err(|e| StoreError::query("put jobs back in the queue", e))?;
        written += row.get::<_, i64>("written");
    }
    tx.commit()
        .await
        .map_err(|e| StoreError::query("commit job endings", e))?;
    Ok(batch.len().saturating_sub(written.max(0) as usize))
}

#[derive(Default)]
struct EndCols<'a> {
    id: Vec<i64>,
    lease: Vec<i64>,
    event: Vec<&'a str>,
    result: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    pid: Vec<Option<i32>>,
}

#[derive(Default)]
struct RequeueCols<'a> {
    id: Vec<i64>,
    lease: Vec<i64>,
    event: Vec<&'a str>,
    state: Vec<&'a str>,
    error: Vec<Option<&'a str>>,
    delay: Vec<Option<i64>>,
    uncount: Vec<i32>,
    evicted: Vec<i32>,
    pid: Vec<Option<i32>>,
}
