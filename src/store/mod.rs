//! The PostgreSQL job store: one durable queue shared by producers and
//! supervisors on any number of machines.
//!
//! A producer [`submit`](Store::submit)s a [`NewJob`]: it is a committed
//! row from then on, whether or not a supervisor is online. A supervisor
//! fed by the store ([`Feed`]) claims as many jobs as its workers can take,
//! under a *lease*: a number raised at every claim that each later write
//! must name, so a supervisor that lost a job (its heartbeat stopped and
//! another took the job over) changes nothing when it writes late. Every
//! job ends in exactly one terminal event, written in the same statement
//! that removes the job from the live table; the database's unique index
//! on terminal events refuses a second.
//!
//! Running is *at least once*: a job whose supervisor died mid-run is run
//! again elsewhere, so handlers should be idempotent (see the README).
//!
//! ```no_run
//! # async fn demo() -> Result<(), procvisor::store::StoreError> {
//! use procvisor::store::{NewJob, Store};
//!
//! let store = Store::connect("postgres://app@localhost/app").await?;
//! store.migrate().await?;
//! let id = store
//!     .submit(&NewJob::new("sleep", serde_json::json!({"secs": 1})).priority(2))
//!     .await?;
//! let end = store.wait(id).await?;
//! println!("job {id} ended {}", end.event);
//! # Ok(()) }
//! ```

mod cron;
mod engine;
mod error;
mod events;
mod feed;
mod operator;
mod prune;
mod schedules;
mod schema;
mod status;
mod storable;
mod submit;
mod waiter;

use std::time::Duration;

pub use cron::CronSpec;
pub use error::StoreError;
pub use events::{Event, EventCursor};
pub use feed::{Feed, FeedOptions, FeedStats};
pub use operator::Action;
pub use prune::Pruned;
pub use schedules::{Fired, ScheduleRow};
pub use schema::SchemaStatus;
pub use status::{LiveJob, QueueCount, QueueState, RunningRow, Status, SupervisorRow};
pub use submit::{Cancelled, NewJob};

/// The environment variable that gives the database URL when `--db` is
/// not passed.
pub const DATABASE_URL_ENV: &str = "PROCVISOR_DATABASE_URL";

/// The channel on which the store says "jobs are available" (a wake-up
/// only: listeners claim from the table).
pub(crate) const JOBS_CHANNEL: &str = "procvisor_jobs";
/// The channel on which the store says "a running job's cancel was asked
/// for" (a wake-up only).
pub(crate) const CANCEL_CHANNEL: &str = "procvisor_cancel";
/// The channel on which the store says "jobs ended" (a wake-up only).
pub(crate) const ENDED_CHANNEL: &str = "procvisor_ended";

/// A handle on the job store: a small pool of connections. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: deadpool_postgres::Pool,
    config: tokio_postgres::Config,
    waiter: std::sync::Arc<waiter::Waiter>,
    /// The connection-breaking failures seen when the pool was last
    /// cleared (see `error::heal_generation`).
    healed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("at", &error::describe(&self.config))
            .finish()
    }
}

impl Store {
    /// Connect to the database at `url` (`postgres://user@host:port/db` or
    /// `host=… user=… dbname=…`), checking that it answers.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, 8).await
    }

    /// Like [`connect`](Self::connect), with at most `connections` (1 to
    /// 256) open at once.
    pub async fn connect_with(url: &str, connections: usize) -> Result<Store, StoreError> {
        if !(1..=256).contains(&connections) {
            return Err(StoreError::Invalid(format!(
                "{connections} connections is out of range: use 1 to 256"
            )));
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "the database URL does not parse ({e}); write it as postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        let mut config = config;
        if config.get_application_name().is_none() {
            config.application_name("procvisor");
        }
        bound_waits(&mut config);
        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(connections)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot build the connection pool: {e}")))?;
        let store = Store {
            pool,
            config,
            waiter: Default::default(),
            healed: std::sync::Arc::new(error::heal_generation().into()),
        };
        let _ = store.client().await?;
        Ok(store)
    }

    /// A pooled connection. After a failure that broke a connection
    /// (anywhere in this process), the idle ones are dropped first: they
    /// may be sessions of a server that went away or turned read-only.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        use std::sync::atomic::Ordering;
        let now = error::heal_generation();
        if self.healed.swap(now, Ordering::Relaxed) != now {
            let dropped = self.pool.retain(|_, _| false).removed.len();
            if dropped > 0 {
                tracing::info!(
                    connections = dropped,
                    "dropped pooled database connections after a connection failure"
                );
            }
        }
        self.pool
            .get()
            .await
            .map_err(|e| error::pool_error(&self.config, e))
    }
}

/// Bound every wait on the network that the URL leaves unbounded: a
/// connect gives up after 10 s; TCP keepalive probes an idle connection
/// after 10 s, every 5 s, 3 times; data sent and not acknowledged for 20 s
/// breaks the connection; the server ends a statement after 60 s and a
/// session left idle inside a transaction after 60 s. A URL that sets any
/// of these (`connect_timeout`, `keepalives_idle`, `options=-c …`) keeps
/// its own value. Waits that no socket option can see (a proxy that stops
/// forwarding and says nothing) are bounded by the callers (the supervisor
/// by its lease, the command line by `--db-timeout`).
fn bound_waits(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(20));
    }
    let options = config.get_options().unwrap_or("").to_string();
    let mut add = Vec::new();
    if !options.contains("statement_timeout") {
        add.push("-c statement_timeout=60000");
    }
    if !options.contains("idle_in_transaction_session_timeout") {
        add.push("-c idle_in_transaction_session_timeout=60000");
    }
    if !add.is_empty() {
        let joined = std::iter::once(options.as_str())
            .filter(|o| !o.is_empty())
            .chain(add)
            .collect::<Vec<_>>()
            .join(" ");
        config.options(&joined);
    }
}

/// Wake-ups from the store: a connection of its own, outside the pool,
/// that `LISTEN`s on some channels. A notification only says "look at the
/// table"; the table is the truth.
pub(crate) struct Wakeups {
    channels: &'static [&'static str],
    conn: Option<(
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    )>,
}

impl Wakeups {
    /// Not connected yet: see [`connect`](Self::connect).
    pub(crate) fn new(channels: &'static [&'static str]) -> Wakeups {
        Wakeups {
            channels,
            conn: None,
        }
    }

    /// Connect and listen, unless connected already.
    pub(crate) async fn connect(&mut self, store: &Store) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        if self.conn.is_some() {
            return Ok(());
        }
        let (client, mut connection) = store
            .config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| error::connect_error(&store.config, e))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(_) = m {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            }
        });
        for ch in self.channels {
            client
                .batch_execute(&format!("LISTEN {ch}"))
                .await
                .map_err(|e| StoreError::query("listen for wake-ups", e))?;
        }
        self.conn = Some((client, rx));
        Ok(())
    }

    /// The next wake-up, after which any others already waiting are
    /// dropped. Never comes while not connected; a lost connection ends the
    /// wait and is dropped (`connect` again).
    pub(crate) async fn next(&mut self) {
        let Some((_, rx)) = self.conn.as_mut() else {
            return std::future::pending().await;
        };
        if rx.recv().await.is_none() {
            self.conn = None;
            return;
        }
        while rx.try_recv().is_ok() {}
    }
}

/// Milliseconds in `d`, for the database, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
