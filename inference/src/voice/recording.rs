//! A recording as a messaging platform sends it, whatever its kind, as mono PCM16 for
//! speech to text. The bytes say what it is (a platform's MIME type can be wrong): Ogg Opus
//! (Telegram, WhatsApp, Discord) goes through [`decode_ogg_opus`]; WebM with Opus (Slack's
//! audio clips, browsers' recordings), MP4/M4A with AAC (phones' voice memos) and MP3 are
//! demuxed, and AAC and MP3 decoded, by `symphonia`; Opus packets by `opus-decoder`. Like
//! Ogg Opus, decoding stops at [`MAX_VOICE_NOTE_SECONDS`].

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_OPUS, CodecParameters, DecoderOptions};
use symphonia::core::errors::Error as MediaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::voice_note::{MAX_VOICE_NOTE_SECONDS, RATE, VoiceNoteError, decode_ogg_opus, mono};

/// A decoded recording: mono PCM16 at `rate`.
#[derive(Debug)]
pub struct Recording {
    pub rate: u32,
    pub samples: Vec<i16>,
}

/// `bytes` (Ogg Opus, WebM/Opus, MP4 or M4A with AAC, or MP3) as mono PCM16. Given a
/// `Vec`, the demuxer reads it in place (a recording may be 20 MB).
pub fn decode_recording(bytes: impl Into<Vec<u8>>) -> Result<Recording, VoiceNoteError> {
    let bytes = bytes.into();
    if bytes.is_empty() {
        return Err(VoiceNoteError::Empty);
    }
    if bytes.starts_with(b"OggS") {
        let samples = decode_ogg_opus(&bytes)?;
        return Ok(Recording {
            rate: RATE,
            samples,
        });
    }
    // The demuxers assert on some damage rather than return an error: whatever they do, a
    // bad file is this recording's error, not the node's.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_container(bytes)))
        .unwrap_or(Err(VoiceNoteError::Unreadable))
}

/// A recording in a container `symphonia` reads.
fn decode_container(bytes: Vec<u8>) -> Result<Recording, VoiceNoteError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(VoiceNoteError::Unrecognised)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|track| track.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(VoiceNoteError::Empty)?;
    let (track_id, params) = (track.id, track.codec_params.clone());
    let channels = params.channels.map_or(1, |channels| channels.count());
    if !(1..=2).contains(&channels) {
        return Err(VoiceNoteError::Channels(
            u8::try_from(channels).unwrap_or(u8::MAX),
        ));
    }
    let mut packets = Packets {
        format: format.as_mut(),
        track_id,
    };
    let recording = if params.codec == CODEC_TYPE_OPUS {
        decode_opus_packets(&mut packets, channels)?
    } else {
        decode_packets(&mut packets, &params)?
    };
    if recording.samples.is_empty() {
        return Err(VoiceNoteError::Empty);
    }
    Ok(recording)
}

/// The packets of one track, until the container ends.
struct Packets<'a> {
    format: &'a mut dyn FormatReader,
    track_id: u32,
}

impl Packets<'_> {
    fn next(&mut self) -> Result<Option<symphonia::core::formats::Packet>, VoiceNoteError> {
        loop {
            match self.format.next_packet() {
                Ok(packet) if packet.track_id() == self.track_id => return Ok(Some(packet)),
                Ok(_) => {}
                Err(MediaError::IoError(error))
                    if error.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(None);
                }
                Err(error) => return Err(VoiceNoteError::DamagedStream(error)),
            }
        }
    }
}

/// The most samples of `rate` a recording may have.
fn limit(rate: u32) -> usize {
    usize::try_from(MAX_VOICE_NOTE_SECONDS * u64::from(rate)).unwrap_or(usize::MAX)
}

/// Opus in a container other than Ogg (WebM): decoded straight to speech to text's rate.
fn decode_opus_packets(
    packets: &mut Packets<'_>,
    channels: usize,
) -> Result<Recording, VoiceNoteError> {
    let mut decoder =
        opus_decoder::OpusDecoder::new(RATE, channels).map_err(VoiceNoteError::BadPacket)?;
    let mut frame = vec![0i16; decoder.max_frame_size_per_channel() * channels];
    let mut samples = Vec::new();
    while let Some(packet) = packets.next()? {
        let decoded = decoder
            .decode(&packet.data, &mut frame, false)
            .map_err(VoiceNoteError::BadPacket)?;
        samples.extend(frame[..decoded * channels].chunks_exact(channels).map(mono));
        if samples.len() > limit(RATE) {
            return Err(VoiceNoteError::TooLong);
        }
    }
    Ok(Recording {
        rate: RATE,
        samples,
    })
}

/// AAC or MP3, at the recording's own rate (speech to text takes any).
fn decode_packets(
    packets: &mut Packets<'_>,
    params: &CodecParameters,
) -> Result<Recording, VoiceNoteError> {
    let mut decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(VoiceNoteError::Codec)?;
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut samples = Vec::new();
    while let Some(packet) = packets.next()? {
        let decoded = decoder
            .decode(&packet)
            .map_err(VoiceNoteError::DamagedStream)?;
        let spec = *decoded.spec();
        rate = spec.rate;
        let channels = spec.channels.count().max(1);
        let mut out = SampleBuffer::<i16>::new(decoded.capacity() as u64, spec);
        out.copy_interleaved_ref(decoded);
        samples.extend(out.samples().chunks_exact(channels).map(mono));
        if samples.len() > limit(rate.max(1)) {
            return Err(VoiceNoteError::TooLong);
        }
    }
    if rate == 0 {
        return Err(VoiceNoteError::Empty);
    }
    Ok(Recording { rate, samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_no_recording_is_refused_as_unrecognised() {
        assert!(matches!(
            decode_recording(b"plain text, not audio at all, not even close"),
            Err(VoiceNoteError::Unrecognised(_))
        ));
        assert!(matches!(decode_recording(b""), Err(VoiceNoteError::Empty)));
        // Ogg that is not Opus is still refused as Ogg Opus refuses it.
        assert!(matches!(
            decode_recording(b"OggS\0\x02garbage"),
            Err(VoiceNoteError::Damaged(_) | VoiceNoteError::Truncated | VoiceNoteError::NotOgg(_))
        ));
    }
}
