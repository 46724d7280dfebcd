//! `/live`: the overview as server-sent events, one `overview` event with
//! its HTML at once and then every second, for as long as the page is
//! open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};

use super::{pages, App};

/// How often the overview is sent.
const EVERY: Duration = Duration::from_secs(1);

pub(super) async fn overview_stream(
    State(app): State<Arc<App>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = stream::unfold((app, true), |(app, first)| async move {
        if !first {
            tokio::time::sleep(EVERY).await;
        }
        let html = pages::overview(&app).await.into_string();
        let event = Event::default().event("overview").data(html);
        Some((Ok(event), (app, false)))
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}
