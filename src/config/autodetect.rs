//! Picks a model provider when the configuration names none: an OpenAI key, an Anthropic
//! key, an Ollama answering on 127.0.0.1:11434, else `echo` (with a notice saying how to
//! configure a real model).

use std::time::Duration;

use troupe_inference::{ProviderConfig, ProviderKind};

const OLLAMA_ADDRESS: &str = "127.0.0.1:11434";
const OLLAMA_URL: &str = "http://127.0.0.1:11434";
/// How long we wait for a local Ollama at start-up (it answers in about a millisecond).
const OLLAMA_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// What the environment offers.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProviderEnvironment {
    pub(crate) openai_api_key: bool,
    pub(crate) openai_base_url: Option<String>,
    pub(crate) anthropic_api_key: bool,
    /// Models a local Ollama reported (`None`: no Ollama answered).
    pub(crate) ollama_models: Option<Vec<String>>,
}

impl ProviderEnvironment {
    pub(crate) async fn probe() -> Self {
        let present = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
        let openai_api_key = present("OPENAI_API_KEY");
        let anthropic_api_key = present("ANTHROPIC_API_KEY");
        let ollama_models = if openai_api_key || anthropic_api_key {
            None
        } else {
            probe_ollama().await
        };
        Self {
            openai_api_key,
            openai_base_url: std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            anthropic_api_key,
            ollama_models,
        }
    }
}

async fn probe_ollama() -> Option<Vec<String>> {
    // A refused TCP connection answers in microseconds; only then is an HTTP client worth building.
    let connected = tokio::time::timeout(
        OLLAMA_PROBE_TIMEOUT,
        tokio::net::TcpStream::connect(OLLAMA_ADDRESS),
    )
    .await;
    if !matches!(connected, Ok(Ok(_))) {
        return None;
    }
    let client = reqwest::Client::builder()
        .timeout(OLLAMA_PROBE_TIMEOUT)
        .build()
        .ok()?;
    let answer = client
        .get(format!("{OLLAMA_URL}/api/tags"))
        .send()
        .await
        .ok()?;
    let tags: serde_json::Value = answer.error_for_status().ok()?.json().await.ok()?;
    let models = tags["models"].as_array()?;
    Some(
        models
            .iter()
            .filter_map(|model| model["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// The provider to use, named `name`, and a notice for the user when it is `echo`.
pub(crate) fn detect_provider(
    name: &str,
    environment: &ProviderEnvironment,
) -> (ProviderConfig, Option<String>) {
    let mut config = ProviderConfig::echo(name);
    if environment.openai_api_key {
        config.kind = ProviderKind::Openai;
        config.base_url = environment.openai_base_url.clone();
        config.model = Some("gpt-4o-mini".into());
        config.api_key_env = Some("OPENAI_API_KEY".into());
        return (config, None);
    }
    if environment.anthropic_api_key {
        config.kind = ProviderKind::Anthropic;
        config.model = Some("claude-sonnet-4-5".into());
        config.api_key_env = Some("ANTHROPIC_API_KEY".into());
        return (config, None);
    }
    if let Some(models) = &environment.ollama_models {
        config.kind = ProviderKind::Openai;
        config.base_url = Some(format!("{OLLAMA_URL}/v1"));
        config.model = Some(models.first().cloned().unwrap_or_else(|| "llama3.2".into()));
        return (config, None);
    }
    (config, Some(echo_notice()))
}

/// Tells a user with no model how to configure one.
pub(crate) fn echo_notice() -> String {
    "No model is configured, so Troupe echoes your messages. To talk to a real model, set \
     OPENAI_API_KEY or ANTHROPIC_API_KEY, start Ollama on 127.0.0.1:11434, or add a \
     [[providers]] entry to troupe.toml (see docs/configuration.md)."
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_openai_then_anthropic_then_ollama_then_echo() {
        let mut environment = ProviderEnvironment {
            openai_api_key: true,
            anthropic_api_key: true,
            ollama_models: Some(vec!["qwen3".into()]),
            ..ProviderEnvironment::default()
        };
        assert_eq!(
            detect_provider("main", &environment).0.kind,
            ProviderKind::Openai
        );
        environment.openai_api_key = false;
        assert_eq!(
            detect_provider("main", &environment).0.kind,
            ProviderKind::Anthropic
        );
        environment.anthropic_api_key = false;
        let (ollama, notice) = detect_provider("main", &environment);
        assert_eq!(
            ollama.base_url.as_deref(),
            Some("http://127.0.0.1:11434/v1")
        );
        assert_eq!(ollama.model.as_deref(), Some("qwen3"));
        assert!(notice.is_none());
        environment.ollama_models = None;
        let (echo, notice) = detect_provider("main", &environment);
        assert_eq!(echo.kind, ProviderKind::Echo);
        assert!(notice.unwrap().contains("OPENAI_API_KEY"));
    }
}
