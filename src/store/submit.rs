//! Producers' side: a job to insert ([`NewJob`]), inserting one or many,
//! and cancelling from anywhere.

use std::time::{Duration, SystemTime};

use super::{engine, millis, Store, StoreError};
use crate::sched::retry::MAX_ATTEMPTS;

/// Longest queue name.
const MAX_QUEUE_LEN: usize = 100;
/// Longest kind name.
const MAX_KIND_LEN: usize = 200;
/// Largest weight (as for jobs submitted in-process).
const MAX_WEIGHT: f64 = 1_000_000.0;
/// Longest timeout or backoff the table accepts: a day.
const MAX_DELAY: Duration = Duration::from_secs(86_400);

/// A job to insert into the store.
///
/// ```
/// use std::time::Duration;
/// use procvisor::store::NewJob;
///
/// let job = NewJob::new("resize", serde_json::json!({"path": "a.png"}))
///     .queue("images")
///     .priority(1)
///     .timeout(Duration::from_secs(30))
///     .retries(3)
///     .run_after(Duration::from_secs(60));
/// assert!(job.check().is_ok());
/// // Every value has a range, and the error says which and what it is.
/// let bad = NewJob::new("resize", serde_json::json!({})).weight(0.0);
/// assert!(bad.check().unwrap_err().to_string().contains("weight 0 is out of range"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub(crate) kind: String,
    pub(crate) args: serde_json::Value,
    pub(crate) queue: String,
    pub(crate) priority: u8,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) backoff_cap: Duration,
    pub(crate) run_at: Option<When>,
    pub(crate) weight: f64,
}

/// When a delayed job comes due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum When {
    /// At this time.
    At(SystemTime),
    /// This long after the database's clock at insert.
    After(Duration),
}

impl NewJob {
    /// A job of `kind` with JSON `args`, in the `default` queue, priority 5,
    /// no timeout, one attempt, due now.
    pub fn new(kind: &str, args: serde_json::Value) -> NewJob {
        NewJob {
            kind: kind.to_string(),
            args,
            queue: "default".into(),
            priority: crate::DEFAULT_PRIORITY,
            timeout: None,
            max_attempts: 1,
            backoff: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            run_at: None,
            weight: 1.0,
        }
    }

    /// The queue (supervisors serve the queues they are told to).
    pub fn queue(mut self, queue: &str) -> NewJob {
        self.queue = queue.to_string();
        self
    }

    /// 0 (most urgent) to 10.
    pub fn priority(mut self, priority: u8) -> NewJob {
        self.priority = priority;
        self
    }

    /// Its weight for supervisors that draw jobs at random (default 1; a
    /// positive number up to 1,000,000): such a supervisor takes it with
    /// probability weight / total weight of the waiting jobs. Supervisors
    /// that go by priority ignore it.
    pub fn weight(mut self, weight: f64) -> NewJob {
        self.weight = weight;
        self
    }

    /// Kill the job's worker when an attempt runs longer (1 ms to a day).
    pub fn timeout(mut self, timeout: Duration) -> NewJob {
        self.timeout = Some(timeout);
        self
    }

    /// Try again this many times after a failure, a timeout or a crash
    /// (attempts in all: `retries + 1`), waiting an exponential backoff
    /// with jitter between attempts.
    pub fn retries(mut self, retries: u32) -> NewJob {
        self.max_attempts = retries.saturating_add(1);
        self
    }

    /// The backoff before the first retry (doubling after each, at most
    /// `cap`; both at most a day). Defaults: 1 s and 1 h.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> NewJob {
        self.backoff = base;
        self.backoff_cap = cap;
        self
    }

    /// Run no earlier than `at`.
    pub fn run_at(mut self, at: SystemTime) -> NewJob {
        self.run_at = Some(When::At(at));
        self
    }

    /// Run no earlier than `delay` from now (by the database's clock).
    pub fn run_after(mut self, delay: Duration) -> NewJob {
        self.run_at = Some(When::After(delay));
        self
    }

    /// Check every value against its range, with a message that names it.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::Invalid(m));
        if self.kind.is_empty() || self.kind.len() > MAX_KIND_LEN {
            return bad(format!(
                "a job kind must be 1 to {MAX_KIND_LEN} bytes long, not {}",
                self.kind.len()
            ));
        }
        if self.queue.is_empty() || self.queue.len() > MAX_QUEUE_LEN {
            return bad(format!(
                "a queue name must be 1 to {MAX_QUEUE_LEN} bytes long, not {}",
                self.queue.len()
            ));
        }
        if self.priority > crate::LEAST_URGENT {
            return bad(format!(
                "priority {} is out of range: use 0 (most urgent) to {}",
                self.priority,
                crate::LEAST_URGENT
            ));
        }
        if !(self.weight > 0.0 && self.weight <= MAX_WEIGHT) {
            return bad(format!(
                "weight {} is out of range: use a positive number up to 1000000 (default 1)",
                self.weight
            ));
        }
        if let Some(t) = self.timeout {
            if t < Duration::from_millis(1) || t > MAX_DELAY {
                return bad(format!(
                    "a timeout of {t:?} is out of range: use 1 ms to 1 day"
                ));
            }
        }
        let shape = super::storable::shape(&self.args);
        let deep = shape.depth;
        if deep > super::storable::MAX_DEPTH {
            return bad(format!(
                "the arguments are nested {deep} levels deep: at most {} are allowed",
                super::storable::MAX_DEPTH
            ));
        }
        if shape.nul {
            return bad(
                "the arguments hold the character U+0000, which PostgreSQL cannot store: remove it or encode the data (base64, for example)".into(),
            );
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return bad(format!(
                "{} retries is out of range: use 0 to {}",
                self.max_attempts.saturating_sub(1),
                MAX_ATTEMPTS - 1
            ));
        }
        if self.backoff > MAX_DELAY || self.backoff_cap > MAX_DELAY {
            return bad("a backoff must be at most a day".into());
        }
        if let Some(When::After(d)) = self.run_at {
            if d > Duration::from_secs(10 * 365 * 86_400) {
                return bad(format!(
                    "a delay of {d:?} is out of range: at most 10 years"
                ));
            }
        }
        Ok(())
    }

    /// The delay in milliseconds and the absolute time, as the insert takes
    /// them (at most one is set).
    pub(crate) fn due(&self) -> (Option<i64>, Option<SystemTime>) {
        match self.run_at {
            None => (None, None),
            Some(When::After(d)) => (Some(millis(d)), None),
            Some(When::At(t)) => (None, Some(t)),
        }
    }
}

/// Most jobs in one insert statement.
const INSERT_BATCH: usize = 10_000;

/// What [`Store::cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The job was waiting; it is now ended `cancelled`.
    Ended,
    /// The job is running; its supervisor was asked to stop it, and will
    /// end it `cancelled` (within its heartbeat period).
    Requested,
    /// The job had already ended.
    AlreadyEnded,
}

impl Store {
    /// Insert one job; returns its id. It is committed when this returns.
    pub async fn submit(&self, job: &NewJob) -> Result<i64, StoreError> {
        Ok(self.submit_many(std::slice::from_ref(job)).await?[0])
    }

    /// Insert many jobs in as few statements as possible (batches of
    /// 10,000, each its own transaction); returns their ids in order.
    pub async fn submit_many(&self, jobs: &[NewJob]) -> Result<Vec<i64>, StoreError> {
        for j in jobs {
            j.check()?;
        }
        let client = self.client().await?;
        let mut ids = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(INSERT_BATCH) {
            ids.extend(engine::insert(&client, chunk).await?);
        }
        Ok(ids)
    }

    /// Cancel a job: a waiting one ends `cancelled` at once; a running one
    /// is stopped by its supervisor, which ends it `cancelled`. Recorded as
    /// asked by `application`; see [`cancel_as`](Self::cancel_as).
    pub async fn cancel(&self, id: i64) -> Result<Cancelled, StoreError> {
        self.cancel_as(id, "application").await
    }

    /// Cancel a job as asked by `by` (as the caller says: `dashboard`, a
    /// user's name; 1 to 200 characters, no control characters), recorded
    /// as an operator action and named in the job's `cancelled` event. The
    /// request is kept in the job's row: if its supervisor stops or is lost
    /// before it acts, whichever supervisor the job meets next ends it
    /// `cancelled`, and none starts it again.
    pub async fn cancel_as(&self, id: i64, by: &str) -> Result<Cancelled, StoreError> {
        super::operator::check_name("who cancels", by)?;
        let client = self.client().await?;
        match engine::cancel(&client, id, by).await? {
            engine::Cancel::Ended => Ok(Cancelled::Ended),
            engine::Cancel::Marked => Ok(Cancelled::Requested),
            engine::Cancel::NotLive => {
                let ended = client
                    .query_opt(
                        "SELECT 1 FROM procvisor_events WHERE job_id = $1 AND terminal",
                        &[&id],
                    )
                    .await
                    .map_err(|e| StoreError::query("find the job to cancel", e))?;
                match ended {
                    Some(_) => Ok(Cancelled::AlreadyEnded),
                    None => Err(StoreError::NoSuchJob(id)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_the_database_cannot_keep_are_refused_with_what_to_do() {
        let nul = NewJob::new("k", serde_json::json!({"s": "a\u{0}b"}));
        let e = nul.check().unwrap_err().to_string();
        assert!(e.contains("U+0000") && e.contains("base64"), "{e}");
        let mut deep = serde_json::json!(1);
        for _ in 0..150 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let e = NewJob::new("k", deep).check().unwrap_err().to_string();
        assert!(e.contains("nested 150 levels deep"), "{e}");
        assert!(NewJob::new("k", serde_json::json!({"s": "\\u0000"}))
            .check()
            .is_ok());
    }
}
