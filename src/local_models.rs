//! The node's local models, as `[models]` configures them: ONNX Runtime found (not loaded:
//! models load at their first use, so an unused one costs no memory), and the embedding
//! model's pool, whose child joins the node's supervisor; or, with `embedder_url`, an
//! OpenAI-compatible embeddings service in its place, or, in a cluster, another node's
//! model over NATS. A node without ONNX Runtime or the model's files starts all the same;
//! `GET /api/v1/models`, the log and the error of `/v1/embeddings` say what is missing
//! and how to install it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Value, json};
use troupe_actors::embedding::{Embedder, PooledEmbedder};
use troupe_actors::local_model::{LocalModelPool, PoolConfig};
use troupe_actors::memory::{LocalMemoryStore, Memories, MemoryStore};
use troupe_actors::node::ProviderSetup;
use troupe_actors::storage::Storage;
use troupe_actors::supervisor::ChildSpec;
use troupe_actors::voice::{TextToSpeech, VoiceActivity, WakeWord};
use troupe_cluster::ClusterNode;
use troupe_cluster::models::{ClusterEmbedder, serve_embedder};
use troupe_cluster::remote_chat::{ClusterChatProvider, serve_chat_model};
use troupe_inference::local::{
    Espeak, EspeakPaths, OnnxRuntime, OpenWakeWord, Piper, PiperFiles, PiperVoice, PooledPiper,
    PooledVad, PooledWakeWord, SentenceEmbedder, SentenceFiles, SileroVad, WakeWordFiles,
};
use troupe_inference::{ProviderConfig, ProviderKind, RemoteEmbedder, local_model_file};

use crate::config::{MemorySettings, ModelsConfig, PiperSettings};

/// The embedding model in use: a local one, a service's, or another node's.
struct EmbeddingModel {
    source: EmbedderSource,
    embedder: Arc<dyn Embedder>,
}

/// Where the embedding model runs.
enum EmbedderSource {
    /// Here, from these files.
    Local(SentenceFiles),
    /// At `[models] embedder_url`.
    Service,
    /// On the nodes of the cluster that run it (none runs here).
    Cluster,
}

/// What the node runs locally, and why not where it cannot.
pub(crate) struct LocalModels {
    dir: PathBuf,
    config: ModelsConfig,
    /// ONNX Runtime's library, or why it was not found.
    runtime: Result<OnnxRuntime, String>,
    embedding: Option<EmbeddingModel>,
    /// The chat models `kind = "local"` providers run.
    chat: Vec<ChatModel>,
}

/// A chat model a `kind = "local"` provider runs.
struct ChatModel {
    provider: String,
    model: String,
    file: PathBuf,
    /// Answered by the nodes of the cluster that have the file (this one has not).
    from_cluster: bool,
}

impl LocalModels {
    /// The local models of `config`, and the children their pools run as.
    pub(crate) fn new(config: &ModelsConfig, data_dir: &std::path::Path) -> (Self, Vec<ChildSpec>) {
        let dir = config.dir(data_dir);
        let runtime = OnnxRuntime::locate(config.onnxruntime.as_deref(), &dir)
            .map_err(|error| error.to_string());
        let mut children = Vec::new();
        if let Some(remote) = remote_embedder(config) {
            let models = Self {
                dir,
                config: config.clone(),
                runtime,
                embedding: remote,
                chat: Vec::new(),
            };
            return (models, children);
        }
        let embedding = match (&runtime, config.embedder.as_str()) {
            (_, "") => None,
            (Err(missing), name) => {
                tracing::warn!(model = name, "local embeddings are off: {missing}");
                None
            }
            (Ok(runtime), name) => {
                let files = SentenceFiles::in_folder(&dir.join(name));
                let loader = SentenceEmbedder::new(
                    runtime.clone(),
                    files.clone(),
                    config.device(),
                    config.threads,
                );
                let limits = PoolConfig {
                    queue: config.queue,
                    max_batch: config.max_batch,
                };
                let (pool, child) = LocalModelPool::new(name, loader, limits);
                children.push(child.spec());
                Some(EmbeddingModel {
                    source: EmbedderSource::Local(files),
                    embedder: PooledEmbedder::new(pool).shared(),
                })
            }
        };
        let models = Self {
            dir,
            config: config.clone(),
            runtime,
            embedding,
            chat: Vec::new(),
        };
        if let Some(missing) = models.missing_embedding_files() {
            tracing::warn!(
                "local embeddings will fail until {missing} is installed (see docs/local-models.md)"
            );
        }
        (models, children)
    }

    /// Long-term memory on the embedder: kept in `data_dir` on one node (whose store is
    /// answered, for health reports), in the cluster's JetStream in a cluster. `None`, said
    /// in the log, when it is off or there is no embedder.
    pub(crate) async fn memories(
        &self,
        settings: &MemorySettings,
        data_dir: &std::path::Path,
        cluster: Option<&ClusterNode>,
    ) -> anyhow::Result<Option<(Arc<Memories>, Option<Storage>)>> {
        if !settings.enabled {
            return Ok(None);
        }
        let Some(embedder) = self.embedder() else {
            tracing::info!("long-term memory is off: {}", self.why_no_embedder());
            return Ok(None);
        };
        let (store, disk): (Arc<dyn MemoryStore>, _) = match cluster {
            Some(cluster) => {
                let store = cluster
                    .memories()
                    .await
                    .context("the cluster's memory stream")?;
                (Arc::new(store), None)
            }
            None => {
                let store = LocalMemoryStore::new(data_dir);
                let disk = store.storage().clone();
                (Arc::new(store), Some(disk))
            }
        };
        let memories = Memories::new(Arc::clone(embedder), store, settings.config());
        Ok(Some((Arc::new(memories), disk)))
    }

    /// Whether the voice-activity model `name` is installed.
    pub(crate) fn has_voice_activity(&self, name: &str) -> bool {
        self.dir.join(name).join("silero_vad.onnx").is_file()
    }

    /// The voice-activity model `name` (a folder of the models directory holding
    /// `silero_vad.onnx`), and the child its pool runs as.
    pub(crate) fn voice_activity(
        &self,
        name: &str,
    ) -> anyhow::Result<(Arc<dyn VoiceActivity>, ChildSpec)> {
        let runtime = self.runtime_for("voice.vad")?;
        let file = self.dir.join(name).join("silero_vad.onnx");
        anyhow::ensure!(
            file.is_file(),
            "voice.vad: {} is missing: run `troupe models install {name}`",
            file.display()
        );
        let loader = SileroVad::new(runtime.clone(), &file);
        let (pool, child) = LocalModelPool::new(name, loader, self.pool_limits());
        Ok((Arc::new(PooledVad::new(pool)), child.spec()))
    }

    /// The openWakeWord model of `word` in the folder `folder` of the models directory,
    /// and the child its pool runs as.
    pub(crate) fn wake_word(
        &self,
        folder: &str,
        word: &str,
    ) -> anyhow::Result<(Arc<dyn WakeWord>, ChildSpec)> {
        let runtime = self.runtime_for("voice.wake_word")?;
        let files = WakeWordFiles::in_folder(&self.dir.join(folder), word);
        if let Some(missing) = files.missing() {
            anyhow::bail!(
                "voice.wake_word: {} is missing: install openWakeWord's models there (see docs/voice.md#wake-words)",
                missing.display()
            );
        }
        let loader = OpenWakeWord::new(runtime.clone(), files);
        let (pool, child) = LocalModelPool::new(word, loader, self.pool_limits());
        Ok((
            Arc::new(PooledWakeWord::new(pool, word.to_owned())),
            child.spec(),
        ))
    }

    /// The Piper voice `settings` names (in its folder of the models directory), with
    /// eSpeak NG opened for it, and the child its pool runs as.
    pub(crate) fn piper(
        &self,
        settings: &PiperSettings,
    ) -> anyhow::Result<(Arc<dyn TextToSpeech>, ChildSpec)> {
        let runtime = self.runtime_for("voice.tts")?;
        let name = &settings.voice;
        let files = PiperFiles::in_folder(&self.dir.join(name), name);
        if let Some(missing) = files.missing() {
            anyhow::bail!(
                "voice.tts: {} is missing: run `troupe models install {name}`",
                missing.display()
            );
        }
        let voice = Arc::new(
            PiperVoice::read(&files)
                .context("voice.tts")?
                .with_noise(settings.noise_scale, settings.noise_w),
        );
        let espeak = Espeak::open(&EspeakPaths {
            library: settings.espeak_library.clone(),
            data: settings.espeak_data.clone(),
        })
        .context("voice.tts")?;
        let loader = Piper::new(
            runtime.clone(),
            &files,
            Arc::clone(&voice),
            settings.threads,
        );
        let (pool, child) = LocalModelPool::new(name, loader, self.pool_limits());
        Ok((
            Arc::new(PooledPiper::new(pool, voice, espeak)),
            child.spec(),
        ))
    }

    /// ONNX Runtime, or why `key` cannot have it.
    fn runtime_for(&self, key: &str) -> anyhow::Result<&OnnxRuntime> {
        self.runtime
            .as_ref()
            .map_err(|missing| anyhow::anyhow!("{key}: {missing}"))
    }

    fn pool_limits(&self) -> PoolConfig {
        PoolConfig {
            queue: self.config.queue,
            max_batch: self.config.max_batch,
        }
    }

    /// The embedder, when one is configured and ONNX Runtime was found.
    pub(crate) fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedding.as_ref().map(|model| &model.embedder)
    }

    /// Why there is no embedder.
    pub(crate) fn why_no_embedder(&self) -> String {
        match &self.runtime {
            _ if self.config.embedder.is_empty() => {
                "local embeddings are off: [models] embedder is empty".to_owned()
            }
            Err(missing) => missing.clone(),
            Ok(_) => "local embeddings are not configured".to_owned(),
        }
    }

    /// The embedding model's first missing file, if one is.
    fn missing_embedding_files(&self) -> Option<String> {
        let EmbedderSource::Local(files) = &self.embedding.as_ref()?.source else {
            return None;
        };
        [&files.model, &files.tokenizer]
            .into_iter()
            .find(|path| !path.is_file())
            .map(|path| path.display().to_string())
    }

    /// In a cluster: serves the embedding model to the other nodes when it runs here, and
    /// embeds with theirs when it does not (no ONNX Runtime or no files here).
    pub(crate) async fn join_cluster(&mut self, cluster: &ClusterNode) -> anyhow::Result<()> {
        let runs_here = self.missing_embedding_files().is_none()
            && self
                .embedding
                .as_ref()
                .is_some_and(|model| matches!(model.source, EmbedderSource::Local(_)));
        match &self.embedding {
            Some(model) if runs_here => {
                serve_embedder(cluster.client().clone(), Arc::clone(&model.embedder))
                    .await
                    .context("serving the embedding model to the cluster")?;
                tracing::info!(model = %model.embedder.model(), "serving the embedding model to the cluster");
            }
            Some(model) if matches!(model.source, EmbedderSource::Service) => {}
            _ if !self.config.embedder.is_empty() => {
                let name = self.config.embedder.clone();
                tracing::info!(
                    model = %name,
                    "the embedding model does not run here ({}): embedding with the cluster's nodes that run it",
                    self.missing_embedding_files().unwrap_or_else(|| self.why_no_embedder())
                );
                self.embedding = Some(EmbeddingModel {
                    embedder: Arc::new(ClusterEmbedder::new(cluster.client().clone(), &name)),
                    source: EmbedderSource::Cluster,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// In a cluster: each `kind = "local"` provider whose file is here serves its model to
    /// the other nodes; one whose file is not here asks the nodes that have it.
    pub(crate) async fn share_chat_models(
        &mut self,
        cluster: &ClusterNode,
        providers: &mut [ProviderSetup],
    ) -> anyhow::Result<()> {
        for chat in &mut self.chat {
            let Some(setup) = providers
                .iter_mut()
                .find(|setup| setup.provider.info().name == chat.provider)
            else {
                continue;
            };
            if chat.file.is_file() {
                serve_chat_model(
                    cluster.client().clone(),
                    Arc::clone(&setup.provider),
                    &chat.model,
                )
                .await
                .context("serving the chat model to the cluster")?;
                tracing::info!(model = %chat.model, "serving the chat model to the cluster");
            } else {
                tracing::info!(
                    model = %chat.model,
                    "{} is not here: provider `{}` asks the cluster's nodes that have it",
                    chat.file.display(),
                    chat.provider
                );
                setup.provider = Arc::new(ClusterChatProvider::new(
                    cluster.client().clone(),
                    &chat.provider,
                    &chat.model,
                ));
                chat.from_cluster = true;
            }
        }
        Ok(())
    }

    /// Notes the chat models of `providers`' `kind = "local"` entries, for the status.
    pub(crate) fn with_chat_models(mut self, providers: &[ProviderConfig]) -> Self {
        self.chat = providers
            .iter()
            .filter(|provider| provider.kind == ProviderKind::Local)
            .map(|provider| {
                let model = provider.model.clone().unwrap_or_default();
                ChatModel {
                    provider: provider.name.clone(),
                    file: local_model_file(&model, &self.dir),
                    model,
                    from_cluster: false,
                }
            })
            .collect();
        self
    }

    /// `GET /api/v1/models`: what is installed, what runs, and what is missing.
    pub(crate) fn status(&self) -> Value {
        let runtime = match &self.runtime {
            Ok(runtime) => json!({"found": true, "path": runtime.path()}),
            Err(missing) => json!({"found": false, "problem": missing}),
        };
        let embedding = match &self.embedding {
            Some(model) if matches!(model.source, EmbedderSource::Service) => json!({
                "name": model.embedder.model(),
                "kind": "embedding",
                "serves": "/v1/embeddings",
                "service": self.config.embedder_url,
                "ready": true,
            }),
            Some(model) if matches!(model.source, EmbedderSource::Cluster) => json!({
                "name": model.embedder.model(),
                "kind": "embedding",
                "serves": "/v1/embeddings",
                "service": "the nodes of the cluster that run it",
                "ready": true,
            }),
            Some(model) => {
                let missing = self.missing_embedding_files();
                json!({
                    "name": model.embedder.model(),
                    "kind": "embedding",
                    "serves": "/v1/embeddings",
                    "folder": self.dir.join(model.embedder.model()),
                    "ready": missing.is_none(),
                    "problem": missing.map(|path| format!("{path} is missing")),
                })
            }
            None => json!({
                "name": self.config.embedder,
                "kind": "embedding",
                "serves": "/v1/embeddings",
                "ready": false,
                "problem": self.why_no_embedder(),
            }),
        };
        let mut models = vec![embedding];
        models.extend(self.chat.iter().map(|chat| {
            if chat.from_cluster {
                return json!({
                    "name": chat.model,
                    "kind": "chat",
                    "serves": format!("provider {}", chat.provider),
                    "service": "the nodes of the cluster that run it",
                    "ready": true,
                });
            }
            let ready = chat.file.is_file();
            json!({
                "name": chat.model,
                "kind": "chat",
                "serves": format!("provider {}", chat.provider),
                "file": chat.file,
                "ready": ready,
                "problem": (!ready).then(|| format!(
                    "{} is missing: `troupe models install {}`",
                    chat.file.display(),
                    chat.model
                )),
            })
        }));
        json!({
            "dir": self.dir,
            "device": self.config.device,
            "onnxruntime": runtime,
            "models": models,
        })
    }
}

/// The OpenAI-compatible embeddings service `[models] embedder_url` names, if it does (its
/// key read from `embedder_key_env` now, at start-up).
fn remote_embedder(config: &ModelsConfig) -> Option<Option<EmbeddingModel>> {
    let url = config.embedder_url.as_deref()?;
    let model = config.embedder_model.clone().unwrap_or_default();
    let key = config
        .embedder_key_env
        .as_deref()
        .and_then(|name| std::env::var(name).ok());
    match RemoteEmbedder::new(url, &model, key) {
        Ok(embedder) => Some(Some(EmbeddingModel {
            source: EmbedderSource::Service,
            embedder: Arc::new(embedder),
        })),
        Err(error) => {
            tracing::error!(%error, "the embeddings service's client could not be built");
            Some(None)
        }
    }
}
