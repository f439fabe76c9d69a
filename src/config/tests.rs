use super::*;

const DOCUMENTED_EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8787"
allowed_origins = []
[storage]
data_dir = ".troupe"
[assistant]
provider = "main"
system_prompt = "You are a helpful personal assistant."
history_window = 40
idle_passivate_secs = 600
[[providers]]
name = "main"
kind = "openai"            # openai | anthropic | echo
base_url = "http://127.0.0.1:11434/v1"
model = "llama3.2"
api_key_env = "OPENAI_API_KEY"
fallbacks = []
"#;

#[test]
fn the_documented_example_works_as_written() {
    let config = TroupeConfig::parse(DOCUMENTED_EXAMPLE).unwrap();
    config.validate().unwrap();
    assert_eq!(config.server.listen, default_listen());
    assert_eq!(config.assistant.history_window, 40);
    assert_eq!(config.providers[0].model.as_deref(), Some("llama3.2"));
}

#[test]
fn round_trips_through_toml() {
    let config = TroupeConfig::parse(DOCUMENTED_EXAMPLE).unwrap();
    let again = TroupeConfig::parse(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let config = TroupeConfig::parse("").unwrap();
    assert_eq!(config, TroupeConfig::default());
    assert_eq!(config.storage.data_dir, PathBuf::from(".troupe"));
}

#[test]
fn unknown_keys_are_named() {
    let error = TroupeConfig::parse("[server]\nlisten_on = \"x\"")
        .unwrap_err()
        .to_string();
    assert!(error.contains("listen_on"), "{error}");
    let error = TroupeConfig::parse("[assistent]\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("assistent"), "{error}");
}

#[test]
fn environment_overrides_the_file() {
    let mut config = TroupeConfig::parse(DOCUMENTED_EXAMPLE).unwrap();
    let environment = Environment {
        listen: Some("127.0.0.1:9999".into()),
        data_dir: Some("/tmp/elsewhere".into()),
        token: Some("s3cret".into()),
        config: None,
        ..Environment::default()
    };
    config.apply_environment(&environment).unwrap();
    assert_eq!(config.server.listen.port(), 9999);
    assert_eq!(config.storage.data_dir, PathBuf::from("/tmp/elsewhere"));
    assert_eq!(config.server.token.as_deref(), Some("s3cret"));
    let bad = Environment {
        listen: Some("nowhere".into()),
        ..Environment::default()
    };
    let error = config.apply_environment(&bad).unwrap_err().to_string();
    assert!(error.starts_with("TROUPE_LISTEN:"), "{error}");
    let pod = Environment {
        ops_token: Some("wall-screen".into()),
        nats_url: Some("nats://nats:4222".into()),
        advertise_url: Some("http://10.1.2.3:8787".into()),
        ..Environment::default()
    };
    config.apply_environment(&pod).unwrap();
    assert_eq!(config.server.ops_token.as_deref(), Some("wall-screen"));
    let cluster = config.cluster.as_ref().unwrap();
    assert_eq!(
        cluster.advertise_url.as_deref(),
        Some("http://10.1.2.3:8787")
    );
    let alone = Environment {
        advertise_url: Some("http://10.1.2.3:8787".into()),
        ..Environment::default()
    };
    let error = TroupeConfig::default()
        .apply_environment(&alone)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("TROUPE_ADVERTISE_URL:"), "{error}");
}

#[test]
fn a_public_address_without_a_token_is_refused() {
    let mut config = TroupeConfig::default();
    config.server.listen = "0.0.0.0:8787".parse().unwrap();
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.starts_with("server.listen:") && error.contains("TROUPE_TOKEN"),
        "{error}"
    );
    config.server.token = Some("t".into());
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.starts_with("server.token:") && error.contains("at least 16"),
        "a one-character token off loopback: {error}"
    );
    config.server.token = Some("0123456789abcdef".into());
    config.validate().unwrap();
}

#[test]
fn a_short_token_is_fine_on_loopback_but_surrounding_spaces_never_are() {
    let mut config = TroupeConfig::default();
    config.server.token = Some("t".into());
    config.validate().unwrap();
    for token in [
        " 0123456789abcdef",
        "0123456789abcdef\n",
        "\t0123456789abcdef",
    ] {
        config.server.token = Some(token.to_owned());
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("server.token:") && error.contains("white space"),
            "{token:?}: {error}"
        );
    }
    config.server.token = Some("   ".into());
    assert!(config.validate().unwrap_err().to_string().contains("empty"));
}

#[test]
fn connection_and_timeout_limits_are_checked_and_name_their_key() {
    let cases: [(&str, &str); 5] = [
        ("max_connections = 7", "server.max_connections"),
        (
            "max_connections_per_address = 0",
            "server.max_connections_per_address",
        ),
        ("header_timeout_secs = 0", "server.header_timeout_secs"),
        ("header_timeout_secs = 601", "server.header_timeout_secs"),
        (
            "min_body_bytes_per_sec = 0",
            "server.min_body_bytes_per_sec",
        ),
    ];
    for (line, key) in cases {
        let config = TroupeConfig::parse(&format!("[server]\n{line}")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with(&format!("{key}:")), "{line}: {error}");
    }
    let config =
        TroupeConfig::parse("[server]\nallowed_hosts = [\"*.example.com\", \"a.example:8443\"]")
            .unwrap();
    config.validate().unwrap();
    let error = TroupeConfig::parse("[server]\nallowed_hosts = [\"a.*.example\"]")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("server.allowed_hosts") && error.contains("a.*.example"),
        "{error}"
    );
}

#[test]
fn provider_references_are_checked() {
    let mut config = TroupeConfig::parse(DOCUMENTED_EXAMPLE).unwrap();
    config.assistant.provider = "missing".into();
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("assistant.provider:")
    );
    let mut config = TroupeConfig::parse(DOCUMENTED_EXAMPLE).unwrap();
    config.providers[0].fallbacks = vec!["ghost".into()];
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("providers.main.fallbacks:")
    );
    let mut config = TroupeConfig::parse(DOCUMENTED_EXAMPLE).unwrap();
    config.assistant.offline_fallback = true;
    config.providers[0].name = "offline".into();
    config.assistant.provider = "offline".into();
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("assistant.offline_fallback:"),
        "the implicit offline provider's name is taken"
    );
    let mut config = TroupeConfig::parse(DOCUMENTED_EXAMPLE).unwrap();
    config.providers.push(config.providers[0].clone());
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("used twice")
    );
}

#[test]
fn the_session_cache_is_configurable_within_bounds() {
    let config = TroupeConfig::parse("[storage]\nsession_cache_mib = 4\n").unwrap();
    assert_eq!(config.storage.session_cache_mib, 4);
    assert!(config.validate().is_ok());
    assert_eq!(TroupeConfig::default().storage.session_cache_mib, 2);
    for refused in [0, 4097] {
        let mut config = TroupeConfig::default();
        config.storage.session_cache_mib = refused;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with("storage.session_cache_mib:"), "{error}");
    }
}

#[test]
fn numeric_limits_are_checked() {
    let mut config = TroupeConfig::default();
    config.assistant.history_window = 0;
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("assistant.history_window:")
    );
    let mut config = TroupeConfig::default();
    config.server.max_payload_bytes = 0;
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("server.max_payload_bytes:")
    );
}

#[test]
fn the_environment_joins_a_cluster_and_bad_cluster_keys_are_named() {
    let environment = Environment {
        nats_url: Some("nats://127.0.0.1:4222".into()),
        node_id: Some("node-a".into()),
        ..Environment::default()
    };
    let mut config = TroupeConfig::default();
    config.apply_environment(&environment).unwrap();
    config.validate().unwrap();
    let cluster = config.cluster.as_ref().unwrap();
    assert_eq!(cluster.node_id.as_deref(), Some("node-a"));
    let lonely = Environment {
        node_id: Some("node-a".into()),
        ..Environment::default()
    };
    let error = TroupeConfig::default()
        .apply_environment(&lonely)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("TROUPE_NODE_ID"), "{error}");
    let file = "[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\nheartbeat_ms = 0\n";
    let error = TroupeConfig::parse(file)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("cluster.heartbeat_ms"), "{error}");
    let unknown = "[cluster]\nnats_url = \"nats://x:1\"\nnode = \"a\"\n";
    assert!(
        TroupeConfig::parse(unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown field `node`")
    );
}

#[test]
fn telemetry_is_off_by_default_and_configurable() {
    let config = TroupeConfig::parse("").unwrap();
    assert_eq!(config.telemetry.otlp_endpoint, None);
    assert_eq!(config.telemetry.service_name, "troupe");
    let config = TroupeConfig::parse(
        "[telemetry]\notlp_endpoint = \"http://collector:4317\"\nservice_name = \"home\"\nsample_ratio = 0.25\n",
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.telemetry.sample_ratio, 0.25);
    let error = TroupeConfig::parse("[telemetry]\nendpoint = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("endpoint"), "{error}");
}

#[test]
fn bad_telemetry_values_name_their_key() {
    for (text, key) in [
        (
            "otlp_endpoint = \"collector:4317\"",
            "telemetry.otlp_endpoint",
        ),
        (
            "otlp_endpoint = \"ftp://collector\"",
            "telemetry.otlp_endpoint",
        ),
        ("sample_ratio = 1.5", "telemetry.sample_ratio"),
        ("service_name = \" \"", "telemetry.service_name"),
        ("export_timeout_secs = 0", "telemetry.export_timeout_secs"),
    ] {
        let config = TroupeConfig::parse(&format!("[telemetry]\n{text}\n")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{text}: {error}");
    }
}

#[test]
fn the_standard_opentelemetry_variables_override_the_file() {
    let mut config =
        TroupeConfig::parse("[telemetry]\notlp_endpoint = \"http://a:4317\"\n").unwrap();
    let environment = Environment {
        otlp_endpoint: Some("http://b:4317".into()),
        service_name: Some("assistant".into()),
        ..Environment::default()
    };
    config.apply_environment(&environment).unwrap();
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://b:4317")
    );
    assert_eq!(config.telemetry.service_name, "assistant");
}

#[test]
fn identities_are_checked() {
    let ok = TroupeConfig::parse(
        "[[identities]]\nperson = \"ada\"\nmembers = [\"telegram:123\", \"slack:U456\"]\n",
    )
    .unwrap();
    ok.validate().unwrap();
    for (text, key) in [
        (
            "person = \"a b\"\nmembers = [\"telegram:1\"]",
            "identities[0].person",
        ),
        ("person = \"ada\"\nmembers = []", "identities[0].members"),
        (
            "person = \"ada\"\nmembers = [\"telegram\"]",
            "identities[0].members",
        ),
    ] {
        let config = TroupeConfig::parse(&format!("[[identities]]\n{text}\n")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{text}: {error}");
    }
    let twice = TroupeConfig::parse(
        "[[identities]]\nperson = \"a\"\nmembers = [\"telegram:1\"]\n[[identities]]\nperson = \"b\"\nmembers = [\"telegram:1\"]\n",
    )
    .unwrap();
    assert!(
        twice
            .validate()
            .unwrap_err()
            .to_string()
            .contains("two people")
    );
}

#[test]
fn bridge_entries_name_their_bad_keys() {
    for (entry, key) in [
        ("kind = \"telegram\"", "bridges[0].name"),
        ("name = \"tg\"", "bridges[0].kind"),
        ("name = \"tg\"\nkind = \"fax\"", "bridges[0].kind"),
        ("name = \"Tg\"\nkind = \"telegram\"", "bridges[0].name"),
        (
            "name = \"tg\"\nkind = \"telegram\"\ntoken_env = \"TROUPE_SURELY_UNSET_VARIABLE\"",
            "bridges[0].token_env",
        ),
        (
            "name = \"tg\"\nkind = \"telegram\"\ndm_policy = \"maybe\"",
            "bridges[0].dm_policy",
        ),
        (
            "name = \"tg\"\nkind = \"telegram\"\ntoken = \"1:x\"\nvoice_replies = \"sometimes\"",
            "bridges[0].voice_replies",
        ),
    ] {
        let config = TroupeConfig::parse(&format!("[[bridges]]\n{entry}\n")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{entry}: {error}");
    }
}

/// The first TOML example of docs/skills.md, which shows every kind of skill.
fn skills_doc_example() -> String {
    let doc = include_str!("../../docs/skills.md");
    let start = doc.find("```toml\n[tools]").expect("the example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("its end");
    doc[start..end].to_owned()
}

#[test]
fn the_skills_example_in_the_docs_is_valid() {
    let config = TroupeConfig::parse(&skills_doc_example()).unwrap();
    config.validate().unwrap();
    let skills = config.skills.as_deref().unwrap();
    assert_eq!(skills.len(), 6);
    assert_eq!(config.tools.max_rounds, 8);
    assert_eq!(
        skills[1].permissions.files,
        [PathBuf::from("/home/ada/Documents")]
    );
    assert_eq!(skills[4].limits.max_memory_mb, Some(2048));
}

#[test]
fn without_skills_the_permissionless_built_ins_are_on() {
    let names = |config: &TroupeConfig| -> Vec<String> {
        effective_skills(config.skills.as_deref(), false, false)
            .into_iter()
            .map(|skill| skill.name)
            .collect()
    };
    assert_eq!(
        names(&TroupeConfig::parse("").unwrap()),
        ["time", "calculator", "notes", "reminders", "canvas"]
    );
    assert!(names(&TroupeConfig::parse("skills = []").unwrap()).is_empty());
}

#[test]
fn skill_entries_name_their_bad_keys() {
    for (entry, key) in [
        ("kind = \"builtin\"\nname = \"teleport\"", "skills[0].name"),
        ("kind = \"builtin\"\nname = \"a__b\"", "skills[0].name"),
        (
            "kind = \"builtin\"\nname = \"time\"\ntimeout_secs = 0",
            "skills[0].timeout_secs",
        ),
        (
            "kind = \"http\"\nname = \"x\"\nsecret_env = \"S\"",
            "skills[0].url",
        ),
        (
            "kind = \"http\"\nname = \"x\"\nurl = \"http://h\"",
            "skills[0].secret_env",
        ),
        ("kind = \"mcp\"\nname = \"x\"", "skills[0].command"),
        (
            "kind = \"mcp\"\nname = \"x\"\ncommand = [\"a\"]\nurl = \"http://h\"",
            "skills[0].command",
        ),
    ] {
        let config = TroupeConfig::parse(&format!("[[skills]]\n{entry}\n")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{entry}: {error}");
    }
    let twice = TroupeConfig::parse(
        "[[skills]]\nkind = \"builtin\"\nname = \"time\"\n[[skills]]\nkind = \"builtin\"\nname = \"time\"\n",
    )
    .unwrap();
    assert!(
        twice
            .validate()
            .unwrap_err()
            .to_string()
            .contains("used twice")
    );
    let unknown =
        TroupeConfig::parse("[[skills]]\nkind = \"builtin\"\nname = \"time\"\nsudo = true\n")
            .unwrap_err()
            .to_string();
    assert!(unknown.contains("sudo"), "{unknown}");
    let bad_kind = TroupeConfig::parse("[[skills]]\nkind = \"plugin\"\nname = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(bad_kind.contains("plugin"), "{bad_kind}");
    let parallel = TroupeConfig::parse("[tools]\nmax_parallel = 0\n").unwrap();
    assert!(
        parallel
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tools.max_parallel")
    );
}

#[test]
fn building_a_skill_names_what_is_missing() {
    let context = troupe_skills::builtin::BuiltinContext {
        store: std::sync::Arc::new(troupe_actors::snapshot::MemorySnapshotStore::new()),
        reminders: std::sync::Arc::new(
            troupe_skills::builtin::Reminders::open(tempfile::tempdir().unwrap().path()).unwrap(),
        ),
        canvas: None,
        memories: None,
        workflows: None,
    };
    for (entry, key) in [
        (
            "kind = \"builtin\"\nname = \"workflows\"",
            "runs no workflows",
        ),
        (
            "kind = \"builtin\"\nname = \"files\"",
            "skills[0].permissions.files",
        ),
        (
            "kind = \"builtin\"\nname = \"files\"\npermissions.files = [\"/surely/not/here\"]",
            "skills[0].permissions.files",
        ),
        (
            "kind = \"http\"\nname = \"x\"\nurl = \"http://h\"\nsecret_env = \"TROUPE_SURELY_UNSET_VARIABLE\"",
            "skills[0].secret_env",
        ),
    ] {
        let config = TroupeConfig::parse(&format!("[[skills]]\n{entry}\n")).unwrap();
        config.validate().unwrap();
        let error = match build_skills(config.skills.as_deref().unwrap(), &context) {
            Ok(_) => panic!("{entry} was accepted"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(key), "{entry}: {error}");
    }
}

#[test]
fn a_parse_error_names_the_line_and_key_but_never_quotes_the_line() {
    let text = "[server]\nlisten = \"127.0.0.1:8787\"\ntoken = \"hunter2-secret-value\" oops\n";
    let error = TroupeConfig::parse(text).unwrap_err().to_string();
    assert!(error.starts_with("line 3, key `server.token`:"), "{error}");
    assert!(!error.contains("hunter2"), "the secret leaked: {error}");
    let text = "[[providers]]\nname = \"main\"\nkind = \"openai\"\napi_key = \"sk-live-123\"\n";
    let error = TroupeConfig::parse(text).unwrap_err().to_string();
    assert!(
        error.contains("api_key") && !error.contains("sk-live"),
        "{error}"
    );
}

#[test]
fn sender_tokens_are_read_checked_and_name_their_entry() {
    let directory = tempfile::tempdir().unwrap();
    let file = |name: &str, token: &str| {
        let path = directory.path().join(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        path.display().to_string()
    };
    let ada = file("ada", "ada-token-0123456789");
    let short = file("short", "short");
    let entry = |sender: &str, path: &str| {
        format!("[[server.tokens]]\nsender_id = \"{sender}\"\ntoken_file = \"{path}\"\n")
    };
    let config = TroupeConfig::parse(&entry("ada", &ada)).unwrap();
    config.validate().unwrap();
    let cases = [
        (format!("{}{}", entry("ada", &ada), entry("ada", &short)), "server.tokens[1].sender_id"),
        (format!("{}{}", entry("ada", &ada), entry("bob", &ada)), "server.tokens[1].token_env"),
        (entry("ada/x", &ada), "server.tokens[0].sender_id"),
        (entry("has space", &ada), "server.tokens[0].sender_id"),
        (
            "[[server.tokens]]\nsender_id = \"ada\"\ntoken_env = \"TROUPE_SURELY_UNSET_VARIABLE\"\n".into(),
            "server.tokens[0].token_env",
        ),
        (
            format!("[server]\ntoken = \"ada-token-0123456789\"\n{}", entry("ada", &ada)),
            "server.tokens[0].token_env",
        ),
        (
            format!(
                "[server]\nlisten = \"0.0.0.0:8787\"\ntoken = \"owner-token-0123456789\"\n{}",
                entry("bob", &short)
            ),
            "server.tokens[0].token_env",
        ),
    ];
    for (text, key) in cases {
        let error = TroupeConfig::parse(&text)
            .unwrap()
            .validate()
            .err()
            .map(|error| error.to_string())
            .unwrap_or_else(|| panic!("accepted: {text}"));
        assert!(error.starts_with(&format!("{key}:")), "{text}\n{error}");
    }
}

#[test]
fn canvas_limits_out_of_range_name_their_key() {
    for (entry, key) in [
        ("idle_passivate_secs = 0", "canvas.idle_passivate_secs"),
        ("max_update_bytes = 10", "canvas.max_update_bytes"),
        (
            "max_updates_per_second = 0",
            "canvas.max_updates_per_second",
        ),
        (
            "max_update_bytes = 4096\nmax_document_bytes = 2048",
            "canvas.max_document_bytes",
        ),
    ] {
        let config = TroupeConfig::parse(&format!("[canvas]\n{entry}\n")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{entry}: {error}");
    }
    let config = TroupeConfig::parse("[canvas]\nmax_updates_per_second = 40\n").unwrap();
    config.validate().unwrap();
    assert_eq!(config.canvas.settings().max_updates_per_second, 40);
}

#[test]
fn workflow_limits_out_of_range_name_their_key() {
    for (entry, key) in [
        ("journal_limit_bytes = 10", "workflows.journal_limit_bytes"),
        ("max_steps_per_run = 0", "workflows.max_steps_per_run"),
        ("keep_runs_days = 0", "workflows.keep_runs_days"),
        ("test_hold = [\"during:a\"]", "workflows.test_hold"),
    ] {
        let config = TroupeConfig::parse(&format!("[workflows]\n{entry}\n")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.starts_with(key), "{entry}: {error}");
    }
    let config = TroupeConfig::parse("[workflows]\nmax_steps_per_run = 50\n").unwrap();
    config.validate().unwrap();
    assert_eq!(config.workflows.limits().max_steps, 50);
}

#[test]
fn models_settings_out_of_range_name_their_key_and_the_device_is_typed() {
    for (entry, key) in [
        ("embedder = \"../elsewhere\"", "models.embedder"),
        ("threads = 0", "models.threads"),
        ("queue = 0", "models.queue"),
        ("max_batch = 5000", "models.max_batch"),
        ("cuda_device = -1", "models.cuda_device"),
        (
            "embedder_url = \"ftp://x\"\nembedder_model = \"m\"",
            "models.embedder_url",
        ),
        ("embedder_url = \"http://x/v1\"", "models.embedder_model"),
    ] {
        let config = TroupeConfig::parse(&format!("[models]\n{entry}\n")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(key), "{entry}: {error}");
    }
    let error = TroupeConfig::parse("[models]\ndevice = \"tpu\"\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("device"), "{error}");
    let config =
        TroupeConfig::parse("[models]\ndevice = \"cuda\"\ncuda_device = 1\nembedder = \"\"\n")
            .unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.models.device(),
        troupe_inference::local::Device::Cuda { device_id: 1 }
    );
    assert_eq!(
        TroupeConfig::default()
            .models
            .dir(std::path::Path::new("/data")),
        PathBuf::from("/data/models")
    );
}

#[test]
fn prices_and_budgets_are_checked_and_name_their_key() {
    let checked = |text: &str| {
        TroupeConfig::parse(text)
            .unwrap()
            .validate()
            .map_err(|error| error.to_string())
    };
    let good = "[[prices]]\nmodel = \"gpt-4o-mini\"\ninput = 0.15\noutput = 0.6\ncache_read = 0.075\n\n\
                [budgets]\ncost_per_day = 5.0\nmax_tokens_per_turn = 200000\n\n\
                [[budgets.people]]\nperson = \"person:ann\"\ntokens_per_day = 100000\n\n\
                [tools]\nmax_tool_rounds = 4\n";
    assert_eq!(checked(good), Ok(()));
    let config = TroupeConfig::parse(good).unwrap();
    assert_eq!(config.tools.max_rounds, 4, "max_tool_rounds is max_rounds");
    assert_eq!(
        TroupeConfig::parse(&toml::to_string(&config).unwrap()).unwrap(),
        config
    );
    let error = checked("[[prices]]\nmodel = \"a\"\ninput = -1.0\noutput = 1.0\n").unwrap_err();
    assert!(error.starts_with("prices[0].input:"), "{error}");
    let error = checked("[budgets]\nmax_tokens_per_turn = 0\n").unwrap_err();
    assert!(error.starts_with("budgets.max_tokens_per_turn:"), "{error}");
    let error = checked("[[budgets.people]]\nperson = \"a\"\ncost_per_day = -2.0\n").unwrap_err();
    assert!(
        error.starts_with("budgets.people[0].cost_per_day:"),
        "{error}"
    );
    let error = TroupeConfig::parse("[budgets]\ntokens_per_week = 5\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("tokens_per_week"), "{error}");
}

#[test]
fn a_trace_link_must_be_a_web_address_with_the_trace_id_in_it() {
    let checked = |url: &str| {
        let mut config = TroupeConfig::default();
        config.telemetry.trace_url = Some(url.into());
        config.validate().map_err(|error| error.to_string())
    };
    assert_eq!(
        checked("https://grafana.home/explore?trace={trace_id}"),
        Ok(())
    );
    for bad in [
        "https://jaeger/trace/",
        "javascript:alert({trace_id})",
        "{trace_id}",
    ] {
        let error = checked(bad).unwrap_err();
        assert!(error.starts_with("telemetry.trace_url:"), "{bad}: {error}");
    }
}

#[test]
fn the_ops_token_is_checked_like_the_owners_and_names_its_key() {
    let checked = |owner: Option<&str>, ops: &str| {
        let mut config = TroupeConfig::default();
        config.server.token = owner.map(str::to_owned);
        config.server.ops_token = Some(ops.to_owned());
        config.validate().map_err(|error| error.to_string())
    };
    assert_eq!(checked(Some("owner-token"), "wall-screen"), Ok(()));
    for (owner, ops) in [
        (Some("owner-token"), " wall"),
        (Some("owner-token"), ""),
        (Some("owner-token"), "owner-token"),
        (None, "wall-screen"),
    ] {
        let error = checked(owner, ops).unwrap_err();
        assert!(error.starts_with("server.ops_token:"), "{ops}: {error}");
    }
}
