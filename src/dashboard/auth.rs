//! Who may use the dashboard: the token check on every request, and the
//! key that every action's form carries, checked by the [`Posted`]
//! extractor before any action's handler runs.

use std::sync::Arc;

use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use constant_time_eq::constant_time_eq;

use serde::de::DeserializeOwned;

use super::Access;

/// The cookie that carries the token after `?token=…`.
const COOKIE: &str = "procvisor_token";

/// 128 random bits as hex.
pub(super) fn random_key() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

/// Whether `given` is the secret (in time that does not depend on where
/// they differ).
pub(super) fn same(given: &str, secret: &str) -> bool {
    constant_time_eq(given.as_bytes(), secret.as_bytes())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

/// With a token set, let a request through only if it carries it; a page
/// opened with the right `?token=` sets the cookie and drops the token
/// from the address.
pub(super) async fn require_token(
    State(app): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(secret) = &app.token else {
        return next.run(request).await;
    };
    let headers = request.headers();
    if bearer(headers).is_some_and(|t| same(t, secret))
        || cookie(headers).is_some_and(|t| same(t, secret))
    {
        return next.run(request).await;
    }
    if query_token(request.uri().query()).is_some_and(|t| same(t, secret)) {
        let path = format!("{}{}", app.base, request.uri().path());
        let mut response = Redirect::to(&path).into_response();
        if let Ok(v) = format!("{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/").parse() {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
        return response;
    }
    (
        StatusCode::UNAUTHORIZED,
        "This dashboard needs its token: open it once as /?token=YOUR_TOKEN (the token procvisor dashboard was started with), or send the header Authorization: Bearer YOUR_TOKEN.\n",
    )
        .into_response()
}

/// A dashboard's shared state, which knows its access rules.
pub(super) trait HasAccess: Send + Sync + 'static {
    fn access(&self) -> &Access;
}

/// A posted form that carries the dashboard's form key.
pub(super) trait Keyed {
    fn key(&self) -> &str;
}

/// An action's posted form whose key is this dashboard's. Any other form
/// is refused (403) before the action's handler runs; a body that is not a
/// form is refused as `Form` refuses it.
pub(super) struct Posted<T>(pub(super) T);

impl<A: HasAccess, T: DeserializeOwned + Keyed + Send> FromRequest<Arc<A>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &Arc<A>) -> Result<Self, Response> {
        let Form(form) = Form::<T>::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !same(form.key(), &state.access().form_key) {
            return Err((
                StatusCode::FORBIDDEN,
                "This form is not from this dashboard (or the dashboard restarted since): reload the page and try again.\n",
            )
                .into_response());
        }
        Ok(Posted(form))
    }
}
