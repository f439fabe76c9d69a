//! Voice notes from messaging platforms: before a message with a recording is journaled,
//! its recording is fetched from the platform (within the reader's size limit) and heard,
//! and what was said becomes the message's text. A recording that cannot be fetched or
//! heard is answered with why, at once, instead of a turn; when the platform or the
//! speech service is only unreachable for now, the platform is asked to deliver it again.
//! And replies: where a bridge's `voice_replies` asks for it, the reply is spoken into a
//! voice note, sent before its text.

use super::{Bridge, BridgeError, BridgeErrorKind, BridgeInbound, Delivery};
use crate::message::{ContentType, MessageError};
use crate::voice::{SpeechError, VoiceNote, VoiceNoteReader, VoiceNoteWriter};

/// Why a voice note was not heard.
#[derive(Debug, thiserror::Error)]
pub(super) enum VoiceNoteRefusal {
    #[error("I could not get your voice note: {}", .0.message)]
    Fetch(#[source] BridgeError),
    #[error("I could not hear your voice note: {}", why_not_heard(.0))]
    Hear(#[source] SpeechError),
    #[error("I heard nothing in your voice note.")]
    Silent(#[source] MessageError),
}

impl VoiceNoteRefusal {
    /// The error to give the platform when the trouble is passing (the platform or the
    /// speech service is unreachable or busy): it delivers the message again later,
    /// instead of the person being told their note was not heard.
    pub(super) fn passing(&self) -> Option<BridgeError> {
        match self {
            Self::Fetch(error) if error.is_retryable() => Some(error.clone()),
            Self::Hear(SpeechError::Unreachable { .. } | SpeechError::TimedOut { .. }) => Some(
                BridgeError::new(BridgeErrorKind::Transient, self.to_string()),
            ),
            _ => None,
        }
    }
}

/// What the person is told when their recording could not be heard: the recording's
/// own fault, or the speech service's.
fn why_not_heard(error: &SpeechError) -> String {
    match error {
        SpeechError::Undecodable(why) => why.to_string(),
        other => other.to_string(),
    }
}

/// Hears the first recording of `inbound`, if it has one, into its text; answers whether
/// it had one.
pub(super) async fn hear_voice_note(
    bridge: &dyn Bridge,
    reader: &dyn VoiceNoteReader,
    inbound: &mut BridgeInbound,
) -> Result<bool, VoiceNoteRefusal> {
    let Some(recording) = inbound
        .message
        .attachments()
        .iter()
        .find(|attachment| attachment.content_type == ContentType::Audio)
        .cloned()
    else {
        return Ok(false);
    };
    let limit = reader.max_bytes();
    if let Some(bytes) = recording.size_bytes.filter(|&bytes| bytes > limit) {
        // The platform said how big it is: refused before anything is downloaded.
        return Err(VoiceNoteRefusal::Fetch(BridgeError::too_large(
            bytes, limit,
        )));
    }
    let audio = bridge
        .fetch_attachment(&recording, limit)
        .await
        .map_err(VoiceNoteRefusal::Fetch)?;
    let transcript = reader
        .transcribe(audio, recording.mime_type.as_deref())
        .await
        .map_err(VoiceNoteRefusal::Hear)?;
    inbound
        .message
        .heard(&transcript)
        .map_err(VoiceNoteRefusal::Silent)?;
    Ok(true)
}

/// The reply of `delivery` spoken as a voice note, or `None` (logged) when the voice
/// failed: the reply then goes as text only.
pub(super) async fn spoken_reply(
    writer: &dyn VoiceNoteWriter,
    bridge: &str,
    delivery: &Delivery,
) -> Option<VoiceNote> {
    let spoken = writer.voice_note(&delivery.text).await;
    if let Err(error) = &spoken {
        tracing::warn!(bridge, %error, "could not speak a reply; it goes as text");
        count_voice_reply(false);
    }
    spoken.ok()
}

/// Sends `note`, then the reply's text; answers whether the note went. A platform without
/// voice notes refuses the note for good: the text still goes.
pub(super) async fn deliver_spoken(
    bridge: &dyn Bridge,
    delivery: &Delivery,
    note: &VoiceNote,
) -> Result<bool, BridgeError> {
    let voiced = match bridge.deliver_voice(delivery, note).await {
        Err(error) if error.is_retryable() => return Err(error),
        Err(error) => {
            tracing::info!(bridge = bridge.kind(), %error, "the voice note was not sent; the reply goes as text");
            false
        }
        Ok(()) => true,
    };
    bridge.deliver(delivery).await.map(|()| voiced)
}

/// Counts a reply meant to be spoken, once its delivery is over.
pub(super) fn count_voice_reply(voiced: bool) {
    let outcome = if voiced { "sent" } else { "failed" };
    metrics::counter!(crate::metrics::VOICE_REPLIES, "outcome" => outcome).increment(1);
}
