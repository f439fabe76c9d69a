//! `[voice]`: speech in and out. `stt` and `tts` name the speech services (a Wyoming
//! service such as `wyoming-faster-whisper` or `wyoming-piper`, or an OpenAI-compatible
//! audio endpoint), `vad` the voice-activity model in `[models] dir`, and each
//! `[[voice.satellites]]` a Home Assistant voice satellite that Troupe connects to.
//! Everything is checked, and the engines built, once at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actors::voice::{ListenerConfig, SpeechError, SpeechToText, TextToSpeech};
use troupe_inference::voice::{OpenAiStt, OpenAiTts, WyomingStt, WyomingTts};

use super::{ConfigError, invalid, refused};

/// `[voice]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoiceConfig {
    /// Speech to text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stt: Option<SttService>,
    /// Text to speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tts: Option<TtsService>,
    /// The voice-activity model: the folder of `[models] dir` holding `silero_vad.onnx`
    /// (`troupe models install silero-vad`).
    #[serde(default = "default_vad")]
    pub(crate) vad: String,
    /// The wake word satellites that leave it to Troupe must hear first: an openWakeWord
    /// keyword model's name (`hey_jarvis_v0.1` is `<wake_model>/hey_jarvis_v0.1.onnx`).
    /// Absent: no wake word, every utterance is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wake_word: Option<String>,
    /// The folder of `[models] dir` holding openWakeWord's `melspectrogram.onnx`,
    /// `embedding_model.onnx` and keyword models.
    #[serde(default = "default_wake_model")]
    pub(crate) wake_model: String,
    /// How long a speech service or a satellite may stay silent when it owes an answer.
    #[serde(default = "default_timeout_secs")]
    pub(crate) timeout_secs: u64,
    /// The silence that ends an utterance, in milliseconds: shorter answers sooner, longer
    /// lets people pause mid-sentence (Home Assistant's default is 700).
    #[serde(default = "default_end_of_speech_ms")]
    pub(crate) end_of_speech_ms: u64,
    /// `[[voice.satellites]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) satellites: Vec<SatelliteConfig>,
}

fn default_vad() -> String {
    "silero-vad".into()
}

fn default_wake_model() -> String {
    "openwakeword".into()
}

/// A file or folder name: letters, digits, '-', '_', '.', not starting with '.'.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

const fn default_timeout_secs() -> u64 {
    30
}

const fn default_end_of_speech_ms() -> u64 {
    500
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            stt: None,
            tts: None,
            vad: default_vad(),
            wake_word: None,
            wake_model: default_wake_model(),
            timeout_secs: default_timeout_secs(),
            end_of_speech_ms: default_end_of_speech_ms(),
            satellites: Vec::new(),
        }
    }
}

/// `[voice.stt]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum SttService {
    /// A Wyoming service (`wyoming-faster-whisper`, `wyoming-whisper-cpp`…).
    Wyoming {
        uri: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    /// `{url}/audio/transcriptions` (whisper.cpp's server, faster-whisper-server, OpenAI,
    /// Groq).
    Openai {
        url: String,
        model: String,
        /// The environment variable holding the service's key, if it needs one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_env: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
}

/// `[voice.tts]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum TtsService {
    /// A Wyoming service (`wyoming-piper`…), with its default voice unless one is named.
    Wyoming {
        uri: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
    },
    /// `{url}/audio/speech`.
    Openai {
        url: String,
        model: String,
        voice: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_env: Option<String>,
    },
    /// A Piper voice in the process: `<models dir>/<voice>/<voice>.onnx` and its
    /// `.onnx.json` (`troupe models install en_US-joe-medium`), with eSpeak NG's phonemes.
    Piper(PiperSettings),
}

/// `tts = { kind = "piper", … }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PiperSettings {
    /// The voice's name: its folder and file names in `[models] dir`.
    pub(crate) voice: String,
    /// eSpeak NG's library file; absent: the system's `libespeak-ng.so.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) espeak_library: Option<PathBuf>,
    /// eSpeak NG's data folder; absent: the one the library was built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) espeak_data: Option<PathBuf>,
    /// ONNX Runtime's threads for one sentence.
    #[serde(default = "default_piper_threads")]
    pub(crate) threads: usize,
    /// How much the voice varies (Piper's `--noise-scale`, 0 to 2); absent: the voice's
    /// own. 0, with `noise_w = 0`, says the same text the same way every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) noise_scale: Option<f32>,
    /// How much the phonemes' lengths vary (Piper's `--noise-w-scale`, 0 to 2); absent:
    /// the voice's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) noise_w: Option<f32>,
}

const fn default_piper_threads() -> usize {
    2
}

/// The text-to-speech engine `[voice] tts` names: a service, ready, or a voice in the
/// process, which the node's local models run.
pub(crate) enum TtsEngine<'a> {
    Service(Arc<dyn TextToSpeech>),
    Piper(&'a PiperSettings),
}

/// One `[[voice.satellites]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SatelliteConfig {
    /// Its name: the bridge's name, and its sender id (`satellite:<name>` in
    /// `[[identities]]`).
    pub(crate) name: String,
    /// Where it listens: `tcp://HOST:10700` (its `--uri`).
    pub(crate) uri: String,
}

fn key_of(key_env: Option<&str>) -> Option<String> {
    key_env.and_then(|name| std::env::var(name).ok())
}

impl VoiceConfig {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// How satellites' speech is cut into utterances.
    pub(crate) fn listening(&self) -> ListenerConfig {
        ListenerConfig {
            end_of_speech_frames: ListenerConfig::frames_of(self.end_of_speech_ms),
            ..ListenerConfig::default()
        }
    }

    /// The speech-to-text engine, if one is configured.
    pub(crate) fn speech_to_text(&self) -> Result<Option<Arc<dyn SpeechToText>>, ConfigError> {
        let bad = |error: SpeechError| refused("voice.stt", error);
        let engine: Arc<dyn SpeechToText> = match &self.stt {
            None => return Ok(None),
            Some(SttService::Wyoming { uri, language }) => Arc::new(
                WyomingStt::new("stt", uri, language.as_deref(), self.timeout()).map_err(bad)?,
            ),
            Some(SttService::Openai {
                url,
                model,
                key_env,
                language,
            }) => Arc::new(
                OpenAiStt::new(
                    "stt",
                    url,
                    model,
                    key_of(key_env.as_deref()),
                    language.as_deref(),
                    self.timeout(),
                )
                .map_err(bad)?,
            ),
        };
        Ok(Some(engine))
    }

    /// The text-to-speech engine, if one is configured.
    pub(crate) fn text_to_speech(&self) -> Result<Option<TtsEngine<'_>>, ConfigError> {
        let bad = |error: SpeechError| refused("voice.tts", error);
        let engine: Arc<dyn TextToSpeech> = match &self.tts {
            None => return Ok(None),
            Some(TtsService::Piper(settings)) => return Ok(Some(TtsEngine::Piper(settings))),
            Some(TtsService::Wyoming { uri, voice }) => Arc::new(
                WyomingTts::new("tts", uri, voice.as_deref(), self.timeout()).map_err(bad)?,
            ),
            Some(TtsService::Openai {
                url,
                model,
                voice,
                key_env,
            }) => Arc::new(
                OpenAiTts::new(
                    "tts",
                    url,
                    model,
                    voice,
                    key_of(key_env.as_deref()),
                    self.timeout(),
                )
                .map_err(bad)?,
            ),
        };
        Ok(Some(TtsEngine::Service(engine)))
    }

    /// Checks every key; the error names the first one that is wrong. `bridge_names` are
    /// the `[[bridges]]` names, which a satellite's name must not repeat.
    pub(crate) fn validate(&self, bridge_names: &[&str]) -> Result<(), ConfigError> {
        if !(1..=600).contains(&self.timeout_secs) {
            return Err(invalid("voice.timeout_secs", "must be from 1 to 600"));
        }
        if !(100..=5_000).contains(&self.end_of_speech_ms) {
            return Err(invalid(
                "voice.end_of_speech_ms",
                "must be from 100 to 5000",
            ));
        }
        let piper = match &self.tts {
            Some(TtsService::Piper(settings)) => Some(settings),
            _ => None,
        };
        if piper.is_some_and(|piper| !(1..=64).contains(&piper.threads)) {
            return Err(invalid("voice.tts.threads", "must be from 1 to 64"));
        }
        let out_of_range =
            |value: Option<f32>| value.is_some_and(|value| !(0.0..=2.0).contains(&value));
        if piper.is_some_and(|piper| out_of_range(piper.noise_scale)) {
            return Err(invalid("voice.tts.noise_scale", "must be from 0 to 2"));
        }
        if piper.is_some_and(|piper| out_of_range(piper.noise_w)) {
            return Err(invalid("voice.tts.noise_w", "must be from 0 to 2"));
        }
        let names = [
            ("voice.vad", Some(&self.vad)),
            ("voice.wake_model", Some(&self.wake_model)),
            ("voice.wake_word", self.wake_word.as_ref()),
            ("voice.tts.voice", piper.map(|piper| &piper.voice)),
        ];
        for (key, name) in names {
            if name.is_some_and(|name| !is_plain_name(name)) {
                return Err(invalid(
                    key,
                    "must be a file or folder name in models.dir (letters, digits, '-', '_', '.')",
                ));
            }
        }
        self.speech_to_text()?;
        self.text_to_speech()?;
        self.validate_satellites(bridge_names)
    }

    fn validate_satellites(&self, bridge_names: &[&str]) -> Result<(), ConfigError> {
        for (index, satellite) in self.satellites.iter().enumerate() {
            let key = |name: &str| format!("voice.satellites[{index}].{name}");
            troupe_actors::ids::validate_platform(&satellite.name)
                .map_err(|reason| refused(&key("name"), reason))?;
            let earlier = &self.satellites[..index];
            if earlier.iter().any(|other| other.name == satellite.name)
                || bridge_names.contains(&satellite.name.as_str())
            {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "`{}` is used twice (bridges and satellites share names)",
                        satellite.name
                    ),
                ));
            }
            troupe_inference::voice::check_wyoming_uri(&satellite.uri)
                .map_err(|error| refused(&key("uri"), error))?;
        }
        if !self.satellites.is_empty() {
            if self.stt.is_none() {
                return Err(invalid("voice.stt", "is required by [[voice.satellites]]"));
            }
            if self.tts.is_none() {
                return Err(invalid("voice.tts", "is required by [[voice.satellites]]"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<VoiceConfig, toml::de::Error> {
        toml::from_str(text)
    }

    const SERVICES: &str = r#"
        stt = { kind = "wyoming", uri = "tcp://127.0.0.1:10300" }
        tts = { kind = "wyoming", uri = "tcp://127.0.0.1:10200", voice = "en_US-joe-medium" }
    "#;

    #[test]
    fn a_satellite_with_its_speech_services_is_accepted() {
        let config = parsed(&format!(
            "{SERVICES}\n[[satellites]]\nname = \"kitchen\"\nuri = \"tcp://10.0.0.7:10700\"\n"
        ))
        .unwrap();
        config.validate(&["telegram"]).unwrap();
        assert!(config.speech_to_text().unwrap().is_some());
        assert!(config.text_to_speech().unwrap().is_some());
    }

    #[test]
    fn a_piper_voice_in_the_process_is_left_to_the_local_models() {
        let config = parsed(
            "tts = { kind = \"piper\", voice = \"en_US-joe-medium\", espeak_data = \"/opt/espeak-ng-data\" }",
        )
        .unwrap();
        config.validate(&[]).unwrap();
        match config.text_to_speech().unwrap() {
            Some(TtsEngine::Piper(settings)) => {
                assert_eq!(settings.voice, "en_US-joe-medium");
                assert_eq!(settings.threads, 2);
                assert_eq!(
                    settings.espeak_data.as_deref(),
                    Some(std::path::Path::new("/opt/espeak-ng-data"))
                );
                assert_eq!(settings.espeak_library, None);
            }
            _ => panic!("a Piper voice"),
        }
    }

    #[test]
    fn a_satellite_needs_speech_to_text_and_text_to_speech() {
        let config =
            parsed("[[satellites]]\nname = \"kitchen\"\nuri = \"tcp://10.0.0.7:10700\"\n").unwrap();
        let error = config.validate(&[]).unwrap_err().to_string();
        assert!(error.starts_with("voice.stt:"), "{error}");
    }

    #[test]
    fn errors_name_the_key_at_fault() {
        let cases = [
            (
                format!("{SERVICES}\n[[satellites]]\nname = \"Kitchen!\"\nuri = \"tcp://h:1\"\n"),
                "voice.satellites[0].name",
            ),
            (
                format!("{SERVICES}\n[[satellites]]\nname = \"k\"\nuri = \"http://h:1\"\n"),
                "voice.satellites[0].uri",
            ),
            (
                format!("{SERVICES}\n[[satellites]]\nname = \"telegram\"\nuri = \"tcp://h:1\"\n"),
                "voice.satellites[0].name",
            ),
            (
                "stt = { kind = \"wyoming\", uri = \"127.0.0.1:10300\" }".to_owned(),
                "voice.stt",
            ),
            (
                "tts = { kind = \"openai\", url = \"ftp://x\", model = \"m\", voice = \"v\" }"
                    .to_owned(),
                "voice.tts",
            ),
            ("vad = \"../up\"".to_owned(), "voice.vad"),
            ("wake_word = \"a/b\"".to_owned(), "voice.wake_word"),
            ("wake_model = \".hidden\"".to_owned(), "voice.wake_model"),
            ("timeout_secs = 0".to_owned(), "voice.timeout_secs"),
            ("end_of_speech_ms = 50".to_owned(), "voice.end_of_speech_ms"),
            (
                "tts = { kind = \"piper\", voice = \"../voices/x\" }".to_owned(),
                "voice.tts.voice",
            ),
            (
                "tts = { kind = \"piper\", voice = \"x\", threads = 0 }".to_owned(),
                "voice.tts.threads",
            ),
            (
                "tts = { kind = \"piper\", voice = \"x\", noise_scale = 3.0 }".to_owned(),
                "voice.tts.noise_scale",
            ),
            (
                "tts = { kind = \"piper\", voice = \"x\", noise_w = -0.5 }".to_owned(),
                "voice.tts.noise_w",
            ),
            (
                "tts = { kind = \"piper\", voice = \"x\", noise_w = nan }".to_owned(),
                "voice.tts.noise_w",
            ),
        ];
        for (text, key) in cases {
            let error = parsed(&text).unwrap().validate(&["telegram"]).unwrap_err();
            assert!(
                error.to_string().starts_with(&format!("{key}:")),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        assert!(
            parsed("stt = { kind = \"wyoming\", uri = \"tcp://h:1\", voice = \"x\" }").is_err()
        );
        assert!(parsed("tts = { kind = \"espeak\" }").is_err());
        assert!(parsed("tts = { kind = \"piper\", voice = \"v\", speaker = 2 }").is_err());
        assert!(parsed("[[satellites]]\nname = \"k\"\nuri = \"tcp://h:1\"\narea = \"x\"").is_err());
    }
}
