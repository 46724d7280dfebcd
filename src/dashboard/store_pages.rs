//! The job queue's dashboard: the overview (also sent live, see `live`),
//! a job's page, and the operator's actions (cancel, retry, pause,
//! resume). Everything shown that a job or worker wrote (kinds, queues,
//! errors) is escaped by the templates.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{HasAccess, Keyed, Posted};
use super::view::{age, layout, live_page, not_found, when, JobForm};
use super::{auth, Access};
use axum::routing::{get, post};
use axum::Router;

use crate::store::{Event, Store, StoreError};
use crate::LEAST_URGENT;

/// What the job queue's handlers share.
pub(super) struct App {
    pub(super) store: Store,
    pub(super) access: Arc<Access>,
}

impl HasAccess for App {
    fn access(&self) -> &Access {
        &self.access
    }
}

/// The job queue dashboard's routes (see [`Dashboard::router`](super::Dashboard::router)).
pub(super) fn routes(store: Store, access: Arc<Access>) -> Router {
    let app = Arc::new(App {
        store,
        access: access.clone(),
    });
    Router::new()
        .route("/", get(overview_page))
        .route("/live", get(live))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/queues/pause", post(pause))
        .route("/queues/resume", post(resume))
        .layer(axum::middleware::from_fn_with_state(
            access,
            auth::require_token,
        ))
        .with_state(app)
}

/// How many rows each list shows.
const ROWS: usize = 50;

fn failed_box(what: &str, e: &StoreError) -> Markup {
    html! { p.err { "Cannot read " (what) ": " (e.to_string()) } }
}

/// The overview's live part: queues, supervisors, running jobs, recent
/// failures and endings.
pub(super) async fn overview(app: &App) -> Markup {
    let base = &app.access.base;
    let status = app.store.status().await;
    let running = app.store.running_jobs(ROWS).await;
    let failures = app.store.recent_endings(ROWS, true).await;
    let endings = app.store.recent_endings(ROWS, false).await;
    let paused = app.store.paused_queues().await;
    let actions = app.store.actions(10).await;
    html! {
        p.muted { "as of " (when(SystemTime::now())) }
        h2 { "Queues" }
        @match (&status, &paused) {
            (Err(e), _) | (_, Err(e)) => (failed_box("the queues", e)),
            (Ok(s), Ok(paused)) => (queues_table(app, &queue_names(&s.jobs, paused), paused)),
        }
        h2 { "Jobs by queue and state" }
        @match &status {
            Err(e) => (failed_box("the job counts", e)),
            Ok(s) if s.jobs.is_empty() => p.muted { "No job is waiting or running." },
            Ok(s) => table #queues {
                tr {
                    th { "queue" } th { "state" }
                    @for p in 0..=LEAST_URGENT { th { "p" (p) } }
                    th { "total" }
                }
                @for row in s.by_queue_state() {
                    tr data-queue=(row.queue) data-state=(row.state) {
                        td { (row.queue) } td { (row.state) }
                        @for &c in &row.by_priority { td.n { @if c > 0 { (c) } } }
                        td.n { (row.total()) }
                    }
                }
            },
        }
        h2 { "Supervisors" }
        @match &status {
            Err(e) => (failed_box("the supervisors", e)),
            Ok(s) if s.supervisors.is_empty() => p.muted { "No supervisor has registered." },
            Ok(s) => table #supervisors {
                tr { th { "id" } th { "host" } th { "pid" } th { "queues" } th { "workers" }
                     th { "running" } th { "last heartbeat" } th { "state" } }
                @for v in &s.supervisors {
                    tr {
                        td.n { (v.id) } td { (v.host) } td.n { (v.pid) }
                        td { (v.queues.join(", ")) } td.n { (v.workers) } td.n { (v.running) }
                        td { (age(v.heartbeat_age)) " ago" }
                        td { @if v.stopped { span.muted { "stopped" } } @else { span.ok { "live" } } }
                    }
                }
            },
        }
        h2 { "Running" }
        @match &running {
            Err(e) => (failed_box("the running jobs", e)),
            Ok(r) if r.is_empty() => p.muted { "Nothing is running." },
            Ok(r) => table #running {
                tr { th { "job" } th { "queue" } th { "kind" } th { "priority" } th { "attempt" }
                     th { "supervisor" } th { "running for" } th { "progress" } }
                @for j in r {
                    tr data-job=(j.id) {
                        td { a href={ (base) "/jobs/" (j.id) } { (j.id) } }
                        td { (j.queue) } td { (j.kind) } td.n { (j.priority) } td.n { (j.attempt) }
                        td.n { @if let Some(s) = j.supervisor { (s) } }
                        td.n { (age(j.running_for)) }
                        td.progress { @if let Some((f, note)) = &j.progress {
                            (format!("{:.0} %", f * 100.0)) " " span.muted { (note) }
                        } }
                    }
                }
            },
        }
        h2 { "Recent failures" }
        (endings_table(base, "failures", &failures))
        h2 { "Recent endings" }
        (endings_table(base, "endings", &endings))
        h2 { "Operator actions" }
        @match &actions {
            Err(e) => (failed_box("the operator actions", e)),
            Ok(a) if a.is_empty() => p.muted { "None yet." },
            Ok(a) => table #actions {
                tr { th { "at" } th { "action" } th { "queue" } th { "job" } th { "new job" } th { "by" } }
                @for x in a {
                    tr {
                        td { (when(x.at)) } td { (x.action) }
                        td { @if let Some(q) = &x.queue { (q) } }
                        td { @if let Some(j) = x.job_id { a href={ (base) "/jobs/" (j) } { (j) } } }
                        td { @if let Some(j) = x.new_job_id { a href={ (base) "/jobs/" (j) } { (j) } } }
                        td { (x.by) }
                    }
                }
            },
        }
    }
}

/// Every queue with live jobs, and every paused one, by name.
fn queue_names<'a>(jobs: &'a [crate::store::QueueCount], paused: &'a [String]) -> Vec<&'a str> {
    let mut names: Vec<&str> = jobs.iter().map(|c| c.queue.as_str()).collect();
    names.extend(paused.iter().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    names
}

fn queues_table(app: &App, names: &[&str], paused: &[String]) -> Markup {
    let base = &app.access.base;
    html! {
        @if names.is_empty() {
            p.muted { "No queue has jobs or is paused." }
        } @else {
            table #queue-list {
                tr { th { "queue" } th { "claims" } th { "" } }
                @for q in names {
                    @let is_paused = paused.iter().any(|p| p == q);
                    tr data-queue=(q) data-paused=(is_paused) {
                        td { (q) }
                        td { @if is_paused { span.bad { "paused" } } @else { span.ok { "running" } } }
                        td {
                            form method="post" action={ (base) "/queues/" (if is_paused { "resume" } else { "pause" }) } {
                                input type="hidden" name="key" value=(app.access.form_key);
                                input type="hidden" name="queue" value=(q);
                                button type="submit" { (if is_paused { "Resume" } else { "Pause" }) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn endings_table(base: &str, id: &str, rows: &Result<Vec<Event>, StoreError>) -> Markup {
    html! {
        @match rows {
            Err(e) => (failed_box("the recent endings", e)),
            Ok(r) if r.is_empty() => p.muted { "None yet." },
            Ok(r) => table id=(id) {
                tr { th { "job" } th { "queue" } th { "kind" } th { "outcome" } th { "attempt" }
                     th { "error" } th { "at" } }
                @for e in r {
                    tr data-job=(e.job_id) data-outcome=(e.event) {
                        td { a href={ (base) "/jobs/" (e.job_id) } { (e.job_id) } }
                        td { (e.queue) } td { (e.kind) }
                        td { @if e.event == "completed" { span.ok { (e.event) } } @else { span.bad { (e.event) } } }
                        td.n { (e.attempt) }
                        td { @if let Some(err) = &e.error { (err) } }
                        td { (when(e.at)) }
                    }
                }
            },
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

/// `/`: the overview, kept live.
pub(super) async fn overview_page(State(app): State<Arc<App>>) -> Markup {
    live_page("Jobs", &app.access.base, overview(&app).await)
}

/// `/jobs/{id}`: a job's history, and a cancel button while it has not
/// ended.
pub(super) async fn job_page(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let base = &app.access.base;
    let Ok(id) = id.parse::<i64>() else {
        return not_found(base, "A job id is a whole number.");
    };
    let (live, events) = match (app.store.live_job(id).await, app.store.events_of(id).await) {
        (Ok(l), Ok(e)) => (l, e),
        (Err(e), _) | (_, Err(e)) => {
            let page = layout("error", base, failed_box("the job", &e));
            return (StatusCode::SERVICE_UNAVAILABLE, page).into_response();
        }
    };
    let (kind, queue, priority) = match (&live, events.first()) {
        (Some(l), _) => (&l.kind, &l.queue, l.priority),
        (None, Some(e)) => (&e.kind, &e.queue, e.priority),
        (None, None) => {
            return not_found(
                base,
                &format!("No job {id} in the job queue or its history."),
            )
        }
    };
    let ending = events.iter().find(|e| e.terminal);
    let body = html! {
        h1 { "Job " (id) }
        p {
            "kind " b { (kind) } ", queue " b { (queue) } ", priority " b { (priority) } ". "
            @match (ending, &live) {
                (Some(e), _) => { "Ended " b #outcome { (e.event) } " at " (when(e.at)) "." }
                (None, Some(l)) => {
                    "Now " b #outcome { (l.state) } ", attempt " (l.attempt) " of " (l.max_attempts)
                    @if let Some(s) = l.supervisor { ", on supervisor " (s) } "."
                }
                (None, None) => { b #outcome { "not ended" } }
            }
        }
        @if let Some(l) = &live {
            p { "Submitted " (when(l.created_at)) ", due " (when(l.run_at)) ". Arguments: " code #args { (l.args.to_string()) } }
        }
        @if let Some(e) = ending {
            @if let Some(err) = &e.error { p.err #error { (err) } }
            @if let Some(r) = &e.result { p { "Result: " code #result { (r.to_string()) } } }
            @if e.event != "completed" {
                form method="post" action={ (base) "/jobs/" (id) "/retry" } {
                    input type="hidden" name="key" value=(app.access.form_key);
                    button #retry type="submit" { "Run it again" }
                }
            }
        } @else {
            form method="post" action={ (base) "/jobs/" (id) "/cancel" } {
                input type="hidden" name="key" value=(app.access.form_key);
                button #cancel type="submit" { "Cancel this job" }
            }
        }
        h2 { "History" }
        table #history {
            tr { th { "at" } th { "event" } th { "attempt" } th { "supervisor" } th { "worker pid" } th { "error" } }
            @for e in &events {
                tr {
                    td { (when(e.at)) } td { (e.event) } td.n { (e.attempt) }
                    td.n { @if let Some(s) = e.supervisor { (s) } }
                    td.n { @if let Some(p) = e.worker_pid { (p) } }
                    td { @if let Some(err) = &e.error { (err) } }
                }
            }
        }
    };
    layout(&format!("job {id}"), base, body).into_response()
}

/// An action's form on a queue.
#[derive(Deserialize)]
pub(super) struct QueueForm {
    key: String,
    queue: String,
}

impl Keyed for QueueForm {
    fn key(&self) -> &str {
        &self.key
    }
}

fn refused(what: &str, e: &StoreError) -> Response {
    let status = match e {
        StoreError::Invalid(_) | StoreError::NoSuchJob(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, format!("Cannot {what}: {e}\n")).into_response()
}

/// `POST /jobs/{id}/retry`: run an ended job again, then to the new job's
/// page.
pub(super) async fn retry(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Posted(_): Posted<JobForm>,
) -> Response {
    match app.store.retry(id, "dashboard").await {
        Ok(new) => Redirect::to(&format!("{}/jobs/{new}", app.access.base)).into_response(),
        Err(e) => refused(&format!("retry job {id}"), &e),
    }
}

/// `POST /queues/pause` and `/queues/resume`, then back to the overview.
pub(super) async fn pause(
    State(app): State<Arc<App>>,
    Posted(form): Posted<QueueForm>,
) -> Response {
    set_paused(&app, form, true).await
}

/// See [`pause`].
pub(super) async fn resume(
    State(app): State<Arc<App>>,
    Posted(form): Posted<QueueForm>,
) -> Response {
    set_paused(&app, form, false).await
}

async fn set_paused(app: &App, form: QueueForm, paused: bool) -> Response {
    match app.store.set_paused(&form.queue, paused, "dashboard").await {
        Ok(()) => Redirect::to(&format!("{}/", app.access.base)).into_response(),
        Err(e) => refused("pause or resume the queue", &e),
    }
}

/// `POST /jobs/{id}/cancel`: cancel, then back to the job's page.
pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Posted(_): Posted<JobForm>,
) -> Response {
    match app.store.cancel_as(id, "dashboard").await {
        Ok(_) => Redirect::to(&format!("{}/jobs/{id}", app.access.base)).into_response(),
        Err(e) => refused(&format!("cancel job {id}"), &e),
    }
}
