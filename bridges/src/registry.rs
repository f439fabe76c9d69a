//! The bridge factory: one registration line per platform. A `[[bridges]]` entry's keys,
//! less `name`, `kind` and the access-policy keys, are the platform's own typed config
//! (`deny_unknown_fields`); an unknown kind is an error that lists the known ones.

use std::sync::Arc;

use troupe_actors::bridge::Bridge;

use crate::config_error::{BridgeConfigError, ConfigReason};

/// A bridge built from its config, or why not (naming the key at fault).
pub type BuildResult = Result<Arc<dyn Bridge>, BridgeConfigError>;

type Factory = fn(serde_json::Value) -> BuildResult;

/// Every platform compiled in, by kind.
const FACTORIES: &[(&str, Factory)] = &[
    #[cfg(feature = "discord")]
    ("discord", build_discord),
    #[cfg(feature = "slack")]
    ("slack", build_slack),
    #[cfg(feature = "telegram")]
    ("telegram", build_telegram),
    #[cfg(feature = "webhook")]
    ("webhook", build_webhook),
    #[cfg(feature = "whatsapp")]
    ("whatsapp", build_whatsapp),
];

/// The kinds this build knows.
pub fn kinds() -> Vec<&'static str> {
    FACTORIES.iter().map(|(kind, _)| *kind).collect()
}

/// Builds a bridge of `kind` from its platform keys.
pub fn build(kind: &str, params: serde_json::Value) -> BuildResult {
    let Some((_, factory)) = FACTORIES.iter().find(|(known, _)| *known == kind) else {
        return Err(BridgeConfigError::new(
            "kind",
            ConfigReason::UnknownKind {
                kind: kind.to_owned(),
                known: kinds().join(", "),
            },
        ));
    };
    factory(params)
}

/// The kind's typed config; a key it does not take is named by serde's path to it.
fn parse<T: serde::de::DeserializeOwned>(
    params: serde_json::Value,
) -> Result<T, BridgeConfigError> {
    serde_path_to_error::deserialize(params).map_err(|error| {
        let path = error.path().to_string();
        let key = if path == "." {
            "(entry)".to_owned()
        } else {
            path
        };
        BridgeConfigError::new(key, ConfigReason::Shape(error.into_inner()))
    })
}

/// Parses a kind's typed config and builds its bridge from it.
fn build_with<C, B>(
    params: serde_json::Value,
    make: impl FnOnce(C) -> Result<B, BridgeConfigError>,
) -> BuildResult
where
    C: serde::de::DeserializeOwned,
    B: Bridge,
{
    let config: C = parse(params)?;
    let bridge = make(config)?;
    Ok(Arc::new(bridge))
}

#[cfg(feature = "telegram")]
fn build_telegram(params: serde_json::Value) -> BuildResult {
    build_with(params, |config: crate::telegram::config::TelegramConfig| {
        config.settle().map(crate::telegram::TelegramBridge::new)
    })
}

#[cfg(feature = "webhook")]
fn build_webhook(params: serde_json::Value) -> BuildResult {
    build_with(params, |config: crate::webhook::WebhookConfig| {
        config.build()
    })
}

#[cfg(feature = "whatsapp")]
fn build_whatsapp(params: serde_json::Value) -> BuildResult {
    build_with(params, |config: crate::whatsapp::config::WhatsAppConfig| {
        config.settle().map(crate::whatsapp::WhatsAppBridge::new)
    })
}

#[cfg(feature = "slack")]
fn build_slack(params: serde_json::Value) -> BuildResult {
    build_with(params, |config: crate::slack::config::SlackConfig| {
        config.settle().map(crate::slack::SlackBridge::new)
    })
}

#[cfg(feature = "discord")]
fn build_discord(params: serde_json::Value) -> BuildResult {
    build_with(params, |config: crate::discord::config::DiscordConfig| {
        config.settle().map(crate::discord::DiscordBridge::new)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unknown_kind_lists_the_known_ones() {
        let Err(error) = build("fax", json!({})) else {
            panic!("no fax bridge");
        };
        assert_eq!(error.key(), "kind");
        assert!(error.to_string().contains("telegram"), "{error}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let Err(error) = build("telegram", json!({"token_env": "X", "tokn": 1})) else {
            panic!("a typo must fail");
        };
        assert_eq!(error.key(), "tokn", "{error}");
        assert!(
            matches!(error.into_reason(), ConfigReason::Shape(_)),
            "serde's error is kept as the source"
        );
    }

    #[test]
    fn a_missing_token_names_its_key() {
        let Err(error) = build("telegram", json!({"token_env": "TROUPE_TEST_SURELY_UNSET"})) else {
            panic!("no token, no bridge");
        };
        assert_eq!(error.key(), "token_env");
        assert!(matches!(
            error.into_reason(),
            ConfigReason::Secret(crate::secrets::SecretError::Unset { .. })
        ));
    }
}
