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

use crate::setup::SkillSetupError;
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
/// The header that carries a call's id as its idempotency key
/// (draft-ietf-httpapi-idempotency-key-header): a workflow step's call asked again after a
/// crash has the same key, so the service can answer it without doing the work twice.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
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
    pub fn new(url: &str, secret: &str) -> Result<Self, SkillSetupError> {
        let parsed = url::Url::parse(url).map_err(|source| SkillSetupError::Url {
            url: url.to_owned(),
            source,
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SkillSetupError::Scheme(url.to_owned()));
        }
        if secret.len() < 16 {
            return Err(SkillSetupError::ShortSecret);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SkillSetupError::Client)?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
            client,
        })
    }

    /// Sends a signed request and reads a size-limited JSON answer `(status, body)`.
    async fn signed(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), SkillError> {
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
        let request = match idempotency_key {
            // The IETF draft's structured-field string: quoted, with `"` and `\` escaped.
            Some(key) => request.header(
                IDEMPOTENCY_KEY_HEADER,
                format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\"")),
            ),
            None => request,
        };
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
        let (status, body) = self.signed("/manifest", None, None).await?;
        manifest_answer(status, body)
    }

    async fn execute(&self, call: SkillCall) -> Result<Value, SkillError> {
        let key = call.call_id.clone();
        let request = ExecuteRequest {
            action: call.action,
            arguments: call.arguments,
            call_id: call.call_id,
            session: call.session,
        };
        let body =
            serde_json::to_vec(&request).map_err(|error| SkillError::failed(error.to_string()))?;
        let (status, answer) = self.signed("/execute", Some(body), Some(&key)).await?;
        execute_answer(status, &answer)
    }
}

/// The manifest in a skill's answer to `GET /manifest`.
pub(crate) fn manifest_answer(status: u16, body: Value) -> Result<SkillManifest, SkillError> {
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

/// The result in a skill's answer to `POST /execute`, or the error it reports.
pub(crate) fn execute_answer(status: u16, answer: &Value) -> Result<Value, SkillError> {
    if let Some(error) = answered_error(answer) {
        return Err(error);
    }
    match status {
        200..=299 => answer
            .get("result")
            .cloned()
            .ok_or_else(|| SkillError::failed("the skill answered neither `result` nor `error`")),
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

#[cfg(test)]
mod tests {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    const SECRET: &str = "0123456789abcdef-secret";

    fn signed(headers: &HeaderMap, body: &[u8]) -> bool {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        verify_request(
            SECRET.as_bytes(),
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            body,
        )
        .is_ok()
    }

    async fn skill_service() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route(
                "/manifest",
                axum::routing::get(|headers: HeaderMap| async move {
                    if !signed(&headers, b"") {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    axum::Json(json!({"name": "t", "tools": [{"name": "echo"}]})).into_response()
                }),
            )
            .route(
                "/execute",
                axum::routing::post(|headers: HeaderMap, body: Bytes| async move {
                    if !signed(&headers, &body) {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    let request: ExecuteRequest = serde_json::from_slice(&body).unwrap();
                    match request.action.as_str() {
                        "big" => axum::Json(json!({"result": "x".repeat(2 * MAX_BODY_BYTES)})).into_response(),
                        "boom" => StatusCode::BAD_GATEWAY.into_response(),
                        "nope" => (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": "not_found", "message": "no such file"}}))).into_response(),
                        _ => axum::Json(json!({"result": {"echo": request.arguments, "person": request.session.person}})).into_response(),
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{address}")
    }

    fn call(action: &str, arguments: Value) -> SkillCall {
        let mut session = SkillSession {
            person: "telegram:1".into(),
            ..SkillSession::default()
        };
        session.reply_route = Some(json!({"bridge": "private"}));
        SkillCall {
            call_id: "c".into(),
            action: action.into(),
            arguments,
            session,
        }
    }

    #[tokio::test]
    async fn signs_requests_and_maps_every_answer() {
        let url = skill_service().await;
        let skill = HttpSkill::new(&url, SECRET).unwrap();
        assert_eq!(skill.manifest().await.unwrap().tools[0].name, "echo");
        let echoed = skill.execute(call("echo", json!({"a": 1}))).await.unwrap();
        assert_eq!(echoed, json!({"echo": {"a": 1}, "person": "telegram:1"}));
        let too_big = skill.execute(call("big", json!({}))).await.unwrap_err();
        assert_eq!(too_big.code, SkillErrorCode::TooLarge);
        let request_too_big = skill
            .execute(call("echo", json!({"blob": "y".repeat(MAX_BODY_BYTES)})))
            .await
            .unwrap_err();
        assert_eq!(request_too_big.code, SkillErrorCode::TooLarge);
        assert_eq!(
            skill
                .execute(call("boom", json!({})))
                .await
                .unwrap_err()
                .code,
            SkillErrorCode::Unavailable
        );
        let missing = skill.execute(call("nope", json!({}))).await.unwrap_err();
        assert_eq!(
            (missing.code, missing.message.as_str()),
            (SkillErrorCode::NotFound, "no such file")
        );

        let wrong = HttpSkill::new(&url, "another-secret-of-length").unwrap();
        assert!(
            wrong
                .manifest()
                .await
                .unwrap_err()
                .message
                .contains("signature")
        );
        let gone = HttpSkill::new("http://127.0.0.1:9", SECRET).unwrap();
        assert_eq!(
            gone.manifest().await.unwrap_err().code,
            SkillErrorCode::Unavailable
        );
        assert!(HttpSkill::new(&url, "short").is_err());
        assert!(HttpSkill::new("ftp://x", SECRET).is_err());
    }

    #[test]
    fn the_reply_route_never_leaves_troupe() {
        let body = serde_json::to_value(ExecuteRequest {
            action: "a".into(),
            arguments: json!({}),
            call_id: "c".into(),
            session: call("a", json!({})).session,
        })
        .unwrap();
        assert!(body["session"].get("reply_route").is_none(), "{body}");
        assert_eq!(body["session"]["person"], "telegram:1");
    }
}
