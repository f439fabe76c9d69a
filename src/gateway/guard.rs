//! The first layer every request passes, before any route runs: the `Host` header must
//! name this node, and a browser's `Origin` must be the node's own or one the operator
//! listed. This closes DNS rebinding (a page whose name resolves to 127.0.0.1 is "same
//! origin" with the node in the browser's eyes, but its Host still says its own name) and
//! cross-site requests for every route: the API, `/ws`, `/metrics`, the page, the bridges'
//! webhooks and any route added later.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::{ApiCode, ApiError};

/// One `server.allowed_hosts` entry: `assistant.example.com`, `*.example.com` (any
/// subdomain, not the name itself), either optionally with `:port` (without one, any port).
/// Built only by [`HostPattern::parse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct HostPattern {
    /// Lower case, without the `*.`.
    name: String,
    subdomains: bool,
    port: Option<u16>,
}

/// Why an `allowed_hosts` entry is not a host pattern.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{entry}` is not a host name with an optional port and leading `*.` ({reason})")]
pub(crate) struct HostPatternError {
    entry: String,
    reason: &'static str,
}

impl HostPattern {
    pub(crate) fn parse(entry: &str) -> Result<Self, HostPatternError> {
        let refuse = |reason| HostPatternError {
            entry: entry.to_owned(),
            reason,
        };
        let (subdomains, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        if rest.contains('*') {
            return Err(refuse("`*` may only start the pattern, as `*.`"));
        }
        let (name, port) = split_host(rest).ok_or_else(|| refuse("not a host[:port]"))?;
        Ok(Self {
            name,
            subdomains,
            port,
        })
    }

    fn matches(&self, name: &str, port: u16) -> bool {
        if self.port.is_some_and(|expected| expected != port) {
            return false;
        }
        if self.subdomains {
            name.strip_suffix(self.name.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
        } else {
            name == self.name
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = HostPatternError;

    fn try_from(entry: String) -> Result<Self, Self::Error> {
        Self::parse(&entry)
    }
}

impl From<HostPattern> for String {
    fn from(pattern: HostPattern) -> Self {
        let wildcard = if pattern.subdomains { "*." } else { "" };
        let name = if pattern.name.contains(':') {
            format!("[{}]", pattern.name)
        } else {
            pattern.name
        };
        match pattern.port {
            Some(port) => format!("{wildcard}{name}:{port}"),
            None => format!("{wildcard}{name}"),
        }
    }
}

/// A `host[:port]` as its name (lower case, without IPv6 brackets or a trailing dot:
/// `localhost.` is `localhost`) and port; `None` unless the name is a DNS name or an
/// address and the port a number. User info (`user@host`) is not a host.
pub(crate) fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    let authority: Authority = text.parse().ok()?;
    let host = authority.host();
    let after_host = authority.as_str().strip_prefix(host)?;
    let port = match after_host {
        "" => None,
        port => Some(port.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    let name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let dns_name = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
    (dns_name || name.parse::<IpAddr>().is_ok()).then_some((name, port))
}

/// Which `Host` and `Origin` values this node answers.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    /// The address the node is bound to (the real port, also when configured as 0).
    bound: SocketAddr,
    allowed_hosts: Vec<HostPattern>,
    allowed_origins: Vec<String>,
}

/// Why a request is refused before it reaches a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Host`, or one that does not name this node.
    Host,
    /// A browser origin that is neither the node's own nor listed.
    Origin,
}

impl RequestGuard {
    pub(crate) fn new(
        bound: SocketAddr,
        allowed_hosts: Vec<HostPattern>,
        allowed_origins: Vec<String>,
    ) -> Self {
        Self {
            bound,
            allowed_hosts,
            allowed_origins,
        }
    }

    /// Whether `host` (a `Host` header value) names this node.
    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let port = port.unwrap_or(80);
        if self
            .allowed_hosts
            .iter()
            .any(|pattern| pattern.matches(&name, port))
        {
            return true;
        }
        if port != self.bound.port() {
            return false;
        }
        match name.parse::<IpAddr>() {
            // An address cannot be rebound: only a name can be made to point here.
            Ok(address) => {
                let address = address.to_canonical();
                address.is_loopback()
                    || address == self.bound.ip()
                    || self.bound.ip().is_unspecified()
            }
            // Browsers resolve `localhost` and `*.localhost` to loopback themselves.
            Err(_) => name == "localhost" || name.ends_with(".localhost"),
        }
    }

    /// Whether the request's `Origin`, when a browser sent one, may talk to this node: its
    /// own origin (scheme aside, the same authority as `Host`) or one in `allowed_origins`.
    pub(crate) fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        if self
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        let authority = authority.trim_end_matches('/');
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => ":80",
            "https" => ":443",
            _ => return false,
        };
        let authority = authority.strip_suffix(default_port).unwrap_or(authority);
        authority.eq_ignore_ascii_case(host)
    }

    /// The first check of every request.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(HOST)
            .and_then(|value| value.to_str().ok())
            .ok_or(Refusal::Host)?;
        if !self.host_allowed(host) {
            return Err(Refusal::Host);
        }
        match headers.get(ORIGIN) {
            None => Ok(()),
            Some(origin) => origin
                .to_str()
                .ok()
                .filter(|origin| self.origin_allowed(origin, host))
                .map(|_| ())
                .ok_or(Refusal::Origin),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Host => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                ApiCode::HostNotAllowed,
                "the Host header does not name this node; add the name you use to server.allowed_hosts",
            ),
            Refusal::Origin => ApiError::new(
                StatusCode::FORBIDDEN,
                ApiCode::OriginNotAllowed,
                "requests from this Origin are not allowed; add it to server.allowed_origins",
            ),
        }
    }
}

/// The middleware around the whole router.
pub(crate) async fn check_request(
    State(guard): State<Arc<RequestGuard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::debug!(?refusal, headers = ?request.headers().get(HOST), "request refused");
            ApiError::from(refusal).into_response()
        }
    }
}

#[cfg(test)]
mod tests;
