//! `[[bridges]] kind = "discord"`: a Discord application's keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::{BridgeConfigError, ConfigReason, rule};
use crate::secrets::{Secret, SecretSource};

fn default_api_base() -> String {
    "https://discord.com/api/v10".into()
}

fn default_cdn_base() -> String {
    "https://cdn.discordapp.com".into()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The bot token (Bot → Reset Token).
    #[serde(default)]
    pub bot_token_env: Option<String>,
    #[serde(default)]
    pub bot_token_file: Option<PathBuf>,
    /// The application's public key (General Information), hex: verifies interactions.
    /// Absent: `/bridges/{name}/interactions` is not served.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The application id (General Information), for answering `/ask`.
    #[serde(default)]
    pub application_id: Option<String>,
    /// The REST API's address; only tests change it.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Where attachments are: only files under it are fetched; only tests change it.
    #[serde(default = "default_cdn_base")]
    pub cdn_base: String,
}

/// A validated configuration with its secrets read.
#[derive(Clone, Debug)]
pub struct DiscordSettings {
    pub bot_token: Secret,
    pub public_key: Option<ed25519_dalek::VerifyingKey>,
    pub application_id: Option<String>,
    pub api_base: String,
    /// Attachments are fetched only from under this address (`…/`).
    pub cdn_base: String,
}

impl DiscordConfig {
    /// Checks the keys and reads the secrets; an error names the key at fault.
    pub fn settle(&self) -> Result<DiscordSettings, BridgeConfigError> {
        let bot_token = SecretSource::new(
            self.bot_token_env.as_deref(),
            self.bot_token_file.as_deref(),
        )
        .read()
        .map_err(|reason| BridgeConfigError::new("bot_token_env", reason))?;
        let public_key = self
            .public_key
            .as_deref()
            .map(|hex_key| {
                let bytes: [u8; 32] = hex::decode(hex_key.trim())
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(|| rule("public_key", "must be 64 hex digits (32 bytes)"))?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|error| {
                    BridgeConfigError::new("public_key", ConfigReason::PublicKey(error))
                })
            })
            .transpose()?;
        if public_key.is_some() && self.application_id.is_none() {
            return Err(rule(
                "application_id",
                "is required with public_key (to answer /ask)",
            ));
        }
        crate::common::check_http_url(&self.api_base)
            .map_err(|reason| BridgeConfigError::new("api_base", reason))?;
        crate::common::check_http_url(&self.cdn_base)
            .map_err(|reason| BridgeConfigError::new("cdn_base", reason))?;
        Ok(DiscordSettings {
            bot_token,
            public_key,
            application_id: self.application_id.clone(),
            api_base: self.api_base.trim_end_matches('/').to_owned(),
            cdn_base: format!("{}/", self.cdn_base.trim_end_matches('/')),
        })
    }
}
