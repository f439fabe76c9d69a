//! HTTP skills: a skill that runs as its own service (any language, its own container),
//! reached over a small signed contract:
//!
//! - `GET {url}/manifest` answers the [`SkillManifest`] as JSON;
//! - `POST {url}/execute` takes [`ExecuteRequest`]
//!   (`{"action", "arguments", "call_id", "session"}`) and answers `{"result": …}` or
//!   `{"error": {"code", "message"}}`.
//!
//! Every request carries `X-Troupe-Timestamp` and `X-Troupe-Signature`
//! (`v1=` HMAC-SHA256 of `"{timestamp}.{body}"` with the shared secret; the body of a GET
//! is empty). Requests and answers are size-limited, calls time-limited by the skill actor,
//! and a skill that cannot be reached is marked unavailable and asked again with backoff.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use troupe_actors::message::unix_now;
use troupe_actors::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign_v1, verify_v1};
use troupe_actors::skill::{
    Skill, SkillCall, SkillError, SkillErrorCode, SkillManifest, SkillSession,
};

/// Largest request sent and answer read, in bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How far a signed timestamp may be from the receiver's clock.
pub const SIGNATURE_WINDOW_SECS: u64 = 300;

/// The body of `POST /execute`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    pub action: String,
    pub arguments: Value,
    pub call_id: String,
    pub session: SkillSession,
}

/// For skill services written in Rust: checks a request's signature headers.
pub fn verify_request(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<(), SkillError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SkillError::new(
            SkillErrorCode::Forbidden,
            "the request is not signed",
        ));
    };
    if verify_v1(
        secret,
        timestamp,
        signature,
        body,
        unix_now(),
        SIGNATURE_WINDOW_SECS,
    ) {
        Ok(())
    } else {
        Err(SkillError::new(
            SkillErrorCode::Forbidden,
            "the signature is wrong or too old",
        ))
    }
}

/// The client side: one configured HTTP skill.
pub struct HttpSkill {
    base: String,
    secret: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpSkill {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HttpSkill")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn unavailable(message: impl Into<String>) -> SkillError {
    SkillError::new(SkillErrorCode::Unavailable, message)
}

impl HttpSkill {
    /// `url` is the service's base (`http://files:8080`); `secret` the shared HMAC key.
    pub fn new(url: &str, secret: &str) -> Result<Self, String> {
        let parsed =
            url::Url::parse(url).map_err(|error| format!("`{url}` is not a URL: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}` must be an http or https URL"));
        }
        if secret.len() < 16 {
            return Err("the shared secret must be at least 16 characters".into());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            client,
        })
    }

    /// Sends a signed request and reads a size-limited JSON answer `(status, body)`.
    async fn signed(&self, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Value), SkillError> {
        let bytes = body.clone().unwrap_or_default();
        if bytes.len() > MAX_BODY_BYTES {
            return Err(SkillError::new(
                SkillErrorCode::TooLarge,
                format!(
                    "the request is {} bytes, more than {MAX_BODY_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let timestamp = unix_now();
        let url = format!("{}{path}", self.base);
        let request = match body {
            Some(body) => self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body),
            None => self.client.get(url),
        }
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(
            SIGNATURE_HEADER,
            sign_v1(self.secret.as_bytes(), timestamp, &bytes),
        );
        let response = request
            .send()
            .await
            .map_err(|error| unavailable(format!("the skill cannot be reached: {error}")))?;
        let status = response.status().as_u16();
        let mut read = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|error| unavailable(format!("the answer broke off: {error}")))?;
            if read.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(SkillError::new(
                    SkillErrorCode::TooLarge,
                    format!("the skill answered more than {MAX_BODY_BYTES} bytes"),
                ));
            }
            read.extend_from_slice(&chunk);
        }
        let value = serde_json::from_slice(&read).unwrap_or(Value::Null);
        Ok((status, value))
    }
}

/// The error a skill put in its answer, if any.
fn answered_error(body: &Value) -> Option<SkillError> {
    let error = body.get("error")?;
    Some(SkillError::new(
        SkillErrorCode::parse(error["code"].as_str().unwrap_or("failed")),
        error["message"]
            .as_str()
            .unwrap_or("the skill failed")
            .to_owned(),
    ))
}

#[async_trait::async_trait]
impl Skill for HttpSkill {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn manifest(&self) -> Result<SkillManifest, SkillError> {
        let (status, body) = self.signed("/manifest", None).await?;
        if status == 401 || status == 403 {
            return Err(unavailable(format!(
                "the skill refused our signature ({status}); check that both sides share the secret"
            )));
        }
        if !(200..300).contains(&status) {
            return Err(unavailable(format!("GET /manifest answered {status}")));
        }
        serde_json::from_value(body)
            .map_err(|error| unavailable(format!("the manifest is not valid: {error}")))
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let request = ExecuteRequest {
            action: call.action,
            arguments: call.arguments,
            call_id: call.call_id,
            session: call.session,
        };
        let body =
            serde_json::to_vec(&request).map_err(|error| SkillError::failed(error.to_string()))?;
        let (status, answer) = self.signed("/execute", Some(body)).await?;
        if let Some(error) = answered_error(&answer) {
            return Err(error);
        }
        match status {
            200..=299 => answer.get("result").cloned().ok_or_else(|| {
                SkillError::failed("the skill answered neither `result` nor `error`")
            }),
            401 | 403 => Err(SkillError::failed(format!(
                "the skill refused our signature ({status}); check the shared secret"
            ))),
            500..=599 => Err(unavailable(format!("the skill failed with {status}"))),
            _ => Err(SkillError::failed(format!(
                "the skill answered {status}: {}",
                json!(answer)
            ))),
        }
    }
}
