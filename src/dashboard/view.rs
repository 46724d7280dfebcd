//! What both dashboards' pages share: the page around them, the live
//! overview's script, times and durations as shown, the answer to a
//! missing page, and the form every action on a job posts.

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse} td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f4f4f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#a00} .ok{color:#070} .muted{color:#777} .err{background:#fee;padding:.5em}
button{font:inherit}";

/// Keeps the overview live: the server sends the new overview every
/// second as an `overview` event; without JavaScript the page is simply
/// as it was when loaded.
const LIVE_SCRIPT: &str = "
const live = document.getElementById('live');
const source = new EventSource(live.dataset.src);
source.addEventListener('overview', (e) => { live.innerHTML = e.data; });
source.onerror = () => { document.getElementById('state').textContent = 'reconnecting…'; };
source.onopen = () => { document.getElementById('state').textContent = 'live'; };";

pub(super) fn layout(title: &str, base: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · procvisor" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                p.muted { a href={ (base) "/" } { "procvisor dashboard" } }
                (body)
            }
        }
    }
}

pub(super) fn age(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A time to the second, UTC.
pub(super) fn when(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => "?".into(),
    }
}

/// A page whose `#live` part the server keeps up to date (`{base}/live`).
pub(super) fn live_page(title: &str, base: &str, fragment: Markup) -> Markup {
    let body = html! {
        h1 { (title) " " span #state.muted { "" } }
        div #live data-src={ (base) "/live" } { (fragment) }
        script { (PreEscaped(LIVE_SCRIPT)) }
    };
    layout(title, base, body)
}

pub(super) fn not_found(base: &str, why: &str) -> Response {
    let page = layout("not found", base, html! { h1 { "Not found" } p { (why) } });
    (StatusCode::NOT_FOUND, page).into_response()
}

/// An action's form on a job.
#[derive(Deserialize)]
pub(super) struct JobForm {
    key: String,
}

impl super::auth::Keyed for JobForm {
    fn key(&self) -> &str {
        &self.key
    }
}
