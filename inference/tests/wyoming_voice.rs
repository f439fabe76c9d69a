//! Speech through real Wyoming services: `wyoming-piper` (PyPI, in the test venv) serving
//! the packaged voice en_US-joe-medium (from `./scripts/fetch-test-models`), and a
//! speech-to-text server built on the official `wyoming` library around Debian's
//! pocketsphinx (`tests/voice/wyoming_pocketsphinx.py`). Piper's audio comes back in
//! chunks and is speech of a plausible length; the same audio, streamed to the
//! speech-to-text service, reads back as what was said; a service that is not there is a
//! clear error.

mod voice_support;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use troupe_actors::local_model::{LocalModelPool, PoolConfig};
use troupe_actors::voice::{Listener, ListenerConfig};
use troupe_actors::voice::{SpeechError, SpeechToText, TextToSpeech};
use troupe_inference::local::{OnnxRuntime, PooledVad, SileroVad};
use troupe_inference::voice::{WyomingStt, WyomingTts};
use troupe_testkit::voice::{models_dir, piper, piper_says, pocketsphinx};
use voice_support::{at_16k, speak_all};

/// Speech to text through the pocketsphinx server at `uri`, in English.
fn recogniser_at(uri: &str) -> WyomingStt {
    WyomingStt::new("pocketsphinx", uri, Some("en"), Duration::from_secs(30)).unwrap()
}

/// Root mean square of 16-bit samples, from 0 to 1.
fn loudness(pcm: &[u8]) -> f64 {
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|pair| f64::from(i16::from_le_bytes([pair[0], pair[1]])) / 32768.0)
        .collect();
    (samples.iter().map(|sample| sample * sample).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piper_speaks_through_wyoming_in_chunks() {
    let piper = piper().await;
    let tts = WyomingTts::new("piper", &piper.uri, None, Duration::from_secs(30)).unwrap();
    let (format, chunks) = speak_all(
        &tts,
        "Hello, I am your assistant. The weather is fine today.",
    )
    .await;
    assert_eq!((format.rate, format.width, format.channels), (22050, 2, 1));
    assert!(
        chunks.len() > 3,
        "the audio streams: {} chunks",
        chunks.len()
    );
    let pcm: Vec<u8> = chunks.iter().flat_map(|chunk| chunk.pcm.clone()).collect();
    let seconds = format.seconds(pcm.len());
    assert!((1.5..12.0).contains(&seconds), "{seconds} s of speech");
    assert!(
        loudness(&pcm) > 0.02,
        "speech, not silence: {}",
        loudness(&pcm)
    );

    drop(piper);
    let gone = tts.speak("Anyone there?", &mpsc::channel(1).0).await;
    assert!(
        matches!(gone, Err(SpeechError::Unreachable { .. })),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_piper_says_streamed_to_speech_to_text_reads_back_as_said() {
    let (piper, recogniser) = (piper().await, pocketsphinx().await);
    let tts = WyomingTts::new("piper", &piper.uri, None, Duration::from_secs(30)).unwrap();
    let (format, chunks) = speak_all(&tts, "What is two plus two?").await;
    let stt = recogniser_at(&recogniser.uri);
    let (sender, receiver) = mpsc::channel(8);
    let streaming = tokio::spawn(async move {
        for chunk in chunks {
            sender.send(chunk.pcm).await.unwrap();
        }
    });
    let text = stt.transcribe(format, receiver).await.unwrap();
    streaming.await.unwrap();
    assert_eq!(text, "what is two plus two");

    drop(recogniser);
    let (_, nothing) = mpsc::channel(1);
    let gone = stt.transcribe(format, nothing).await;
    assert!(
        matches!(gone, Err(SpeechError::Unreachable { .. })),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_spoken_into_a_stream_is_heard_and_transcribed_as_it_ends() {
    let recogniser = pocketsphinx().await;
    let runtime = OnnxRuntime::locate(None, &models_dir()).expect("ONNX Runtime is fetched");
    let (pool, _actor) = LocalModelPool::start(
        "silero-vad",
        SileroVad::new(runtime, &models_dir().join("silero-vad/silero_vad.onnx")),
        PoolConfig::default(),
        None,
    )
    .await
    .unwrap();
    let stt = recogniser_at(&recogniser.uri);
    let mut listener = Listener::new(
        Arc::new(PooledVad::new(pool)),
        Arc::new(stt),
        ListenerConfig::default(),
    );
    let silence = vec![0.0f32; 16_000];
    let speech = at_16k(&piper_says("What is two plus two?"), 22_050);
    let audio: Vec<u8> = [silence.as_slice(), &speech, &silence, &silence]
        .concat()
        .iter()
        .flat_map(|sample| ((sample * 32767.0) as i16).to_le_bytes())
        .collect();
    // 20 ms chunks, as a microphone or a satellite sends them.
    let mut heard = Vec::new();
    for chunk in audio.chunks(640) {
        heard.extend(listener.hear(chunk).await.unwrap());
    }
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0].text, "what is two plus two");
    let seconds = |frame: u64| frame as f64 * 0.032;
    assert!((0.8..1.4).contains(&seconds(heard[0].started)), "{heard:?}");
}
