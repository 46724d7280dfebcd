//! The event history: what happened to each job, read once per job or
//! followed as a stream.
//!
//! Following by event id alone would skip events: ids are taken when a
//! row is inserted, but rows become visible when their transaction
//! commits, and those orders differ. So a reader takes the events of
//! *finished* transactions only: those whose transaction id is below the
//! oldest one still running (the snapshot's horizon). Each read covers the
//! transactions from the previous horizon to the current one, in
//! transaction then event-id order (the table's primary key); none is read
//! twice and none is skipped. (A transaction left open elsewhere holds the
//! horizon back, and the stream with it, until it ends.) One job's events
//! come in the order they happened: each is written by a transaction that
//! began after the one before it committed.

use std::time::SystemTime;

use super::{Store, StoreError};

/// One thing that happened to a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's id (increasing in insert order).
    pub id: i64,
    /// The job's id.
    pub job_id: i64,
    /// What happened. Terminal events are the job's outcome: `completed`,
    /// `failed`, `timed_out`, `crashed`, `evicted`, `cancelled`,
    /// `rejected`. Others: `retrying` (an attempt failed and another is
    /// due), `preempted` (evicted by a more urgent job and put back in
    /// the queue, keeping its place), `reclaimed` (its supervisor stopped
    /// heartbeating, or it ran past its deadline; it is queued again),
    /// `released` (its supervisor stopped and gave it back),
    /// `cancel_requested`.
    pub event: String,
    /// Whether this is the job's one ending.
    pub terminal: bool,
    /// When, by the database's clock.
    pub at: SystemTime,
    /// The job's queue.
    pub queue: String,
    /// The job's kind.
    pub kind: String,
    /// The job's priority.
    pub priority: u8,
    /// The lease under which it happened.
    pub lease: i64,
    /// The attempt (1 = the first; 0 = never claimed).
    pub attempt: u32,
    /// Evictions before this.
    pub evictions: u32,
    /// Reclaims before this (including this one, for `reclaimed`).
    pub reclaims: u32,
    /// The supervisor that held the job, if one did.
    pub supervisor: Option<i64>,
    /// The worker process that ran it, if known.
    pub worker_pid: Option<u32>,
    /// A completed job's result.
    pub result: Option<serde_json::Value>,
    /// What went wrong, for endings other than `completed`.
    pub error: Option<String>,
}

impl Event {
    /// The event as a JSON object (time as RFC 3339).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "job_id": self.job_id,
            "event": self.event,
            "terminal": self.terminal,
            "at": rfc3339(self.at),
            "queue": self.queue,
            "kind": self.kind,
            "priority": self.priority,
            "lease": self.lease,
            "attempt": self.attempt,
            "evictions": self.evictions,
            "reclaims": self.reclaims,
            "supervisor": self.supervisor,
            "worker_pid": self.worker_pid,
            "result": self.result,
            "error": self.error,
        })
    }

    pub(crate) fn from_row(r: &tokio_postgres::Row) -> Event {
        Event {
            id: r.get("id"),
            job_id: r.get("job_id"),
            event: r.get("event"),
            terminal: r.get("terminal"),
            at: r.get("at"),
            queue: r.get("queue"),
            kind: r.get("kind"),
            priority: r.get::<_, i16>("priority").clamp(0, 255) as u8,
            lease: r.get("lease"),
            attempt: r.get::<_, i32>("attempt").max(0) as u32,
            evictions: r.get::<_, i32>("evictions").max(0) as u32,
            reclaims: r.get::<_, i32>("reclaims").max(0) as u32,
            supervisor: r.get("supervisor"),
            worker_pid: r
                .get::<_, Option<i32>>("worker_pid")
                .map(|p| p.max(0) as u32),
            result: readable_result(r),
            error: r.get("error"),
        }
    }
}

/// The event's result, or, when it cannot be read back (a result stored
/// by other means, nested deeper than a JSON reader allows), a note that
/// says why: one odd event never makes a whole history unreadable.
fn readable_result(r: &tokio_postgres::Row) -> Option<serde_json::Value> {
    match r.try_get::<_, Option<serde_json::Value>>("result") {
        Ok(v) => v,
        Err(e) => Some(serde_json::json!({
            "unreadable_result": format!("the stored result cannot be read back: {e}")
        })),
    }
}

/// A time as RFC 3339 text, UTC.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| "?".into())
}

pub(crate) const COLUMNS: &str =
    "id, job_id, event, terminal, at, queue, kind, priority, lease, attempt, \
                       evictions, reclaims, supervisor, worker_pid, result, error";

/// Where a follower of the event stream is (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    /// The events still to be read are those after (`tx`, `after_id`) in
    /// transaction, then id, order.
    tx: u64,
    after_id: i64,
    /// The horizon of the read in progress, if one is: events of
    /// transactions from here on wait for the next read.
    to: Option<u64>,
    job: Option<i64>,
}

/// Most events one read returns.
const PAGE: i64 = 5_000;

impl EventCursor {
    /// From the first event in the table.
    pub fn from_start() -> EventCursor {
        EventCursor {
            tx: 0,
            after_id: 0,
            to: None,
            job: None,
        }
    }

    /// Only the events of job `id`.
    pub fn only_job(mut self, id: i64) -> EventCursor {
        self.job = Some(id);
        self
    }
}

/// The oldest transaction still running: every event of an older one is
/// committed (or never will be).
async fn horizon(client: &deadpool_postgres::Object) -> Result<u64, StoreError> {
    let h: i64 = client
        .query_one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("read the event horizon", e))?
        .get("horizon");
    Ok(h.max(0) as u64)
}

impl Store {
    /// A cursor that reads events written from now on.
    pub async fn event_cursor_now(&self) -> Result<EventCursor, StoreError> {
        let horizon = horizon(&self.client().await?).await?;
        Ok(EventCursor {
            tx: horizon,
            ..EventCursor::from_start()
        })
    }

    /// The next events after `cursor`, oldest first, and the cursor moved
    /// past them. Empty when nothing new has committed.
    pub async fn next_events(&self, cursor: &mut EventCursor) -> Result<Vec<Event>, StoreError> {
        let client = self.client().await?;
        let to = match cursor.to {
            Some(to) => to,
            None => {
                let h = horizon(&client).await?;
                cursor.to = Some(h);
                h
            }
        };
        // The transaction ids go as text: xid8 has no binary form in the
        // client library.
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS}, tx::text AS tx_text FROM procvisor_events
                     WHERE (tx, id) > ($1::text::xid8, $2) AND tx < $3::text::xid8
                       AND ($4::bigint IS NULL OR job_id = $4)
                     ORDER BY tx, id LIMIT $5"
                ),
                &[
                    &cursor.tx.to_string(),
                    &cursor.after_id,
                    &to.to_string(),
                    &cursor.job,
                    &PAGE,
                ],
            )
            .await
            .map_err(|e| StoreError::query("read events", e))?;
        let events: Vec<Event> = rows.iter().map(Event::from_row).collect();
        match rows.last() {
            Some(last) if (rows.len() as i64) >= PAGE => {
                let tx: &str = last.get("tx_text");
                cursor.tx = tx.parse().map_err(|_| {
                    StoreError::Invalid(format!("the database gave the transaction id {tx:?}"))
                })?;
                cursor.after_id = last.get("id");
            }
            _ => {
                cursor.tx = to;
                cursor.after_id = 0;
                cursor.to = None;
            }
        }
        Ok(events)
    }

    /// Every event of job `id` so far, oldest first.
    pub async fn events_of(&self, id: i64) -> Result<Vec<Event>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                // One lookup in each of the two partial indexes (terminal,
                // and the rest).
                &format!(
                    "SELECT {COLUMNS} FROM procvisor_events WHERE job_id = $1 AND NOT terminal \
                     UNION ALL \
                     SELECT {COLUMNS} FROM procvisor_events WHERE job_id = $1 AND terminal \
                     ORDER BY id"
                ),
                &[&id],
            )
            .await
            .map_err(|e| StoreError::query("read a job's events", e))?;
        Ok(rows.iter().map(Event::from_row).collect())
    }

    /// The latest endings, newest first: up to `limit` (1 to 1000) among
    /// the last 20,000 events, only those other than `completed` if
    /// `failures_only`. Bounded, so it stays cheap however long the
    /// history.
    pub async fn recent_endings(
        &self,
        limit: usize,
        failures_only: bool,
    ) -> Result<Vec<Event>, StoreError> {
        let limit = limit.clamp(1, 1000) as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM (
                         SELECT * FROM procvisor_events ORDER BY tx DESC, id DESC LIMIT 20000
                     ) AS recent
                     WHERE terminal AND (NOT $1 OR event <> 'completed')
                     ORDER BY tx DESC, id DESC LIMIT $2"
                ),
                &[&failures_only, &limit],
            )
            .await
            .map_err(|e| StoreError::query("read recent endings", e))?;
        Ok(rows.iter().map(Event::from_row).collect())
    }

    /// The terminal event of job `id`, if it has ended.
    pub async fn ending_of(&self, id: i64) -> Result<Option<Event>, StoreError> {
        Ok(self.events_of(id).await?.into_iter().find(|e| e.terminal))
    }
}
