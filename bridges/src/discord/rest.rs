//! Discord's REST API with its rate limits: each response says how many requests are left
//! in its route's bucket (`X-RateLimit-Remaining`) and when it refills
//! (`X-RateLimit-Reset-After`); a request to a drained bucket waits for the refill first.
//! A 429 answers `retry_after` (seconds, fractional), global or per bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use troupe_actors::bridge::{BridgeError, BridgeErrorKind};

use crate::common::http_client;
use crate::common::request_failed;
use crate::secrets::Secret;

/// A route's bucket as the last response described it.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    remaining: u64,
    resets_at: Instant,
}

pub(crate) struct DiscordRest {
    http: reqwest::Client,
    base: String,
    token: Secret,
    /// By route (`POST channels/{id}/messages`).
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl DiscordRest {
    pub(crate) fn new(base: &str, token: &Secret) -> Self {
        Self {
            http: http_client(),
            base: base.to_owned(),
            token: token.clone(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Downloads an attachment (a CDN address, signed: no token is sent), at most
    /// `max_bytes`.
    pub(crate) async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, BridgeError> {
        crate::common::download(self.http.get(url), max_bytes, "discord attachment").await
    }

    /// Sends one request; `path` is relative to the API base.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        authorized: bool,
    ) -> Result<Value, BridgeError> {
        let route = format!("{method} {}", route_of(path));
        let mut request = self.request(method, path, authorized);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.execute(&route, request).await
    }

    /// POSTs `form` (`multipart/form-data`: `payload_json` and `files[n]`) to `path`, with
    /// the bot's token.
    pub(crate) async fn send_form(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> Result<Value, BridgeError> {
        let route = format!("POST {}", route_of(path));
        let request = self
            .request(reqwest::Method::POST, path, true)
            .multipart(form);
        self.execute(&route, request).await
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        authorized: bool,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}/{path}", self.base))
            .timeout(Duration::from_secs(30));
        if authorized {
            request.header("authorization", format!("Bot {}", self.token.expose()))
        } else {
            request
        }
    }

    /// Sends `request` once its route's bucket allows, and reads the answer.
    async fn execute(
        &self,
        route: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, BridgeError> {
        self.wait_for_bucket(route).await;
        let response = request
            .send()
            .await
            .map_err(|error| request_failed(&format!("discord {route}"), &error))?;
        self.remember_bucket(route, response.headers());
        let status = response.status().as_u16();
        let answer: Value = if status == 204 {
            Value::Null
        } else {
            response.json().await.unwrap_or(Value::Null)
        };
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let message = format!(
            "discord {route}: {status} {}",
            answer["message"].as_str().unwrap_or_default()
        );
        Err(match status {
            429 => {
                let seconds = answer["retry_after"].as_f64().unwrap_or(1.0).max(0.0);
                BridgeError::rate_limited(Duration::from_secs_f64(seconds), message)
            }
            401 => BridgeError::new(BridgeErrorKind::Unauthorized, message),
            500.. => BridgeError::new(BridgeErrorKind::Transient, message),
            _ => BridgeError::new(BridgeErrorKind::Rejected, message),
        })
    }

    async fn wait_for_bucket(&self, route: &str) {
        let wait = {
            let buckets = self
                .buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            buckets
                .get(route)
                .filter(|bucket| bucket.remaining == 0)
                .map(|bucket| bucket.resets_at.saturating_duration_since(Instant::now()))
        };
        if let Some(wait) = wait.filter(|wait| !wait.is_zero()) {
            tracing::debug!(
                route,
                ?wait,
                "discord bucket drained; waiting for its reset"
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn remember_bucket(&self, route: &str, headers: &reqwest::header::HeaderMap) {
        let read = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<f64>().ok())
        };
        let (Some(remaining), Some(reset_after)) = (
            read("x-ratelimit-remaining"),
            read("x-ratelimit-reset-after"),
        ) else {
            return;
        };
        let bucket = Bucket {
            remaining: remaining.max(0.0) as u64,
            resets_at: Instant::now() + Duration::from_secs_f64(reset_after.max(0.0)),
        };
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(route.to_owned(), bucket);
    }
}

/// The route a path belongs to: ids after `channels/` and `webhooks/` are its major
/// parameters (each channel has its own bucket); other ids are folded.
fn route_of(path: &str) -> String {
    let mut parts = Vec::new();
    let mut previous = "";
    for part in path.split('/') {
        let major = matches!(previous, "channels" | "guilds" | "webhooks");
        let is_id = part.bytes().all(|byte| byte.is_ascii_digit()) && !part.is_empty();
        parts.push(if is_id && !major { ":id" } else { part });
        previous = part;
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_keep_major_parameters() {
        assert_eq!(route_of("channels/123/messages"), "channels/123/messages");
        assert_eq!(
            route_of("channels/123/messages/456"),
            "channels/123/messages/:id"
        );
    }
}
