//! Web dashboards. [`Dashboard`] (feature `store`) is over the PostgreSQL
//! job queue: jobs by queue, state and priority; supervisors with their
//! heartbeats; running jobs; recent endings and failures; each job's
//! history; and the operator's actions: cancel a job, run an ended one
//! again, pause and resume a queue, each recorded with who did it and
//! when. [`EmbeddedDashboard`] is over a supervisor an application embeds:
//! its workers and what they run, with progress; its queue by priority;
//! its totals; recent endings; each job's events; cancel a job. Pages are
//! rendered on the server and work without JavaScript; a few lines of
//! inline script keep the overview live through server-sent events.
//! Everything they serve is in the binary.
//!
//! Each gives an [`axum::Router`] an application can mount;
//! [`Dashboard::serve`] listens on an address itself, as `procvisor
//! dashboard` does.
//!
//! Access: every request must name the dashboard in its `Host` (an IP
//! address, `localhost`, or a name it was told to answer to), so a web
//! page that points its own name at this machine (DNS rebinding) reads
//! nothing, and an action's `Origin`, when a browser sends one, must be
//! the dashboard's own. On a loopback address anybody on this machine may look, so
//! [`Dashboard::serve`] refuses any other address unless a token is set,
//! and with a token every request must carry it (the `Authorization:
//! Bearer` header, or the cookie set by opening any page once with
//! `?token=…`). Actions are forms that carry a key made at start-up, so
//! another web site cannot make a visitor's browser post them.

mod auth;
mod embedded;
mod live;
#[cfg(feature = "store")]
mod store_pages;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

#[cfg(feature = "store")]
use crate::store::Store;
pub use embedded::EmbeddedDashboard;

/// What can go wrong starting the dashboard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// A non-loopback address without a token.
    #[error("refusing to serve the dashboard on {0} without a token: anybody who can reach that address could cancel jobs; set a token (--token or PROCVISOR_DASHBOARD_TOKEN), or listen on 127.0.0.1")]
    NeedsToken(SocketAddr),
    /// A token too short to be a secret.
    #[error("the dashboard token is {0} characters; use at least 16 (for example: openssl rand -hex 16)")]
    WeakToken(usize),
    /// A token with spaces or control characters, or too few different
    /// characters to be a secret.
    #[error("the dashboard token has spaces or control characters, or fewer than 8 different characters: use a random one (for example: openssl rand -hex 16)")]
    PlainToken,
    /// The address could not be listened on.
    #[error("cannot listen on {addr}: {source}; pick another address with --listen")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The access rule: a token, if any, has at least 16 characters, none of
/// them a space or a control character, at least 8 of them different; and
/// an address other than loopback needs one.
pub fn check_access(addr: SocketAddr, token: Option<&str>) -> Result<(), DashboardError> {
    match token {
        Some(t) if t.chars().count() < 16 => Err(DashboardError::WeakToken(t.chars().count())),
        Some(t)
            if t.chars().any(|c| c.is_whitespace() || c.is_control())
                || t.chars().collect::<std::collections::HashSet<_>>().len() < 8 =>
        {
            Err(DashboardError::PlainToken)
        }
        None if !addr.ip().is_loopback() => Err(DashboardError::NeedsToken(addr)),
        _ => Ok(()),
    }
}

/// Who may use a dashboard, and where it is mounted (what the middleware
/// and the forms of both dashboards share).
pub(crate) struct Access {
    pub(crate) token: Option<String>,
    /// Host names (lower-case) it answers to besides IP addresses and
    /// `localhost`.
    pub(crate) hosts: Vec<String>,
    /// Carried by every action's form (see the module docs).
    pub(crate) form_key: String,
    /// The path the routes are mounted at ("" at the root).
    pub(crate) base: String,
}

impl Access {
    fn new(token: Option<String>, base: String, hosts: Vec<String>) -> Arc<Access> {
        Arc::new(Access {
            token,
            hosts,
            form_key: auth::random_key(),
            base,
        })
    }
}

/// Check the access rule for `addr` and bind it.
async fn bind_checked(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<tokio::net::TcpListener, DashboardError> {
    check_access(addr, token)?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DashboardError::Listen { addr, source })
}

/// Serve `router` on `listener` until the future is dropped.
async fn serve_router(
    router: Router,
    listener: tokio::net::TcpListener,
) -> Result<(), DashboardError> {
    let addr = listener
        .local_addr()
        .map_err(|source| DashboardError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    axum::serve(listener, router)
        .await
        .map_err(|source| DashboardError::Listen { addr, source })
}

/// The dashboard over one store.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use procvisor::dashboard::Dashboard;
/// use procvisor::store::Store;
///
/// let store = Store::connect("postgres://app@127.0.0.1/app").await?;
/// // Mount it in your own axum application…
/// let app = axum::Router::new().nest(
///     "/jobs-dashboard",
///     Dashboard::new(store.clone()).mounted_at("/jobs-dashboard").router(),
/// );
/// # let _ = app;
/// // …or let it listen on its own.
/// Dashboard::new(store).serve("127.0.0.1:8080".parse()?).await?;
/// # Ok(()) }
/// ```
#[cfg(feature = "store")]
#[derive(Clone)]
pub struct Dashboard {
    store: Store,
    token: Option<String>,
    base: String,
    hosts: Vec<String>,
}

#[cfg(feature = "store")]
impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

#[cfg(feature = "store")]
impl Dashboard {
    /// A dashboard over `store`, without a token.
    pub fn new(store: Store) -> Dashboard {
        Dashboard {
            store,
            token: None,
            base: String::new(),
            hosts: Vec::new(),
        }
    }

    /// Answer requests that name this host (like `jobs.example.com`),
    /// besides IP addresses and `localhost`. Any other name in a request's
    /// `Host` is refused: that is what a web page does that pointed its own
    /// name at this machine to read the dashboard (DNS rebinding).
    pub fn allow_host(mut self, name: &str) -> Dashboard {
        self.hosts
            .push(name.trim_end_matches('.').to_ascii_lowercase());
        self
    }

    /// The path the router is mounted at in an application (for the
    /// pages' links), like `/jobs-dashboard`; default: the root.
    pub fn mounted_at(mut self, path: &str) -> Dashboard {
        self.base = path.trim_end_matches('/').to_string();
        self
    }

    /// Require this token of every request (at least 16 characters).
    pub fn token(mut self, token: Option<String>) -> Dashboard {
        self.token = token;
        self
    }

    /// The routes, to serve or mount: `/` (the overview), `/live` (its
    /// server-sent updates), `/jobs/{id}`, and the actions (forms posted
    /// to) `/jobs/{id}/cancel`, `/jobs/{id}/retry`, `/queues/pause` and
    /// `/queues/resume`.
    pub fn router(self) -> Router {
        store_pages::routes(self.store, Access::new(self.token, self.base, self.hosts))
    }

    /// Check the access rule for `addr` (see [`check_access`]).
    pub fn check(&self, addr: SocketAddr) -> Result<(), DashboardError> {
        check_access(addr, self.token.as_deref())
    }

    /// Listen on `addr` and serve until the future is dropped.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), DashboardError> {
        let listener = self.bind(addr).await?;
        self.serve_on(listener).await
    }

    /// Check the access rule and bind `addr` (port 0 picks a free port:
    /// see the listener's `local_addr`).
    pub async fn bind(&self, addr: SocketAddr) -> Result<tokio::net::TcpListener, DashboardError> {
        bind_checked(addr, self.token.as_deref()).await
    }

    /// Serve on a listener from [`bind`](Self::bind).
    pub async fn serve_on(self, listener: tokio::net::TcpListener) -> Result<(), DashboardError> {
        serve_router(self.router(), listener).await
    }
}
