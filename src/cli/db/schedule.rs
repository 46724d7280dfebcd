//! `procvisor schedule add|list|remove`: periodic jobs in the store.

use std::time::SystemTime;

use procvisor::store::ScheduleRow;

use super::jobs::JobArgs;
use super::DbArgs;

/// `procvisor schedule`.
#[derive(clap::Args, Debug)]
pub struct ScheduleCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Enqueue a job at every fire of a cron expression. Any running
    /// `procvisor supervise` enqueues each fire exactly once; fires missed
    /// while none ran are caught up with one run, the latest.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// A name for the schedule (1 to 100 characters), unique in the
        /// database.
        name: String,
        /// When, as five fields: minute hour day-of-month month day-of-week.
        /// "30 2 * * *" is 02:30 daily, "*/15 * * * MON-FRI" every quarter
        /// hour on weekdays; @hourly, @daily, @weekly work too.
        cron: String,
        #[command(flatten)]
        job: JobArgs,
        /// The time zone the times are in, by IANA name: UTC,
        /// Europe/Berlin, America/New_York... Across daylight-saving
        /// changes a time that is skipped fires just after the gap and a
        /// time that repeats fires once.
        #[arg(long, default_value = "UTC", value_name = "ZONE")]
        tz: String,
    },
    /// Show the schedules with their last and next fires.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule (jobs it already enqueued stay).
    Remove {
        #[command(flatten)]
        db: DbArgs,
        /// The schedule's name.
        name: String,
    },
}

fn time(t: Option<SystemTime>) -> String {
    t.and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into())
}

fn show(r: &ScheduleRow, json: bool) {
    if json {
        say!(
            "{}",
            serde_json::json!({
                "name": r.name, "cron": r.cron, "time_zone": r.time_zone, "queue": r.queue,
                "kind": r.kind, "args": r.args, "priority": r.priority,
                "last_fire": r.last_fire.map(|t| time(Some(t))),
                "next_fire": r.next_fire.map(|t| time(Some(t))),
            })
        );
    } else {
        say!(
            "{}  {:?} in {}  → {} (queue {}, priority {})  last fire {}  next fire {}",
            r.name,
            r.cron,
            r.time_zone,
            r.kind,
            r.queue,
            r.priority,
            time(r.last_fire),
            time(r.next_fire)
        );
    }
}

pub fn run(a: ScheduleCommand) -> Result<i32, String> {
    super::block_on(async move {
        match a.action {
            Action::Add {
                db,
                name,
                cron,
                job,
                tz,
            } => {
                let job = job.job()?;
                let store = db.connect(1).await?;
                store
                    .add_schedule(&name, &cron, &tz, &job)
                    .await
                    .map_err(|e| e.to_string())?;
                let next = store
                    .schedules()
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|r| r.name == name)
                    .and_then(|r| r.next_fire);
                say!("added schedule {name}; next fire {}", time(next));
            }
            Action::List { db, json } => {
                let store = db.connect(1).await?;
                let rows = store.schedules().await.map_err(|e| e.to_string())?;
                if rows.is_empty() && !json {
                    say!("no schedules");
                }
                for r in &rows {
                    show(r, json);
                }
            }
            Action::Remove { db, name } => {
                let store = db.connect(1).await?;
                if !store
                    .remove_schedule(&name)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return Err(format!(
                        "no schedule named {name:?}: `procvisor schedule list` shows them"
                    ));
                }
                say!("removed schedule {name}");
            }
        }
        Ok(0)
    })?
}
