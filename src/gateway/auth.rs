//! Who may talk to the node: the bearer token (HTTP header, or the WebSocket `hello` frame
//! for browsers; never in a URL) and, for WebSockets, the `Origin` check that stops
//! cross-site WebSocket hijacking.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

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

/// Whether the request's headers carry the right token (always true without one configured).
pub(crate) fn header_authorized(expected: Option<&str>, headers: &HeaderMap) -> bool {
    match expected {
        None => true,
        Some(expected) => bearer_token(headers).is_some_and(|token| tokens_match(token, expected)),
    }
}

/// Middleware for every protected HTTP route.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if header_authorized(state.settings.token.as_deref(), request.headers()) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Browsers always send `Origin` on a WebSocket handshake; other clients usually do not.
/// A browser origin must be the page's own (same host) or listed in `allowed_origins`.
pub(crate) fn origin_allowed(allowed_origins: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    if allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers.get(HOST).and_then(|value| value.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((host, origin_host), (Some(host), Some(origin_host)) if host.eq_ignore_ascii_case(origin_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn checks_bearer_tokens() {
        assert!(header_authorized(None, &HeaderMap::new()));
        assert!(header_authorized(
            Some("t0k"),
            &headers(&[("authorization", "Bearer t0k")])
        ));
        assert!(header_authorized(
            Some("t0k"),
            &headers(&[("authorization", "bearer t0k")])
        ));
        assert!(!header_authorized(
            Some("t0k"),
            &headers(&[("authorization", "Bearer t0x")])
        ));
        assert!(!header_authorized(
            Some("t0k"),
            &headers(&[("authorization", "Basic t0k")])
        ));
        assert!(!header_authorized(Some("t0k"), &HeaderMap::new()));
    }

    #[test]
    fn allows_same_origin_listed_origins_and_non_browsers_only() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(
            &none,
            &headers(&[("host", "127.0.0.1:8787")])
        ));
        assert!(origin_allowed(
            &none,
            &headers(&[
                ("host", "127.0.0.1:8787"),
                ("origin", "http://127.0.0.1:8787")
            ])
        ));
        assert!(!origin_allowed(
            &none,
            &headers(&[
                ("host", "127.0.0.1:8787"),
                ("origin", "https://evil.example")
            ])
        ));
        let listed = vec!["https://app.example".to_owned()];
        assert!(origin_allowed(
            &listed,
            &headers(&[
                ("host", "127.0.0.1:8787"),
                ("origin", "https://app.example")
            ])
        ));
    }
}
