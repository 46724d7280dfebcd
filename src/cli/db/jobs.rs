//! `procvisor submit` and `procvisor cancel`: put a job in the store, take
//! one out.

use std::time::{Duration, SystemTime};

use procvisor::store::{Cancelled, NewJob};

use super::DbArgs;

/// A job as the command line describes it: `submit` enqueues one,
/// `schedule add` one at every fire.
#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// The job kind (a handler name the workers serve).
    kind: String,
    /// Its input, as JSON.
    #[arg(default_value = "{}")]
    args: String,
    /// Priority, 0 (most urgent) to 10.
    #[arg(long, short, default_value_t = procvisor::DEFAULT_PRIORITY, value_parser = clap::value_parser!(u8).range(0..=10))]
    priority: u8,
    /// The queue (supervisors take jobs from the queues they are given).
    #[arg(long, short, default_value = "default")]
    queue: String,
    /// Kill an attempt that runs longer than this many seconds (more than
    /// 0, at most a day).
    #[arg(long, short, value_name = "SECS", value_parser = crate::cli::num::positive_secs)]
    timeout: Option<Duration>,
    /// Try again this many times after a failure, timeout or crash (0 to
    /// 9999), with exponential backoff and jitter.
    #[arg(long, short, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=9999))]
    retries: u32,
    /// Its weight for supervisors that pick jobs at random (`supervise
    /// --policy weighted`): taken with probability weight / total weight
    /// of the waiting jobs (a positive number up to 1000000).
    #[arg(long, short, default_value_t = 1.0)]
    weight: f64,
}

impl JobArgs {
    /// The job, checked.
    pub fn job(&self) -> Result<NewJob, String> {
        let value: serde_json::Value = serde_json::from_str(&self.args).map_err(|e| {
            format!("the job's input is not valid JSON ({e}): quote it, e.g. '{{\"secs\": 1}}'")
        })?;
        inexact_integer(&self.args).map_or(Ok(()), |n| {
            Err(format!(
                "the number {n} in the job's input is too large to be kept exactly (whole numbers must fit in 64 bits): pass it as a string, e.g. \"{n}\""
            ))
        })?;
        let mut job = NewJob::new(&self.kind, value)
            .priority(self.priority)
            .queue(&self.queue)
            .retries(self.retries)
            .weight(self.weight);
        if let Some(t) = self.timeout {
            job = job.timeout(t);
        }
        job.check().map_err(|e| e.to_string())?;
        Ok(job)
    }
}

/// The first whole number in the JSON text `json` (outside strings) that
/// does not fit in 64 bits, which a JSON reader would round: the job
/// would get another number than the one given.
fn inexact_integer(json: &str) -> Option<&str> {
    let bytes = json.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                i += 1;
            }
            let token = &json[start..i];
            let whole = !token.contains(['.', 'e', 'E']);
            if whole && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                return Some(token);
            }
            continue;
        }
        i += 1;
    }
    None
}

/// Arguments of `submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    job: JobArgs,
    /// Run no earlier than this many seconds from now (up to 10 years).
    #[arg(long, value_name = "SECS", conflicts_with = "at", value_parser = crate::cli::num::delay)]
    delay: Option<Duration>,
    /// Run no earlier than this time: 2026-12-01T09:00:00Z, or a local
    /// 2026-12-01T09:00 (in the system's time zone).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<SystemTime>,
    /// Wait for the job to end; print its ending as JSON, and exit 0 only
    /// if it completed.
    #[arg(long)]
    wait: bool,
}

/// A time from the command line: RFC 3339 with an offset, or a civil
/// date-time in the system's time zone.
fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(SystemTime::from(ts));
    }
    let civil: jiff::civil::DateTime = s.parse().map_err(|_| {
        format!("{s:?} is not a time: write 2026-12-01T09:00:00Z, or 2026-12-01T09:00 for the local time zone")
    })?;
    civil
        .to_zoned(jiff::tz::TimeZone::system())
        .map(|z| SystemTime::from(z.timestamp()))
        .map_err(|e| format!("{s:?} is not a time in the local time zone: {e}"))
}

pub fn submit(a: SubmitArgs) -> Result<i32, String> {
    let mut job = a.job.job()?;
    if let Some(d) = a.delay {
        job = job.run_after(d);
    }
    if let Some(t) = a.at {
        job = job.run_at(t);
    }
    job.check().map_err(|e| e.to_string())?;
    super::block_on(async move {
        let store = a.db.connect(2).await?;
        let id = store.submit(&job).await.map_err(|e| e.to_string())?;
        say!("{id}");
        if !a.wait {
            return Ok(0);
        }
        let end = store.wait(id).await.map_err(|e| e.to_string())?;
        say!("{}", end.to_json());
        Ok(if end.event == "completed" { 0 } else { 1 })
    })?
}

/// Arguments of `cancel`.
#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The job's id (as `submit` printed it).
    id: i64,
}

/// Who runs this command, for the record: the login name, as the
/// environment says (only a label), kept printable and short.
fn user_name() -> String {
    let name: String = std::env::var("USER")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if name.is_empty() {
        format!("uid {}", rustix::process::getuid().as_raw())
    } else {
        name
    }
}

pub fn cancel(a: CancelArgs) -> Result<i32, String> {
    super::block_on_bounded(a.db.db_timeout, async move {
        let store = a.db.connect(1).await?;
        let by = format!("procvisor cancel (user {})", user_name());
        match store
            .cancel_as(a.id, &by)
            .await
            .map_err(|e| e.to_string())?
        {
            Cancelled::Ended => say!("job {} cancelled before it ran", a.id),
            Cancelled::Requested => say!(
                "job {} is running: its supervisor was asked to stop it",
                a.id
            ),
            Cancelled::AlreadyEnded => {
                say!("job {} had already ended", a.id);
                return Ok(1);
            }
        }
        Ok(0)
    })
}
