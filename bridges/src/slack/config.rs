//! `[[bridges]] kind = "slack"`: a Slack app's keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::{BridgeConfigError, rule};
use crate::secrets::{Secret, SecretSource};

fn default_api_base() -> String {
    "https://slack.com/api".into()
}

fn default_files_base() -> String {
    "https://files.slack.com".into()
}

/// How events arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlackMode {
    /// Events API: Slack POSTs to `/bridges/{name}/webhook` (needs a public HTTPS address).
    #[default]
    Events,
    /// Socket Mode: Troupe opens a WebSocket to Slack (works behind NAT; needs an app token).
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`).
    #[serde(default)]
    pub bot_token_env: Option<String>,
    #[serde(default)]
    pub bot_token_file: Option<PathBuf>,
    #[serde(default)]
    pub mode: SlackMode,
    /// Events mode: the signing secret (Basic Information → App Credentials).
    #[serde(default)]
    pub signing_secret_env: Option<String>,
    #[serde(default)]
    pub signing_secret_file: Option<PathBuf>,
    /// Socket mode: an app-level token (`xapp-…`) with `connections:write`.
    #[serde(default)]
    pub app_token_env: Option<String>,
    /// The Web API's address; only tests change it.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Where Slack keeps files (the bot token goes to no other host); only tests change it.
    #[serde(default = "default_files_base")]
    pub files_base: String,
}

/// A validated configuration with its secrets read.
#[derive(Clone, Debug)]
pub struct SlackSettings {
    pub bot_token: Secret,
    pub mode: SlackMode,
    pub signing_secret: Option<Secret>,
    pub app_token: Option<Secret>,
    pub api_base: String,
    /// `files_base`, ending in `/`.
    pub files_base: String,
}

impl SlackConfig {
    /// Checks the keys and reads the secrets; an error names the key at fault.
    pub fn settle(&self) -> Result<SlackSettings, BridgeConfigError> {
        let bot_token = SecretSource::new(
            self.bot_token_env.as_deref(),
            self.bot_token_file.as_deref(),
        )
        .read()
        .map_err(|reason| BridgeConfigError::new("bot_token_env", reason))?;
        if !bot_token.expose().starts_with("xoxb-") {
            return Err(rule("bot_token_env", "must be a bot token (xoxb-…)"));
        }
        let (signing_secret, app_token) = match self.mode {
            SlackMode::Events => {
                let secret = SecretSource::new(
                    self.signing_secret_env.as_deref(),
                    self.signing_secret_file.as_deref(),
                )
                .read()
                .map_err(|reason| BridgeConfigError::new("signing_secret_env", reason))?;
                (Some(secret), None)
            }
            SlackMode::Socket => {
                let token = SecretSource::new(self.app_token_env.as_deref(), None)
                    .read()
                    .map_err(|reason| BridgeConfigError::new("app_token_env", reason))?;
                if !token.expose().starts_with("xapp-") {
                    return Err(rule("app_token_env", "must be an app-level token (xapp-…)"));
                }
                (None, Some(token))
            }
        };
        crate::common::check_http_url(&self.api_base)
            .map_err(|reason| BridgeConfigError::new("api_base", reason))?;
        crate::common::check_http_url(&self.files_base)
            .map_err(|reason| BridgeConfigError::new("files_base", reason))?;
        Ok(SlackSettings {
            bot_token,
            mode: self.mode,
            signing_secret,
            app_token,
            api_base: self.api_base.trim_end_matches('/').to_owned(),
            files_base: format!("{}/", self.files_base.trim_end_matches('/')),
        })
    }
}
