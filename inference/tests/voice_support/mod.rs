//! What the voice tests share: the testkit's real voice components (the models dir, speech
//! spoken by Piper, `wyoming-piper`, the pocketsphinx speech-to-text server), a resampler
//! for tests, and a collector of what a voice says.

#![allow(dead_code)]

use tokio::sync::mpsc;
use troupe_actors::voice::{AudioChunk, AudioFormat, TextToSpeech};

/// `samples` at `from` Hz, at 16 kHz (linear interpolation: enough for a VAD).
pub(crate) fn at_16k(samples: &[f32], from: u32) -> Vec<f32> {
    let step = f64::from(from) / 16_000.0;
    (0..(samples.len() as f64 / step) as usize)
        .map(|index| {
            let at = index as f64 * step;
            let (left, fraction) = (at.floor() as usize, (at - at.floor()) as f32);
            let next = samples.get(left + 1).copied().unwrap_or(samples[left]);
            samples[left] * (1.0 - fraction) + next * fraction
        })
        .collect()
}

/// What `tts` says for `text`: its format and PCM, in the chunks it came in.
pub(crate) async fn speak_all(
    tts: &dyn TextToSpeech,
    text: &str,
) -> (AudioFormat, Vec<AudioChunk>) {
    let (sender, mut receiver) = mpsc::channel::<AudioChunk>(64);
    let collecting = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            chunks.push(chunk);
        }
        chunks
    });
    let format = tts.speak(text, &sender).await.unwrap();
    drop(sender);
    (format, collecting.await.unwrap())
}
