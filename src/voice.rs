//! The node's voice, as `[voice]` configures it: the speech engines, the voice-activity
//! model's pool (a child of the node's supervisor, started only when a satellite needs it),
//! one bridge per `[[voice.satellites]]` entry, which the dispatcher runs like any other
//! bridge (journal, identities, reconnection); with `stt`, the reader of the voice notes
//! people send on messaging platforms, and with `tts`, the writer of spoken replies; and
//! [`WebVoice`], what the web page's microphone and speaker run on (`/ws`).
//! `GET /api/v1/voice` shows it.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use troupe_actors::bridge::VoiceReplies;
use troupe_actors::bridge::policy::{AccessPolicy, DmPolicy};
use troupe_actors::supervisor::ChildSpec;
use troupe_actors::voice::{
    ListenerConfig, SpeechToText, TextToSpeech, VoiceActivity, VoiceNoteReader, VoiceNoteWriter,
    WakeWord,
};
use troupe_inference::voice::{
    SATELLITE_PLATFORM, SpokenNotes, VoiceEngines, VoiceNotes, WyomingSatellite,
};

use crate::config::{BridgeEntry, SttService, TtsEngine, TtsService, VoiceConfig};
use crate::gateway::AppState;
use crate::local_models::LocalModels;

/// What `GET /api/v1/voice` says of the engines.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct VoiceSummary {
    /// The speech-to-text service, as configured.
    stt: Option<String>,
    /// The text-to-speech service, as configured.
    tts: Option<String>,
    /// The voice-activity model, while a satellite uses it.
    vad: Option<String>,
    /// The wake word satellites that leave it to Troupe must hear first; `None`: every
    /// utterance is answered.
    wake_word: Option<String>,
    /// Voice notes on the messaging platforms are heard (`stt` is configured).
    voice_notes: bool,
    /// Replies can be voice notes (`tts` is configured; each bridge's `voice_replies`).
    voice_replies: bool,
    /// What the web page's voice can do.
    web: WebVoiceSummary,
}

/// What `GET /api/v1/voice` says of the web page's voice.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct WebVoiceSummary {
    /// The page may send speech while a button is held (`stt` is configured).
    push_to_talk: bool,
    /// The page may listen hands-free (the voice-activity model is installed too).
    hands_free: bool,
    /// Hands-free listening may wait for the wake word (`wake_word` is configured).
    wake_word: bool,
    /// Replies to speech are spoken back (`tts` is configured).
    speaks: bool,
}

/// The engines the web page's voice runs on: speech to text always; the voice-activity
/// model for hands-free listening; the wake word and the voice when configured.
pub(crate) struct WebVoice {
    pub(crate) stt: Arc<dyn SpeechToText>,
    pub(crate) vad: Option<Arc<dyn VoiceActivity>>,
    pub(crate) wake: Option<Arc<dyn WakeWord>>,
    pub(crate) tts: Option<Arc<dyn TextToSpeech>>,
    /// How hands-free speech is cut into utterances.
    pub(crate) listening: ListenerConfig,
}

/// The voice's parts for the node.
pub(crate) struct Voice {
    pub(crate) summary: VoiceSummary,
    /// One per satellite, registered with the bridges.
    pub(crate) satellites: Vec<BridgeEntry>,
    /// The voice-activity, wake-word and Piper models' pools.
    pub(crate) children: Vec<ChildSpec>,
    /// What hears the voice notes of messaging platforms: with `stt` configured.
    pub(crate) voice_notes: Option<Arc<dyn VoiceNoteReader>>,
    /// What speaks replies as voice notes: with `tts` configured.
    pub(crate) voice_replies: Option<Arc<dyn VoiceNoteWriter>>,
    /// What the web page's voice runs on: with `stt` configured.
    pub(crate) web: Option<Arc<WebVoice>>,
}

fn describe_stt(service: &SttService) -> String {
    match service {
        SttService::Wyoming { uri, .. } => format!("wyoming {uri}"),
        SttService::Openai { url, model, .. } => format!("openai {url} ({model})"),
    }
}

fn describe_tts(service: &TtsService) -> String {
    match service {
        TtsService::Wyoming { uri, .. } => format!("wyoming {uri}"),
        TtsService::Openai { url, model, .. } => format!("openai {url} ({model})"),
        TtsService::Piper(piper) => format!("piper {}", piper.voice),
    }
}

/// Builds what `config` asks for (it was validated at load).
pub(crate) fn build(config: &VoiceConfig, models: &LocalModels) -> anyhow::Result<Voice> {
    let mut summary = VoiceSummary {
        stt: config.stt.as_ref().map(describe_stt),
        tts: config.tts.as_ref().map(describe_tts),
        ..VoiceSummary::default()
    };
    let mut children = Vec::new();
    let stt = config.speech_to_text()?;
    let tts = match config.text_to_speech()? {
        None => None,
        Some(TtsEngine::Service(tts)) => Some(tts),
        Some(TtsEngine::Piper(settings)) => {
            let (tts, tts_child) = models.piper(settings)?;
            children.push(tts_child);
            Some(tts)
        }
    };
    summary.voice_notes = stt.is_some();
    summary.voice_replies = tts.is_some();
    let voice_notes = stt
        .clone()
        .map(|stt| Arc::new(VoiceNotes::new(stt)) as Arc<dyn VoiceNoteReader>);
    let voice_replies = tts
        .clone()
        .map(|tts| Arc::new(SpokenNotes::new(tts)) as Arc<dyn VoiceNoteWriter>);
    let (vad, wake) = match &stt {
        Some(_) => listening_models(config, models, &mut summary, &mut children)?,
        None => (None, None),
    };
    let satellites = if config.satellites.is_empty() {
        Vec::new()
    } else {
        let engines = VoiceEngines {
            vad: vad.clone().context("voice.vad: is required")?,
            stt: stt.clone().context("voice.stt: is required")?,
            tts: tts.clone().context("voice.tts: is required")?,
            wake: wake.clone(),
        };
        satellite_bridges(config, &engines)?
    };
    let web = stt.map(|stt| {
        summary.web = WebVoiceSummary {
            push_to_talk: true,
            hands_free: vad.is_some(),
            wake_word: vad.is_some() && wake.is_some(),
            speaks: tts.is_some(),
        };
        Arc::new(WebVoice {
            stt,
            vad,
            wake,
            tts,
            listening: config.listening(),
        })
    });
    Ok(Voice {
        summary,
        satellites,
        children,
        voice_notes,
        voice_replies,
        web,
    })
}

/// The voice-activity model and the wake word, when loaded.
type ListeningModels = (Option<Arc<dyn VoiceActivity>>, Option<Arc<dyn WakeWord>>);

/// The voice-activity and wake-word models (their pools join `children`). Satellites need
/// the voice-activity model; without satellites it is loaded when installed (the web
/// page's hands-free listening), and its absence only leaves push-to-talk.
fn listening_models(
    config: &VoiceConfig,
    models: &LocalModels,
    summary: &mut VoiceSummary,
    children: &mut Vec<ChildSpec>,
) -> anyhow::Result<ListeningModels> {
    if config.satellites.is_empty() && !models.has_voice_activity(&config.vad) {
        tracing::info!(
            vad = %config.vad,
            "the voice-activity model is not installed: the web page offers push-to-talk only"
        );
        return Ok((None, None));
    }
    let (vad, vad_child) = models.voice_activity(&config.vad)?;
    summary.vad = Some(config.vad.clone());
    children.push(vad_child);
    let wake = match &config.wake_word {
        Some(word) => {
            let (wake, wake_child) = models.wake_word(&config.wake_model, word)?;
            children.push(wake_child);
            summary.wake_word = Some(word.clone());
            Some(wake)
        }
        None => None,
    };
    Ok((Some(vad), wake))
}

/// One bridge per `[[voice.satellites]]` entry.
fn satellite_bridges(
    config: &VoiceConfig,
    engines: &VoiceEngines,
) -> anyhow::Result<Vec<BridgeEntry>> {
    let policy = AccessPolicy {
        // The owner configured the satellite: whoever is in the room may speak to it.
        dm_policy: DmPolicy::Open,
        ..AccessPolicy::default()
    };
    config
        .satellites
        .iter()
        .map(|satellite| {
            let bridge = WyomingSatellite::new(
                &satellite.name,
                &satellite.uri,
                engines.clone(),
                config.listening(),
                config.timeout(),
            )
            .with_context(|| format!("voice.satellites: {}", satellite.name))?;
            Ok(BridgeEntry {
                name: satellite.name.clone(),
                bridge: Arc::new(bridge),
                policy: policy.clone(),
                // A satellite speaks every reply already.
                voice_replies: VoiceReplies::Never,
            })
        })
        .collect()
}

/// `GET /api/v1/voice`: the engines, and each satellite's real state.
pub(crate) async fn status(State(state): State<AppState>) -> Response {
    let satellites: Vec<_> = state
        .bridges
        .statuses()
        .into_iter()
        .filter(|(status, _)| status.kind == SATELLITE_PLATFORM)
        .map(|(status, _)| status)
        .collect();
    axum::Json(json!({"engines": &*state.voice, "satellites": satellites})).into_response()
}
