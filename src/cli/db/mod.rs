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
    #[arg(long, value_name = "URL", env = procvisor::store::DATABASE_URL_ENV, hide_env_values = true)]
    pub db: String,
}

impl DbArgs {
    /// Connect, with `connections` at most.
    pub async fn connect(&self, connections: usize) -> Result<Store, String> {
        Store::connect_with(&self.db, connections)
            .await
            .map_err(|e| e.to_string())
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
    block_on(async {
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
    })?
}
