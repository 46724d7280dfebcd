//! `/live`: a page's live part as server-sent events, one `overview` event
//! with its HTML at once and then every second, for as long as the page is
//! open.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};

/// How often the overview is sent.
const EVERY: Duration = Duration::from_secs(1);

/// The stream of `render`'s HTML.
pub(super) fn every_second<F, Fut>(render: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = String> + Send,
{
    let updates = stream::unfold((render, true), |(render, first)| async move {
        if !first {
            tokio::time::sleep(EVERY).await;
        }
        let html = render().await;
        let event = Event::default().event("overview").data(html);
        Some((Ok(event), (render, false)))
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}
