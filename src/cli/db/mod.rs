//! The commands that work on the PostgreSQL job store: `db`, `supervise`,
//! `submit`, `cancel`, `events`, `status`, `schedule`, `bench --db`. They share how the database is
//! named (`--db`, or `PROCVISOR_DATABASE_URL`) and a small async runtime.

pub mod bench;
pub mod bus;
pub mod dashboard;
pub mod jobs;
pub mod schedule;
pub mod supervise;
pub mod top;
pub mod watch;

use procvisor::store::Store;

/// Where the database is.
#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// The PostgreSQL database holding the job queue, as a URL:
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE (default: the
    /// PROCVISOR_DATABASE_URL environment variable).
    #[arg(long, value_name = "URL", env = procvisor::store::DATABASE_URL_ENV, hide_env_values = true, global = true)]
    pub db: Option<String>,
    /// How long a one-shot command (status, cancel, db) waits for the
    /// database in all before it gives up, in seconds (1 to 3600).
    #[arg(long = "db-timeout", value_name = "SECS", default_value_t = 30, env = "PROCVISOR_DB_TIMEOUT", value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub db_timeout: u64,
}

impl DbArgs {
    /// Connect, with `connections` at most.
    pub async fn connect(&self, connections: usize) -> Result<Store, String> {
        Store::connect_with(self.url()?, connections)
            .await
            .map_err(|e| e.to_string())
    }

    /// The database URL, or what to do when none was given.
    pub fn url(&self) -> Result<&str, String> {
        self.db.as_deref().ok_or_else(|| {
            format!(
                "no database given: pass --db postgres://USER@HOST:PORT/DATABASE or set {}",
                procvisor::store::DATABASE_URL_ENV
            )
        })
    }
}

/// Run `f` on a small tokio runtime.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))?;
    Ok(rt.block_on(f))
}

/// Run a one-shot command's `f` on a small tokio runtime, giving up after
/// `secs` seconds (its `--db-timeout`) with an error that says so: a
/// connection that stops answering without closing would otherwise hang it.
pub fn block_on_bounded<F>(secs: u64, f: F) -> Result<i32, String>
where
    F: std::future::Future<Output = Result<i32, String>>,
{
    let bound = std::time::Duration::from_secs(secs);
    block_on(async {
        tokio::time::timeout(bound, f).await.unwrap_or_else(|_| {
            Err(format!(
                "the database gave no answer within {} s; check the network between here and PostgreSQL (--db or PROCVISOR_DATABASE_URL), and that the server is running (--db-timeout sets the wait)",
                bound.as_secs()
            ))
        })
    })?
}

/// `procvisor db`: the schema.
#[derive(clap::Args, Debug)]
pub struct DbCommand {
    #[command(subcommand)]
    action: DbAction,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(clap::Subcommand, Debug)]
enum DbAction {
    /// Create or update procvisor's tables (safe to run again, and from
    /// several machines at once).
    Migrate,
    /// Show which schema versions the database has.
    Status,
}

pub fn db(a: DbCommand) -> Result<i32, String> {
    block_on_bounded(a.db.db_timeout, async {
        let store = a.db.connect(1).await?;
        match a.action {
            DbAction::Migrate => {
                let applied = store.migrate().await.map_err(|e| e.to_string())?;
                if applied.is_empty() {
                    say!("the database is up to date");
                }
                for (v, name) in applied {
                    say!("applied version {v}: {name}");
                }
            }
            DbAction::Status => {
                let s = store.schema_status().await.map_err(|e| e.to_string())?;
                for (v, name) in &s.applied {
                    say!("version {v}: {name}");
                }
                if s.is_current() {
                    say!("up to date (version {})", s.latest);
                } else {
                    say!(
                        "behind: this program needs version {}; run `procvisor db migrate`",
                        s.latest
                    );
                    return Ok(1);
                }
            }
        }
        Ok(0)
    })
}
