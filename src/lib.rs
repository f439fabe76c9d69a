//! `troupe`: a self-hosted personal AI assistant built as a troupe of actors.
//! This crate is the composition root: CLI, configuration, HTTP server assembly and
//! telemetry set-up. The binary (`src/main.rs`) only parses the command line and runs it;
//! [`fuzzing`] holds the entry points the fuzzers in `fuzz/` drive.

mod admin;
mod bench;
mod chat;
mod cli;
mod config;
pub mod fuzzing;
mod gateway;
mod local_models;
mod log_level;
mod memory;
mod models_command;
mod reminders;
mod serve;
mod telemetry;
mod usage_command;
mod voice;
mod workflow_command;
mod workflows;

use std::process::ExitCode;
use std::time::Instant;

pub use cli::Cli;
use cli::{Command, ConfigCommand};
use config::{Environment, TroupeConfig};

/// Runs one command of the command line to its end.
pub async fn run(cli: Cli, process_start: Instant) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let (config, source) =
                TroupeConfig::load(args.config.as_deref(), &Environment::from_process())?;
            serve::serve(config, source, process_start).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat(args) => chat::run(args).await,
        Command::Config {
            command: ConfigCommand::Check(args),
        } => config_check(args.config.as_deref()).await,
        Command::Version => {
            println!("troupe {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(args).await,
        Command::BenchCanvas(args) => bench::run_canvas(args).await,
        Command::Health(args) => health(&args.url).await,
        Command::Pair { command } => admin::run(command).await,
        Command::Identity { command } => admin::identity(command).await,
        Command::Skills(node) => admin::skills(node).await,
        Command::Ops { command } => admin::ops(command).await,
        Command::Usage(args) => usage_command::run(args).await,
        Command::Workflow { command, node } => workflow_command::run(command, &node.into()).await,
        Command::Models { command, place } => models_command::run(command, place).await,
    }
}

/// `troupe health`: a health check that needs no shell or curl in the image.
async fn health(url: &str) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    let answer = client
        .get(format!("{}/healthz", url.trim_end_matches('/')))
        .send()
        .await;
    match answer {
        Ok(response) if response.status().is_success() => Ok(ExitCode::SUCCESS),
        Ok(response) => {
            eprintln!("unhealthy: /healthz answered {}", response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("unhealthy: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `troupe config check`: loads, validates and builds the providers, without serving.
async fn config_check(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let (config, source) = TroupeConfig::load(path, &Environment::from_process())?;
    let (providers, notice) = serve::resolve_providers(&config).await;
    let models_dir = config.models.dir(&config.storage.data_dir);
    for provider in &providers {
        troupe_inference::build_provider(provider, &models_dir)?;
    }
    let source = match source {
        config::ConfigSource::File(path) => path.display().to_string(),
        config::ConfigSource::Defaults => "built-in defaults (no config file)".into(),
    };
    println!("config ok: {source}");
    println!("  listen      {}", config.server.listen);
    println!("  data_dir    {}", config.storage.data_dir.display());
    println!(
        "  auth        {}",
        if config.server.token.is_some() {
            "bearer token"
        } else {
            "none (loopback only)"
        }
    );
    for provider in &providers {
        let marker = if provider.name == config.assistant.provider {
            "*"
        } else {
            " "
        };
        let model = provider.model.as_deref().unwrap_or("-");
        println!(
            "  provider {marker}  {} ({}, model {model})",
            provider.name,
            provider.kind.as_str()
        );
    }
    if let Some(notice) = notice {
        println!("note: {notice}");
    }
    Ok(ExitCode::SUCCESS)
}
