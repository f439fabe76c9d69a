//! `[[bridges]] kind = "telegram"`: the keys of a Telegram bridge (besides `name`, `kind`
//! and the access-policy keys every bridge has).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::{BridgeConfigError, rule};
use crate::secrets::{Secret, SecretSource};

fn default_api_base() -> String {
    "https://api.telegram.org".into()
}
const fn default_poll_timeout_secs() -> u64 {
    30
}

/// How updates arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    /// `getUpdates` long polling: works behind NAT, nothing to expose.
    #[default]
    Polling,
    /// Telegram calls `POST /bridges/{name}/webhook` at `webhook_url`.
    Webhook,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token from @BotFather, from this environment variable…
    #[serde(default)]
    pub token_env: Option<String>,
    /// …or from this file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub mode: TelegramMode,
    /// Webhook mode: the public HTTPS URL Telegram calls, ending in
    /// `/bridges/{name}/webhook`.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Webhook mode: the secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token`,
    /// from this environment variable (1–256 of `A-Z a-z 0-9 _ -`).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// How long one `getUpdates` call waits for news.
    #[serde(default = "default_poll_timeout_secs")]
    pub poll_timeout_secs: u64,
    /// The Bot API's address; only tests change it.
    #[serde(default = "default_api_base")]
    pub api_base: String,
}

/// A validated configuration with its secrets read.
#[derive(Clone, Debug)]
pub struct TelegramSettings {
    pub token: Secret,
    pub mode: TelegramMode,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    pub poll_timeout_secs: u64,
    pub api_base: String,
}

impl TelegramConfig {
    /// Checks the keys and reads the secrets; an error names the key at fault.
    pub fn settle(&self) -> Result<TelegramSettings, BridgeConfigError> {
        let token = SecretSource::new(self.token_env.as_deref(), self.token_file.as_deref())
            .read()
            .map_err(|reason| BridgeConfigError::new("token_env", reason))?;
        if !token.expose().contains(':') {
            return Err(rule(
                "token_env",
                "does not look like a bot token (`123456:ABC…` from @BotFather)",
            ));
        }
        if !(1..=50).contains(&self.poll_timeout_secs) {
            return Err(rule("poll_timeout_secs", "must be between 1 and 50"));
        }
        crate::common::check_http_url(&self.api_base)
            .map_err(|reason| BridgeConfigError::new("api_base", reason))?;
        let (webhook_url, webhook_secret) = match self.mode {
            TelegramMode::Polling => (None, None),
            TelegramMode::Webhook => {
                let url = self
                    .webhook_url
                    .clone()
                    .ok_or_else(|| rule("webhook_url", "is required with mode = \"webhook\""))?;
                crate::common::check_http_url(&url)
                    .map_err(|reason| BridgeConfigError::new("webhook_url", reason))?;
                let secret = SecretSource::new(self.webhook_secret_env.as_deref(), None)
                    .read()
                    .map_err(|reason| BridgeConfigError::new("webhook_secret_env", reason))?;
                let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
                if secret.expose().len() > 256 || !secret.expose().chars().all(allowed) {
                    return Err(rule(
                        "webhook_secret_env",
                        "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -",
                    ));
                }
                (Some(url), Some(secret))
            }
        };
        Ok(TelegramSettings {
            token,
            mode: self.mode,
            webhook_url,
            webhook_secret,
            poll_timeout_secs: self.poll_timeout_secs,
            api_base: self.api_base.trim_end_matches('/').to_owned(),
        })
    }
}
