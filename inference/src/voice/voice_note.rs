//! Voice notes as Telegram, WhatsApp and Discord send them: Ogg Opus (RFC 7845), decoded
//! in Rust (`ogg` for the pages, `opus-decoder` for the packets) straight to 16 kHz mono
//! PCM16, then heard by the node's speech to text ([`VoiceNotes`], which takes the other
//! kinds of recording too: see [`super::recording`]). Decoding runs off the
//! async runtime, and stops at [`MAX_VOICE_NOTE_SECONDS`], so a note's memory is bounded
//! whatever it claims.

use std::io::Cursor;
use std::sync::Arc;

use tokio::sync::mpsc;
use troupe_actors::voice::{
    AudioFormat, LISTENING_FORMAT, SpeechError, SpeechToText, VoiceNoteReader,
};

use super::recording::decode_recording;

/// The largest recording fetched: Telegram's limit for files bots download.
pub const MAX_VOICE_NOTE_BYTES: u64 = 20 * 1024 * 1024;
/// The longest recording heard.
pub const MAX_VOICE_NOTE_SECONDS: u64 = 15 * 60;

/// The rate Opus voice notes are decoded at (speech to text's).
pub(super) const RATE: u32 = 16_000;
/// Opus counts granule positions and the pre-skip at 48 kHz.
const OPUS_RATE: u32 = 48_000;
/// Samples sent to speech to text at a time: 100 ms.
const CHUNK: usize = RATE as usize / 10;

/// Why a recording could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum VoiceNoteError {
    #[error("it is not an Ogg file: {0}")]
    NotOgg(#[source] ogg::OggReadError),
    #[error("it is not Opus audio (its first packet is not an OpusHead)")]
    NotOpus,
    #[error("it has {0} channels, and a voice note has one or two")]
    Channels(u8),
    #[error("its pages are damaged: {0}")]
    Damaged(#[source] ogg::OggReadError),
    #[error("it is cut off before its end")]
    Truncated,
    #[error("its audio is damaged: {0}")]
    BadPacket(#[source] opus_decoder::OpusError),
    #[error("it is longer than {} minutes", MAX_VOICE_NOTE_SECONDS / 60)]
    TooLong,
    #[error("it holds no audio")]
    Empty,
    #[error("it is not a recording Troupe can read (Ogg Opus, WebM, MP4 or M4A, MP3): {0}")]
    Unrecognised(#[source] symphonia::core::errors::Error),
    #[error("its audio is in a codec Troupe cannot decode (Opus, AAC and MP3 it can): {0}")]
    Codec(#[source] symphonia::core::errors::Error),
    #[error("its audio is damaged: {0}")]
    DamagedStream(#[source] symphonia::core::errors::Error),
    #[error("it is damaged beyond reading")]
    Unreadable,
}

/// What an Ogg Opus stream's `OpusHead` says that decoding needs.
struct OpusHead {
    channels: u8,
    /// Samples at 48 kHz to drop from the start.
    pre_skip: u64,
}

impl OpusHead {
    fn parse(packet: &[u8]) -> Result<Self, VoiceNoteError> {
        if packet.len() < 19 || &packet[..8] != b"OpusHead" {
            return Err(VoiceNoteError::NotOpus);
        }
        let channels = packet[9];
        // Mapping family 0 is mono or stereo in one stream; others are surround.
        if !(1..=2).contains(&channels) || packet[18] != 0 {
            return Err(VoiceNoteError::Channels(channels));
        }
        Ok(Self {
            channels,
            pre_skip: u64::from(u16::from_le_bytes([packet[10], packet[11]])),
        })
    }
}

/// `bytes` (an Ogg Opus file) as 16 kHz mono PCM16.
pub fn decode_ogg_opus(bytes: &[u8]) -> Result<Vec<i16>, VoiceNoteError> {
    if bytes.is_empty() {
        return Err(VoiceNoteError::Empty);
    }
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let head = reader
        .read_packet()
        .map_err(VoiceNoteError::NotOgg)?
        .ok_or(VoiceNoteError::Empty)?;
    let head = OpusHead::parse(&head.data)?;
    // The pages say how long the recording is: one that is too long is refused before any
    // of it is decoded (decoding still stops at the limit, whatever the pages claim).
    if stated_samples(bytes).is_some_and(|samples| {
        samples.saturating_sub(head.pre_skip) > MAX_VOICE_NOTE_SECONDS * u64::from(OPUS_RATE)
    }) {
        return Err(VoiceNoteError::TooLong);
    }
    let channels = usize::from(head.channels);
    let mut decoder =
        opus_decoder::OpusDecoder::new(RATE, channels).map_err(VoiceNoteError::BadPacket)?;
    let limit = (MAX_VOICE_NOTE_SECONDS * u64::from(RATE)) as usize;
    let mut frame = vec![0i16; decoder.max_frame_size_per_channel() * channels];
    let mut samples = Vec::new();
    let mut ended = false;
    let mut granule = None;
    // The second packet is OpusTags: nothing to hear.
    let mut index = 0usize;
    while let Some(packet) = reader.read_packet().map_err(damaged_or_cut)? {
        index += 1;
        ended = packet.last_in_stream();
        granule = Some(packet.absgp_page());
        if index == 1 || packet.data.is_empty() {
            continue;
        }
        let decoded = decoder
            .decode(&packet.data, &mut frame, false)
            .map_err(VoiceNoteError::BadPacket)?;
        samples.extend(frame[..decoded * channels].chunks_exact(channels).map(mono));
        if samples.len() > limit {
            return Err(VoiceNoteError::TooLong);
        }
    }
    if !ended {
        return Err(VoiceNoteError::Truncated);
    }
    // The pre-skip is the encoder's delay; the last page's granule position says where the
    // audio really ends.
    let per_sample = u64::from(OPUS_RATE / RATE);
    let skip = usize::try_from(head.pre_skip / per_sample).unwrap_or(usize::MAX);
    if let Some(end) = granule.and_then(|granule| granule.checked_sub(head.pre_skip)) {
        let end = usize::try_from(end / per_sample).unwrap_or(usize::MAX);
        samples.truncate(end.saturating_add(skip));
    }
    let samples = samples.split_off(skip.min(samples.len()));
    if samples.is_empty() {
        return Err(VoiceNoteError::Empty);
    }
    Ok(samples)
}

/// The last granule position the pages state (samples at 48 kHz), read without decoding.
fn stated_samples(bytes: &[u8]) -> Option<u64> {
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let mut last = None;
    while let Ok(Some(packet)) = reader.read_packet() {
        // -1: no packet ends on that page, so it states no length.
        if packet.absgp_page() != u64::MAX {
            last = Some(packet.absgp_page());
        }
    }
    last
}

/// A file that ends inside a page was cut off; other read errors are damage.
fn damaged_or_cut(error: ogg::OggReadError) -> VoiceNoteError {
    match &error {
        ogg::OggReadError::ReadError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            VoiceNoteError::Truncated
        }
        _ => VoiceNoteError::Damaged(error),
    }
}

/// One sample of a mono or stereo frame, as mono.
pub(super) fn mono(frame: &[i16]) -> i16 {
    let sum: i32 = frame.iter().map(|&sample| i32::from(sample)).sum();
    (sum / frame.len().max(1) as i32) as i16
}

/// Voice notes heard by a speech-to-text engine.
pub struct VoiceNotes {
    stt: Arc<dyn SpeechToText>,
}

impl VoiceNotes {
    pub fn new(stt: Arc<dyn SpeechToText>) -> Self {
        Self { stt }
    }
}

#[async_trait::async_trait]
impl VoiceNoteReader for VoiceNotes {
    fn max_bytes(&self) -> u64 {
        MAX_VOICE_NOTE_BYTES
    }

    async fn transcribe(
        &self,
        recording: Vec<u8>,
        _mime_type: Option<&str>,
    ) -> Result<String, SpeechError> {
        let undecodable = |error| SpeechError::Undecodable(Box::new(error));
        let decoded = tokio::task::spawn_blocking(move || decode_recording(recording))
            .await
            .map_err(|error| SpeechError::Undecodable(Box::new(error)))?
            .map_err(undecodable)?;
        let format = AudioFormat {
            rate: decoded.rate,
            ..LISTENING_FORMAT
        };
        let chunk = usize::try_from(decoded.rate / 10).unwrap_or(CHUNK).max(1);
        let samples = decoded.samples;
        let (audio, heard) = mpsc::channel(16);
        let feeding = async move {
            for chunk in samples.chunks(chunk) {
                let pcm = chunk
                    .iter()
                    .flat_map(|sample| sample.to_le_bytes())
                    .collect();
                if audio.send(pcm).await.is_err() {
                    break;
                }
            }
        };
        let (text, ()) = tokio::join!(self.stt.transcribe(format, heard), feeding);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_ogg_opus_is_refused_by_kind() {
        assert!(matches!(
            decode_ogg_opus(b"RIFF....WAVEfmt "),
            Err(VoiceNoteError::NotOgg(_))
        ));
        assert!(matches!(decode_ogg_opus(b""), Err(VoiceNoteError::Empty)));
    }

    #[test]
    fn a_surround_head_is_refused_and_a_mono_one_read() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 6, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 1]);
        assert!(matches!(
            OpusHead::parse(&head),
            Err(VoiceNoteError::Channels(6))
        ));
        head[9] = 1;
        head[18] = 0;
        let parsed = OpusHead::parse(&head).unwrap();
        assert_eq!((parsed.channels, parsed.pre_skip), (1, 312));
        assert!(matches!(
            OpusHead::parse(b"OpusTags"),
            Err(VoiceNoteError::NotOpus)
        ));
    }

    #[test]
    fn stereo_is_heard_as_mono() {
        assert_eq!(mono(&[100, 300]), 200);
        assert_eq!(mono(&[-7]), -7);
    }
}
