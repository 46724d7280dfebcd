//! Who may use the dashboard: the token check on every request, and the
//! key that every action's form carries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use constant_time_eq::constant_time_eq;

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
