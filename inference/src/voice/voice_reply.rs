//! Replies as voice notes: the reply spoken by the node's text to speech (what it says of
//! the Markdown, sentence by sentence), resampled to 24 kHz and encoded as Ogg Opus (RFC
//! 7845) in Rust (`opus-pure`, the VoIP application at 24 kbit/s), the format Telegram,
//! WhatsApp and Discord play as a voice message. Encoding runs off the async runtime.

use std::sync::Arc;

use tokio::sync::mpsc;
use troupe_actors::voice::{
    AudioChunk, AudioFormat, SpeechError, TextToSpeech, VoiceNote, VoiceNoteWriter,
    speakable_sentences,
};

/// The rate voice notes are encoded at.
const RATE: u32 = 24_000;
/// One Opus frame: 20 ms.
const FRAME: usize = RATE as usize / 50;

/// Why a spoken reply could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum VoiceReplyError {
    #[error("the voice spoke {0} audio, not mono 16-bit PCM at one rate")]
    Format(String),
    #[error("the voice said nothing")]
    Silent,
    #[error("the Opus encoder failed: {0}")]
    Encoder(#[source] opus_pure::Error),
}

/// `pcm` (mono 16-bit samples at `rate`) as an Ogg Opus file.
pub fn encode_ogg_opus(pcm: &[i16], rate: u32) -> Result<Vec<u8>, VoiceReplyError> {
    if pcm.is_empty() {
        return Err(VoiceReplyError::Silent);
    }
    let samples = resample(pcm, rate, RATE);
    let mut encoder = opus_pure::OpusEncoder::new(RATE as i32, 1, opus_pure::Application::Voip)
        .map_err(VoiceReplyError::Encoder)?;
    encoder.bitrate_bps = 24_000;
    let head = opus_pure::OpusHead::for_encoder(&encoder, RATE);
    let mut writer =
        opus_pure::OggOpusWriter::new(Vec::new(), head).map_err(VoiceReplyError::Encoder)?;
    let mut packet = vec![0u8; opus_pure::MAX_PACKET_BYTES];
    let mut frame = [0i16; FRAME];
    for block in samples.chunks(FRAME) {
        frame.fill(0);
        frame[..block.len()].copy_from_slice(block);
        let length = encoder
            .encode_s16(&frame, FRAME, &mut packet)
            .map_err(VoiceReplyError::Encoder)?;
        writer
            .write_packet(&packet[..length])
            .map_err(VoiceReplyError::Encoder)?;
    }
    writer.finish().map_err(VoiceReplyError::Encoder)
}

/// `pcm` at `from` Hz, at `to` Hz (linear interpolation: voices are up-sampled here).
fn resample(pcm: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || pcm.is_empty() {
        return pcm.to_vec();
    }
    let step = f64::from(from) / f64::from(to);
    let length = (pcm.len() as f64 / step) as usize;
    (0..length)
        .map(|index| {
            let at = index as f64 * step;
            let left = at.floor() as usize;
            let fraction = at - at.floor();
            let a = f64::from(pcm[left.min(pcm.len() - 1)]);
            let b = f64::from(pcm[(left + 1).min(pcm.len() - 1)]);
            (a + (b - a) * fraction).round() as i16
        })
        .collect()
}

/// Voice notes spoken by a text-to-speech engine.
pub struct SpokenNotes {
    tts: Arc<dyn TextToSpeech>,
}

impl SpokenNotes {
    pub fn new(tts: Arc<dyn TextToSpeech>) -> Self {
        Self { tts }
    }
}

#[async_trait::async_trait]
impl VoiceNoteWriter for SpokenNotes {
    async fn voice_note(&self, text: &str) -> Result<VoiceNote, SpeechError> {
        let mut samples = Vec::new();
        let mut format = None::<AudioFormat>;
        for sentence in speakable_sentences(text) {
            let (chunks, mut made) = mpsc::channel::<AudioChunk>(32);
            let tts = Arc::clone(&self.tts);
            // The sender goes with the speaking, so the gathering ends when it does.
            let speaking = async move { tts.speak(&sentence, &chunks).await };
            let gathering = async {
                let mut pcm = Vec::new();
                while let Some(chunk) = made.recv().await {
                    pcm.push(chunk);
                }
                pcm
            };
            let (spoken, pieces) = tokio::join!(speaking, gathering);
            let spoken = spoken?;
            let first = *format.get_or_insert(spoken);
            if spoken.width != 2 || spoken.channels != 1 || spoken.rate != first.rate {
                let described = format!(
                    "{} Hz, {} bytes, {} channels",
                    spoken.rate, spoken.width, spoken.channels
                );
                return Err(failed(VoiceReplyError::Format(described)));
            }
            samples.extend(pieces.iter().flat_map(|piece| {
                piece
                    .pcm
                    .chunks_exact(2)
                    .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
            }));
        }
        let rate = format.map_or(RATE, |format| format.rate);
        tokio::task::spawn_blocking(move || {
            let recording = encode_ogg_opus(&samples, rate)?;
            Ok::<_, VoiceReplyError>(VoiceNote::new(recording, &samples, rate))
        })
        .await
        .map_err(failed)?
        .map_err(failed)
    }
}

/// A reply that could not be made into a voice note.
fn failed(error: impl std::error::Error + Send + Sync + 'static) -> SpeechError {
    SpeechError::Failed {
        service: "voice notes".to_owned(),
        source: Box::new(error),
    }
}
