//! The Bot API over HTTPS: `POST {api_base}/bot{token}/{method}` with a JSON body, answered
//! `{"ok": true, "result": …}` or `{"ok": false, "error_code", "description",
//! "parameters": {"retry_after"}}`. Errors map to [`BridgeErrorKind`]s: 401/404 refused
//! credentials, 429 a flood wait (with its `retry_after`), 5xx and network trouble
//! transient, other 4xx a refusal of that one request.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use troupe_actors::bridge::{BridgeError, BridgeErrorKind};

use crate::common::{download, http_client, request_failed};
use crate::secrets::Secret;

/// One Bot API answer.
#[derive(Debug, Deserialize)]
struct ApiResponse<T> {
    ok: bool,
    result: Option<T>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Debug, Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// The bot itself (`getMe`).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct BotUser {
    pub(crate) id: i64,
    #[serde(default)]
    pub(crate) username: Option<String>,
}

/// A file as `getFile` describes it.
#[derive(Debug, Deserialize)]
struct TelegramFile {
    #[serde(default)]
    file_size: Option<u64>,
    /// Missing when the file cannot be downloaded (over 20 MB).
    #[serde(default)]
    file_path: Option<String>,
}

/// A client for one bot.
#[derive(Clone, Debug)]
pub(crate) struct TelegramClient {
    http: reqwest::Client,
    /// `{api_base}/bot{token}`: holds the token, so never logged.
    base: Secret,
    /// `{api_base}/file/bot{token}`, where files are downloaded.
    files: Secret,
}

impl TelegramClient {
    pub(crate) fn new(api_base: &str, token: &Secret) -> Self {
        let http = http_client();
        Self {
            http,
            base: Secret::new(format!("{api_base}/bot{}", token.expose())),
            files: Secret::new(format!("{api_base}/file/bot{}", token.expose())),
        }
    }

    /// Downloads the file `file_id` (`getFile`, then its `file_path`), refusing one over
    /// `max_bytes` before reading past the limit.
    pub(crate) async fn download(
        &self,
        file_id: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BridgeError> {
        let file: TelegramFile = self
            .call(
                "getFile",
                &serde_json::json!({"file_id": file_id}),
                Duration::from_secs(30),
            )
            .await?;
        if let Some(bytes) = file.file_size.filter(|&bytes| bytes > max_bytes) {
            return Err(BridgeError::too_large(bytes, max_bytes));
        }
        let path = file.file_path.ok_or_else(|| {
            BridgeError::new(
                BridgeErrorKind::Rejected,
                "telegram getFile: the file cannot be downloaded (over 20 MB)",
            )
        })?;
        let url = format!("{}/{path}", self.files.expose());
        download(self.http.get(url), max_bytes, "telegram file download").await
    }

    /// Calls `method`; `timeout` bounds the whole request.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<T, BridgeError> {
        let url = format!("{}/{method}", self.base.expose());
        let request = self.http.post(url).json(body).timeout(timeout);
        self.answer(method, request).await
    }

    /// Calls `method` with a `multipart/form-data` body (a file upload).
    pub(crate) async fn call_with_file<T: DeserializeOwned>(
        &self,
        method: &str,
        form: reqwest::multipart::Form,
        timeout: Duration,
    ) -> Result<T, BridgeError> {
        let url = format!("{}/{method}", self.base.expose());
        let request = self.http.post(url).multipart(form).timeout(timeout);
        self.answer(method, request).await
    }

    /// Sends `request` (a call of `method`) and reads its answer.
    async fn answer<T: DeserializeOwned>(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, BridgeError> {
        let response = request
            .send()
            .await
            .map_err(|error| request_failed(&format!("telegram {method}"), &error))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|_| {
            BridgeError::new(
                BridgeErrorKind::Transient,
                format!("telegram {method}: the answer was cut off"),
            )
        })?;
        let answer: ApiResponse<T> = serde_json::from_slice(&bytes).map_err(|error| {
            let kind = if status >= 500 {
                BridgeErrorKind::Transient
            } else {
                BridgeErrorKind::Malformed
            };
            BridgeError::new(
                kind,
                format!("telegram {method}: unreadable answer ({status}): {error}"),
            )
        })?;
        if answer.ok {
            return answer.result.ok_or_else(|| {
                BridgeError::new(
                    BridgeErrorKind::Malformed,
                    format!("telegram {method}: ok without a result"),
                )
            });
        }
        Err(api_error(method, status, answer))
    }
}

fn api_error<T>(method: &str, status: u16, answer: ApiResponse<T>) -> BridgeError {
    let code = answer.error_code.unwrap_or(status);
    let description = answer.description.unwrap_or_default();
    let message = format!("telegram {method}: {code} {description}");
    match code {
        401 | 404 => BridgeError::new(BridgeErrorKind::Unauthorized, message),
        429 => {
            let seconds = answer
                .parameters
                .and_then(|parameters| parameters.retry_after)
                .unwrap_or(1);
            BridgeError::rate_limited(Duration::from_secs(seconds), message)
        }
        // 409: another getUpdates or a webhook is active; it may clear up.
        409 | 500.. => BridgeError::new(BridgeErrorKind::Transient, message),
        _ => BridgeError::new(BridgeErrorKind::Rejected, message),
    }
}

/// Whether Telegram refused a message because of its markup.
pub(crate) fn is_markup_error(error: &BridgeError) -> bool {
    error.kind == BridgeErrorKind::Rejected && error.message.contains("can't parse entities")
}
