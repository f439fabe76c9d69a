//! Speech through OpenAI's audio endpoints, against the test double that follows their
//! published API (`troupe_testkit::fake_llm`): an utterance streamed in chunks arrives
//! whole as a WAV file with the model and language; speech comes back as 24 kHz PCM in
//! pieces, as its bytes arrive; the service's own error message reaches the caller.

mod voice_support;

use std::time::Duration;

use tokio::sync::mpsc;
use troupe_actors::voice::{AudioFormat, SpeechError, SpeechToText, TextToSpeech};
use troupe_inference::voice::{OpenAiStt, OpenAiTts};
use troupe_testkit::fake_llm::FakeLlm;
use voice_support::speak_all;

#[tokio::test]
async fn an_utterance_streamed_in_chunks_is_transcribed_as_one_file() {
    let fake = FakeLlm::start(None).await;
    let stt = OpenAiStt::new(
        "whisper",
        &fake.openai_base_url(),
        "whisper-1",
        Some("sk-test".to_owned()),
        Some("en"),
        Duration::from_secs(10),
    )
    .unwrap();
    let format = AudioFormat {
        rate: 16_000,
        width: 2,
        channels: 1,
    };
    let (sender, receiver) = mpsc::channel(8);
    let streaming = tokio::spawn(async move {
        // A second and a half, in 20 ms chunks.
        for _ in 0..75 {
            sender.send(vec![0u8; 640]).await.unwrap();
        }
    });
    let text = stt.transcribe(format, receiver).await.unwrap();
    streaming.await.unwrap();
    assert_eq!(text, "1.5 seconds of 16000 Hz audio");
    let asked = fake.requests().last().unwrap().clone();
    assert_eq!(asked.path, "/v1/audio/transcriptions");
    assert_eq!(
        (
            &asked.body["model"],
            &asked.body["language"],
            &asked.body["file_name"]
        ),
        (&"whisper-1".into(), &"en".into(), &"speech.wav".into())
    );
    assert_eq!(
        asked.headers["authorization"].to_str().unwrap(),
        "Bearer sk-test"
    );
}

#[tokio::test]
async fn speech_arrives_in_pieces_as_pcm_and_the_services_errors_are_its_own() {
    let fake = FakeLlm::start(None).await;
    let tts = OpenAiTts::new(
        "openai-tts",
        &fake.openai_base_url(),
        "gpt-4o-mini-tts",
        "alloy",
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    let (format, chunks) = speak_all(&tts, "Hello there.").await;
    assert_eq!((format.rate, format.width, format.channels), (24_000, 2, 1));
    assert!(chunks.len() > 2, "{} pieces", chunks.len());
    let bytes: usize = chunks.iter().map(|chunk| chunk.pcm.len()).sum();
    // 60 ms per character, as the double makes it.
    assert!(
        (format.seconds(bytes) - 0.72).abs() < 0.01,
        "{}",
        format.seconds(bytes)
    );
    assert!(chunks.iter().all(|chunk| chunk.pcm.len() % 2 == 0));
    let asked = fake.requests().last().unwrap().clone();
    assert_eq!(asked.body["voice"], "alloy");
    assert_eq!(asked.body["response_format"], "pcm");

    let refused = tts.speak("", &mpsc::channel(1).0).await;
    match refused {
        Err(SpeechError::Refused { reason, .. }) => assert!(reason.contains("'input'"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        OpenAiTts::new("x", "ftp://host/v1", "m", "v", None, Duration::from_secs(1)),
        Err(SpeechError::BadAddress(_))
    ));
}
