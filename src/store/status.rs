//! What the store holds now: jobs by queue, state and priority, and the
//! supervisors with their heartbeats and running jobs.

use std::time::{Duration, SystemTime};

use super::{Store, StoreError};

/// Live jobs of one queue, state and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCount {
    /// The queue.
    pub queue: String,
    /// `scheduled`, `available`, `running` or `retryable`.
    pub state: String,
    /// The priority.
    pub priority: u8,
    /// How many jobs.
    pub jobs: i64,
}

/// Live jobs of one queue and state, by priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState<'a> {
    /// The queue.
    pub queue: &'a str,
    /// `scheduled`, `available`, `running` or `retryable`.
    pub state: &'a str,
    /// How many jobs at each priority (index 0 = most urgent).
    pub by_priority: [i64; crate::LEAST_URGENT as usize + 1],
}

impl QueueState<'_> {
    /// How many jobs in all.
    pub fn total(&self) -> i64 {
        self.by_priority.iter().sum()
    }
}

/// One supervisor as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorRow {
    /// Its id.
    pub id: i64,
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// The queues it serves.
    pub queues: Vec<String>,
    /// Its worker processes.
    pub workers: u32,
    /// How long ago it last heartbeated.
    pub heartbeat_age: Duration,
    /// When it started.
    pub started_at: SystemTime,
    /// Whether it stopped (or was declared lost).
    pub stopped: bool,
    /// Jobs it holds now.
    pub running: i64,
}

/// A job running now.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningRow {
    /// Its id.
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its priority.
    pub priority: u8,
    /// Which attempt this is (1 = the first).
    pub attempt: u32,
    /// The supervisor running it.
    pub supervisor: Option<i64>,
    /// How long since it was claimed.
    pub running_for: Duration,
    /// Its last progress (fraction 0 to 1, and the handler's note), as its
    /// supervisor last wrote it.
    pub progress: Option<(f32, String)>,
}

/// A job still in the queue (waiting, due later, or running).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveJob {
    /// Its id.
    pub id: i64,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its priority.
    pub priority: u8,
    /// `scheduled`, `available`, `running` or `retryable`.
    pub state: String,
    /// Attempts so far (0 = never claimed).
    pub attempt: u32,
    /// Attempts it may have.
    pub max_attempts: u32,
    /// The supervisor running it, if running.
    pub supervisor: Option<i64>,
    /// When it is (or was) due.
    pub run_at: SystemTime,
    /// When it was submitted.
    pub created_at: SystemTime,
    /// Its arguments.
    pub args: serde_json::Value,
}

/// A picture of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Live jobs by queue, state and priority.
    pub jobs: Vec<QueueCount>,
    /// Supervisors that have not stopped, then the most recently stopped.
    pub supervisors: Vec<SupervisorRow>,
}

impl Status {
    /// The live jobs' counts gathered by queue and state (in that order),
    /// with a count per priority.
    pub fn by_queue_state(&self) -> Vec<QueueState<'_>> {
        let mut rows: Vec<QueueState<'_>> = Vec::new();
        for c in &self.jobs {
            let same = rows
                .last()
                .is_some_and(|r| r.queue == c.queue && r.state == c.state);
            if !same {
                rows.push(QueueState {
                    queue: &c.queue,
                    state: &c.state,
                    by_priority: [0; crate::LEAST_URGENT as usize + 1],
                });
            }
            if let Some(n) = rows
                .last_mut()
                .and_then(|r| r.by_priority.get_mut(usize::from(c.priority)))
            {
                *n += c.jobs;
            }
        }
        rows
    }
}

impl Store {
    /// Count the live jobs and list the supervisors (the running ones, and
    /// up to 20 stopped ones).
    pub async fn status(&self) -> Result<Status, StoreError> {
        let client = self.client().await?;
        let jobs = client
            .query(
                "SELECT queue, state, priority, count(*) AS jobs FROM procvisor_jobs
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                &[],
            )
            .await
            .map_err(|e| StoreError::query("count jobs", e))?
            .iter()
            .map(|r| QueueCount {
                queue: r.get("queue"),
                state: r.get("state"),
                priority: r.get::<_, i16>("priority").clamp(0, 255) as u8,
                jobs: r.get("jobs"),
            })
            .collect();
        let supervisors = client
            .query(
                "SELECT s.id, s.host, s.pid, s.queues, s.workers,
                        (extract(epoch FROM now() - s.heartbeat_at) * 1000)::bigint AS age_ms,
                        s.started_at, s.stopped_at IS NOT NULL AS stopped,
                        (SELECT count(*) FROM procvisor_jobs j
                          WHERE j.state = 'running' AND j.supervisor = s.id) AS running
                 FROM procvisor_supervisors s
                 WHERE s.stopped_at IS NULL
                    OR s.id IN (SELECT id FROM procvisor_supervisors
                                WHERE stopped_at IS NOT NULL ORDER BY stopped_at DESC LIMIT 20)
                 ORDER BY s.stopped_at IS NOT NULL, s.id",
                &[],
            )
            .await
            .map_err(|e| StoreError::query("list supervisors", e))?
            .iter()
            .map(|r| SupervisorRow {
                id: r.get("id"),
                host: r.get("host"),
                pid: r.get::<_, i32>("pid").max(0) as u32,
                queues: r.get("queues"),
                workers: r.get::<_, i32>("workers").max(0) as u32,
                heartbeat_age: Duration::from_millis(r.get::<_, i64>("age_ms").max(0) as u64),
                started_at: r.get("started_at"),
                stopped: r.get("stopped"),
                running: r.get("running"),
            })
            .collect();
        Ok(Status { jobs, supervisors })
    }

    /// Job `id` if it is still in the queue; `None` once it has ended
    /// (its history is in [`events_of`](Store::events_of)).
    pub async fn live_job(&self, id: i64) -> Result<Option<LiveJob>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, queue, kind, priority, state, attempt, max_attempts, supervisor,
                        run_at, created_at, args
                 FROM procvisor_jobs WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| StoreError::query("read a job", e))?;
        Ok(row.map(|r| LiveJob {
            id: r.get("id"),
            queue: r.get("queue"),
            kind: r.get("kind"),
            priority: r.get::<_, i16>("priority").clamp(0, 255) as u8,
            state: r.get("state"),
            attempt: r.get::<_, i32>("attempt").max(0) as u32,
            max_attempts: r.get::<_, i32>("max_attempts").max(0) as u32,
            supervisor: r.get("supervisor"),
            run_at: r.get("run_at"),
            created_at: r.get("created_at"),
            args: r.try_get("args").unwrap_or_else(|e| {
                serde_json::json!({
                    "unreadable_args": format!("the stored arguments cannot be read back: {e}")
                })
            }),
        }))
    }

    /// The jobs running now, longest running first, up to `limit` (1 to
    /// 1000).
    pub async fn running_jobs(&self, limit: usize) -> Result<Vec<RunningRow>, StoreError> {
        let limit = limit.clamp(1, 1000) as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, queue, kind, priority, attempt, supervisor,
                        (extract(epoch FROM now() - claimed_at) * 1000)::bigint AS running_ms,
                        progress, progress_note
                 FROM procvisor_jobs WHERE state = 'running'
                 ORDER BY claimed_at, id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(|e| StoreError::query("list running jobs", e))?;
        Ok(rows
            .iter()
            .map(|r| RunningRow {
                id: r.get("id"),
                queue: r.get("queue"),
                kind: r.get("kind"),
                priority: r.get::<_, i16>("priority").clamp(0, 255) as u8,
                attempt: r.get::<_, i32>("attempt").max(0) as u32,
                supervisor: r.get("supervisor"),
                running_for: Duration::from_millis(
                    r.get::<_, Option<i64>>("running_ms").unwrap_or(0).max(0) as u64,
                ),
                progress: r.get::<_, Option<f32>>("progress").map(|f| {
                    (
                        f,
                        r.get::<_, Option<String>>("progress_note")
                            .unwrap_or_default(),
                    )
                }),
            })
            .collect())
    }
}
