//! `[models]`: local models (see docs/local-models.md): where their files are, where ONNX
//! Runtime is, what they run on, and which embedding model serves `/v1/embeddings`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use troupe_inference::local::Device;

use super::{ConfigError, invalid};

/// The embedding model used unless another is named.
pub(crate) const DEFAULT_EMBEDDER: &str = "all-minilm-l6-v2";

/// `[models]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelsConfig {
    /// The models directory; default `<storage.data_dir>/models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dir: Option<PathBuf>,
    /// `libonnxruntime.so`; default `ORT_DYLIB_PATH`, then `<dir>/onnxruntime/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) onnxruntime: Option<PathBuf>,
    /// `auto` (CUDA when there is one), `cpu` or `cuda`.
    #[serde(default)]
    pub(crate) device: DeviceChoice,
    /// The GPU `device = "cuda"` uses.
    #[serde(default)]
    pub(crate) cuda_device: i32,
    /// The folder in `dir` of the embedding model (`model.onnx`, `tokenizer.json`); empty:
    /// no local embeddings.
    #[serde(default = "default_embedder")]
    pub(crate) embedder: String,
    /// Threads one batch may use.
    #[serde(default = "default_threads")]
    pub(crate) threads: usize,
    /// Requests that may wait for a model; more are answered `busy`.
    #[serde(default = "default_queue")]
    pub(crate) queue: usize,
    /// Texts one embedding batch may hold.
    #[serde(default = "default_max_batch")]
    pub(crate) max_batch: usize,
    /// An OpenAI-compatible embeddings service (its base URL, ending in `/v1`) to use
    /// instead of the local model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) embedder_url: Option<String>,
    /// The service's model (with `embedder_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) embedder_model: Option<String>,
    /// The environment variable holding the service's key, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) embedder_key_env: Option<String>,
}

/// `[models] device`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}

fn default_embedder() -> String {
    DEFAULT_EMBEDDER.to_owned()
}

const fn default_threads() -> usize {
    1
}

const fn default_queue() -> usize {
    256
}

const fn default_max_batch() -> usize {
    32
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            onnxruntime: None,
            device: DeviceChoice::default(),
            cuda_device: 0,
            embedder: default_embedder(),
            threads: default_threads(),
            queue: default_queue(),
            max_batch: default_max_batch(),
            embedder_url: None,
            embedder_model: None,
            embedder_key_env: None,
        }
    }
}

impl ModelsConfig {
    /// Checks every key; the error names the first one that is wrong.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let plain = |name: &str| {
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !name.starts_with('.')
        };
        if !plain(&self.embedder) {
            return Err(invalid(
                "models.embedder",
                "must be a folder name in models.dir (letters, digits, '-', '_', '.'), or empty",
            ));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(invalid("models.threads", "must be between 1 and 64"));
        }
        if !(1..=65_536).contains(&self.queue) {
            return Err(invalid("models.queue", "must be between 1 and 65536"));
        }
        if !(1..=1024).contains(&self.max_batch) {
            return Err(invalid("models.max_batch", "must be between 1 and 1024"));
        }
        if self.cuda_device < 0 {
            return Err(invalid("models.cuda_device", "must be 0 or more"));
        }
        if let Some(url) = &self.embedder_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "models.embedder_url",
                    "must be an http:// or https:// URL",
                ));
            }
            if self.embedder_model.as_deref().is_none_or(str::is_empty) {
                return Err(invalid("models.embedder_model", "name the service's model"));
            }
        }
        Ok(())
    }

    /// The models directory.
    pub(crate) fn dir(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("models"))
    }

    pub(crate) const fn device(&self) -> Device {
        match self.device {
            DeviceChoice::Auto => Device::Auto,
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda => Device::Cuda {
                device_id: self.cuda_device,
            },
        }
    }
}
