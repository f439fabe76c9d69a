//! First run without a model: a guided set-up for the person at the machine.
//!
//! - `GET /api/v1/setup`: whether it is offered (the node answers with `echo` because no
//!   model is configured, it is not in a cluster, and the request comes from this machine)
//!   and where the configuration would go.
//! - `POST /api/v1/setup` `{"kind": "openai"|"anthropic"|"ollama", "api_key"?, "base_url"?,
//!   "model"}`: with no configuration file yet, writes `troupe.toml` (the key goes to a file
//!   of its own in the data dir, readable only by its owner); with one, writes nothing and
//!   answers the exact lines to add. Either way the node answers with the new provider
//!   after a restart.
//!
//! Both are owner-only routes behind the same Host, Origin, token and limit layers as
//! every other route; the loopback check comes on top.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::HOST;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::body::admin_json_body;
use super::error::{ApiCode, ApiError};
use super::guard::split_host;

/// Where a first-run configuration goes. One per node that answers with `echo` because it
/// was given no model; it remembers whether it wrote one.
#[derive(Debug)]
pub(crate) struct SetupTarget {
    /// `--config` or `TROUPE_CONFIG` when given (the file exists), else `./troupe.toml`.
    config_path: PathBuf,
    data_dir: PathBuf,
    /// The provider name sessions use (`assistant.provider`).
    provider_name: String,
    written: AtomicBool,
}

impl SetupTarget {
    pub(crate) fn new(config_path: PathBuf, data_dir: PathBuf, provider_name: String) -> Self {
        Self {
            config_path: std::path::absolute(&config_path).unwrap_or(config_path),
            data_dir: std::path::absolute(&data_dir).unwrap_or(data_dir),
            provider_name,
            written: AtomicBool::new(false),
        }
    }
}

/// A provider the person chose, validated: built only by [`ProviderChoice::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProviderChoice {
    kind: SetupKind,
    api_key: Option<String>,
    base_url: Option<String>,
    model: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SetupKind {
    Openai,
    Anthropic,
    Ollama,
}

impl SetupKind {
    fn name(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Ollama => "ollama",
        }
    }

    /// The environment variable the lines name when they cannot hold the key.
    fn key_variable(self) -> Option<&'static str> {
        match self {
            Self::Openai => Some("OPENAI_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Ollama => None,
        }
    }
}

/// The request body, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetupDraft {
    kind: SetupKind,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    model: String,
}

/// Why a choice is refused; the field is named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ChoiceError {
    #[error("api_key: {0} needs an API key")]
    KeyMissing(&'static str),
    #[error("api_key: a key is 1 to 512 characters without spaces or control characters")]
    KeyMalformed,
    #[error("base_url: {0}")]
    BaseUrl(String),
    #[error("model: a model name is 1 to 200 characters without control characters")]
    Model,
}

const OLLAMA_BASE_URL: &str = "http://127.0.0.1:11434/v1";

impl ProviderChoice {
    pub(crate) fn parse(draft: SetupDraft) -> Result<Self, ChoiceError> {
        let model = draft.model.trim().to_owned();
        if model.is_empty() || model.chars().count() > 200 || model.chars().any(char::is_control) {
            return Err(ChoiceError::Model);
        }
        let api_key = match (draft.kind, draft.api_key.map(|key| key.trim().to_owned())) {
            (SetupKind::Ollama, _) => None,
            (kind, None) => return Err(ChoiceError::KeyMissing(kind.name())),
            (kind, Some(key)) if key.is_empty() => {
                return Err(ChoiceError::KeyMissing(kind.name()));
            }
            (_, Some(key)) => {
                let clean =
                    key.len() <= 512 && !key.chars().any(|c| c.is_whitespace() || c.is_control());
                if !clean {
                    return Err(ChoiceError::KeyMalformed);
                }
                Some(key)
            }
        };
        let base_url = match draft.base_url.map(|url| url.trim().to_owned()) {
            Some(url) if !url.is_empty() => Some(checked_url(&url)?),
            _ if draft.kind == SetupKind::Ollama => Some(OLLAMA_BASE_URL.to_owned()),
            _ => None,
        };
        Ok(Self {
            kind: draft.kind,
            api_key,
            base_url,
            model,
        })
    }

    /// The `[[providers]]` entry, with the key read from `key_file`, or from the kind's
    /// environment variable when there is no file.
    fn lines(&self, name: &str, key_file: Option<&Path>) -> String {
        let kind = match self.kind {
            SetupKind::Anthropic => "anthropic",
            SetupKind::Openai | SetupKind::Ollama => "openai",
        };
        let needs_key = self.api_key.is_some();
        let entry = ProviderLines {
            name,
            kind,
            base_url: self.base_url.as_deref(),
            model: &self.model,
            api_key_file: key_file.filter(|_| needs_key),
            api_key_env: self
                .kind
                .key_variable()
                .filter(|_| needs_key && key_file.is_none()),
        };
        toml::to_string(&ProvidersFile { providers: [entry] })
            .expect("a provider entry of strings is valid TOML")
    }
}

fn checked_url(url: &str) -> Result<String, ChoiceError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|error| ChoiceError::BaseUrl(error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ChoiceError::BaseUrl(
            "an http or https URL with a host".into(),
        ));
    }
    Ok(url.to_owned())
}

#[derive(Serialize)]
struct ProvidersFile<'a> {
    providers: [ProviderLines<'a>; 1],
}

#[derive(Serialize)]
struct ProviderLines<'a> {
    name: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<&'a str>,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_env: Option<&'a str>,
}

/// Whether a request comes from this machine: a loopback peer that named a loopback host
/// (a reverse proxy on the same machine has a loopback peer but forwards another name).
fn from_this_machine(peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
    let name = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(split_host)
        .map(|(name, _)| name)
        .unwrap_or_default();
    let loopback_name = name == "localhost"
        || name
            .parse::<IpAddr>()
            .is_ok_and(|address| address.to_canonical().is_loopback());
    peer.is_some_and(|peer| peer.to_canonical().is_loopback()) && loopback_name
}

fn target<'a>(
    state: &'a AppState,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Option<&'a SetupTarget> {
    state
        .settings
        .setup
        .as_deref()
        .filter(|_| from_this_machine(peer, headers))
}

/// `GET /api/v1/setup`.
pub(crate) async fn status(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let Some(target) = target(&state, peer, &headers) else {
        return Json(json!({"offered": false})).into_response();
    };
    Json(json!({
        "offered": true,
        "config_path": target.config_path,
        "config_exists": target.config_path.exists(),
        "written": target.written.load(Ordering::Acquire),
    }))
    .into_response()
}

/// `POST /api/v1/setup`.
pub(crate) async fn apply(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let Some(target) = target(&state, peer, &headers) else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ApiCode::SetupNotOffered,
            "the set-up is offered only on the machine Troupe runs on, while no model is configured",
        )
        .into_response();
    };
    let draft: SetupDraft = match admin_json_body(body).await {
        Ok(draft) => draft,
        Err(refusal) => return refusal.into_response(),
    };
    let choice = match ProviderChoice::parse(draft) {
        Ok(choice) => choice,
        Err(error) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ApiCode::InvalidRequest,
                error.to_string(),
            )
            .into_response();
        }
    };
    let config_path = target.config_path.clone();
    let data_dir = target.data_dir.clone();
    let name = target.provider_name.clone();
    let written =
        tokio::task::spawn_blocking(move || write_config(&config_path, &data_dir, &name, &choice))
            .await;
    match written {
        Ok(Ok(outcome)) => {
            if outcome.written {
                target.written.store(true, Ordering::Release);
                tracing::info!(path = %target.config_path.display(), "first-run set-up wrote the configuration");
            }
            Json(outcome).into_response()
        }
        Ok(Err(error)) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiCode::StorageError,
            error.to_string(),
        )
        .into_response(),
        Err(error) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ApiCode::Internal,
            error.to_string(),
        )
        .into_response(),
    }
}

/// What the set-up did: wrote `config_path`, or wrote nothing and gives the lines to add.
#[derive(Debug, Serialize)]
pub(crate) struct SetupOutcome {
    written: bool,
    config_path: PathBuf,
    lines: String,
    /// The environment variable to set, when the lines name one.
    #[serde(skip_serializing_if = "Option::is_none")]
    set_variable: Option<&'static str>,
}

/// Why the set-up could not write.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupWriteError {
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn write_config(
    config_path: &Path,
    data_dir: &Path,
    name: &str,
    choice: &ProviderChoice,
) -> Result<SetupOutcome, SetupWriteError> {
    if config_path.exists() {
        return Ok(SetupOutcome {
            written: false,
            config_path: config_path.to_owned(),
            lines: choice.lines(name, None),
            set_variable: choice.api_key.as_ref().and(choice.kind.key_variable()),
        });
    }
    let key_file = match &choice.api_key {
        Some(key) => {
            let path = data_dir
                .join("secrets")
                .join(format!("{}-api-key", choice.kind.name()));
            write_private(&path, &format!("{key}\n"), true)?;
            Some(path)
        }
        None => None,
    };
    let lines = choice.lines(name, key_file.as_deref());
    let text = format!(
        "# Written by Troupe's first-run set-up; see docs/configuration.md for every setting.\n\n{lines}"
    );
    write_private(config_path, &text, false)?;
    Ok(SetupOutcome {
        written: true,
        config_path: config_path.to_owned(),
        lines,
        set_variable: None,
    })
}

/// Writes `text` to `path`, readable only by its owner; `replace` decides whether an
/// existing file may be replaced (a configuration never is).
fn write_private(path: &Path, text: &str, replace: bool) -> Result<(), SetupWriteError> {
    let failed = |source| SetupWriteError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(failed)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(failed)?;
    // The mode above applies to a new file only: a key file that was there is narrowed too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}

#[cfg(test)]
#[path = "setup_tests.rs"]
mod tests;
