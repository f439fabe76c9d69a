//! `[[bridges]] kind = "whatsapp"`: the WhatsApp Business Cloud API keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config_error::{BridgeConfigError, rule};
use crate::secrets::{Secret, SecretSource};

fn default_api_base() -> String {
    "https://graph.facebook.com".into()
}
fn default_api_version() -> String {
    "v21.0".into()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    /// The business phone number's id (not the number itself), from the app dashboard.
    pub phone_number_id: String,
    /// A (system user) access token with `whatsapp_business_messaging`.
    #[serde(default)]
    pub access_token_env: Option<String>,
    #[serde(default)]
    pub access_token_file: Option<PathBuf>,
    /// The app secret: every webhook is signed with it (`X-Hub-Signature-256`).
    #[serde(default)]
    pub app_secret_env: Option<String>,
    #[serde(default)]
    pub app_secret_file: Option<PathBuf>,
    /// The token you typed into the dashboard's webhook form (`hub.verify_token`).
    #[serde(default)]
    pub verify_token_env: Option<String>,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The Graph API's address; only tests change it.
    #[serde(default = "default_api_base")]
    pub api_base: String,
}

/// A validated configuration with its secrets read.
#[derive(Clone, Debug)]
pub struct WhatsAppSettings {
    pub phone_number_id: String,
    pub access_token: Secret,
    pub app_secret: Secret,
    pub verify_token: Secret,
    /// `{api_base}/{api_version}`.
    pub graph_base: String,
}

impl WhatsAppConfig {
    /// Checks the keys and reads the secrets; an error names the key at fault.
    pub fn settle(&self) -> Result<WhatsAppSettings, BridgeConfigError> {
        if self.phone_number_id.is_empty()
            || !self.phone_number_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(rule(
                "phone_number_id",
                "must be the numeric phone number id",
            ));
        }
        let access_token = SecretSource::new(
            self.access_token_env.as_deref(),
            self.access_token_file.as_deref(),
        )
        .read()
        .map_err(|reason| BridgeConfigError::new("access_token_env", reason))?;
        let app_secret = SecretSource::new(
            self.app_secret_env.as_deref(),
            self.app_secret_file.as_deref(),
        )
        .read()
        .map_err(|reason| BridgeConfigError::new("app_secret_env", reason))?;
        let verify_token = SecretSource::new(self.verify_token_env.as_deref(), None)
            .read()
            .map_err(|reason| BridgeConfigError::new("verify_token_env", reason))?;
        let version_ok = self.api_version.starts_with('v')
            && self.api_version[1..]
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if !version_ok {
            return Err(rule("api_version", "must look like `v21.0`"));
        }
        crate::common::check_http_url(&self.api_base)
            .map_err(|reason| BridgeConfigError::new("api_base", reason))?;
        Ok(WhatsAppSettings {
            phone_number_id: self.phone_number_id.clone(),
            access_token,
            app_secret,
            verify_token,
            graph_base: format!(
                "{}/{}",
                self.api_base.trim_end_matches('/'),
                self.api_version
            ),
        })
    }
}
