//! Piper voices (VITS, ONNX) on ONNX Runtime, as Piper itself runs them: eSpeak NG turns
//! the text into IPA phonemes a sentence at a time ([`Espeak`]), the voice's
//! `phoneme_id_map` turns them into ids (`^`, then each phoneme followed by the pad `_`,
//! then `$`), and the model turns the ids and its three scales (noise, length, noise width)
//! into audio, which is normalised to its peak and sent as 16-bit PCM at the voice's rate.
//!
//! [`PooledPiper`] speaks a sentence as soon as it is made, so the first sentence plays
//! while the next one is synthesised.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use tokio::sync::mpsc;
use troupe_actors::local_model::{BatchModel, LocalModelPool, ModelFailure, ModelLoader};
use troupe_actors::voice::{AudioChunk, AudioFormat, SpeechError, TextToSpeech};

use super::runtime::{OnnxRuntime, RuntimeError, cpu_session};
use troupe_espeak::{Espeak, EspeakError};

const PAD: char = '_';
const BEGIN: char = '^';
const END: char = '$';

/// Why a Piper voice could not load or speak.
#[derive(Debug, thiserror::Error)]
pub enum PiperError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Espeak(#[from] EspeakError),
    #[error("cannot read the Piper voice's settings {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the Piper voice {path} has phonemes of type `{kind}`; only `espeak` is supported")]
    PhonemeType { path: PathBuf, kind: String },
    #[error("the Piper voice {path} has no id for `{symbol}` in its phoneme_id_map")]
    MissingSymbol { path: PathBuf, symbol: char },
    #[error("cannot load the Piper voice {path}: {source}")]
    Session {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },
    #[error("the Piper voice failed: {0}")]
    Run(#[source] ort::Error),
    #[error("the Piper voice answered no audio")]
    Output,
}

fn failure(error: PiperError) -> ModelFailure {
    Arc::new(error)
}

/// A Piper voice's two files: `<voice>.onnx` and `<voice>.onnx.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PiperFiles {
    pub model: PathBuf,
    pub config: PathBuf,
}

impl PiperFiles {
    /// The files of `voice` in `folder`.
    pub fn in_folder(folder: &Path, voice: &str) -> Self {
        Self {
            model: folder.join(format!("{voice}.onnx")),
            config: folder.join(format!("{voice}.onnx.json")),
        }
    }

    /// The first file that is missing, if one is.
    pub fn missing(&self) -> Option<&Path> {
        [&self.model, &self.config]
            .into_iter()
            .find(|path| !path.is_file())
            .map(PathBuf::as_path)
    }
}

/// The parts of Piper's `<voice>.onnx.json` that speaking reads.
#[derive(Deserialize)]
struct ConfigFile {
    audio: AudioSettings,
    espeak: EspeakSettings,
    inference: InferenceSettings,
    #[serde(default = "espeak_phonemes")]
    phoneme_type: String,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    num_speakers: u32,
}

fn espeak_phonemes() -> String {
    "espeak".to_owned()
}

#[derive(Deserialize)]
struct AudioSettings {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct EspeakSettings {
    voice: String,
}

#[derive(Deserialize)]
struct InferenceSettings {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

/// A Piper voice's settings: how its text becomes ids, and how its model is run.
#[derive(Debug)]
pub struct PiperVoice {
    espeak_voice: String,
    format: AudioFormat,
    /// Noise, length and noise width, as the model's `scales` input takes them.
    scales: [f32; 3],
    /// The speaker of a voice with several: its first.
    speaker: Option<i64>,
    ids: HashMap<char, Vec<i64>>,
}

impl PiperVoice {
    /// The voice with its noise (`noise_scale`) and its phonemes' length noise
    /// (`noise_w`) set where given, as Piper's `--noise-scale` and `--noise-w-scale` do;
    /// both 0 say a text the same way every time.
    #[must_use]
    pub fn with_noise(mut self, noise_scale: Option<f32>, noise_w: Option<f32>) -> Self {
        if let Some(noise_scale) = noise_scale {
            self.scales[0] = noise_scale;
        }
        if let Some(noise_w) = noise_w {
            self.scales[2] = noise_w;
        }
        self
    }

    /// Reads the voice's settings from `files.config`.
    pub fn read(files: &PiperFiles) -> Result<Self, PiperError> {
        let path = &files.config;
        let config_error = |source: Box<dyn std::error::Error + Send + Sync>| PiperError::Config {
            path: path.clone(),
            source,
        };
        let text = std::fs::read(path).map_err(|error| config_error(error.into()))?;
        let config: ConfigFile =
            serde_json::from_slice(&text).map_err(|error| config_error(error.into()))?;
        if config.phoneme_type != "espeak" {
            return Err(PiperError::PhonemeType {
                path: path.clone(),
                kind: config.phoneme_type,
            });
        }
        // Piper's phonemes are single code points; longer keys (another phonemizer's
        // clusters) are never looked up for eSpeak NG's phonemes.
        let ids: HashMap<char, Vec<i64>> = config
            .phoneme_id_map
            .into_iter()
            .filter_map(|(symbol, ids)| {
                let mut chars = symbol.chars();
                match (chars.next(), chars.next()) {
                    (Some(symbol), None) => Some((symbol, ids)),
                    _ => None,
                }
            })
            .collect();
        for symbol in [PAD, BEGIN, END] {
            if !ids.contains_key(&symbol) {
                return Err(PiperError::MissingSymbol {
                    path: path.clone(),
                    symbol,
                });
            }
        }
        Ok(Self {
            espeak_voice: config.espeak.voice,
            format: AudioFormat {
                rate: config.audio.sample_rate,
                width: 2,
                channels: 1,
            },
            scales: [
                config.inference.noise_scale,
                config.inference.length_scale,
                config.inference.noise_w,
            ],
            speaker: (config.num_speakers > 1).then_some(0),
            ids,
        })
    }

    /// The eSpeak NG voice its phonemes come from.
    pub fn espeak_voice(&self) -> &str {
        &self.espeak_voice
    }

    /// The format of the audio it speaks.
    pub const fn format(&self) -> AudioFormat {
        self.format
    }

    /// One sentence's phonemes as the model's ids; a phoneme the voice lacks is left out,
    /// as Piper does.
    pub fn ids(&self, phonemes: &[char]) -> Vec<i64> {
        let id = |symbol: char| self.ids.get(&symbol).map_or(&[][..], Vec::as_slice);
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        ids.extend_from_slice(id(BEGIN));
        ids.extend_from_slice(id(PAD));
        for &phoneme in phonemes {
            if let Some(phoneme_ids) = self.ids.get(&phoneme) {
                ids.extend_from_slice(phoneme_ids);
                ids.extend_from_slice(id(PAD));
            }
        }
        ids.extend_from_slice(id(END));
        ids
    }
}

/// Where a Piper voice's model is, its settings, and the runtime that runs it.
#[derive(Clone, Debug)]
pub struct Piper {
    runtime: OnnxRuntime,
    model: PathBuf,
    voice: Arc<PiperVoice>,
    threads: usize,
}

impl Piper {
    /// The voice of `files`, whose settings were read into `voice`; `threads`: ONNX
    /// Runtime's threads for one sentence.
    pub fn new(
        runtime: OnnxRuntime,
        files: &PiperFiles,
        voice: Arc<PiperVoice>,
        threads: usize,
    ) -> Self {
        Self {
            runtime,
            model: files.model.clone(),
            voice,
            threads,
        }
    }
}

impl ModelLoader for Piper {
    type Model = PiperModel;

    fn load(&self) -> Result<PiperModel, ModelFailure> {
        let environment = self
            .runtime
            .environment()
            .map_err(|error| failure(error.into()))?;
        let session = cpu_session(&environment, &self.model, self.threads).map_err(|source| {
            failure(PiperError::Session {
                path: self.model.clone(),
                source,
            })
        })?;
        Ok(PiperModel {
            session,
            voice: Arc::clone(&self.voice),
        })
    }
}

/// A loaded Piper voice.
pub struct PiperModel {
    session: Session,
    voice: Arc<PiperVoice>,
}

impl PiperModel {
    /// One sentence's audio, from its ids, as 16-bit samples normalised to the peak.
    pub fn synthesize(&mut self, ids: Vec<i64>) -> Result<Vec<i16>, PiperError> {
        let length = ids.len();
        let length_input = i64::try_from(length).map_err(|_| PiperError::Output)?;
        let ids = Tensor::from_array(([1, length], ids)).map_err(PiperError::Run)?;
        let lengths =
            Tensor::from_array(([1usize], vec![length_input])).map_err(PiperError::Run)?;
        let scales =
            Tensor::from_array(([3usize], self.voice.scales.to_vec())).map_err(PiperError::Run)?;
        let inputs = match self.voice.speaker {
            Some(speaker) => {
                let speaker =
                    Tensor::from_array(([1usize], vec![speaker])).map_err(PiperError::Run)?;
                ort::inputs!["input" => ids, "input_lengths" => lengths, "scales" => scales, "sid" => speaker]
            }
            None => ort::inputs!["input" => ids, "input_lengths" => lengths, "scales" => scales],
        };
        let outputs = self.session.run(inputs).map_err(PiperError::Run)?;
        let (_, audio) = outputs
            .get("output")
            .ok_or(PiperError::Output)?
            .try_extract_tensor::<f32>()
            .map_err(PiperError::Run)?;
        Ok(to_pcm16(audio))
    }
}

/// `audio` normalised to its peak, as 16-bit samples (silence stays silence).
fn to_pcm16(audio: &[f32]) -> Vec<i16> {
    let peak = audio
        .iter()
        .fold(0f32, |peak, sample| peak.max(sample.abs()));
    if peak < 1e-8 {
        return vec![0; audio.len()];
    }
    audio
        .iter()
        .map(|sample| ((sample / peak).clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect()
}

impl BatchModel for PiperModel {
    /// One sentence's ids.
    type Input = Vec<i64>;
    type Output = Vec<i16>;

    fn run(&mut self, batch: Vec<Vec<i64>>) -> Result<Vec<Vec<i16>>, ModelFailure> {
        batch
            .into_iter()
            .map(|ids| self.synthesize(ids).map_err(failure))
            .collect()
    }
}

/// Text to speech from a Piper voice in a pool.
pub struct PooledPiper {
    pool: LocalModelPool<PiperModel>,
    voice: Arc<PiperVoice>,
    espeak: Arc<Espeak>,
}

impl PooledPiper {
    pub const fn new(
        pool: LocalModelPool<PiperModel>,
        voice: Arc<PiperVoice>,
        espeak: Arc<Espeak>,
    ) -> Self {
        Self {
            pool,
            voice,
            espeak,
        }
    }

    fn failed(&self, error: impl std::error::Error + Send + Sync + 'static) -> SpeechError {
        SpeechError::Failed {
            service: self.pool.model().to_owned(),
            source: Box::new(error),
        }
    }
}

#[async_trait::async_trait]
impl TextToSpeech for PooledPiper {
    fn name(&self) -> &str {
        self.pool.model()
    }

    async fn speak(
        &self,
        text: &str,
        audio: &mpsc::Sender<AudioChunk>,
    ) -> Result<AudioFormat, SpeechError> {
        let espeak = Arc::clone(&self.espeak);
        let voice = Arc::clone(&self.voice);
        let text = text.to_owned();
        // eSpeak NG is a C library under one lock: off the runtime.
        let sentences = tokio::task::spawn_blocking(move || {
            espeak
                .phonemize(voice.espeak_voice(), &text)
                .map(|sentences| {
                    sentences
                        .iter()
                        .map(|phonemes| voice.ids(phonemes))
                        .collect::<Vec<_>>()
                })
        })
        .await
        .map_err(|error| self.failed(error))?
        .map_err(|error| self.failed(error))?;
        let format = self.voice.format();
        for ids in sentences {
            let mut spoken = self.pool.run(vec![ids]).await?;
            let samples = spoken
                .pop()
                .ok_or_else(|| self.failed(PiperError::Output))?;
            let pcm = samples
                .iter()
                .flat_map(|sample| sample.to_le_bytes())
                .collect();
            if audio.send(AudioChunk { format, pcm }).await.is_err() {
                return Err(SpeechError::ListenerGone);
            }
        }
        Ok(format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_stays_silence_and_speech_is_normalised_to_its_peak() {
        assert_eq!(to_pcm16(&[0.0, 0.0]), [0, 0]);
        assert_eq!(to_pcm16(&[0.25, -0.5]), [16383, -32767]);
    }
}
