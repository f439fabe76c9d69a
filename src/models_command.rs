//! `troupe models list|install|remove`: the models directory from the command line (see
//! docs/local-models.md).

use std::process::ExitCode;

use anyhow::Context;
use troupe_inference::local::install::{CATALOG, Manifest, install, remove};

use crate::cli::{ModelsCommand, ModelsPlace};
use crate::config::{Environment, TroupeConfig};

pub(crate) async fn run(command: ModelsCommand, place: ModelsPlace) -> anyhow::Result<ExitCode> {
    let dir = match place.dir {
        Some(dir) => dir,
        None => {
            let (config, _) =
                TroupeConfig::load(place.config.as_deref(), &Environment::from_process())?;
            config.models.dir(&config.storage.data_dir)
        }
    };
    match command {
        ModelsCommand::List => {
            let manifest = Manifest::read(&dir)?;
            println!("models directory: {}", dir.display());
            for model in CATALOG {
                let installed = manifest
                    .models
                    .iter()
                    .find(|known| known.name == model.name);
                let state = match installed {
                    Some(installed) => {
                        let bytes: u64 = installed.files.iter().map(|file| file.bytes).sum();
                        format!("installed ({:.1} MB)", bytes as f64 / 1e6)
                    }
                    None => "not installed".to_owned(),
                };
                println!(
                    "{:<22} {:<10} {:<12} {state}",
                    model.name, model.kind, model.license
                );
                println!("{:<22} from {}", "", model.sources);
            }
        }
        ModelsCommand::Install { name, sources } => {
            let installed = install(&dir, &name, &sources)
                .await
                .with_context(|| format!("installing {name}"))?;
            for file in &installed.files {
                println!(
                    "{}/{}/{}  sha256 {}  {} bytes",
                    dir.display(),
                    installed.name,
                    file.name,
                    file.sha256,
                    file.bytes
                );
            }
            println!(
                "installed {name} ({}, {})",
                installed.kind, installed.license
            );
        }
        ModelsCommand::Remove { name } => {
            remove(&dir, &name).with_context(|| format!("removing {name}"))?;
            println!("removed {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
