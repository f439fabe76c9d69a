//! Typed provider configuration (`[[providers]]`), its validation, and the factory that
//! builds a provider from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_actors::ModelProvider;
use troupe_actors::model_worker::ProviderPolicy;
use troupe_actors::supervisor::ChildSpec;

use crate::anthropic::AnthropicProvider;
use crate::echo::EchoProvider;
use crate::local_chat::{LocalChatProvider, local_model_file};
use crate::openai::OpenAiProvider;

pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

const fn default_timeout_secs() -> u64 {
    120
}
const fn default_max_retries() -> u32 {
    2
}
const fn default_max_concurrency() -> usize {
    64
}
const fn default_stream() -> bool {
    true
}

/// Which wire protocol a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
    Echo,
    /// A GGUF chat model run in the process ([`LocalChatProvider`]).
    Local,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [Self::Openai, Self::Anthropic, Self::Echo, Self::Local];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Echo => "echo",
            Self::Local => "local",
        }
    }
}

/// One `[[providers]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// How sessions and fallbacks refer to it.
    pub name: String,
    pub kind: ProviderKind,
    /// API root; defaults to the official one for `openai` and `anthropic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Model name; required for `openai` and `anthropic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Environment variable holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// File holding the API key (e.g. a mounted secret); wins over `api_key_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Providers to try, in order, when this one fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Largest reply in tokens (Anthropic requires one: 1024 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Stream replies (SSE) from the provider.
    #[serde(default = "default_stream")]
    pub stream: bool,
}

/// A provider entry that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("providers.{name}.{key}: {reason}")]
    Invalid {
        name: String,
        key: &'static str,
        reason: String,
    },
}

impl ProviderConfig {
    /// An `echo` provider with defaults.
    pub fn echo(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: ProviderKind::Echo,
            base_url: None,
            model: None,
            api_key_env: None,
            api_key_file: None,
            fallbacks: Vec::new(),
            timeout_secs: default_timeout_secs(),
            max_retries: default_max_retries(),
            max_concurrency: default_max_concurrency(),
            max_tokens: None,
            stream: default_stream(),
        }
    }

    /// A `local` provider running `model` (a name in the models dir or a `.gguf` path),
    /// with defaults.
    pub fn local(name: &str, model: &str) -> Self {
        Self {
            kind: ProviderKind::Local,
            model: Some(model.to_owned()),
            ..Self::echo(name)
        }
    }

    fn invalid(&self, key: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            name: self.name.clone(),
            key,
            reason: reason.into(),
        }
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            return Err(self.invalid("name", "must be a non-empty word"));
        }
        if self.timeout_secs == 0 {
            return Err(self.invalid("timeout_secs", "must be at least 1"));
        }
        if self.max_concurrency == 0 {
            return Err(self.invalid("max_concurrency", "must be at least 1"));
        }
        if self.fallbacks.contains(&self.name) {
            return Err(self.invalid("fallbacks", "a provider cannot fall back to itself"));
        }
        if self.kind != ProviderKind::Echo && self.model.as_deref().is_none_or(str::is_empty) {
            return Err(self.invalid(
                "model",
                format!("is required for kind `{}`", self.kind.as_str()),
            ));
        }
        if let Some(base_url) = &self.base_url {
            let parsed = reqwest::Url::parse(base_url).map_err(|error| {
                self.invalid("base_url", format!("`{base_url}` is not a URL: {error}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(self.invalid("base_url", "must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }

    /// How the model worker calls this provider.
    pub fn policy(&self) -> ProviderPolicy {
        ProviderPolicy {
            timeout: Duration::from_secs(self.timeout_secs),
            max_retries: self.max_retries,
            max_concurrency: self.max_concurrency,
            fallbacks: self.fallbacks.clone(),
            ..ProviderPolicy::default()
        }
    }

    /// The API key from `api_key_file` or `api_key_env`, if any: without the white space
    /// around it (a file usually ends in a newline), and refused here, naming the key, when
    /// what is left could not be sent in an HTTP header (an empty file, a second line, a
    /// space or control character inside), rather than failing every turn later.
    fn api_key(&self) -> Result<Option<String>, ConfigError> {
        if let Some(path) = &self.api_key_file {
            let key = std::fs::read_to_string(path).map_err(|error| {
                self.invalid(
                    "api_key_file",
                    format!("cannot read {}: {error}", path.display()),
                )
            })?;
            return self.checked_key("api_key_file", key.trim()).map(Some);
        }
        let Some(variable) = &self.api_key_env else {
            return Ok(None);
        };
        match std::env::var(variable) {
            Ok(key) if !key.trim().is_empty() => {
                self.checked_key("api_key_env", key.trim()).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn checked_key(&self, key: &'static str, value: &str) -> Result<String, ConfigError> {
        if value.is_empty() {
            return Err(self.invalid(key, "the key is empty"));
        }
        if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(self.invalid(
                key,
                "the key holds a space, a line break or another character no API key has (is there more than one line?)",
            ));
        }
        Ok(value.to_owned())
    }
}

/// A provider built, and the child that runs it on this node when it has one (a local
/// model's pool, for the node's supervisor).
pub struct BuiltProvider {
    pub provider: Arc<dyn ModelProvider>,
    pub child: Option<ChildSpec>,
}

/// Builds the provider an entry describes (a local model's file is looked for in
/// `models_dir`). One line per kind.
pub fn build_provider(
    config: &ProviderConfig,
    models_dir: &Path,
) -> Result<BuiltProvider, ConfigError> {
    config.validate()?;
    let api_key = config.api_key()?;
    let model = config.model.clone().unwrap_or_default();
    let provider: Arc<dyn ModelProvider> = match config.kind {
        ProviderKind::Openai => Arc::new(OpenAiProvider::new(
            &config.name,
            config
                .base_url
                .as_deref()
                .unwrap_or(OPENAI_DEFAULT_BASE_URL),
            &model,
            api_key,
            config.max_tokens,
            config.stream,
        )),
        ProviderKind::Anthropic => {
            let api_key = api_key.ok_or_else(|| {
                let source = config.api_key_env.as_deref().unwrap_or("api_key_env");
                config.invalid(
                    "api_key_env",
                    format!("no API key found (set {source} or api_key_file)"),
                )
            })?;
            Arc::new(AnthropicProvider::new(
                &config.name,
                config
                    .base_url
                    .as_deref()
                    .unwrap_or(ANTHROPIC_DEFAULT_BASE_URL),
                &model,
                &api_key,
                config.max_tokens.unwrap_or(1024),
                config.stream,
            ))
        }
        ProviderKind::Echo => Arc::new(EchoProvider::new(&config.name)),
        ProviderKind::Local => return Ok(build_local(config, &model, models_dir)),
    };
    Ok(BuiltProvider {
        provider,
        child: None,
    })
}

/// A local model's provider; a missing file is said in the log (the node starts, and the
/// provider fails over until the file is installed).
fn build_local(config: &ProviderConfig, model: &str, models_dir: &Path) -> BuiltProvider {
    let file = local_model_file(model, models_dir);
    if !file.is_file() {
        tracing::warn!(
            provider = %config.name,
            "{} is missing: provider `{}` fails until it is installed (`troupe models install {model}`)",
            file.display(),
            config.name
        );
    }
    let (provider, child) = LocalChatProvider::new(
        &config.name,
        model,
        &file,
        config.max_tokens,
        config.max_concurrency,
    );
    BuiltProvider {
        provider: Arc::new(provider),
        child: Some(child.spec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_may_end_in_a_newline_but_may_hold_nothing_else() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("key");
        let config = |path: &std::path::Path| ProviderConfig {
            kind: ProviderKind::Openai,
            api_key_file: Some(path.to_owned()),
            ..ProviderConfig::echo("main")
        };
        std::fs::write(&path, "sk-test-123\n").unwrap();
        assert_eq!(
            config(&path).api_key().unwrap().as_deref(),
            Some("sk-test-123")
        );
        for bad in ["", "\n", "sk-one\nsk-two\n", "sk test", "sk-\u{7}x"] {
            std::fs::write(&path, bad).unwrap();
            let error = config(&path).api_key().unwrap_err().to_string();
            assert!(error.contains("api_key_file"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let text = r#"
            name = "main"
            kind = "openai"
            base_url = "http://127.0.0.1:11434/v1"
            model = "llama3.2"
            api_key_env = "OPENAI_API_KEY"
            fallbacks = ["backup"]
        "#;
        let config: ProviderConfig = toml::from_str(text).unwrap();
        assert_eq!(config.timeout_secs, 120);
        assert!(config.stream);
        let again: ProviderConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn refuses_unknown_keys_and_kinds() {
        let unknown_key =
            toml::from_str::<ProviderConfig>("name = \"a\"\nkind = \"echo\"\nmodle = \"x\"");
        assert!(unknown_key.unwrap_err().to_string().contains("modle"));
        let unknown_kind = toml::from_str::<ProviderConfig>("name = \"a\"\nkind = \"gpt\"");
        let message = unknown_kind.unwrap_err().to_string();
        assert!(
            message.contains("openai") && message.contains("anthropic"),
            "{message}"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = ProviderConfig::echo("main");
        config.kind = ProviderKind::Openai;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "providers.main.model: is required for kind `openai`"
        );
        config.model = Some("m".into());
        config.base_url = Some("ftp://x".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("providers.main.base_url")
        );
        config.base_url = None;
        config.fallbacks = vec!["main".into()];
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("itself")
        );
    }

    #[test]
    fn anthropic_without_a_key_is_refused_at_start() {
        let mut config = ProviderConfig::echo("claude");
        config.kind = ProviderKind::Anthropic;
        config.model = Some("claude-sonnet-4-5".into());
        config.api_key_env = Some("TROUPE_TEST_SURELY_UNSET_KEY".into());
        let error = build_provider(&config, Path::new("models")).err().unwrap();
        assert!(error.to_string().contains("TROUPE_TEST_SURELY_UNSET_KEY"));
    }

    #[test]
    fn a_local_model_is_named_in_the_models_dir_or_given_as_a_file() {
        let dir = Path::new("/var/lib/troupe/models");
        assert_eq!(
            local_model_file("smollm2-135m-instruct", dir),
            dir.join("smollm2-135m-instruct/model.gguf")
        );
        assert_eq!(
            local_model_file("/opt/models/qwen2.5-1.5b-q4.gguf", dir),
            Path::new("/opt/models/qwen2.5-1.5b-q4.gguf")
        );
        assert_eq!(local_model_file("big.gguf", dir), Path::new("big.gguf"));
        let mut config = ProviderConfig::echo("offline");
        config.kind = ProviderKind::Local;
        assert!(
            build_provider(&config, dir)
                .err()
                .is_some_and(|error| error.to_string().contains("providers.offline.model")),
            "a local provider names its model"
        );
        config.model = Some("smollm2-135m-instruct".into());
        let built = build_provider(&config, dir).unwrap();
        assert_eq!(built.provider.info().kind, "local");
        assert!(
            built.child.is_some(),
            "its pool runs under the node's supervisor"
        );
    }
}
