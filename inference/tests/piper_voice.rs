//! Piper in the process (`./scripts/fetch-test-models`: the packaged voice en_US-joe-medium;
//! eSpeak NG from Debian's `libespeak-ng1`, which `scripts/test-deps` installs): on
//! piper-tts's own eSpeak NG data, Troupe's phoneme ids match the piper-tts package
//! sentence by sentence (`scripts/fixtures/piper_reference.py` wrote them); and what the
//! voice says, streamed a sentence at a time, reads back through the pocketsphinx
//! speech-to-text server as it was written.
//!
//! eSpeak NG is opened once per process, so every test here opens it with the same data.

mod voice_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use troupe_actors::local_model::{LocalModelPool, PoolConfig};
use troupe_actors::voice::{SpeechToText, TextToSpeech};
use troupe_inference::local::{
    Espeak, EspeakError, EspeakPaths, OnnxRuntime, Piper, PiperFiles, PiperVoice, PooledPiper,
};
use troupe_inference::voice::WyomingStt;
use troupe_testkit::voice::{models_dir, pocketsphinx};
use voice_support::speak_all;

const VOICE: &str = "en_US-joe-medium";

fn files() -> PiperFiles {
    let files = PiperFiles::in_folder(&models_dir().join("voices"), VOICE);
    assert_eq!(files.missing(), None, "run ./scripts/fetch-test-models");
    files
}

/// piper-tts's eSpeak NG data, in the test venv.
fn piper_espeak_data() -> PathBuf {
    let lib = troupe_testkit::test_venv().join("lib");
    std::fs::read_dir(&lib)
        .expect("the test venv (./scripts/test-deps)")
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/piper/espeak-ng-data"))
        .find(|data| data.is_dir())
        .expect("piper-tts in the test venv")
}

fn espeak() -> Arc<Espeak> {
    Espeak::open(&EspeakPaths {
        library: None,
        data: Some(piper_espeak_data()),
    })
    .expect("eSpeak NG opens (apt install libespeak-ng1)")
}

#[test]
fn phoneme_ids_match_piper_sentence_by_sentence() {
    let reference: Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/piper_reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let voice = PiperVoice::read(&files()).unwrap();
    let espeak = espeak();
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let sentences = espeak.phonemize(voice.espeak_voice(), text).unwrap();
        let phonemes: Vec<String> = sentences
            .iter()
            .map(|sentence| sentence.iter().collect())
            .collect();
        let expected: Vec<String> = case["phonemes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|sentence| sentence.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(phonemes, expected, "{text}");
        let ids: Vec<Vec<i64>> = sentences
            .iter()
            .map(|sentence| voice.ids(sentence))
            .collect();
        let expected_ids: Vec<Vec<i64>> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(ids, expected_ids, "{text}");
    }
}

#[test]
fn an_unknown_espeak_voice_other_data_and_a_nul_are_clear_errors() {
    let espeak = espeak();
    let unknown = espeak.phonemize("xx-nowhere", "Hello.").unwrap_err();
    assert!(unknown.to_string().contains("xx-nowhere"), "{unknown}");
    // The voice that works still works after one that did not.
    assert_eq!(espeak.phonemize("en-us", "Hi.").unwrap().len(), 1);
    assert!(matches!(
        espeak.phonemize("en-us", "a\0b"),
        Err(EspeakError::Nul(_))
    ));
    let other = Espeak::open(&EspeakPaths::default())
        .err()
        .expect("one data folder");
    assert!(matches!(other, EspeakError::OtherData { .. }), "{other}");
}

#[test]
fn a_voice_whose_phonemes_are_not_espeak_is_refused_by_name() {
    let folder = tempfile::tempdir().unwrap();
    let files = PiperFiles::in_folder(folder.path(), "zh");
    std::fs::write(&files.model, b"").unwrap();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(self::files().config).unwrap()).unwrap();
    config["phoneme_type"] = "pinyin".into();
    std::fs::write(&files.config, config.to_string()).unwrap();
    let refused = PiperVoice::read(&files).unwrap_err().to_string();
    assert!(
        refused.contains("pinyin") && refused.contains("zh.onnx.json"),
        "{refused}"
    );

    std::fs::write(&files.config, b"{\"audio\": 1}").unwrap();
    let refused = PiperVoice::read(&files).unwrap_err().to_string();
    assert!(refused.contains("cannot read"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_voice_says_a_sentence_at_a_time_reads_back_as_written() {
    let runtime = OnnxRuntime::locate(None, &models_dir()).expect("ONNX Runtime is fetched");
    let voice = Arc::new(PiperVoice::read(&files()).unwrap());
    let (pool, _actor) = LocalModelPool::start(
        VOICE,
        Piper::new(runtime, &files(), Arc::clone(&voice), 2),
        PoolConfig::default(),
        None,
    )
    .await
    .unwrap();
    let tts = PooledPiper::new(pool, voice, espeak());
    assert_eq!(tts.name(), VOICE);

    let (format, chunks) = speak_all(&tts, "What is two plus two? Two plus two is four.").await;
    assert_eq!((format.rate, format.width, format.channels), (22_050, 2, 1));
    assert_eq!(
        chunks.len(),
        2,
        "one chunk per sentence, each sent when made"
    );
    let seconds: f64 = chunks
        .iter()
        .map(|chunk| format.seconds(chunk.pcm.len()))
        .sum();
    assert!((1.5..6.0).contains(&seconds), "{seconds} s of speech");

    let recogniser = pocketsphinx().await;
    let stt = WyomingStt::new(
        "pocketsphinx",
        &recogniser.uri,
        Some("en"),
        Duration::from_secs(30),
    )
    .unwrap();
    let (sender, receiver) = mpsc::channel(8);
    sender.send(chunks[0].pcm.clone()).await.unwrap();
    drop(sender);
    let text = stt.transcribe(format, receiver).await.unwrap();
    assert_eq!(text, "what is two plus two");
}
