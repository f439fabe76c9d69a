//! The first-run set-up: what it accepts, what it writes, and who may use it.

use std::os::unix::fs::PermissionsExt;

use axum::http::HeaderValue;

use super::*;
use crate::config::{Environment, TroupeConfig};

fn draft(json: serde_json::Value) -> SetupDraft {
    serde_json::from_value(json).expect("a draft")
}

#[test]
fn a_hosted_provider_needs_a_clean_key_and_ollama_needs_none() {
    let missing = ProviderChoice::parse(draft(json!({"kind": "openai", "model": "gpt-4o-mini"})));
    assert_eq!(missing, Err(ChoiceError::KeyMissing("openai")));
    assert!(missing.unwrap_err().to_string().starts_with("api_key:"));
    let spaced = ProviderChoice::parse(draft(
        json!({"kind": "anthropic", "api_key": "sk ant", "model": "claude-sonnet-4-5"}),
    ));
    assert_eq!(spaced, Err(ChoiceError::KeyMalformed));
    let ollama = ProviderChoice::parse(draft(json!({"kind": "ollama", "model": "llama3.2"})))
        .expect("ollama needs no key");
    assert_eq!(ollama.base_url.as_deref(), Some(OLLAMA_BASE_URL));
    assert_eq!(ollama.api_key, None);
}

#[test]
fn a_bad_url_or_model_is_refused_with_its_field_named() {
    for url in ["ftp://models.example", "not a url", "http://"] {
        let refused = ProviderChoice::parse(draft(
            json!({"kind": "ollama", "base_url": url, "model": "llama3.2"}),
        ))
        .unwrap_err();
        assert!(
            refused.to_string().starts_with("base_url:"),
            "{url}: {refused}"
        );
    }
    let refused = ProviderChoice::parse(draft(json!({"kind": "ollama", "model": "a\nb"})));
    assert_eq!(refused, Err(ChoiceError::Model));
    let unknown: Result<SetupDraft, _> =
        serde_json::from_value(json!({"kind": "ollama", "model": "m", "extra": 1}));
    assert!(unknown.is_err(), "unknown fields are refused");
}

#[test]
fn the_written_configuration_is_one_the_node_reads_with_the_key_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("troupe.toml");
    let data_dir = dir.path().join("data");
    let choice = ProviderChoice::parse(draft(json!({
        "kind": "openai", "api_key": "sk-test-123", "model": "gpt-4o-mini",
        "base_url": "https://api.example.com/v1"
    })))
    .unwrap();
    // A key file left readable by others from before is narrowed when it is rewritten.
    let stale_key = data_dir.join("secrets").join("openai-api-key");
    std::fs::create_dir_all(stale_key.parent().unwrap()).unwrap();
    std::fs::write(&stale_key, "old").unwrap();
    std::fs::set_permissions(&stale_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let outcome = write_config(&config_path, &data_dir, "main", &choice).unwrap();
    assert!(outcome.written);
    let text = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        !text.contains("sk-test-123"),
        "the key stays out of the config: {text}"
    );

    let (config, _) = TroupeConfig::load(Some(&config_path), &Environment::default()).unwrap();
    let provider = &config.providers[0];
    assert_eq!(provider.name, "main");
    assert_eq!(provider.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        provider.base_url.as_deref(),
        Some("https://api.example.com/v1")
    );
    let key_file = provider.api_key_file.as_ref().expect("a key file");
    assert_eq!(std::fs::read_to_string(key_file).unwrap(), "sk-test-123\n");
    for private in [key_file.as_path(), config_path.as_path()] {
        let mode = std::fs::metadata(private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", private.display());
    }
}

#[test]
fn an_existing_configuration_is_never_replaced_and_the_lines_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("troupe.toml");
    std::fs::write(&config_path, "[server]\n").unwrap();
    let choice = ProviderChoice::parse(draft(
        json!({"kind": "anthropic", "api_key": "sk-ant-9", "model": "claude-sonnet-4-5"}),
    ))
    .unwrap();
    let outcome = write_config(&config_path, &dir.path().join("data"), "main", &choice).unwrap();
    assert!(!outcome.written);
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), "[server]\n");
    assert!(!dir.path().join("data").exists(), "no key was written");
    assert_eq!(outcome.set_variable, Some("ANTHROPIC_API_KEY"));
    assert!(
        outcome
            .lines
            .contains("api_key_env = \"ANTHROPIC_API_KEY\""),
        "{}",
        outcome.lines
    );
    assert!(!outcome.lines.contains("sk-ant-9"));
    let parsed = TroupeConfig::parse(&outcome.lines).expect("the lines are a valid config");
    assert_eq!(
        parsed.providers[0].model.as_deref(),
        Some("claude-sonnet-4-5")
    );
}

#[test]
fn only_a_loopback_peer_that_named_a_loopback_host_is_this_machine() {
    let with_host = |host: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        headers
    };
    let loopback: Option<IpAddr> = Some([127, 0, 0, 1].into());
    for host in [
        "127.0.0.1:8787",
        "localhost:8787",
        "[::1]:8787",
        "localhost",
    ] {
        assert!(from_this_machine(loopback, &with_host(host)), "{host}");
    }
    assert!(!from_this_machine(
        loopback,
        &with_host("troupe.example.com")
    ));
    assert!(!from_this_machine(loopback, &with_host("192.168.1.5:8787")));
    assert!(!from_this_machine(
        Some([192, 168, 1, 5].into()),
        &with_host("127.0.0.1:8787")
    ));
    assert!(!from_this_machine(None, &with_host("127.0.0.1:8787")));
}
