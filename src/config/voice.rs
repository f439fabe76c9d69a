//! `[voice]`: speech in and out. `stt` and `tts` name the speech services (a Wyoming
//! service such as `wyoming-faster-whisper` or `wyoming-piper`, or an OpenAI-compatible
//! audio endpoint), `vad` the voice-activity model in `[models] dir`, and each
//! `[[voice.satellites]]` a Home Assistant voice satellite that Troupe connects to.
//! Everything is checked, and the engines built, once at start-up.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actors::voice::{SpeechError, SpeechToText, TextToSpeech};
use troupe_inference::voice::{OpenAiStt, OpenAiTts, WyomingStt, WyomingTts};

use super::{ConfigError, invalid, refused};

/// `[voice]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// How long a speech service or a satellite may stay silent when it owes an answer.
    #[serde(default = "default_timeout_secs")]
    pub(crate) timeout_secs: u64,
    /// `[[voice.satellites]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) satellites: Vec<SatelliteConfig>,
}

fn default_vad() -> String {
    "silero-vad".into()
}

const fn default_timeout_secs() -> u64 {
    30
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            stt: None,
            tts: None,
            vad: default_vad(),
            timeout_secs: default_timeout_secs(),
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub(crate) fn text_to_speech(&self) -> Result<Option<Arc<dyn TextToSpeech>>, ConfigError> {
        let bad = |error: SpeechError| refused("voice.tts", error);
        let engine: Arc<dyn TextToSpeech> = match &self.tts {
            None => return Ok(None),
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
        Ok(Some(engine))
    }

    /// Checks every key; the error names the first one that is wrong. `bridge_names` are
    /// the `[[bridges]]` names, which a satellite's name must not repeat.
    pub(crate) fn validate(&self, bridge_names: &[&str]) -> Result<(), ConfigError> {
        if !(1..=600).contains(&self.timeout_secs) {
            return Err(invalid("voice.timeout_secs", "must be from 1 to 600"));
        }
        if self.vad.is_empty()
            || self.vad.starts_with('.')
            || !self
                .vad
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "voice.vad",
                "must be a folder name in models.dir (letters, digits, '-', '_', '.')",
            ));
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
            ("timeout_secs = 0".to_owned(), "voice.timeout_secs"),
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
        assert!(parsed("[[satellites]]\nname = \"k\"\nuri = \"tcp://h:1\"\narea = \"x\"").is_err());
    }
}
