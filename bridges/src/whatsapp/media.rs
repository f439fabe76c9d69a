//! Media a WhatsApp user sent (a voice note), downloaded as the Cloud API publishes it:
//! `GET {graph}/{media-id}` (bearer token) answers the file's temporary `url`, its
//! `file_size` and `sha256`; then `GET url` with the same token. The size is checked before
//! the download and while it runs, and the bytes against the hash.

use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use troupe_actors::bridge::{BridgeError, BridgeErrorKind};

use super::config::WhatsAppSettings;
use crate::common::{read_limited, request_failed};

/// What `GET {graph}/{media-id}` answers.
#[derive(Debug, Deserialize)]
struct MediaUrl {
    url: String,
    #[serde(default)]
    sha256: Option<String>,
    /// A number, which the API sends as a string.
    #[serde(default)]
    file_size: Option<serde_json::Value>,
}

/// What an upload answers.
#[derive(Debug, Deserialize)]
struct Uploaded {
    id: String,
}

/// Uploads `recording` (Ogg Opus) as the business's media; answers its id.
pub(super) async fn upload(
    http: &reqwest::Client,
    settings: &WhatsAppSettings,
    recording: &[u8],
) -> Result<String, BridgeError> {
    let file = crate::common::ogg_part(recording, "reply.ogg")?;
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("type", "audio/ogg")
        .part("file", file);
    let response = http
        .post(format!(
            "{}/{}/media",
            settings.graph_base, settings.phone_number_id
        ))
        .bearer_auth(settings.access_token.expose())
        .multipart(form)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|error| request_failed("whatsapp media upload", &error))?;
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        return Err(super::graph_error(status, &answer["error"]));
    }
    let body = read_limited(response, 64 * 1024, "whatsapp media upload").await?;
    let uploaded: Uploaded = serde_json::from_slice(&body).map_err(|error| {
        BridgeError::new(
            BridgeErrorKind::Malformed,
            format!("whatsapp media upload: unreadable answer: {error}"),
        )
    })?;
    Ok(uploaded.id)
}

/// Downloads the media `media_id`, at most `max_bytes`.
pub(super) async fn download(
    http: &reqwest::Client,
    settings: &WhatsAppSettings,
    media_id: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, BridgeError> {
    let token = settings.access_token.expose();
    let response = http
        .get(format!("{}/{media_id}", settings.graph_base))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|error| request_failed("whatsapp media", &error))?;
    let body = read_limited(response, 64 * 1024, "whatsapp media").await?;
    let media: MediaUrl = serde_json::from_slice(&body).map_err(|error| {
        BridgeError::new(
            BridgeErrorKind::Malformed,
            format!("whatsapp media: unreadable answer: {error}"),
        )
    })?;
    let stated = media.file_size.as_ref().and_then(|size| match size {
        serde_json::Value::String(text) => text.parse::<u64>().ok(),
        other => other.as_u64(),
    });
    if let Some(bytes) = stated.filter(|&bytes| bytes > max_bytes) {
        return Err(BridgeError::too_large(bytes, max_bytes));
    }
    let request = http.get(&media.url).bearer_auth(token);
    let bytes = crate::common::download(request, max_bytes, "whatsapp media download").await?;
    if let Some(expected) = &media.sha256 {
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(BridgeError::new(
                BridgeErrorKind::Malformed,
                "whatsapp media download: the file does not match its sha256",
            ));
        }
    }
    Ok(bytes)
}
