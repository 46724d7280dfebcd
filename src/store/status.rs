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

/// A picture of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Live jobs by queue, state and priority.
    pub jobs: Vec<QueueCount>,
    /// Supervisors that have not stopped, then the most recently stopped.
    pub supervisors: Vec<SupervisorRow>,
}

impl Store {
    /// Count the live jobs and list the supervisors (the running ones, and
    /// up to 20 stopped ones).
    pub async fn status(&self) -> Result<Status, StoreError> {
        let client = self.client().await?;
        let jobs = client
            .query(
                "SELECT queue, state, priority, count(*) FROM procvisor_jobs
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                &[],
            )
            .await
            .map_err(|e| StoreError::query("count jobs", e))?
            .iter()
            .map(|r| QueueCount {
                queue: r.get(0),
                state: r.get(1),
                priority: r.get::<_, i16>(2).clamp(0, 255) as u8,
                jobs: r.get(3),
            })
            .collect();
        let supervisors = client
            .query(
                "SELECT s.id, s.host, s.pid, s.queues, s.workers,
                        (extract(epoch FROM now() - s.heartbeat_at) * 1000)::bigint,
                        s.started_at, s.stopped_at IS NOT NULL,
                        (SELECT count(*) FROM procvisor_jobs j
                          WHERE j.state = 'running' AND j.supervisor = s.id)
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
                id: r.get(0),
                host: r.get(1),
                pid: r.get::<_, i32>(2).max(0) as u32,
                queues: r.get(3),
                workers: r.get::<_, i32>(4).max(0) as u32,
                heartbeat_age: Duration::from_millis(r.get::<_, i64>(5).max(0) as u64),
                started_at: r.get(6),
                stopped: r.get(7),
                running: r.get(8),
            })
            .collect();
        Ok(Status { jobs, supervisors })
    }
}
