//! What can go wrong talking to the store, said so that a user knows what
//! to do (never with the password of the URL), and which failures mean a
//! connection must not be used again.

use std::sync::atomic::{AtomicU64, Ordering};

/// An error from the job store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A value given to the store is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
    /// The database could not be reached.
    #[error("cannot connect to the database at {at}: {reason}; check the URL (--db or PROCVISOR_DATABASE_URL) and that PostgreSQL is running there")]
    Connect {
        /// Where (host, port, database, user).
        at: String,
        /// What the driver said.
        reason: String,
    },
    /// A statement failed.
    #[error("the database refused to {what}: {}", explain(.source))]
    Query {
        /// What the store was doing.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema is missing or older than this program.
    #[error("{0}")]
    Schema(String),
    /// No job with this id is live or ended in the store.
    #[error("no job {0} in the store")]
    NoSuchJob(i64),
    /// The database gave no answer in time (the connection is dropped).
    #[error("the database gave no answer within {after:?} to {what}; check the network between here and PostgreSQL, and that the server is not overloaded")]
    TimedOut {
        /// What the store was doing.
        what: &'static str,
        /// How long it waited.
        after: std::time::Duration,
    },
}

impl StoreError {
    pub(crate) fn query(what: &'static str, source: tokio_postgres::Error) -> StoreError {
        if breaks_connection(&source) {
            HEAL.fetch_add(1, Ordering::Relaxed);
        }
        StoreError::Query { what, source }
    }

    /// `what` got no answer within `after`: the connection it waited on may
    /// be stuck, so the pool drops its idle connections.
    pub(crate) fn timed_out(what: &'static str, after: std::time::Duration) -> StoreError {
        HEAL.fetch_add(1, Ordering::Relaxed);
        StoreError::TimedOut { what, after }
    }

    /// Run `f`, giving up after `bound` with [`timed_out`](Self::timed_out)
    /// (`what` names it in the error): no statement then waits on a
    /// connection that stopped answering for longer than its caller allows.
    pub(crate) async fn within<T>(
        what: &'static str,
        bound: std::time::Duration,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(bound, f)
            .await
            .unwrap_or_else(|_| Err(StoreError::timed_out(what, bound)))
    }

    /// The SQLSTATE code the server gave, if the server answered.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StoreError::Query { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// The database refused the data of a statement (SQLSTATE class 22,
    /// a data exception, or 54, a program limit): sending the same rows
    /// again fails again, whatever the connection.
    pub(crate) fn refuses_data(&self) -> bool {
        self.sqlstate()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("54"))
    }
}

/// Raised each time a statement fails in a way that says its connection
/// is no good (see [`breaks_connection`]): every store of this process
/// then drops its idle pooled connections before it hands out the next one,
/// so a pool left holding sessions of a server that went away, or that
/// turned read-only, heals at once instead of failing for ever.
static HEAL: AtomicU64 = AtomicU64::new(0);

/// How many connection-breaking failures this process has seen.
pub(crate) fn heal_generation() -> u64 {
    HEAL.load(Ordering::Relaxed)
}

/// Whether a failure means the connection it ran on should not be used
/// again: the connection is closed or broke (class 08, or no server
/// answer at all), the server is shutting down or restarting (57P01 to
/// 57P03), or the session is read-only (25006: a fail-over may leave a
/// session on a demoted primary; a new session reaches the new one).
pub(crate) fn breaks_connection(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "25006")
        }
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// The driver's error with what the server said: its message, SQLSTATE,
/// detail and hint (the driver's own text for a database error is only
/// "db error").
pub(crate) fn explain(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return match std::error::Error::source(e) {
            Some(inner) => format!("{e}: {inner}"),
            None => e.to_string(),
        };
    };
    let mut out = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(d) = db.detail() {
        out.push_str(&format!("; detail: {d}"));
    }
    if let Some(h) = db.hint() {
        out.push_str(&format!("; hint: {h}"));
    }
    out
}

/// Host, port, database and user of a config, for messages.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{} as {}",
        config.get_dbname().unwrap_or("(default database)"),
        config.get_user().unwrap_or("(default user)")
    )
}

pub(crate) fn connect_error(
    config: &tokio_postgres::Config,
    e: tokio_postgres::Error,
) -> StoreError {
    let reason = explain(&e);
    StoreError::Connect {
        at: describe(config),
        reason,
    }
}

pub(crate) fn pool_error(
    config: &tokio_postgres::Config,
    e: deadpool_postgres::PoolError,
) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => connect_error(config, e),
        other => StoreError::Connect {
            at: describe(config),
            reason: other.to_string(),
        },
    }
}
