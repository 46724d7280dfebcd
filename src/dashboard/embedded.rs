//! The dashboard over a supervisor an application embeds: its workers and
//! the jobs they run (with progress), its queue by priority, its totals,
//! recent endings, each job's events, and a cancel button. It reads the
//! supervisor's snapshots, and keeps its latest events (from
//! [`Supervisor::events`]) in memory.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};

use super::auth::{HasAccess, Posted};
use super::view::{age, layout, live_page, not_found, when, JobForm};
use super::{auth, bind_checked, check_access, serve_router, Access, DashboardError};
use crate::events::{JobEvent, Received, What};
use crate::{JobId, JobState, Outcome, Supervisor, WorkerPhase};

/// Events kept for the pages.
const KEEP: usize = 2000;
/// Endings listed on the overview.
const ROWS: usize = 50;

/// The dashboard over an embedded supervisor.
///
/// ```no_run
/// # async fn demo(sup: procvisor::Supervisor) -> Result<(), Box<dyn std::error::Error>> {
/// use procvisor::dashboard::EmbeddedDashboard;
///
/// // In your own axum application, under /jobs:
/// let app = axum::Router::new().nest(
///     "/jobs",
///     EmbeddedDashboard::new(&sup).mounted_at("/jobs").router(),
/// );
/// # let _ = app;
/// // Or on its own, on loopback:
/// EmbeddedDashboard::new(&sup).serve("127.0.0.1:8081".parse()?).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmbeddedDashboard {
    sup: Supervisor,
    token: Option<String>,
    base: String,
    hosts: Vec<String>,
}

impl std::fmt::Debug for EmbeddedDashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDashboard")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The latest events, and the running jobs' last progress.
#[derive(Default)]
struct Recent {
    events: VecDeque<JobEvent>,
    progress: HashMap<JobId, (f32, Arc<str>)>,
    /// Events the reader was too slow for.
    lost: u64,
}

struct App {
    sup: Supervisor,
    access: Arc<Access>,
    recent: Mutex<Recent>,
}

impl HasAccess for App {
    fn access(&self) -> &Access {
        &self.access
    }
}

impl App {
    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keep the supervisor's events in `app` until the supervisor or the app
/// is gone.
fn follow(app: Weak<App>, mut events: crate::events::Events) {
    while let Some(r) = events.next_blocking() {
        let Some(app) = app.upgrade() else {
            return;
        };
        let mut recent = app.recent();
        match r {
            Received::Lagged(n) => recent.lost += n,
            Received::Event(e) => {
                match &e.what {
                    What::Progress { fraction, note } => {
                        recent.progress.insert(e.job, (*fraction, note.clone()));
                    }
                    What::Ended { .. } | What::Requeued | What::Retried { .. } => {
                        recent.progress.remove(&e.job);
                    }
                    _ => {}
                }
                if recent.events.len() == KEEP {
                    recent.events.pop_front();
                }
                recent.events.push_back(e);
            }
        }
    }
}

impl EmbeddedDashboard {
    /// A dashboard over `sup`, without a token.
    pub fn new(sup: &Supervisor) -> EmbeddedDashboard {
        EmbeddedDashboard {
            sup: sup.clone(),
            token: None,
            base: String::new(),
            hosts: Vec::new(),
        }
    }

    /// Answer requests that name this host, besides IP addresses and
    /// `localhost` (as `Dashboard::allow_host` does).
    pub fn allow_host(mut self, name: &str) -> EmbeddedDashboard {
        self.hosts
            .push(name.trim_end_matches('.').to_ascii_lowercase());
        self
    }

    /// Require this token of every request (at least 16 characters).
    pub fn token(mut self, token: Option<String>) -> EmbeddedDashboard {
        self.token = token;
        self
    }

    /// The path the router is mounted at (for the pages' links), like
    /// `/jobs`; default: the root.
    pub fn mounted_at(mut self, path: &str) -> EmbeddedDashboard {
        self.base = path.trim_end_matches('/').to_string();
        self
    }

    /// The routes: `/` (the overview), `/live`, `/jobs/{id}` and
    /// `/jobs/{id}/cancel`. From now on a thread keeps the supervisor's
    /// latest events for the pages.
    pub fn router(self) -> Router {
        let access = Access::new(self.token, self.base, self.hosts);
        let events = self.sup.events();
        let app = Arc::new(App {
            sup: self.sup,
            access: access.clone(),
            recent: Mutex::new(Recent::default()),
        });
        let weak = Arc::downgrade(&app);
        let _ = std::thread::Builder::new()
            .name("procvisor-dashboard".into())
            .spawn(move || follow(weak, events));
        Router::new()
            .route("/", get(overview_page))
            .route("/live", get(live))
            .route("/jobs/{id}", get(job_page))
            .route("/jobs/{id}/cancel", post(cancel))
            .layer(axum::middleware::from_fn_with_state(
                access,
                auth::require_token,
            ))
            .with_state(app)
    }

    /// Check the access rule for `addr` (see [`check_access`]).
    pub fn check(&self, addr: SocketAddr) -> Result<(), DashboardError> {
        check_access(addr, self.token.as_deref())
    }

    /// Listen on `addr` (under the access rule) and serve until the future
    /// is dropped.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), DashboardError> {
        let listener = bind_checked(addr, self.token.as_deref()).await?;
        serve_router(self.router(), listener).await
    }
}

fn phase(p: WorkerPhase) -> &'static str {
    match p {
        WorkerPhase::Starting => "starting",
        WorkerPhase::Ready => "ready",
        WorkerPhase::Stopping => "stopping",
        WorkerPhase::Backoff => "waiting to restart",
        _ => "down",
    }
}

/// The overview's live part.
async fn overview(app: &App) -> Markup {
    let base = &app.access.base;
    let Some(snap) = app.sup.snapshot().await else {
        return html! { p.err { "The supervisor has stopped." } };
    };
    let recent = app.recent();
    let c = &snap.counts;
    html! {
        p.muted { "as of " (when(SystemTime::now())) }
        p #totals {
            "State: " b { (format!("{:?}", snap.state)) } ". "
            "Submitted " b { (c.submitted) } ", completed " b { (c.completed) }
            ", failed " b { (c.failed) } ", timed out " b { (c.timed_out) }
            ", crashed " b { (c.crashed) } ", evicted " b { (c.evicted) }
            ", cancelled " b { (c.cancelled) } ", rejected " b { (c.rejected) }
            "; retries " (c.retries) ", evictions " (c.evictions) ", worker restarts " (c.restarts) "."
        }
        h2 { "Workers" }
        table #workers {
            tr { th { "slot" } th { "pid" } th { "phase" } th { "job" } th { "kind" } th { "priority" }
                 th { "running for" } th { "progress" } th { "held" } }
            @for w in &snap.workers {
                tr data-slot=(w.slot) {
                    td.n { (w.slot) }
                    td.n { @if let Some(p) = w.pid { (p) } }
                    td { (phase(w.phase)) }
                    @if let Some(r) = &w.running {
                        td { a href={ (base) "/jobs/" (r.id) } { (r.id) } }
                        td { (r.kind) } td.n { (r.priority) } td.n { (age(r.elapsed)) }
                        td { @if let Some((f, note)) = recent.progress.get(&r.id) {
                            (format!("{:.0} %", f * 100.0)) " " span.muted { (note) }
                        } }
                    } @else {
                        td.muted { "idle" } td {} td {} td {} td {}
                    }
                    td.n { (w.held) }
                }
            }
        }
        h2 { "Waiting, by priority" }
        table #waiting {
            tr { @for p in 0..snap.queued_per_priority.len() { th { "p" (p) } } th { "total" } }
            tr { @for n in snap.queued_per_priority { td.n { (n) } } td.n { (snap.queued()) } }
        }
        h2 { "Recent endings" }
        @if recent.lost > 0 {
            p.muted { (recent.lost) " events were missed (the dashboard fell behind)." }
        }
        table #endings {
            tr { th { "job" } th { "kind" } th { "outcome" } th { "ran for" } th { "error" } th { "at" } }
            @for e in recent.events.iter().rev().filter(|e| matches!(e.what, What::Ended { .. })).take(ROWS) {
                @if let What::Ended { outcome, ran_for } = &e.what {
                    tr data-job=(e.job) data-outcome=(outcome.name()) {
                        td { a href={ (base) "/jobs/" (e.job) } { (e.job) } }
                        td { (e.kind) }
                        td { @if outcome.is_completed() { span.ok { (outcome.name()) } } @else { span.bad { (outcome.name()) } } }
                        td.n { @if let Some(d) = ran_for { (age(*d)) } }
                        td { @if !outcome.is_completed() { (outcome.to_string()) } }
                        td { (when(e.at)) }
                    }
                }
            }
        }
    }
}

/// `/live`: the overview, every second.
async fn live(State(app): State<Arc<App>>) -> impl IntoResponse {
    super::live::every_second(move || {
        let app = app.clone();
        async move { overview(&app).await.into_string() }
    })
}

async fn overview_page(State(app): State<Arc<App>>) -> Markup {
    live_page("Supervisor", &app.access.base, overview(&app).await)
}

fn what(w: &What) -> String {
    match w {
        What::Submitted { priority } => format!("submitted, priority {priority}"),
        What::Started {
            pid,
            attempt,
            waited,
        } => format!(
            "started (attempt {attempt}) on worker {} after waiting {}",
            pid.map_or("?".into(), |p| p.to_string()),
            age(*waited)
        ),
        What::Progress { fraction, note } => format!("progress {:.0} % {note}", fraction * 100.0),
        What::Retried {
            attempt,
            ended,
            after,
        } => {
            format!("attempt {attempt} {ended}; retried in {}", age(*after))
        }
        What::Evicted => "evicted for a more urgent job".into(),
        What::Requeued => "back in the queue".into(),
        What::Ended { outcome, ran_for } => match ran_for {
            Some(d) => format!("{outcome} after running {}", age(*d)),
            None => outcome.to_string(),
        },
    }
}

async fn job_page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let base = &app.access.base;
    let Ok(id) = id.parse::<JobId>() else {
        return not_found(base, "A job id is a whole number.");
    };
    let state = app.sup.job_state(id).await;
    let events: Vec<JobEvent> = app
        .recent()
        .events
        .iter()
        .filter(|e| e.job == id)
        .cloned()
        .collect();
    if state == JobState::Ended && events.is_empty() {
        return not_found(
            base,
            &format!("Job {id} is not in this supervisor, and no event of it is kept."),
        );
    }
    let shown = match &state {
        JobState::Queued => "waiting".to_string(),
        JobState::Prefetched { .. } => "handed to a worker, behind the job it runs".into(),
        JobState::Running { pid, elapsed, .. } => format!(
            "running on worker {} for {}",
            pid.map_or("?".into(), |p| p.to_string()),
            age(*elapsed)
        ),
        _ => match events.iter().rev().find_map(|e| match &e.what {
            What::Ended { outcome, .. } => Some(outcome.clone()),
            _ => None,
        }) {
            Some(Outcome::Completed(())) => "completed".into(),
            Some(o) => o.name().into(),
            None => "ended".into(),
        },
    };
    let body = html! {
        h1 { "Job " (id) }
        p { @if let Some(e) = events.first() { "kind " b { (e.kind) } ". " } "Now " b #outcome { (shown) } "." }
        @if state != JobState::Ended {
            form method="post" action={ (base) "/jobs/" (id) "/cancel" } {
                input type="hidden" name="key" value=(app.access.form_key);
                button #cancel type="submit" { "Cancel this job" }
            }
        }
        h2 { "Events" }
        table #history {
            tr { th { "at" } th { "what" } }
            @for e in &events { tr { td { (when(e.at)) } td { (what(&e.what)) } } }
        }
    };
    layout(&format!("job {id}"), base, body).into_response()
}

async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<JobId>,
    Posted(_): Posted<JobForm>,
) -> Response {
    app.sup.cancel(id);
    Redirect::to(&format!("{}/jobs/{id}", app.access.base)).into_response()
}
