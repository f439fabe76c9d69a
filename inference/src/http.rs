//! What every HTTP provider shares: the client, and the mapping of HTTP failures to
//! `ProviderError` kinds (429 with `Retry-After`, 5xx, 401/403, other 4xx).

use std::sync::OnceLock;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use troupe_actors::{ProviderError, ProviderErrorKind};

/// Longest error body we read for a message.
const MAX_ERROR_BODY_BYTES: usize = 4096;

/// The one HTTP client of every provider: connection pooling across calls, rustls, no total
/// timeout (the model worker bounds each attempt; streams may run long). Built on first
/// use, because loading the TLS roots takes long enough to matter for a cold start.
static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

pub(crate) fn client() -> reqwest::Client {
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(90))
                .user_agent(concat!("troupe/", env!("CARGO_PKG_VERSION")))
                // A pure-Rust resolver: the static binary in a scratch image has no glibc NSS.
                .hickory_dns(true)
                .build()
                .expect("the TLS backend is compiled in")
        })
        .clone()
}

/// Builds the shared client now. Blocking (TLS roots): call from a blocking thread after
/// the node is ready, so no request pays for it on the async runtime.
pub fn warm_up() {
    let _ = client();
}

/// Sends a request and checks the status: a non-success answer becomes its error.
pub(crate) async fn send(
    provider: &str,
    request: reqwest::RequestBuilder,
) -> Result<Response, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|error| transport_error(provider, &error))?;
    if !response.status().is_success() {
        return Err(status_error(provider, response).await);
    }
    Ok(response)
}

/// Reads a whole JSON answer.
pub(crate) async fn read_json(
    provider: &str,
    response: Response,
) -> Result<serde_json::Value, ProviderError> {
    response
        .json()
        .await
        .map_err(|error| transport_error(provider, &error))
}

/// The `data` of each server-sent event of a streamed answer.
pub(crate) fn sse_data(
    provider: &str,
    response: Response,
) -> impl futures_util::Stream<Item = Result<String, ProviderError>> + Unpin {
    sse_events(provider, response.bytes_stream())
}

/// The `data` of each server-sent event in a stream of bytes, however it is cut.
pub(crate) fn sse_events<S, B, E>(
    provider: &str,
    bytes: S,
) -> impl futures_util::Stream<Item = Result<String, ProviderError>> + Unpin
where
    S: futures_util::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let provider = provider.to_owned();
    bytes.eventsource().map(move |event| {
        event.map(|event| event.data).map_err(|error| {
            ProviderError::new(
                ProviderErrorKind::Protocol,
                &provider,
                format!("broken event stream: {error}"),
            )
        })
    })
}

/// Parses one event's JSON.
pub(crate) fn parse_event(provider: &str, data: &str) -> Result<serde_json::Value, ProviderError> {
    serde_json::from_str(data).map_err(|error| {
        ProviderError::new(
            ProviderErrorKind::Protocol,
            provider,
            format!("unreadable stream event: {error}"),
        )
    })
}

/// Maps a transport error.
pub(crate) fn transport_error(provider: &str, error: &reqwest::Error) -> ProviderError {
    let kind = if error.is_timeout() {
        ProviderErrorKind::Timeout
    } else if error.is_decode() {
        ProviderErrorKind::Protocol
    } else {
        ProviderErrorKind::Network
    };
    ProviderError::new(kind, provider, error.to_string())
}

/// `Retry-After` in seconds or as an HTTP date; `retry-after-ms` first when present.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(millis) =
        header("retry-after-ms").and_then(|value| value.trim().parse::<f64>().ok())
    {
        return (millis >= 0.0).then(|| Duration::from_secs_f64(millis / 1000.0));
    }
    let value = header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn kind_for_status(status: StatusCode) -> ProviderErrorKind {
    match status.as_u16() {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Unauthorized,
        408 => ProviderErrorKind::Timeout,
        // 529: Anthropic's "overloaded".
        500..=599 => ProviderErrorKind::Server,
        _ => ProviderErrorKind::BadRequest,
    }
}

/// Turns a non-success answer into an error, with the provider's own message when the
/// body holds one (`{"error": {"message": …}}` in both OpenAI and Anthropic formats).
pub(crate) async fn status_error(provider: &str, response: Response) -> ProviderError {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.unwrap_or_default();
    let body = &body[..body.len().min(MAX_ERROR_BODY_BYTES)];
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            json.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let message = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    ProviderError::new(kind_for_status(status), provider, message)
        .with_status(status.as_u16())
        .with_retry_after(retry_after)
}

/// A streamed `error` event or payload.
pub(crate) fn stream_error(provider: &str, payload: &serde_json::Value) -> ProviderError {
    let message = payload
        .pointer("/error/message")
        .and_then(|m| m.as_str())
        .unwrap_or("the provider reported an error mid-stream");
    let error_type = payload
        .pointer("/error/type")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let kind = match error_type {
        "overloaded_error" | "api_error" | "server_error" => ProviderErrorKind::Server,
        "rate_limit_error" | "rate_limit_exceeded" => ProviderErrorKind::RateLimited,
        _ => ProviderErrorKind::Protocol,
    };
    ProviderError::new(kind, provider, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_retry_after_in_all_its_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        let mut dated = HeaderMap::new();
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        dated.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let wait = retry_after(&dated).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        let mut garbage = HeaderMap::new();
        garbage.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&garbage), None);
    }

    #[test]
    fn maps_statuses_to_kinds() {
        assert_eq!(
            kind_for_status(StatusCode::TOO_MANY_REQUESTS),
            ProviderErrorKind::RateLimited
        );
        assert_eq!(
            kind_for_status(StatusCode::UNAUTHORIZED),
            ProviderErrorKind::Unauthorized
        );
        assert_eq!(
            kind_for_status(StatusCode::from_u16(529).unwrap()),
            ProviderErrorKind::Server
        );
        assert_eq!(
            kind_for_status(StatusCode::NOT_FOUND),
            ProviderErrorKind::BadRequest
        );
    }
}
