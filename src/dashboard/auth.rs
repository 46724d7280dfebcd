//! Who may use the dashboard: on every request the `Host` check (against
//! DNS rebinding), the `Origin` check of actions, and the token; and the
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

/// The host part of a `Host` header or an origin's authority (without its
/// port), lower-cased, without a trailing dot.
fn host_of(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(v6) = a.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a request's `Host` names this dashboard: an IP address,
/// `localhost`, or a name it was told to answer to. A web page whose own
/// name was pointed at this machine (DNS rebinding) sends that name, and
/// is refused. A request without `Host` (HTTP/1.0) comes from no browser.
fn host_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(value) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let host = host_of(value);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() || allowed.contains(&host)
}

/// Whether an action comes from this dashboard's own pages: a browser
/// names the page that sends a form in `Origin`; it must be this
/// dashboard's address. (A request without `Origin` is from no browser
/// that would send one across sites.)
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host.trim()))
}

/// Guard every request: the `Host` must name this dashboard, an action's
/// `Origin` must be its own pages, and with a token set the request must
/// carry it; a page opened with the right `?token=` sets the cookie and
/// drops the token from the address.
pub(super) async fn require_token(
    State(app): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if !host_allowed(headers, &app.hosts) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "This dashboard answers only at its own address (an IP address or localhost): open it as http://127.0.0.1:PORT/. To reach it by a name, start it with --allow-host NAME (Dashboard::allow_host in an application).\n",
        )
            .into_response();
    }
    let reads = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !reads && !same_origin(headers) {
        return (
            StatusCode::FORBIDDEN,
            "This action was sent from another web site's page: use the dashboard's own pages.\n",
        )
            .into_response();
    }
    let Some(secret) = &app.token else {
        return next.run(request).await;
    };
    if bearer(headers).is_some_and(|t| same(t, secret))
        || cookie(headers).is_some_and(|t| same(t, secret))
    {
        return next.run(request).await;
    }
    if query_token(request.uri().query()).is_some_and(|t| same(t, secret)) {
        // One leading slash: `//other.site/` would send the browser away.
        let path = format!(
            "/{}",
            format!("{}{}", app.base, request.uri().path()).trim_start_matches('/')
        );
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
