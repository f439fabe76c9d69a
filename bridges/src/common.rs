//! Pieces every bridge needs: an HTTP client, the progress of multi-piece replies, and
//! handing a pushed message over.

use std::time::Duration;

use dashmap::DashMap;
use troupe_actors::bridge::{
    BridgeContext, BridgeError, BridgeErrorKind, BridgeInbound, WebhookResponse,
};
use troupe_actors::message::{Attachment, ContentType, InboundMessage, MessageParts};

/// The HTTP client a bridge talks to its platform with.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// Downloads a file with `request` (within two minutes), at most `max_bytes`; `what`
/// names the download in errors.
pub(crate) async fn download(
    request: reqwest::RequestBuilder,
    max_bytes: u64,
    what: &str,
) -> Result<Vec<u8>, BridgeError> {
    let response = request
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .map_err(|error| request_failed(what, &error))?;
    read_limited(response, max_bytes, what).await
}

/// A voice note (Ogg Opus) as the file part of a `multipart/form-data` upload.
pub(crate) fn ogg_part(
    recording: &[u8],
    file_name: &'static str,
) -> Result<reqwest::multipart::Part, BridgeError> {
    reqwest::multipart::Part::bytes(recording.to_vec())
        .file_name(file_name)
        .mime_str("audio/ogg")
        .map_err(|error| BridgeError::new(BridgeErrorKind::Malformed, error.to_string()))
}

/// The address of `attachment` when it is under `base` (the platform's own file host,
/// the only one its token or its fetches go to); else refused, naming `host`.
pub(crate) fn url_under<'a>(
    attachment: &'a Attachment,
    base: &str,
    host: &str,
) -> Result<&'a str, BridgeError> {
    attachment
        .url
        .as_deref()
        .filter(|url| url.starts_with(base))
        .ok_or_else(|| {
            BridgeError::new(
                BridgeErrorKind::Rejected,
                format!("the attachment is not on {host}"),
            )
        })
}

/// The body of a file download, refused once it grows past `max_bytes` (so a file is never
/// held past the limit); `what` names the download in errors.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max_bytes: u64,
    what: &str,
) -> Result<Vec<u8>, BridgeError> {
    if !response.status().is_success() {
        let kind = if response.status().is_server_error() {
            BridgeErrorKind::Transient
        } else {
            BridgeErrorKind::Rejected
        };
        return Err(BridgeError::new(
            kind,
            format!("{what}: {}", response.status()),
        ));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| request_failed(what, &error))?
    {
        let length = (bytes.len() + chunk.len()) as u64;
        if length > max_bytes {
            return Err(BridgeError::too_large(length, max_bytes));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The message a platform event maps to, or `None` (logged) when its fields break the
/// message's rules: a platform event the assistant cannot take is skipped like any other
/// unreadable event, and the platform is not asked to send it again.
pub(crate) fn platform_message(parts: MessageParts) -> Option<InboundMessage> {
    let platform = parts.platform.clone();
    InboundMessage::new(parts)
        .inspect_err(|error| {
            tracing::warn!(%platform, %error, "skipping a platform message that breaks the message rules");
        })
        .ok()
}

/// The key under which a reply's voice note is noted as sent in [`SentPieces`].
fn voice_key(reply_id: &str) -> String {
    format!("{reply_id}#voice")
}

/// What `attachment` names on its platform: its `url` after `scheme` (`telegram-file:`…);
/// an attachment of another platform is refused, naming `what` it should have been.
pub(crate) fn referenced<'a>(
    attachment: &'a troupe_actors::message::Attachment,
    scheme: &str,
    what: &str,
) -> Result<&'a str, BridgeError> {
    attachment
        .url
        .as_deref()
        .and_then(|url| url.strip_prefix(scheme))
        .ok_or_else(|| {
            BridgeError::new(
                BridgeErrorKind::Rejected,
                format!("the attachment is not {what}"),
            )
        })
}

/// Which pieces of a long reply went out already, by reply id: a retried delivery skips
/// them instead of sending them twice.
#[derive(Debug, Default)]
pub(crate) struct SentPieces(DashMap<String, usize>);

impl SentPieces {
    /// How many pieces of `reply_id` were sent.
    pub(crate) fn already(&self, reply_id: &str) -> usize {
        self.0.get(reply_id).map_or(0, |entry| *entry)
    }

    pub(crate) fn sent(&self, reply_id: &str, count: usize) {
        self.0.insert(reply_id.to_owned(), count);
    }

    /// Sends the voice note of `reply_id` with `send`, unless it went out already (a
    /// retried delivery sends it once).
    pub(crate) async fn voice_once(
        &self,
        reply_id: &str,
        send: impl Future<Output = Result<(), BridgeError>>,
    ) -> Result<(), BridgeError> {
        let key = voice_key(reply_id);
        if self.0.contains_key(&key) {
            return Ok(());
        }
        send.await?;
        self.0.insert(key, 1);
        Ok(())
    }

    /// The reply went out whole (its voice note, if any, first): nothing to remember.
    pub(crate) fn finished(&self, reply_id: &str) {
        self.0.remove(reply_id);
        self.0.remove(&voice_key(reply_id));
    }
}

/// Hands over a message a platform pushed. `Err` carries the answer for the platform when
/// it was not stored (503: the platform will send it again); a message the assistant can
/// never take is logged and dropped, since a redelivery would only fail again.
pub(crate) async fn receive_pushed(
    context: &BridgeContext,
    inbound: BridgeInbound,
) -> Result<(), WebhookResponse> {
    match context.receive(inbound).await {
        Ok(()) => Ok(()),
        Err(error) if !error.is_retryable() => {
            tracing::warn!(bridge = %context.name, %error, "dropping a message the assistant cannot take");
            Ok(())
        }
        Err(error) => Err(unavailable(&error)),
    }
}

fn unavailable(error: &BridgeError) -> WebhookResponse {
    WebhookResponse::error(503, "unavailable", &error.message)
}

/// Checks that `url` is an `http://` or `https://` address with a host.
pub(crate) fn check_http_url(url: &str) -> Result<(), UrlError> {
    let parsed = url::Url::parse(url).map_err(|source| UrlError::Unparsable {
        url: url.to_owned(),
        source,
    })?;
    if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() {
        Ok(())
    } else {
        Err(UrlError::NotHttp {
            url: url.to_owned(),
        })
    }
}

/// Why a configured address is refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("`{url}` is not a URL: {source}")]
    Unparsable {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("`{url}` must be an http:// or https:// address")]
    NotHttp { url: String },
}

/// The content type of an attachment from its MIME type.
pub(crate) fn content_type_of(mime: Option<&str>) -> ContentType {
    match mime {
        Some(mime) if mime.starts_with("image/") => ContentType::Image,
        Some(mime) if mime.starts_with("audio/") => ContentType::Audio,
        _ => ContentType::File,
    }
}

/// A request that got no answer: transient. reqwest's own text holds the URL (and with it
/// a token for some platforms), so only the kind of failure is said.
pub(crate) fn request_failed(what: &str, error: &reqwest::Error) -> BridgeError {
    let how = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    BridgeError::new(BridgeErrorKind::Transient, format!("{what}: {how}"))
}

#[cfg(test)]
mod platform_message_tests {
    use super::*;

    fn parts(sender_id: &str) -> MessageParts {
        MessageParts {
            id: "e1".into(),
            platform: "slack".into(),
            sender_id: sender_id.into(),
            conversation_id: "C1".into(),
            content_type: ContentType::Text,
            payload: "hi".into(),
            timestamp: 1,
            reply_to: None,
            attachments: Vec::new(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn a_platform_event_that_breaks_the_message_rules_is_skipped() {
        assert_eq!(
            platform_message(parts("U1")).map(|message| message.sender_id().to_owned()),
            Some("U1".to_owned())
        );
        assert_eq!(platform_message(parts("U 1")), None);
    }
}
