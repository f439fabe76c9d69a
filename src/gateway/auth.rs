//! Who may talk to the node: the bearer token (HTTP header, or the WebSocket `hello` frame
//! for browsers; never in a URL). Failed attempts are logged and counted per address, and
//! an address that keeps guessing is refused for a while. A request that proves the token
//! lifts its connection out of the pending room ([`super::admission`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use troupe_actors::metrics as metric_names;

use super::AppState;
use super::admission::ConnectionTicket;
use super::callers::{Caller, authenticate};
use super::error::{ApiCode, ApiError};

/// Failed attempts one address may make per [`FAILURE_WINDOW`] before it is refused.
const FAILURES_PER_WINDOW: u32 = 30;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked before expired windows are swept.
const SWEEP_AT: usize = 4096;

/// Failed token attempts per address, in fixed windows.
#[derive(Debug, Default)]
pub(crate) struct AuthFailures {
    by_address: DashMap<IpAddr, (Instant, u32)>,
}

impl AuthFailures {
    /// How long `address` must wait before it may try again, if it used up its attempts.
    pub(crate) fn locked_out(&self, address: IpAddr) -> Option<Duration> {
        let entry = self.by_address.get(&address.to_canonical())?;
        let (started, failures) = *entry;
        let left = FAILURE_WINDOW.checked_sub(started.elapsed())?;
        (failures >= FAILURES_PER_WINDOW).then_some(left)
    }

    /// Counts and logs one failed attempt.
    pub(crate) fn record(&self, address: IpAddr, path: &str) {
        let address = address.to_canonical();
        if self.by_address.len() >= SWEEP_AT {
            self.by_address
                .retain(|_, (started, _)| started.elapsed() < FAILURE_WINDOW);
        }
        let mut entry = self
            .by_address
            .entry(address)
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        let failures = entry.1;
        drop(entry);
        metrics::counter!(metric_names::AUTH_FAILURES).increment(1);
        // Every failure up to the lockout, then one line per window: a guesser cannot
        // flood the log.
        if failures <= FAILURES_PER_WINDOW {
            tracing::warn!(%address, path, failures, "authentication failed");
        }
        if failures == FAILURES_PER_WINDOW {
            tracing::warn!(%address, "too many failed authentications: refusing this address for {FAILURE_WINDOW:?}");
        }
    }
}

/// The answer to an address that is locked out.
pub(crate) fn locked_out_answer(wait: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ApiCode::TooManyFailures,
        "too many failed authentications from this address; wait and try again",
    )
    .into_response();
    let seconds = wait.as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// Compares in time independent of where the first difference is.
pub(crate) fn tokens_match(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// The token from `Authorization: Bearer …`, if any.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The peer's address, which the server puts on every request.
pub(crate) fn peer_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// Who the request's `Authorization` header makes the caller, if anyone.
fn header_caller(state: &AppState, headers: &HeaderMap) -> Option<Caller> {
    let settings = &state.settings;
    authenticate(
        settings.token.as_deref(),
        &settings.senders,
        bearer_token(headers),
    )
}

/// Middleware for every protected HTTP route: the [`Caller`] that
/// [`admit_connection`] found, or 401.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refusal) = locked_out_refusal(&state, &request) {
        return refusal;
    }
    if request.extensions().get::<Caller>().is_some() {
        return next.run(request).await;
    }
    unauthorized(&state, &request)
}

/// The answer to an address that used up its attempts, if the request's is one.
fn locked_out_refusal(state: &AppState, request: &Request) -> Option<Response> {
    let address = peer_address(request)?;
    state
        .auth_failures
        .locked_out(address)
        .map(locked_out_answer)
}

/// 401, counted as a failed attempt of the request's address.
fn unauthorized(state: &AppState, request: &Request) -> Response {
    if let Some(address) = peer_address(request) {
        state.auth_failures.record(address, request.uri().path());
    }
    ApiError::unauthorized().into_response()
}

/// Middleware for the routes that manage the node (sessions, pairing, identities,
/// skills, metrics): a sender's own token does not reach them.
pub(crate) async fn owner_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<Caller>() {
        Some(Caller::Owner) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            ApiCode::OwnerOnly,
            "this route needs the owner's token (server.token), not a sender's",
        )
        .into_response(),
    }
}

/// Marks a request that proved `server.ops_token`: it reads the operator's views, and
/// nothing else (it is no [`Caller`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operator;

/// Whether `headers` carry `server.ops_token`.
fn operator(state: &AppState, headers: &HeaderMap) -> Option<Operator> {
    let expected = state.settings.ops_token.as_deref()?;
    bearer_token(headers)
        .is_some_and(|presented| tokens_match(presented, expected))
        .then_some(Operator)
}

/// Middleware for the operator's views (`/metrics`, usage, the dashboard's stream): the
/// owner's token or `server.ops_token`; a sender's own token is refused, a missing or
/// wrong one counted as a failed attempt.
pub(crate) async fn owner_or_operator(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refusal) = locked_out_refusal(&state, &request) {
        return refusal;
    }
    let extensions = request.extensions();
    match (extensions.get::<Caller>(), extensions.get::<Operator>()) {
        (Some(Caller::Owner), _) | (None, Some(Operator)) => next.run(request).await,
        (Some(Caller::Sender(_)), _) => ApiError::new(
            StatusCode::FORBIDDEN,
            ApiCode::OwnerOnly,
            "this route needs the owner's token (server.token) or server.ops_token, not a sender's",
        )
        .into_response(),
        (None, None) => unauthorized(&state, &request),
    }
}

/// Middleware around every route: a request that proves the token (or any request, on a
/// node without one) makes its connection authorized; on a connection admitted on
/// probation, a request that does not is answered `503 server_busy` and the connection
/// closed.
/// The request's [`Caller`], when its header proves one, rides on with it (and so does a
/// canvas room token's grant): the routes read it from there, and nothing compares the token
/// twice.
pub(crate) async fn admit_connection(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = header_caller(&state, request.headers());
    let ticket = request.extensions().get::<Arc<ConnectionTicket>>().cloned();
    let grant = caller
        .is_none()
        .then(|| super::canvas::room_token_grant(&state, request.uri()))
        .flatten();
    let operator = caller
        .is_none()
        .then(|| operator(&state, request.headers()))
        .flatten();
    let proven = caller.is_some() || grant.is_some() || operator.is_some();
    if let Some(operator) = operator {
        request.extensions_mut().insert(operator);
    }
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    if let Some(grant) = grant {
        request.extensions_mut().insert(grant);
    }
    let Some(ticket) = ticket else {
        return next.run(request).await;
    };
    if proven {
        ticket.authorize();
    } else if ticket.on_probation() {
        metrics::counter!(metric_names::HTTP_REQUESTS_REFUSED, "reason" => "busy").increment(1);
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiCode::ServerBusy,
            "the node is at its connection limit; only requests with a valid token are served",
        )
        .into_response();
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::header_map as headers;

    #[test]
    fn reads_bearer_tokens_from_the_authorization_header_only() {
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Bearer t0k")])),
            Some("t0k")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "bearer t0k")])),
            Some("t0k")
        );
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic t0k")])),
            None
        );
        assert_eq!(bearer_token(&HeaderMap::new()), None);
        assert!(tokens_match("t0k", "t0k"));
        assert!(!tokens_match("t0x", "t0k"));
        assert!(!tokens_match("t0", "t0k"));
    }

    #[test]
    fn an_address_that_keeps_guessing_is_locked_out_and_others_are_not() {
        let failures = AuthFailures::default();
        let guesser: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "203.0.113.10".parse().unwrap();
        for _ in 0..FAILURES_PER_WINDOW - 1 {
            failures.record(guesser, "/api/v1/sessions");
        }
        assert_eq!(failures.locked_out(guesser), None);
        failures.record(guesser, "/api/v1/sessions");
        let wait = failures.locked_out(guesser).expect("locked out");
        assert!(wait <= FAILURE_WINDOW && wait > Duration::ZERO);
        assert_eq!(failures.locked_out(other), None);
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert!(failures.locked_out(mapped).is_some());
    }
}
