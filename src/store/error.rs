//! What can go wrong talking to the store, said so that a user knows what
//! to do (never with the password of the URL).

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
    #[error("the database refused to {what}: {source}")]
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
}

impl StoreError {
    pub(crate) fn query(what: &'static str, source: tokio_postgres::Error) -> StoreError {
        StoreError::Query { what, source }
    }
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
    let reason = match std::error::Error::source(&e) {
        Some(inner) => format!("{e}: {inner}"),
        None => e.to_string(),
    };
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
