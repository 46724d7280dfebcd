//! Periodic jobs in the store: schedules (a cron expression in a time zone
//! and a job to enqueue at each fire), and their firing.
//!
//! Every supervisor evaluates every schedule at each poll. A fire is one
//! statement: a compare-and-swap that moves the schedule's last fire
//! forward to this fire's time, and the insert of the job, together; a
//! second supervisor evaluating the same fire finds the last fire already
//! there and inserts nothing. Clocks that disagree between machines make a
//! fire early or late by their difference, never twice. The rules for
//! daylight-saving changes and for fires missed while no supervisor ran
//! are [`CronSpec`]'s.

use std::time::SystemTime;

use jiff::Timestamp;
use tokio_postgres::GenericClient;

use super::cron::CronSpec;
use super::{millis, NewJob, Store, StoreError, JOBS_CHANNEL};

/// Longest schedule name.
const MAX_NAME_LEN: usize = 100;

/// A schedule as the store holds it, with its next fire.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRow {
    /// Its name, unique in the store.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub time_zone: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// Its jobs' kind.
    pub kind: String,
    /// Its jobs' arguments.
    pub args: serde_json::Value,
    /// Its jobs' priority.
    pub priority: u8,
    /// The time of the last fire enqueued, if any.
    pub last_fire: Option<SystemTime>,
    /// The time of the next fire (none if the expression or zone no longer
    /// reads on this machine).
    pub next_fire: Option<SystemTime>,
}

/// One fire that [`Store::fire_schedules`] enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The schedule's name.
    pub schedule: String,
    /// The fire's time by the schedule (not when it was enqueued).
    pub fire: SystemTime,
    /// The enqueued job's id.
    pub job: i64,
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "a schedule name must be 1 to {MAX_NAME_LEN} bytes of printable text, not {name:?}"
        )));
    }
    Ok(())
}

impl Store {
    /// Add a schedule: enqueue `job` at every fire of the cron expression
    /// `cron` read in the IANA time zone `zone`. The first fire is the first
    /// one after now. Fails if a schedule of this name exists.
    ///
    /// ```no_run
    /// # async fn demo(store: procvisor::store::Store) -> Result<(), procvisor::store::StoreError> {
    /// use procvisor::store::NewJob;
    ///
    /// let report = NewJob::new("report", serde_json::json!({"kind": "daily"})).retries(2);
    /// store.add_schedule("daily-report", "0 7 * * MON-FRI", "Europe/Berlin", &report).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_schedule(
        &self,
        name: &str,
        cron: &str,
        zone: &str,
        job: &NewJob,
    ) -> Result<(), StoreError> {
        check_name(name)?;
        CronSpec::parse(cron, zone)?;
        job.check()?;
        if job.run_at.is_some() {
            return Err(StoreError::Invalid(
                "a schedule's job runs at each fire: give it no delay or start time".into(),
            ));
        }
        let client = self.client().await?;
        let added = client
            .execute(
                "INSERT INTO procvisor_schedules (name, cron, time_zone, queue, kind, args, priority,
                     timeout_ms, max_attempts, backoff_ms, backoff_cap_ms, weight)
                 VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (name) DO NOTHING",
                &[
                    &name,
                    &cron,
                    &zone,
                    &job.queue,
                    &job.kind,
                    &job.args.to_string(),
                    &i16::from(job.priority),
                    &job.timeout.map(millis),
                    &(job.max_attempts as i32),
                    &millis(job.backoff),
                    &millis(job.backoff_cap),
                    &job.weight,
                ],
            )
            .await
            .map_err(|e| StoreError::query("add the schedule", e))?;
        if added == 0 {
            return Err(StoreError::Invalid(format!(
                "a schedule named {name:?} exists already: remove it first, or pick another name"
            )));
        }
        Ok(())
    }

    /// Remove a schedule; says whether there was one. Jobs it already
    /// enqueued stay.
    pub async fn remove_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM procvisor_schedules WHERE name = $1", &[&name])
            .await
            .map_err(|e| StoreError::query("remove the schedule", e))?;
        Ok(n > 0)
    }

    /// Every schedule, by name, with its next fire.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, cron, time_zone, queue, kind, args::text AS args, priority,
                        last_fire, created_at
                 FROM procvisor_schedules ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| StoreError::query("read the schedules", e))?;
        let now = Timestamp::now();
        Ok(rows
            .iter()
            .map(|r| {
                let last_fire: Option<SystemTime> = r.get("last_fire");
                let created: SystemTime = r.get("created_at");
                let since = ts(last_fire.unwrap_or(created)).max(now);
                let next_fire = CronSpec::read(r.get("cron"), r.get("time_zone"))
                    .ok()
                    .and_then(|s| s.next_after(since))
                    .map(SystemTime::from);
                ScheduleRow {
                    name: r.get("name"),
                    cron: r.get("cron"),
                    time_zone: r.get("time_zone"),
                    queue: r.get("queue"),
                    kind: r.get("kind"),
                    args: serde_json::from_str(r.get("args")).unwrap_or(serde_json::Value::Null),
                    priority: r.get::<_, i16>("priority").clamp(0, 10) as u8,
                    last_fire,
                    next_fire,
                }
            })
            .collect())
    }

    /// Enqueue the fires of every schedule due at `now` (at most one per
    /// schedule; see [`CronSpec`] for missed fires). Supervisors call this
    /// at each poll with their clock; a test may call it with any time.
    /// However many callers evaluate the same fire, one job is enqueued.
    pub async fn fire_schedules(&self, now: SystemTime) -> Result<Vec<Fired>, StoreError> {
        let client = self.client().await?;
        fire_due(&**client, now).await
    }
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::MIN)
}

/// [`Store::fire_schedules`] on a client the caller holds.
pub(crate) async fn fire_due(
    client: &impl GenericClient,
    now: SystemTime,
) -> Result<Vec<Fired>, StoreError> {
    let rows = client
        .query(
            "SELECT name, cron, time_zone, last_fire, created_at FROM procvisor_schedules",
            &[],
        )
        .await
        .map_err(|e| StoreError::query("read the schedules", e))?;
    let mut fired = Vec::new();
    for r in rows {
        let name: String = r.get("name");
        let spec = match CronSpec::read(r.get("cron"), r.get("time_zone")) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(schedule = name, "cannot evaluate the schedule: {e}");
                continue;
            }
        };
        let last: Option<SystemTime> = r.get("last_fire");
        let since = ts(last.unwrap_or_else(|| r.get("created_at")));
        let Some(fire) = spec.due(since, ts(now)) else {
            continue;
        };
        let fire = SystemTime::from(fire);
        let job = client
            .query_opt(include_str!("sql/fire.sql"), &[&name, &fire, &JOBS_CHANNEL])
            .await
            .map_err(|e| StoreError::query("enqueue a schedule's fire", e))?;
        if let Some(job) = job {
            fired.push(Fired {
                schedule: name,
                fire,
                job: job.get("id"),
            });
        }
    }
    Ok(fired)
}
