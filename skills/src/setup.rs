//! Why a configured skill cannot be built: one error type for every kind, each reason
//! keeping what caused it. The configuration names the key it came from.

use std::path::PathBuf;

/// Why a skill cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SkillSetupError {
    #[error("the files skill needs at least one directory in `permissions.files`")]
    NoDirectories,
    #[error("{}: {source}", path.display())]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("`{url}` is not a URL: {source}")]
    Url {
        url: String,
        source: url::ParseError,
    },
    #[error("`{0}` must be an http or https URL")]
    Scheme(String),
    #[error("the shared secret must be at least 16 characters")]
    ShortSecret,
    #[error("the HTTP client could not be built: {0}")]
    Client(#[source] reqwest::Error),
    #[error("`command` must name a program")]
    NoCommand,
    #[error(
        "this host cannot run a process without network (`unshare --net` failed); grant \
         `permissions.network = true` to run this MCP server with network access"
    )]
    NoNetworkIsolation,
    #[error("the canvas does not run on this node")]
    NoCanvas,
    #[error(
        "this node keeps no long-term memory: it needs the local embedding model (see docs/local-models.md)"
    )]
    NoMemory,
    #[error("this node runs no workflows ([workflows] enabled = false)")]
    NoWorkflows,
    #[error("there is no built-in skill `{name}` (expected one of: {expected})")]
    UnknownBuiltin { name: String, expected: String },
}
