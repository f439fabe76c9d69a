//! `[[bridges]]`: one entry per messaging platform account. `name` (unique; used in
//! `/bridges/{name}/…` and the API) and `kind` pick the bridge; `dm_policy`,
//! `group_policy`, `allow_from` and `rate_limit_per_minute` are its access policy;
//! `voice_replies` says when its replies are also voice notes; every other key belongs to
//! the platform and is checked by its factory.

use std::sync::Arc;

use troupe_actors::bridge::policy::AccessPolicy;
use troupe_actors::bridge::{Bridge, VoiceReplies};

use super::{ConfigError, invalid, refused};

/// The keys of the access policy, shared by every kind.
const POLICY_KEYS: [&str; 4] = [
    "dm_policy",
    "group_policy",
    "allow_from",
    "rate_limit_per_minute",
];

/// One checked entry.
pub(crate) struct BridgeEntry {
    pub(crate) name: String,
    pub(crate) bridge: Arc<dyn Bridge>,
    pub(crate) policy: AccessPolicy,
    pub(crate) voice_replies: VoiceReplies,
}

/// Checks every entry and builds its bridge (reading its secrets).
pub(crate) fn build_bridges(entries: &[toml::Table]) -> Result<Vec<BridgeEntry>, ConfigError> {
    let mut built: Vec<BridgeEntry> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let key = |name: &str| format!("bridges[{index}].{name}");
        let mut params = entry.clone();
        let name =
            take_string(&mut params, "name").map_err(|reason| refused(&key("name"), reason))?;
        troupe_actors::ids::validate_platform(&name)
            .map_err(|reason| refused(&key("name"), reason))?;
        if built.iter().any(|other| other.name == name) {
            return Err(invalid(&key("name"), format!("`{name}` is used twice")));
        }
        let kind =
            take_string(&mut params, "kind").map_err(|reason| refused(&key("kind"), reason))?;
        let mut policy_table = toml::Table::new();
        for policy_key in POLICY_KEYS {
            if let Some(value) = params.remove(policy_key) {
                policy_table.insert(policy_key.to_owned(), value);
            }
        }
        // A signed webhook's caller proved who it is with the shared secret.
        if kind == "webhook" && !policy_table.contains_key("dm_policy") {
            policy_table.insert("dm_policy".into(), toml::Value::String("open".into()));
        }
        let policy: AccessPolicy = policy_table.try_into().map_err(|error: toml::de::Error| {
            invalid(&key("dm_policy"), error.message().to_owned())
        })?;
        let voice_replies = match params.remove("voice_replies") {
            Some(value) => value.try_into().map_err(|error: toml::de::Error| {
                invalid(&key("voice_replies"), error.message().to_owned())
            })?,
            None => VoiceReplies::default(),
        };
        let params = serde_json::to_value(&params)
            .map_err(|error| invalid(&key("kind"), error.to_string()))?;
        let bridge = troupe_bridges::registry::build(&kind, params)
            .map_err(|error| refused(&key(error.key()), error.into_reason()))?;
        built.push(BridgeEntry {
            name,
            bridge,
            policy,
            voice_replies,
        });
    }
    Ok(built)
}

/// Why `name` or `kind` of an entry is refused.
#[derive(Debug, thiserror::Error)]
enum EntryKeyError {
    #[error("must be a non-empty string")]
    NotAString,
    #[error("is required")]
    Missing,
}

fn take_string(table: &mut toml::Table, key: &str) -> Result<String, EntryKeyError> {
    match table.remove(key) {
        Some(toml::Value::String(value)) if !value.is_empty() => Ok(value),
        Some(_) => Err(EntryKeyError::NotAString),
        None => Err(EntryKeyError::Missing),
    }
}
