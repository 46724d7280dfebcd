//! What an operator does by hand, and the record of it: pause and resume a
//! queue (supervisors claim nothing from a paused queue; running jobs
//! finish), retry an ended job (a new job with the same arguments and
//! settings), and the list of such actions, cancels included.

use std::time::SystemTime;

use super::{Store, StoreError, JOBS_CHANNEL};

/// One thing an operator did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// When.
    pub at: SystemTime,
    /// `cancel`, `retry`, `pause` or `resume`.
    pub action: String,
    /// The queue, for `pause` and `resume`.
    pub queue: Option<String>,
    /// The job, for `cancel` and `retry`.
    pub job_id: Option<i64>,
    /// The new job a `retry` made.
    pub new_job_id: Option<i64>,
    /// Who did it (as the caller said: `dashboard`, a user name…).
    pub by: String,
}

/// A queue's name, checked.
fn check_queue(name: &str) -> Result<(), StoreError> {
    check_name("the queue name", name)
}

/// A name an operator gives (`what` it is, for the message), checked: 1
/// to 200 bytes, no control characters.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} {name:?} is empty, longer than 200 bytes, or has control characters"
        )));
    }
    Ok(())
}

impl Store {
    /// Pause (`true`) or resume (`false`) a queue, recording who did it.
    /// A paused queue's waiting jobs stay waiting; resuming wakes the
    /// supervisors.
    pub async fn set_paused(&self, queue: &str, paused: bool, by: &str) -> Result<(), StoreError> {
        check_queue(queue)?;
        let client = self.client().await?;
        client
            .execute(
                "WITH q AS (
                    INSERT INTO procvisor_queues (name, paused) VALUES ($1, $2)
                    ON CONFLICT (name) DO UPDATE SET paused = $2, changed_at = now()
                    RETURNING 1
                 ), a AS (
                    INSERT INTO procvisor_actions (action, queue, by_whom)
                    VALUES (CASE WHEN $2 THEN 'pause' ELSE 'resume' END, $1, $3)
                    RETURNING 1
                 )
                 SELECT pg_notify($4, ''), (SELECT count(*) FROM q), (SELECT count(*) FROM a)",
                &[&queue, &paused, &by, &JOBS_CHANNEL],
            )
            .await
            .map_err(|e| StoreError::query("pause or resume a queue", e))?;
        Ok(())
    }

    /// The paused queues, by name.
    pub async fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name FROM procvisor_queues WHERE paused ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| StoreError::query("list paused queues", e))?;
        Ok(rows.iter().map(|r| r.get("name")).collect())
    }

    /// Run an ended job again: a new job with its kind, queue, priority,
    /// arguments and settings, due now. Its history gets a `retried`
    /// event naming the new job, and the action is recorded. Returns the
    /// new job's id. Only a job that ended other than `completed` can be
    /// retried this way. A job retried already is not retried again: the
    /// id of the job its first retry made is returned (so a form posted
    /// twice makes one job); to run it once more, retry that job.
    pub async fn retry(&self, id: i64, by: &str) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| StoreError::query("begin the retry", e))?;
        let row = tx
            .query_opt(
                "SELECT event, job IS NOT NULL AS again FROM procvisor_events
                 WHERE job_id = $1 AND terminal FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(|e| StoreError::query("find the job to retry", e))?;
        match row {
            None => return Err(StoreError::NoSuchJob(id)),
            Some(r) if !r.get::<_, bool>("again") => {
                let event: String = r.get("event");
                return Err(StoreError::Invalid(format!(
                    "job {id} ended {event}: only a job that failed, timed out, crashed, or was evicted, cancelled or rejected can be retried"
                )));
            }
            Some(_) => {}
        }
        let new: i64 = tx
            .query_one(include_str!("sql/retry.sql"), &[&id, &by])
            .await
            .map_err(|e| StoreError::query("retry the job", e))?
            .get("id");
        tx.execute("SELECT pg_notify($1, '')", &[&JOBS_CHANNEL])
            .await
            .map_err(|e| StoreError::query("retry the job", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::query("commit the retry", e))?;
        Ok(new)
    }

    /// The latest operator actions, newest first, up to `limit` (1 to
    /// 1000).
    pub async fn actions(&self, limit: usize) -> Result<Vec<Action>, StoreError> {
        let limit = limit.clamp(1, 1000) as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT at, action, queue, job_id, new_job_id, by_whom FROM procvisor_actions
                 ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(|e| StoreError::query("list operator actions", e))?;
        Ok(rows
            .iter()
            .map(|r| Action {
                at: r.get("at"),
                action: r.get("action"),
                queue: r.get("queue"),
                job_id: r.get("job_id"),
                new_job_id: r.get("new_job_id"),
                by: r.get("by_whom"),
            })
            .collect())
    }
}
