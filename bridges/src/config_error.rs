//! Why a `[[bridges]]` entry does not build: the key at fault, and a typed reason that
//! keeps its source (an unset variable, an unreadable file, a bad URL, serde's error).

pub use crate::common::UrlError;
use crate::secrets::SecretError;

/// A refused key of one `[[bridges]]` entry.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct BridgeConfigError {
    key: String,
    #[source]
    reason: ConfigReason,
}

impl BridgeConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<ConfigReason>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The key inside the entry (`token_env`, `api_base`, `(entry)` for the whole entry).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn into_reason(self) -> ConfigReason {
        self.reason
    }
}

/// What is wrong with a key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigReason {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A value the platform does not take; the text says what it must be.
    #[error("{0}")]
    Rule(&'static str),
    /// The entry does not fit the kind's typed config (an unknown or mistyped key).
    #[error("{0}")]
    Shape(#[source] serde_json::Error),
    #[error("unknown bridge kind `{kind}`; this build knows: {known}")]
    UnknownKind { kind: String, known: String },
    #[cfg(feature = "discord")]
    #[error("is not an Ed25519 public key: {0}")]
    PublicKey(#[source] ed25519_dalek::SignatureError),
}

/// `key` breaks the rule `what` says.
pub(crate) fn rule(key: &'static str, what: &'static str) -> BridgeConfigError {
    BridgeConfigError::new(key, ConfigReason::Rule(what))
}
