//! `assistant.offline_fallback`: the local chat model answers when nothing else can, so a
//! machine with no network and no keys still has an assistant.
//!
//! - With providers configured, the first `kind = "local"` provider (else one named
//!   [`OFFLINE_PROVIDER`] running [`OFFLINE_MODEL`] from the models dir) becomes the last
//!   fallback of every other provider: a fallback that fails goes on with its own
//!   fallbacks, so each chain ends with the local model.
//! - With none configured and none found, the local model answers in place of `echo`.

use troupe_inference::{ProviderConfig, ProviderKind};

/// The name of the provider `offline_fallback` adds when none is `kind = "local"`.
pub(crate) const OFFLINE_PROVIDER: &str = "offline";
/// The model it runs: the packaged SmolLM2-135M-Instruct.
pub(crate) const OFFLINE_MODEL: &str = "smollm2-135m-instruct";

/// `providers` with the local model as every other provider's last fallback; answers
/// whether the local model answers in place of `echo` (when `echo` was all there was).
pub(crate) fn with_offline_fallback(providers: &mut Vec<ProviderConfig>) -> bool {
    if let [only] = providers.as_mut_slice()
        && only.kind == ProviderKind::Echo
    {
        *only = ProviderConfig::local(&only.name, OFFLINE_MODEL);
        return true;
    }
    let local = match providers
        .iter()
        .find(|provider| provider.kind == ProviderKind::Local)
    {
        Some(local) => local.name.clone(),
        None => {
            providers.push(ProviderConfig::local(OFFLINE_PROVIDER, OFFLINE_MODEL));
            OFFLINE_PROVIDER.to_owned()
        }
    };
    for provider in providers
        .iter_mut()
        .filter(|provider| provider.kind != ProviderKind::Local)
    {
        if !provider.fallbacks.contains(&local) {
            provider.fallbacks.push(local.clone());
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(name: &str, fallbacks: &[&str]) -> ProviderConfig {
        ProviderConfig {
            kind: ProviderKind::Openai,
            model: Some("gpt-4o-mini".into()),
            fallbacks: fallbacks.iter().map(|name| (*name).to_owned()).collect(),
            ..ProviderConfig::echo(name)
        }
    }

    #[test]
    fn the_local_model_ends_every_fallback_chain() {
        let mut providers = vec![openai("main", &["backup"]), openai("backup", &[])];
        assert!(!with_offline_fallback(&mut providers));
        assert_eq!(providers[0].fallbacks, ["backup", OFFLINE_PROVIDER]);
        assert_eq!(
            providers[1].fallbacks,
            [OFFLINE_PROVIDER],
            "a failing fallback goes on"
        );
        assert_eq!(providers[2].kind, ProviderKind::Local);
        assert_eq!(providers[2].model.as_deref(), Some(OFFLINE_MODEL));
        assert!(providers[2].fallbacks.is_empty(), "never its own fallback");
        // Applied twice, nothing more is added.
        assert!(!with_offline_fallback(&mut providers));
        assert_eq!(providers.len(), 3);
        assert_eq!(providers[0].fallbacks, ["backup", OFFLINE_PROVIDER]);
    }

    #[test]
    fn a_configured_local_provider_is_the_one_used() {
        let mut providers = vec![
            openai("main", &[]),
            ProviderConfig::local("big", "/models/qwen.gguf"),
        ];
        with_offline_fallback(&mut providers);
        assert_eq!(providers.len(), 2);
        assert_eq!(providers[0].fallbacks, ["big"]);
        assert!(providers[1].fallbacks.is_empty());
    }

    #[test]
    fn the_local_model_answers_in_place_of_echo() {
        let mut providers = vec![ProviderConfig::echo("main")];
        assert!(with_offline_fallback(&mut providers));
        assert_eq!(providers[0].kind, ProviderKind::Local);
        assert_eq!(providers[0].name, "main");
    }
}
